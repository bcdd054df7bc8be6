"""The engine's layout (DESIGN.md, "Layout"): one sub-package per stage of the flow, imports that
only go from a stage to itself, to earlier stages and to the shared top level, no module too long
to read in one sitting, and nothing dataset- or strategy-specific inside it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import benchmark

ENGINE = Path(__file__).resolve().parent.parent / "benchmark"

#: The top level: what every stage uses (the plugin model, the data model, data roots, atomic
#: writes, the CPU-thread budget, radiograph reading, a cell's configuration).
SHARED = {
    "benchmark",
    "_plugins",
    "atomic",
    "config",
    "dataroot",
    "params",
    "plugins",
    "radiographs",
    "registry",
    "task",
    "threads",
}
#: The stages, in the order of the flow: each imports only from itself, the ones before it and
#: the shared top level.
STAGES = ("posteriors", "learners", "simulation", "results", "run", "downstream", "report", "clean", "perf")
#: The command line, at the top level, sits above every stage.
ENTRY = {"arguments", "cli", "commands"}
#: The most lines one module may have (the speed benchmarks of perf/ are exempt).
MAX_LINES = 450


def rank(module: str) -> int:
    """0 for the shared top level, 1.. for the stages in order, then the command line."""
    top = module.split(".")[0]
    if top in STAGES:
        return 1 + STAGES.index(top)
    if module in SHARED:
        return 0
    if module in ENTRY:
        return 1 + len(STAGES)
    raise AssertionError(f"benchmark/{module}: neither a stage nor named in this test's top level")


def engine_modules() -> dict[str, Path]:
    """Dotted names relative to the package (``"learners.smallcnn"``, ``"benchmark"`` for
    ``__init__``) -> file."""
    out = {}
    for path in sorted(ENGINE.rglob("*.py")):
        parts = path.relative_to(ENGINE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts) or "benchmark"] = path
    return out


def _is_module(dotted: str) -> bool:
    """Whether ``benchmark.x.y`` names a module or package of the engine."""
    parts = dotted.split(".")[1:]
    return bool(parts) and (
        ENGINE.joinpath(*parts).with_suffix(".py").is_file()
        or (ENGINE.joinpath(*parts) / "__init__.py").is_file()
    )


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """The lines of the ``if TYPE_CHECKING:`` blocks: imports for annotations only."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports(path: Path, *, runtime_only: bool = False) -> list[str]:
    """Every module ``path`` imports, at its top or inside a function, as written (absolute
    names; relative ones resolved; ``from package import module`` as ``package.module``).
    ``runtime_only`` leaves out the imports under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    typing_only = _type_checking_lines(tree) if runtime_only else set()
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = ".".join(["benchmark", *path.relative_to(ENGINE).parent.parts])
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            subs = [f"{module}.{a.name}" for a in node.names if _is_module(f"{module}.{a.name}")]
            found += subs if subs else [module]
    return found


def engine_imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    out = set()
    for name in imports(path, runtime_only=runtime_only):
        if name == "benchmark":
            out.add("benchmark")
        elif name.startswith("benchmark."):
            out.add(name.removeprefix("benchmark."))
    return out


def layering_errors(modules: dict[str, Path]) -> list[str]:
    """One line per import that goes to a later stage (or to the command line)."""
    errors = []
    for module, path in sorted(modules.items()):
        for dep in sorted(engine_imports(path)):
            if rank(dep) > rank(module):
                errors.append(f"benchmark.{module} imports benchmark.{dep}, a later stage")
    return errors


def test_every_engine_module_is_in_a_stage_or_named_at_the_top_level() -> None:
    for module in engine_modules():
        rank(module)


def test_the_top_level_holds_the_shared_modules_and_the_command_line_only() -> None:
    top = {p.stem for p in ENGINE.glob("*.py")} - {"__init__"}
    assert top == (SHARED | ENTRY) - {"benchmark"}
    assert len(top) + 1 <= 14
    packages = {p.parent.name for p in ENGINE.glob("*/__init__.py")}
    assert packages == set(STAGES)


def test_each_stage_imports_only_itself_earlier_stages_and_the_top_level() -> None:
    assert layering_errors(engine_modules()) == []


def test_the_layering_check_catches_a_stage_importing_a_later_one(tmp_path: Path) -> None:
    # A deliberate bad import: the simulator reading the report pages.
    modules = engine_modules()
    bad = tmp_path / "simulator.py"
    bad.write_text(modules["simulation.simulator"].read_text() + "\nfrom benchmark.report import pages\n")
    modules["simulation.simulator"] = bad
    assert layering_errors(modules) == [
        "benchmark.simulation.simulator imports benchmark.report.pages, a later stage"
    ]
    # and a shared top-level module importing a stage
    bad_task = tmp_path / "task.py"
    bad_task.write_text(modules["task"].read_text() + "\nimport benchmark.simulation.expert\n")
    assert layering_errors({"task": bad_task}) == [
        "benchmark.task imports benchmark.simulation.expert, a later stage"
    ]


def find_cycle(modules: dict[str, Path]) -> list[str] | None:
    """An import cycle among ``modules``, as the trail that closes it, or None. Imports for
    annotations only (under ``if TYPE_CHECKING:``) are left out: a learner's private torch
    helper may name the learner's class in its signatures."""
    graph = {
        m: {d for d in engine_imports(p, runtime_only=True) if d in modules and d != m}
        for m, p in modules.items()
    }
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> list[str] | None:
        if state.get(m) == 2:
            return None
        if state.get(m) == 1:
            return [*trail, m]
        state[m] = 1
        for d in sorted(graph[m]):
            if found := visit(d, [*trail, m]):
                return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if found := visit(m, []):
            return found
    return None


