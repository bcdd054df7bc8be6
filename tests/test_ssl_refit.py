"""The ``ssl`` learner's active re-fit: a warm start from the stored base heads, and bytes that
do not depend on the BLAS thread count.

No torch and no pretraining: the encoder's features of a small synthetic task (600 samples,
128 features, 10 classes) are written straight into the encoder store, as a pretraining
would have stored them, so every test runs in a second or so.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from benchmark.learners import _linear_head, ssl
from benchmark.learners._linear_head import (
    BATCH_SIZE,
    MOMENTUM,
    LinearHead,
    predict_head,
    softmax,
    standardiser,
    train_head,
)
from benchmark.learners._ssl_encoder import encoder_dirs, encoder_inputs, write_encoder
from benchmark.learners._ssl_heads import heads_dirs
from benchmark.learners.ssl import SelfSupervised
from benchmark.plugins import Posteriors
from benchmark.posteriors.cache import CACHE_DIRS_ENV, cache_key, key_inputs
from benchmark.posteriors.cache_entry import canonical_json
from benchmark.task import CleaningTask

N, D, C = 600, 128, 10
#: Small but default-shaped: width 32 gives the 128 features of the shipped encoder.
PARAMS: dict[str, Any] = {"head_epochs": 20, "refit_epochs": 5, "mc_samples": 3}
TESTS = Path(__file__).resolve().parent


def synthetic_task() -> tuple[CleaningTask, np.ndarray]:
    """(task, its (N, D) features): Gaussian classes, 15% of the labels flipped; the images are
    random (only their bytes matter, as the encoder's key)."""
    rng = np.random.default_rng(0)
    true = rng.integers(0, C, N)
    features = rng.normal(size=(C, D))[true] * 0.6 + rng.normal(size=(N, D)) + 2.0
    noisy = true.copy()
    flipped = rng.choice(N, N * 15 // 100, replace=False)
    noisy[flipped] = (noisy[flipped] + rng.integers(1, C, flipped.size)) % C
    images = rng.integers(0, 256, size=(N, 4, 4, 3), dtype=np.uint8)
    task = CleaningTask(
        name="synthetic",
        true_dist=np.eye(C)[true],
        noisy_labels=noisy,
        class_names=tuple(f"c{c}" for c in range(C)),
        load_images=lambda: images,
    )
    return task, features.astype(np.float16).astype(np.float32)


def store_encoder(task: CleaningTask, features: np.ndarray) -> None:
    """Writes ``features`` as the stored encoder of ``task``'s images (the ssl defaults')."""
    assert task.load_images is not None
    inputs = encoder_inputs(task.load_images(), SelfSupervised().pretrain_settings())
    key = hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()[:20]
    write_dir, _ = encoder_dirs()
    write_encoder(write_dir / f"{key}.npz", features, {}, {}, {"key": key, "inputs": inputs})


def use_dirs(root: Path) -> dict[str, str]:
    """The environment that makes ``root/write`` the artifact folder written, ``root/read`` one read."""
    return {CACHE_DIRS_ENV: os.pathsep.join([str(root / "write"), str(root / "read")])}


@pytest.fixture
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CleaningTask:
    """The synthetic task, its encoder stored in this test's write folder."""
    for name, value in use_dirs(tmp_path).items():
        monkeypatch.setenv(name, value)
    task, features = synthetic_task()
    store_encoder(task, features)
    return task


def new_labels(task: CleaningTask) -> np.ndarray:
    """The labels after some annotations: a third of the samples get their true label."""
    labels = task.noisy_labels.copy()
    labels[::3] = task.true_labels[::3]
    return labels


def count_training(monkeypatch: pytest.MonkeyPatch) -> list[LinearHead | None]:
    """The ``init`` of each call of the ssl learner's ``train_head`` (None: from scratch)."""
    calls: list[LinearHead | None] = []
    real = ssl.train_head

    def counted(*args: Any, **kwargs: Any) -> LinearHead:
        calls.append(kwargs.get("init"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "train_head", counted)
    return calls


def head_files() -> list[Path]:
    return sorted(heads_dirs()[0].glob("*.npz"))


def posterior_bytes(post: Posteriors) -> bytes:
    assert post.stochastic is not None
    return post.probs.tobytes() + post.stochastic.tobytes()


# ----------------------------------------------------------------------------- train_head


def reference_train_head(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    dropout: float,
    seed: int,
) -> LinearHead:
    """``train_head`` as it was before ``init`` (verbatim, less its checks and callback)."""
    labels = np.asarray(labels, dtype=np.int64)
    n, d = features.shape
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    mean, std = standardiser(features)
    x = (np.asarray(features, dtype=np.float32) - mean) / std
    onehot = np.eye(n_classes, dtype=np.float32)[labels]
    weights = np.zeros((d, n_classes), dtype=np.float32)
    bias = np.zeros(n_classes, dtype=np.float32)
    velocity_w = np.zeros_like(weights)
    velocity_b = np.zeros_like(bias)
    keep = 1.0 - dropout
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            xb = x[idx]
            if dropout > 0.0:
                xb = xb * (rng.random(xb.shape, dtype=np.float32) < keep) / np.float32(keep)
            probs = softmax(xb @ weights + bias)
            target = onehot[idx]
            residual = (probs - target) / np.float32(idx.size)
            grad_w = xb.T @ residual + np.float32(weight_decay) * weights
            grad_b = residual.sum(axis=0)
            velocity_w *= np.float32(MOMENTUM)
            velocity_w += grad_w
            velocity_b *= np.float32(MOMENTUM)
            velocity_b += grad_b
            weights -= np.float32(lr) * velocity_w
            bias -= np.float32(lr) * velocity_b
    return LinearHead(weights=weights, bias=bias, mean=mean, std=std, dropout=float(dropout))


def small_problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2024)
    labels = rng.integers(0, 3, 200)
    x = rng.normal(size=(3, 8))[labels] * 2 + rng.normal(size=(200, 8)) + 5
    return x.astype(np.float32), labels


def test_train_head_without_init_is_what_it_was() -> None:
    """Bit for bit the code before ``init`` (the shipped posteriors stay reproducible), and
    the values that code gave (computed with it, before the change)."""
    x, y = small_problem()
    settings: dict[str, Any] = dict(epochs=3, lr=0.01, weight_decay=1e-3, dropout=0.2, seed=5)
    head = train_head(x, y, 3, **settings)
    with threadpool_limits(1):
        reference = reference_train_head(x, y, 3, **settings)
    for name in ("weights", "bias", "mean", "std"):
        assert getattr(head, name).tobytes() == getattr(reference, name).tobytes(), name
    np.testing.assert_allclose(
        head.weights[:2],
        [[-0.08029332757, 0.20297890902, -0.12268558145], [0.12223464251, -0.20826815069, 0.08603352308]],
        rtol=1e-5,
    )
    np.testing.assert_allclose(head.bias, [0.04252209887, -0.00118410296, -0.04133800045], rtol=1e-4)
    probs, _ = predict_head(head, x, mc_samples=2, seed=5)
    np.testing.assert_allclose(
        probs[:2], [[0.43132111, 0.21076848, 0.35791040], [0.25084707, 0.25044236, 0.49871057]], rtol=1e-5
    )


def test_a_warm_start_begins_at_init_and_keeps_its_standardiser() -> None:
    x, y = small_problem()
    settings: dict[str, Any] = dict(lr=0.01, weight_decay=1e-3, dropout=0.2, seed=5)
    init = train_head(x, y, 3, epochs=3, **settings)
    shifted = x + 10.0  # other statistics: a warm start must not standardise with them
    same = train_head(shifted, y, 3, epochs=0, init=init, **settings)
    for name in ("weights", "bias", "mean", "std"):
        np.testing.assert_array_equal(getattr(same, name), getattr(init, name))
    assert same.weights is not init.weights
    before = init.weights.copy()
    tuned = train_head(x, (y + 1) % 3, 3, epochs=1, init=init, **settings)
    np.testing.assert_array_equal(init.weights, before)  # init is left as it was
    assert not np.array_equal(tuned.weights, init.weights)
    np.testing.assert_array_equal(tuned.mean, init.mean)
    with pytest.raises(ValueError, match="weights must be a float32 array of shape"):
        train_head(x[:, :4], y, 3, epochs=1, init=init, **settings)


# ----------------------------------------------------------------------------- the re-fit


def test_refit_epochs_stays_out_of_the_key_and_the_spec(task: CleaningTask) -> None:
    plain = SelfSupervised()
    assert plain.spec == "ssl" and SelfSupervised(refit_epochs=10).spec == "ssl"
    assert "refit_epochs" not in key_inputs(task, plain, 0)["learner"]["params"]
    assert cache_key(task, SelfSupervised(refit_epochs=10), 0) == cache_key(task, plain, 0)
    assert SelfSupervised(refit_epochs=3).spec == "ssl[refit_epochs=3]"
    with pytest.raises(ValueError, match="refit_epochs=-1 must be >= 0"):
        SelfSupervised(refit_epochs=-1)


@pytest.mark.parametrize("mode", ["insample", "oof"])
def test_a_refit_fine_tunes_the_base_heads(
    task: CleaningTask, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Each head starts from the fit's head of its split, takes refit_epochs epochs, and the
    result differs from heads trained from scratch on the new labels."""
    params = {**PARAMS, "posteriors": mode}
    fit_learner = SelfSupervised(**params)
    fit_learner.fit_predict(task, seed=0, progress=False)
    fitted = fit_learner.base_heads(task, 0)
    assert len(fitted) == (1 if mode == "insample" else 2)
    calls = count_training(monkeypatch)
    epochs: list[int] = []
    monkeypatch.setattr(SelfSupervised, "epoch_done", lambda self, **kw: epochs.append(1))
    labels = new_labels(task)
    learner = SelfSupervised(**params)
    warm = learner.refit(task, labels, seed=0)
    assert len(calls) == len(fitted) and len(epochs) == len(fitted) * PARAMS["refit_epochs"]
    for init, head in zip(calls, fitted, strict=True):  # read from the store, as the fit made them
        assert init is not None and init.weights.tobytes() == head.weights.tobytes()
        assert init.mean.tobytes() == head.mean.tobytes()
    scratch = learner.refit(task, labels, seed=0, from_scratch=True)
    assert not np.array_equal(warm.probs, scratch.probs)
    assert warm.info is not None and warm.info["refit"] == "warm" and warm.info["refit_epochs"] == 5
    # it follows the new labels: more so than the fit's own posteriors
    base = learner.refit(task, task.noisy_labels, seed=0)
    changed = np.flatnonzero(labels != task.noisy_labels)
    assert warm.probs[changed, labels[changed]].mean() > base.probs[changed, labels[changed]].mean()
    assert warm.info["accuracy_true"] == pytest.approx(np.mean(warm.probs.argmax(1) == task.true_labels))


def test_the_base_heads_are_trained_once_then_read(
    task: CleaningTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_training(monkeypatch)
    first = SelfSupervised(**PARAMS).refit(task, new_labels(task), seed=0)
    assert [c is None for c in calls] == [True, False]  # the base head, then its fine-tuning
    (path,) = head_files()
    written = path.stat().st_mtime_ns
    with np.load(path) as z:
        assert z["weights"].dtype == np.float32 and z["weights"].shape == (1, D, C)
        assert (
            json.loads(str(z["inputs"]))["labels_sha256"]
            == hashlib.sha256(task.noisy_labels.astype(np.int64).tobytes()).hexdigest()
        )
    assert path.stat().st_size < 20_000
    calls.clear()
    again = SelfSupervised(**PARAMS).refit(task, new_labels(task), seed=0)
    assert [c is None for c in calls] == [False]  # read, not trained again
    assert path.stat().st_mtime_ns == written and head_files() == [path]
    assert posterior_bytes(again) == posterior_bytes(first)
    # another seed has heads of its own
    SelfSupervised(**PARAMS).refit(task, new_labels(task), seed=1)
    assert len(head_files()) == 2
    # a read folder's file is found too
    read = heads_dirs()[1][0]
    read.mkdir(parents=True)
    path.rename(read / path.name)
    calls.clear()
    from_read = SelfSupervised(**PARAMS).refit(task, new_labels(task), seed=0)
    assert [c is None for c in calls] == [False] and not path.exists()
    assert posterior_bytes(from_read) == posterior_bytes(first)


def test_a_fit_stores_its_heads_for_the_refits(task: CleaningTask, monkeypatch: pytest.MonkeyPatch) -> None:
    SelfSupervised(**PARAMS).fit_predict(task, seed=0, progress=False)
    assert len(head_files()) == 1
    calls = count_training(monkeypatch)
    SelfSupervised(**PARAMS).refit(task, new_labels(task), seed=0)
    assert [c is None for c in calls] == [False]


@pytest.mark.parametrize("damage", ["garbage", "other labels", "not finite"])
def test_a_bad_base_head_file_is_reported_and_trained_again(
    task: CleaningTask, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    expected = SelfSupervised(**PARAMS).refit(task, new_labels(task), seed=0)
    (path,) = head_files()
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not an npz file")
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        if damage == "other labels":
            inputs = json.loads(str(arrays["inputs"]))
            arrays["inputs"] = np.asarray(canonical_json({**inputs, "labels_sha256": "0" * 64}))
        else:
            arrays["weights"][0, 0, 0] = np.nan
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    calls = count_training(monkeypatch)
    with pytest.warns(RuntimeWarning, match=re.escape(f"{path}: bad base-head file")):
        again = SelfSupervised(**PARAMS).refit(task, new_labels(task), seed=0)
    assert [c is None for c in calls] == [True, False]  # trained again, then fine-tuned
    with np.load(path) as fresh, np.load(io.BytesIO(good)) as original:  # replaced by a good file
        assert fresh.files == original.files
        for name in original.files:
            np.testing.assert_array_equal(fresh[name], original[name])
    assert posterior_bytes(again) == posterior_bytes(expected)


# ----------------------------------------------------------------------------- determinism


def test_a_refit_is_the_same_bytes_whatever_the_blas_threads(task: CleaningTask) -> None:
    labels = new_labels(task)
    results = []
    for threads in (1, 2, 1, 2):
        with threadpool_limits(threads):
            results.append(posterior_bytes(SelfSupervised(**PARAMS).refit(task, labels, seed=0)))
    assert len(set(results)) == 1


def x86_with_fma() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\bavx2\b", flags) and re.search(r"\bfma\b", flags))


SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_ssl_refit import PARAMS, new_labels, posterior_bytes, synthetic_task
    from benchmark.learners.ssl import SelfSupervised

    task, features = synthetic_task()
    post = SelfSupervised(**PARAMS).refit(task, new_labels(task), seed=0)
    fit = SelfSupervised(**PARAMS).fit_predict(task, seed=0, progress=False)
    rng = np.random.default_rng(0)
    product = features @ rng.normal(size=(features.shape[1], 10)).astype(np.float32)
    print(json.dumps({{
        "refit": hashlib.sha256(posterior_bytes(post)).hexdigest(),
        "fit": hashlib.sha256(posterior_bytes(fit)).hexdigest(),
        "plain_product": hashlib.sha256(product.tobytes()).hexdigest(),
    }}))
    """
)


def test_two_processes_with_other_thread_counts_agree(task: CleaningTask, tmp_path: Path) -> None:
    """OPENBLAS_NUM_THREADS 1 and 2 in two fresh processes, each training its own base heads;
    where the CPU has them, with OpenBLAS's Haswell kernels, whose (600 x 128) x (128 x 10)
    products differ in their last bits between 1 and 2 threads (``plain_product``, outside the
    learner, shows whether they do here): the learner's re-fit and fit must not."""

    def run(threads: str) -> dict[str, str]:
        # each process its own write folder (its own base heads), the encoder read from the test's
        folders = os.pathsep.join([str(tmp_path / f"threads{threads}"), str(tmp_path / "write")])
        env = {**os.environ, CACHE_DIRS_ENV: folders, "OPENBLAS_NUM_THREADS": threads}
        if x86_with_fma():
            env["OPENBLAS_CORETYPE"] = "Haswell"
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(tests=str(TESTS))],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    one, two = run("1"), run("2")
    assert one["refit"] == two["refit"] and one["fit"] == two["fit"]


def test_the_head_limits_blas_to_one_thread_and_restores_it() -> None:
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    seen: list[list[int]] = []
    real = _linear_head._train

    def spy(*args: Any) -> LinearHead:
        seen.append(blas_threads())
        return real(*args)

    x, y = small_problem()
    before = blas_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_linear_head, "_train", spy)
        train_head(x, y, 3, epochs=1, lr=0.01, weight_decay=1e-3, dropout=0.2, seed=0)
    assert all(n == 1 for n in seen[0]) and blas_threads() == before


def test_an_index_that_names_an_encoder_stored_in_another_folder_is_followed(tmp_path, monkeypatch):
    # A command's write folder may hold an index entry (written when it read the features)
    # whose encoder file lies in a read folder, the shipped posteriors: the features are read
    # from there, never a missing file in the write folder.
    from benchmark import registry
    from benchmark.posteriors.cache import SHIPPED_POSTERIORS, use_cache_dirs

    monkeypatch.delenv("ALCBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # no images anywhere
    shipped = SHIPPED_POSTERIORS / "ssl" / "encoders" / "index.json"
    write = tmp_path / "cache"
    (write / "ssl" / "encoders").mkdir(parents=True)
    (write / "ssl" / "encoders" / "index.json").write_bytes(shipped.read_bytes())
    use_cache_dirs(write, [SHIPPED_POSTERIORS])
    task = registry.create("dataset", "cifar10h[temperature=2]").load()
    post = registry.create("learner", "ssl").refit(task, task.noisy_labels, seed=0, progress=False)
    assert post.probs.shape == (task.n_samples, task.n_classes)
