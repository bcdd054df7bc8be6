"""Plugin discovery (benchmark.registry): folders by path, failures kept visible, clear errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmark import registry
from benchmark.plugins import Plugin, ScoringContext, format_spec, parse_spec
from benchmark.registry import PluginLoadError, PluginNameClash, UnknownPluginError

BUILTIN_STRATEGIES = {"random", "oracle", "loss", "entropy", "eq2", "bald", "cleanlab"}

GOOD = textwrap.dedent(
    """
    import numpy as np

    from benchmark.plugins import ScoringContext, Strategy


    class Good(Strategy):
        name = "good"
        description = "A test strategy: scores are the sample index times scale."
        requires = frozenset()
        parameters = {"scale": [1.0, 2.0]}

        def score(self, ctx: ScoringContext) -> np.ndarray:
            return self.params["scale"] * np.arange(ctx.n_samples, dtype=float)
    """
)
BROKEN = 'raise ImportError("needs a package that is not installed")\n'
EMPTY = '"""A file that defines no strategy."""\nVALUE = 1\n'


@pytest.fixture
def plugin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "strategies"
    folder.mkdir()
    (folder / "good.py").write_text(GOOD)
    (folder / "broken.py").write_text(BROKEN)
    (folder / "empty.py").write_text(EMPTY)
    monkeypatch.setenv("ALCBENCH_PLUGIN_PATH", str(tmp_path))
    registry.refresh()
    yield tmp_path
    registry.refresh()


def test_builtin_strategies_are_all_discovered():
    found = registry.discover("strategy")
    assert BUILTIN_STRATEGIES <= set(found)
    assert all(found[name].ok for name in BUILTIN_STRATEGIES)


def test_builtin_strategies_come_from_the_project_strategies_folder():
    found = registry.discover("strategy")
    for name in BUILTIN_STRATEGIES:
        assert Path(found[name].origin).parent == registry.PROJECT_ROOT / "strategies"


def test_plugin_from_an_extra_root_is_listed_and_usable(plugin_root):
    info = registry.discover("strategy")["good"]
    assert info.ok and info.origin == str(plugin_root / "strategies" / "good.py")
    good = registry.create("strategy", "good[scale=2]")
    ctx = ScoringContext(label_counts=np.eye(2, dtype=np.int64)[[0, 1, 0]])
    np.testing.assert_array_equal(good.score(ctx), [0.0, 2.0, 4.0])


def test_a_plugin_that_fails_to_import_is_listed_with_its_error(plugin_root):
    info = registry.discover("strategy")["broken"]
    assert not info.ok
    assert info.origin == str(plugin_root / "strategies" / "broken.py")
    assert "ImportError" in info.error and "needs a package that is not installed" in info.error
    assert info.description.startswith("FAILED TO LOAD")


def test_a_broken_plugin_does_not_stop_the_others_from_loading(plugin_root):
    found = registry.discover("strategy")
    assert found["good"].ok
    assert all(found[name].ok for name in BUILTIN_STRATEGIES)


def test_a_file_without_a_strategy_class_is_listed_as_failed(plugin_root):
    info = registry.discover("strategy")["empty"]
    assert not info.ok
    assert "defines no Strategy subclass" in info.error


def test_getting_a_broken_plugin_raises_plugin_load_error_naming_the_file(plugin_root):
    with pytest.raises(PluginLoadError, match="broken.py") as err:
        registry.get("strategy", "broken")
    assert "needs a package that is not installed" in str(err.value)


def test_extra_plugin_roots_are_forgotten_once_the_path_is_unset(plugin_root, monkeypatch):
    monkeypatch.delenv("ALCBENCH_PLUGIN_PATH")
    registry.refresh()
    assert "good" not in registry.discover("strategy")


@pytest.mark.parametrize(("typo", "suggestion"), [("eq3", "eq2"), ("randm", "random")])
def test_unknown_name_raises_error_suggesting_closest_names(typo, suggestion):
    with pytest.raises(UnknownPluginError, match=f"did you mean '{suggestion}'"):
        registry.get("strategy", typo)


def test_unknown_name_error_lists_available_plugins():
    with pytest.raises(UnknownPluginError) as err:
        registry.get("strategy", "zzzz")
    assert "did you mean" not in str(err.value)
    assert all(name in str(err.value) for name in BUILTIN_STRATEGIES)


def test_unknown_plugin_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown plugin kind"):
        registry.discover("solver")


def test_list_plugins_filters_names_with_a_shell_pattern():
    assert [info.name for info in registry.list_plugins("strategy", "e*")] == ["entropy", "eq2"]


# --- specs and parameters --------------------------------------------------------------------


def test_parse_spec_reads_typed_parameters():
    assert parse_spec("eq2[hinge=0.3]") == ("eq2", {"hinge": 0.3})
    assert parse_spec(" cifar10h[n=5000, temperature=2.5] ") == (
        "cifar10h",
        {"n": 5000, "temperature": 2.5},
    )
    assert parse_spec("x[a=true,b=None,c=self_confidence]") == (
        "x",
        {"a": True, "b": None, "c": "self_confidence"},
    )
    assert parse_spec("loss") == ("loss", {})


@pytest.mark.parametrize("bad", ["eq2[hinge=0.3", "eq2[hinge]"])
def test_parse_spec_rejects_malformed_specs(bad):
    with pytest.raises(ValueError, match="malformed"):
        parse_spec(bad)


identifiers = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True).filter(
    lambda s: s not in {"true", "false", "none", "inf", "nan", "infinity"}
)
values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.booleans(),
    st.none(),
    identifiers,
)


@given(name=identifiers, params=st.dictionaries(identifiers, values, max_size=4))
def test_format_spec_and_parse_spec_round_trip(name, params):
    parsed_name, parsed = parse_spec(format_spec(name, params))
    assert parsed_name == name
    assert parsed == params
    assert {k: type(v) is bool for k, v in parsed.items()} == {k: type(v) is bool for k, v in params.items()}


def test_spec_of_a_configured_plugin_parses_back_to_the_same_configuration():
    for spec in ("eq2[hinge=0.3]", "eq2", "cleanlab[method=normalized_margin]"):
        plugin = registry.create("strategy", spec)
        again = registry.create("strategy", plugin.spec)
        assert again.params == plugin.params


def test_plugin_rejects_unknown_parameters_naming_the_known_ones():
    with pytest.raises(ValueError, match="hindge") as err:
        registry.create("strategy", "eq2[hindge=0.3]")
    assert "hinge" in str(err.value).replace("hindge", "")


def test_plugin_parameters_default_to_the_first_grid_value():
    class Toy(Plugin):
        name = "toy"
        parameters = {"a": [1, 2], "b": ["x"]}

    assert Toy().params == {"a": 1, "b": "x"}
    assert Toy(b="y").spec == "toy[a=1,b=y]"
    assert Toy().spec == "toy[a=1]"
    assert list(Toy.grid()) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]


@pytest.fixture
def entry_point_package(tmp_path, monkeypatch):
    """An installed-package stand-in: a module on sys.path and entry points pointing into it."""
    from importlib.metadata import EntryPoint

    (tmp_path / "third_party_margin.py").write_text(
        textwrap.dedent("""
        import numpy as np
        from benchmark.plugins import Strategy

        class Margin(Strategy):
            name = "third_party_margin"
            description = "A strategy from another package."

            def score(self, ctx):
                return np.zeros(ctx.n_samples)

        NOT_A_PLUGIN = 42
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [
        EntryPoint("third_party_margin", "third_party_margin:Margin", "alcbench.strategies"),
        EntryPoint("not_a_plugin", "third_party_margin:NOT_A_PLUGIN", "alcbench.strategies"),
        EntryPoint("missing", "no_such_module_here:Thing", "alcbench.strategies"),
    ]

    def fake_entry_points(*, group):
        return [ep for ep in points if ep.group == group]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    registry.refresh()
    yield
    registry.refresh()


