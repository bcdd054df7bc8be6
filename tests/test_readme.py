"""The plugin examples of the README (a strategy) and of docs/plugins.md (a dataset, a learner)
work as printed: each is one file, and it is a registered plugin that runs."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from benchmark import registry
from benchmark.plugins import ScoringContext

README = Path(__file__).resolve().parent.parent / "README.md"
PLUGINS = README.parent / "docs" / "plugins.md"
#: Where each example is printed.
PAGES = {"strategy": README, "learner": PLUGINS, "dataset": PLUGINS}


def _example(kind: str) -> str:
    """The code of the ``<!-- {kind}-example -->`` block of its page."""
    page = PAGES[kind]
    match = re.search(rf"<!-- {kind}-example -->\s*```python\n(.*?)```", page.read_text(), re.S)
    assert match, f"{page.name} lost its {kind} example"
    return match.group(1)


@contextmanager
def plugin_root(root: Path, monkeypatch: pytest.MonkeyPatch, folder: str, file: str, kind: str):
    """``root`` as a plugin folder holding the README's ``kind`` example as ``folder/file``."""
    (root / folder).mkdir()
    (root / folder / file).write_text(_example(kind))
    monkeypatch.setenv("ALCBENCH_PLUGIN_PATH", str(root))
    registry.refresh()
    try:
        yield root
    finally:
        registry.refresh()


@pytest.fixture
def example_root(tmp_path, monkeypatch):
    with plugin_root(tmp_path, monkeypatch, "strategies", "label_margin.py", "strategy") as root:
        yield root


def test_readme_strategy_is_discovered_with_its_description(example_root):
    info = registry.discover("strategy")["label_margin"]
    assert info.ok
    assert info.origin.endswith("label_margin.py")
    assert "prefers another class" in info.description


def test_readme_strategy_scores_as_documented(example_root):
    strategy = registry.create("strategy", "label_margin[doubt_weight=0.5]")
    counts = np.array([[1, 0, 0], [0, 1, 0]])
    post = np.array([[0.2, 0.7, 0.1], [0.2, 0.7, 0.1]])
    scores = strategy.score(ScoringContext(label_counts=counts, posteriors=post))
    doubt = -np.sum(post[0] * np.log(post[0])) / np.log(3)
    np.testing.assert_allclose(scores, [0.5 - 0.5 * doubt, -0.5 * doubt])


def test_readme_strategy_parameter_changes_the_ranking(example_root):
    counts = np.eye(3, dtype=np.int64)[[0, 0]]
    # sample 0: the larger margin, but an unsure model; sample 1: a smaller margin, surer
    post = np.array([[0.2, 0.5, 0.3], [0.35, 0.6, 0.05]])
    ctx = ScoringContext(label_counts=counts, posteriors=post)
    plain = registry.create("strategy", "label_margin").score(ctx)
    weighted = registry.create("strategy", "label_margin[doubt_weight=0.5]").score(ctx)
    assert plain[0] > plain[1] and weighted[1] > weighted[0]


def test_readme_strategy_rejects_a_bad_value(example_root):
    with pytest.raises(ValueError, match="doubt_weight=-1 is not allowed"):
        registry.create("strategy", "label_margin[doubt_weight=-1]")


def test_readme_runs_the_strategy_beside_random():
    assert re.search(r"--strategy 'label_margin\[doubt_weight=0.5\]' --strategy random", README.read_text())


def test_readme_strategy_joins_the_default_suite(example_root):
    from benchmark.run.suite import expand

    strategies, failed = expand("strategy")
    assert "label_margin[doubt_weight=0]" in strategies and "label_margin[doubt_weight=0.5]" in strategies


@pytest.fixture
def learner_root(tmp_path, monkeypatch):
    with plugin_root(tmp_path, monkeypatch, "learners", "nearest_mean.py", "learner") as root:
        yield root


def test_readme_learner_is_discovered_with_its_parameters(learner_root):
    info = registry.discover("learner")["nearest_mean"]
    assert info.ok and info.origin.endswith("nearest_mean.py")
    assert info.cls.parameters == {"folds": [2], "temperature": [10.0]}
    assert registry.create("learner", "nearest_mean[temperature=5]").config.temperature == 5.0