def test_the_engine_import_graph_has_no_cycle() -> None:
    assert find_cycle(engine_modules()) is None


def test_the_cycle_check_catches_a_loop_within_a_stage(tmp_path: Path) -> None:
    modules = engine_modules()
    bad = tmp_path / "expert.py"
    bad.write_text(modules["simulation.expert"].read_text() + "\nimport benchmark.simulation.simulator\n")
    modules["simulation.expert"] = bad
    cycle = find_cycle(modules)
    assert cycle is not None and cycle[-1] in cycle[:-1]
    assert {"simulation.expert", "simulation.simulator"} <= set(cycle)


def test_no_engine_module_is_longer_than_one_sitting() -> None:
    long = {
        module: n
        for module, path in engine_modules().items()
        if not module.startswith("perf") and (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_engine_imports_moved_modules_by_their_new_names_only() -> None:
    for module, path in engine_modules().items():
        old = {f"benchmark.{d}" for d in engine_imports(path)} & set(benchmark.MOVED)
        assert not old, f"benchmark/{module} imports {sorted(old)} by an old name"


@pytest.mark.parametrize("old", sorted(benchmark.MOVED))
def test_an_old_module_path_imports_the_moved_module_itself(old: str) -> None:
    new = importlib.import_module(benchmark.MOVED[old])
    assert importlib.import_module(old) is new
    assert new.__name__ == new.__spec__.name == benchmark.MOVED[old]
    parent, _, leaf = old.rpartition(".")
    assert getattr(importlib.import_module(parent), leaf) is new


def test_the_engine_imports_no_dataset_or_strategy_module_by_name() -> None:
    for module, path in engine_modules().items():
        for name in imports(path):
            top = name.split(".")[0]
            assert top not in ("datasets", "strategies"), f"benchmark/{module} imports {name}"


def test_results_flow_one_way_from_runner_to_pages() -> None:
    # The runner writes tables; nothing that writes them reads the aggregation or pages back.
    modules = engine_modules()
    readers = {"results.leaderboard", "results.plots", "report.pages", "report.site", "cli"}
    for module in ("config", "results.tables", "run.runner", "simulation.simulator", "simulation.metrics"):
        deps = engine_imports(modules[module])
        assert not deps & readers, (module, deps)
    assert not engine_imports(modules["results.plots"]) & {"report.pages", "report.site"}
    assert not engine_imports(modules["results.leaderboard"]) & {"results.plots", "report.pages"}


def test_the_aggregation_module_does_no_io() -> None:
    text = engine_modules()["results.leaderboard"].read_text()
    for io in ("open(", "read_parquet", "to_parquet", "to_csv", "write_bytes", "savefig", "Path("):
        assert io not in text, f"benchmark/results/leaderboard.py uses {io}"