def test_entry_point_strategies_are_listed_with_their_origin(entry_point_package):
    info = registry.discover("strategy")["third_party_margin"]
    assert info.ok and info.origin.startswith("entry point third_party_margin:Margin")
    assert registry.create("strategy", "third_party_margin").description == "A strategy from another package."


def test_broken_entry_points_are_listed_as_failed_without_stopping_the_others(entry_point_package):
    plugins = registry.discover("strategy")
    assert not plugins["missing"].ok and "no_such_module_here" in plugins["missing"].error
    assert not plugins["not_a_plugin"].ok and "not a Strategy subclass" in plugins["not_a_plugin"].error
    assert plugins["loss"].ok and plugins["third_party_margin"].ok


# --- plugin folders as packages --------------------------------------------------------------

WITH_HELPER = textwrap.dedent(
    """
    import numpy as np

    from benchmark.plugins import ScoringContext, Strategy

    from ._weights import WEIGHT


    class Weighted(Strategy):
        name = "weighted"
        description = "Scores from a private helper module beside the plugin."
        requires = frozenset()
        parameters = {"offset": [0.0, 1.0]}

        def score(self, ctx: ScoringContext) -> np.ndarray:
            return WEIGHT * np.arange(ctx.n_samples, dtype=float) + self.params["offset"]
    """
)