def test_readme_learner_gives_out_of_sample_posteriors(learner_root):
    from benchmark.task import CleaningTask

    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 20)
    images = (truth[:, None, None] * 100 + rng.integers(0, 30, (60, 6, 6))).astype(np.uint8)
    noisy = truth.copy()
    noisy[[0, 25, 50]] = [1, 2, 0]
    task = CleaningTask(
        "toy",
        np.eye(3)[truth],
        noisy,
        ("dark", "grey", "light"),
        load_images=lambda: images,
    )
    post = registry.create("learner", "nearest_mean").fit_predict(task, seed=0, progress=False)
    assert post.probs.shape == (60, 3) and post.stochastic is None
    np.testing.assert_allclose(post.probs.sum(axis=1), 1.0, rtol=1e-5)
    # the flipped labels are not memorised: the held-out model predicts the true class
    assert np.array_equal(post.probs.argmax(axis=1), truth)


@pytest.fixture
def dataset_root(tmp_path, monkeypatch):
    monkeypatch.delenv("ALCBENCH_DATA", raising=False)
    rng = np.random.default_rng(0)
    counts = rng.multinomial(20, [0.6, 0.3, 0.1], size=400)
    counts[:100] = counts[:100, ::-1]  # a quarter of the samples lean the other way
    data = tmp_path / "data"
    data.mkdir()
    rows = [f"s{i},{a},{b},{c}" for i, (a, b, c) in enumerate(counts)]
    (data / "votes.csv").write_text("id,cat,dog,fox\n" + "\n".join(rows) + "\n")
    with plugin_root(tmp_path, monkeypatch, "datasets", "vote_table.py", "dataset") as root:
        yield root, counts


def test_readme_dataset_loads_the_vote_table_as_a_task(dataset_root):
    root, counts = dataset_root
    info = registry.discover("dataset")["vote_table"]
    assert info.ok and info.origin.endswith("vote_table.py")
    task = registry.create("dataset", "vote_table").load(root / "data")
    assert task.class_names == ("cat", "dog", "fox")
    np.testing.assert_allclose(task.true_dist, counts / 20)
    assert list(task.sample_ids[:2]) == ["s0", "s1"]
    # one vote drawn per sample: each label is a class the crowd voted for, at the crowd's rates
    assert (counts[np.arange(400), task.noisy_labels] > 0).all()
    share = np.bincount(task.noisy_labels[100:], minlength=3) / 300
    np.testing.assert_allclose(share, [0.6, 0.3, 0.1], atol=0.08)
    other = registry.create("dataset", "vote_table[noise_seed=1]").load(root / "data")
    assert not np.array_equal(other.noisy_labels, task.noisy_labels)


def test_readme_dataset_runs_as_written(dataset_root, capsys):
    from benchmark.cli import main

    root, _ = dataset_root
    text = " ".join(PLUGINS.read_text().split())
    command = (
        "alcbench run --dataset vote_table --learner truth --strategy oracle --strategy random "
        "--data-root <data folder> --out runs/"
    )
    assert command in text
    args = command.split()[1:]
    args[args.index("<data")] = str(root / "data")
    args.remove("folder>")
    args[args.index("runs/")] = str(root / "runs")
    assert main([*args, "--seeds", "0", "--no-progress"]) == 0
    assert "2 cells ok, 0 skipped, 0 failed" in capsys.readouterr().out
    board = (root / "runs" / "leaderboard.md").read_text()
    assert "vote_table" in board and "| oracle |" in board and "| random |" in board


def test_readme_dataset_without_its_file_names_where_it_looked(dataset_root, capsys):
    from benchmark.cli import main

    root, _ = dataset_root
    (root / "data" / "votes.csv").unlink()
    args = ["run", "--dataset", "vote_table", "--learner", "truth", "--strategy", "random"]
    assert main([*args, "--data-root", str(root / "data"), "--out", str(root / "runs"), "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "1 skipped" in out and str(root / "data" / "votes.csv") in out


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    fence, found = False, set()
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,6} ", line):
            found.add(_slug(line.lstrip("#")))
    return found


def test_readme_is_a_short_front_page_that_starts_with_the_quickstart():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "Quickstart"
    quick = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert len(quick.strip().splitlines()) <= 45
    assert "make benchmark" in quick and "make test" in quick and "results/site/index.html" in quick
    # every page under docs/ is linked from the front page
    for page in sorted((README.parent / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in text, f"README does not link {page.name}"


def test_every_relative_link_of_the_readme_and_docs_resolves():
    pages = [README, *sorted((README.parent / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
