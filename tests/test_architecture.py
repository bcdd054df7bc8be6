"""The engine's layout: one job per module, imports that only go down the floors, and nothing
dataset- or strategy-specific inside it (DESIGN.md, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "benchmark"

#: Each engine module's floor: a module imports only from its own floor or those below.
FLOORS: dict[str, int] = {
    # the data model and plain I/O
    "benchmark": 0,
    "_plugins": 0,
    "atomic": 0,
    "dataroot": 0,
    "task": 0,
    "expert": 0,
    "threads": 0,
    "params": 0,
    "radiographs": 1,
    # plugin contracts and what they compute with
    "plugins": 1,
    "scoring": 1,
    "registry": 2,
    "posteriors": 2,
    "cache": 2,
    "cache_entry": 2,
    "learner_config": 1,
    "folds": 1,
    "crossfit": 2,
    "learners": 3,  # every module of benchmark/learners/
    # simulation
    "trajectory": 2,
    "snapshots": 3,
    "reference": 3,
    "simulator": 4,
    "metrics": 5,
    # results: configuration, schema and I/O, then the runner that fills them
    "config": 6,
    "results": 7,
    "engines": 0,
    "runner": 8,
    "diagnostics": 3,
    "suite": 8,
    "downstream": 8,
    # reading results back: aggregation, figures, pages
    "leaderboard": 8,
    "learner_summary": 9,
    "plots": 9,
    "downstream_report": 9,
    "report": 10,
    "site": 11,
    # cleaning a team's own data: the ledger and its inputs, the queue, its files, its commands
    "clean.ledger": 0,
    "clean.inputs": 0,
    "clean.labelstudio": 0,
    "clean.project": 5,
    "clean.example": 5,
    "clean.batches": 6,
    "clean": 7,
    "clean.progress": 10,
    "clean.cli": 10,
    # developer tools and the command line
    "perf": 11,  # every module of benchmark/perf/
    "arguments": 11,
    "cli": 12,
}


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


def floor(module: str) -> int:
    key = module.split(".")[0] if module.split(".")[0] in ("learners", "perf") else module
    if key not in FLOORS:
        raise AssertionError(f"benchmark/{module}: not in the floor map of this test; give it a floor")
    return FLOORS[key]


def imports(path: Path) -> list[str]:
    """Every module ``path`` imports, as written (absolute names; relative ones resolved)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = ".".join(["benchmark", *path.relative_to(ENGINE).parent.parts])
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.append(f"{base}.{node.module}" if node.module else base)
            elif node.module == "benchmark":
                found += [f"benchmark.{a.name}" for a in node.names]
            elif node.module:
                found.append(node.module)
    return found


def engine_imports(path: Path) -> set[str]:
    out = set()
    for name in imports(path):
        if name == "benchmark":
            out.add("benchmark")
        elif name.startswith("benchmark."):
            out.add(name.removeprefix("benchmark."))
    return out


def test_every_engine_module_has_a_floor() -> None:
    for module in engine_modules():
        floor(module)


@pytest.mark.parametrize("module", sorted(engine_modules()))
def test_imports_only_go_down_the_floors(module: str) -> None:
    path = engine_modules()[module]
    for dep in sorted(engine_imports(path)):
        assert floor(dep) <= floor(module), (
            f"benchmark/{module} (floor {floor(module)}) imports {dep} (floor {floor(dep)}): "
            "an import back up the floors"
        )


def test_the_engine_import_graph_has_no_cycle() -> None:
    modules = engine_modules()
    graph = {m: {d for d in engine_imports(p) if d in modules and d != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        if state.get(m) == 2:
            return
        assert state.get(m) != 1, "import cycle: " + " -> ".join([*trail, m])
        state[m] = 1
        for d in sorted(graph[m]):
            visit(d, [*trail, m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])


def test_the_engine_imports_no_dataset_or_strategy_module_by_name() -> None:
    for module, path in engine_modules().items():
        for name in imports(path):
            top = name.split(".")[0]
            assert top not in ("datasets", "strategies"), f"benchmark/{module} imports {name}"


def test_results_flow_one_way_from_runner_to_pages() -> None:
    # The runner writes tables; nothing that writes them reads the report modules back.
    for module in ("config", "results", "runner", "simulator", "metrics"):
        deps = engine_imports(engine_modules()[module])
        assert not deps & {"leaderboard", "plots", "report", "cli"}, (module, deps)
    assert "report" not in engine_imports(engine_modules()["plots"])
    assert not engine_imports(engine_modules()["leaderboard"]) & {"plots", "report"}


def test_the_aggregation_module_does_no_io() -> None:
    text = engine_modules()["leaderboard"].read_text()
    for io in ("open(", "read_parquet", "to_parquet", "to_csv", "write_bytes", "savefig", "Path("):
        assert io not in text, f"benchmark/leaderboard.py uses {io}"