@pytest.fixture
def package_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "strategies"
    folder.mkdir()
    (folder / "weighted.py").write_text(WITH_HELPER)
    (folder / "_weights.py").write_text("WEIGHT = 3.0\n")
    monkeypatch.setenv("ALCBENCH_PLUGIN_PATH", str(tmp_path))
    registry.refresh()
    yield tmp_path
    registry.refresh()


def test_a_plugin_imports_a_private_helper_beside_it_relatively(package_root):
    infos = registry.discover("strategy")
    assert "_weights" not in infos  # helpers are not plugins
    weighted = registry.create("strategy", "weighted")
    ctx = ScoringContext(label_counts=np.eye(2, dtype=np.int64)[[0, 1, 0]])
    np.testing.assert_array_equal(weighted.score(ctx), [0.0, 3.0, 6.0])


def test_a_plugin_instance_pickles_into_a_fresh_process(package_root):
    import os
    import pickle
    import subprocess
    import sys

    weighted = registry.create("strategy", "weighted[offset=1]")
    script = (
        "import pickle, sys\n"
        "import numpy as np\n"
        "from benchmark.plugins import ScoringContext\n"
        "s = pickle.loads(sys.stdin.buffer.read())\n"
        "ctx = ScoringContext(label_counts=np.eye(2, dtype=np.int64)[[0, 1]])\n"
        "print(s.spec, s.score(ctx).tolist())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps(weighted),
        capture_output=True,
        env={**os.environ, "ALCBENCH_PLUGIN_PATH": str(package_root)},
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "weighted[offset=1] [1.0, 4.0]"


def test_builtin_learners_are_found_by_path_in_the_engine_learners_folder():
    found = registry.discover("learner")
    for name in ("truth", "smallcnn", "resnet50"):
        assert found[name].ok
        assert Path(found[name].origin).parent == registry.ENGINE_ROOT / "learners"
    assert not any(name.startswith("_") for name in found)


def test_two_plugins_with_one_name_keep_the_first_and_record_the_clash(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "strategies"
    folder.mkdir()
    (folder / "my_loss.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from benchmark.plugins import Strategy

            class AnotherLoss(Strategy):
                name = "loss"
                description = "A second strategy called loss."

                def score(self, ctx):
                    return np.zeros(ctx.n_samples)
            """
        )
    )
    monkeypatch.setenv("ALCBENCH_PLUGIN_PATH", str(tmp_path))
    registry.refresh()
    try:
        with pytest.warns(
            PluginNameClash, match=r"two strategies are called 'loss': using the one from .*loss.py"
        ):
            info = registry.discover("strategy")["loss"]
        assert Path(info.origin).parent == registry.PROJECT_ROOT / "strategies"
        assert info.shadows == (str(folder / "my_loss.py"),)
        from benchmark.cli import main

        assert main(["list", "strategies", "loss"]) == 0
        assert f"name also used by {folder / 'my_loss.py'}" in capsys.readouterr().out
    finally:
        registry.refresh()
