"""The ensemble learner: K seeded fits of a base learner, averaged, members as posterior samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from helpers import make_task

from benchmark import registry
from benchmark.learners.ensemble import Ensemble
from benchmark.plugins import Learner, Posteriors
from benchmark.posteriors.cache import cache_key, use_cache_dirs
from benchmark.posteriors.files import check_posteriors_array
from benchmark.task import CleaningTask


class Noisy(Learner):
    """Posteriors that lean on the noisy label, with seeded noise; counts its fits."""

    name = "noisy_test"
    version = "1"
    fits: ClassVar[list[int]] = []

    def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
        Noisy.fits.append(seed)
        rng = np.random.default_rng(seed)
        logits = 2.0 * np.eye(task.n_classes)[task.noisy_labels] + rng.normal(
            size=(task.n_samples, task.n_classes)
        )
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return Posteriors(probs=probs.astype(np.float32), info={"seconds": 1.5})


def toy(n: int, n_classes: int, seed: int) -> CleaningTask:
    """``n`` samples, true labels at random, a fifth of the noisy labels flipped."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, n_classes, n)
    noisy = np.where(rng.random(n) < 0.2, (true + 1) % n_classes, true)
    return make_task(np.eye(n_classes)[true], noisy)


@pytest.fixture
def ensemble(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """An ensemble whose base is the counting test learner, its members cached in tmp_path."""
    Noisy.fits.clear()
    monkeypatch.setattr(Ensemble, "base", lambda self: Noisy())
    use_cache_dirs(tmp_path / "cache")

    def make(**params: Any) -> Ensemble:
        return Ensemble(**params)

    return make


def test_probs_are_the_member_mean_and_stochastic_the_members(ensemble: Any) -> None:
    task = toy(60, 3, 1)
    post = ensemble(members=3).fit_predict(task, seed=7, progress=False)
    seeds = Ensemble(members=3).member_seeds(7)
    assert seeds[0] == 7 and len(set(seeds)) == 3
    members = np.stack([Noisy().fit_predict(task, seed=s).probs for s in seeds])
    assert post.stochastic is not None and post.stochastic.shape == (3, 60, 3)
    np.testing.assert_array_equal(post.stochastic, members)
    np.testing.assert_allclose(post.probs, members.mean(axis=0), atol=1e-6)
    check_posteriors_array(post.probs, 60, 3, where="probs")
    check_posteriors_array(post.stochastic, 60, 3, where="stochastic")
    assert post.info is not None and post.info["members"] == 3 and post.info["seconds"] == 4.5


def test_same_seed_same_posteriors_other_seed_other(ensemble: Any, tmp_path: Path) -> None:
    task = toy(40, 3, 2)
    a = ensemble(members=2).fit_predict(task, seed=0, progress=False)
    use_cache_dirs(tmp_path / "elsewhere")  # nothing cached: fitted again
    b = ensemble(members=2).fit_predict(task, seed=0, progress=False)
    c = ensemble(members=2).fit_predict(task, seed=1, progress=False)
    np.testing.assert_array_equal(a.probs, b.probs)
    assert not np.array_equal(a.probs, c.probs)


def test_members_fitted_once_are_read_from_the_cache(ensemble: Any) -> None:
    task = toy(40, 3, 3)
    first = ensemble(members=3).fit_predict(task, seed=5, progress=False)
    assert len(Noisy.fits) == 3 and first.info is not None and first.info["members_fitted"] == 3
    Noisy.fits.clear()
    bigger = ensemble(members=4).fit_predict(task, seed=5, progress=False)
    assert Noisy.fits == [Ensemble(members=4).member_seeds(5)[3]]  # only the new member
    assert bigger.info is not None and bigger.info["members_fitted"] == 1
    assert bigger.stochastic is not None and first.stochastic is not None
    np.testing.assert_array_equal(bigger.stochastic[:3], first.stochastic)


def test_refit_refits_every_member_on_the_new_labels(ensemble: Any) -> None:
    task = toy(50, 3, 4)
    learner = ensemble(members=2)
    new_labels = (task.noisy_labels + 1) % 3
    post = learner.refit(task, new_labels, seed=0)
    assert np.mean(post.probs.argmax(axis=1) == new_labels) > 0.8


def test_bad_bases_are_refused_when_named() -> None:
    with pytest.raises(ValueError, match="ensemble itself"):
        Ensemble(base="ensemble")
    with pytest.raises(ValueError, match="without parameters"):
        Ensemble(base="smallcnn[epochs=2]")
    with pytest.raises(Exception, match="smallcnn"):
        Ensemble(base="smallcn")
    with pytest.raises(ValueError):
        Ensemble(members=1)


def test_the_cache_key_follows_the_base_learner(monkeypatch: pytest.MonkeyPatch) -> None:
    task = toy(20, 2, 0)
    before = cache_key(task, Ensemble(), 0)
    cls = registry.get("learner", "smallcnn")
    monkeypatch.setattr(cls, "version", "changed")
    assert cache_key(task, Ensemble(), 0) != before
    assert cache_key(task, Ensemble(members=4), 0) != before


def test_an_ensemble_of_small_cnns_learns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from test_smallcnn import FAST, colour_task

    from benchmark.learners.smallcnn import SmallCNN

    monkeypatch.setattr(Ensemble, "base", lambda self: SmallCNN(**FAST))
    use_cache_dirs(tmp_path)
    task = colour_task()
    post = Ensemble(members=2).fit_predict(task, seed=0, progress=False)
    assert np.mean(post.probs.argmax(axis=1) == task.true_labels) >= 0.8
    assert post.stochastic is not None and post.stochastic.shape[0] == 2
    assert not np.array_equal(post.stochastic[0], post.stochastic[1])


def test_posteriors_is_passed_on_to_the_base_and_enters_the_key() -> None:
    assert Ensemble(posteriors="insample").base().params["posteriors"] == "insample"
    assert Ensemble().base().params["posteriors"] == "oof"  # smallcnn's own default
    task = toy(20, 2, 0)
    assert cache_key(task, Ensemble(posteriors="insample"), 0) != cache_key(task, Ensemble(), 0)
    with pytest.raises(ValueError, match="no `posteriors` parameter"):
        Ensemble(base="truth", posteriors="oof")


def test_views_is_passed_on_to_the_base_and_enters_the_key_when_set() -> None:
    assert Ensemble(posteriors="insample", views=8).base().params["views"] == 8
    assert Ensemble(posteriors="insample").base().params["views"] == 1  # smallcnn's own default
    task = toy(20, 2, 0)
    plain = cache_key(task, Ensemble(posteriors="insample"), 0)
    assert cache_key(task, Ensemble(posteriors="insample", views=8), 0) != plain
    with pytest.raises(ValueError, match="no `views` parameter"):
        Ensemble(base="truth", views=2)
