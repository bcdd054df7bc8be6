"""User-supplied posterior files: valid files load, every invalid one is a clear PosteriorsError."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from benchmark.posteriors.files import PosteriorsError, load_posteriors_file

N, C = 6, 3


def uniform(n: int = N, c: int = C) -> np.ndarray:
    return np.full((n, c), 1.0 / c)


def save(tmp_path: Path, array: np.ndarray, name: str = "post.npy") -> Path:
    path = tmp_path / name
    np.save(path, array)
    return path


def error_for(path: Path) -> str:
    with pytest.raises(PosteriorsError) as info:
        load_posteriors_file(path, N, C)
    message = str(info.value)
    assert path.name in message, message
    return message


def test_plain_posteriors_load_as_float32_without_stochastic(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(C), size=N)
    post = load_posteriors_file(save(tmp_path, p), N, C)
    assert post.probs.dtype == np.float32
    np.testing.assert_allclose(post.probs, p, rtol=1e-6)
    assert post.stochastic is None


def test_stochastic_samples_give_their_mean_as_probs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    samples = rng.dirichlet(np.ones(C), size=(4, N))
    post = load_posteriors_file(save(tmp_path, samples), N, C)
    assert post.stochastic is not None
    assert post.stochastic.dtype == np.float32 and post.stochastic.shape == (4, N, C)
    np.testing.assert_allclose(post.stochastic, samples, rtol=1e-6)
    np.testing.assert_allclose(post.probs, samples.mean(axis=0), rtol=1e-6)
    assert post.probs.dtype == np.float32


def test_integer_one_hot_rows_are_valid_posteriors(tmp_path: Path) -> None:
    one_hot = np.eye(C, dtype=np.int64)[np.arange(N) % C]
    post = load_posteriors_file(save(tmp_path, one_hot), N, C)
    np.testing.assert_array_equal(post.probs, one_hot.astype(np.float32))


def test_missing_file_is_named(tmp_path: Path) -> None:
    message = error_for(tmp_path / "nowhere.npy")
    assert "does not exist" in message


def test_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path, uniform())
    path.write_bytes(path.read_bytes()[:40])  # truncated: header only
    message = error_for(path)
    assert "cannot be read" in message


def test_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "post.npy"
    path.write_text("0.5,0.5\n")
    error_for(path)


def test_pickled_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    objects = np.empty((N, C), dtype=object)
    objects[:] = 1.0 / C
    path = tmp_path / "objects.npy"
    np.save(path, objects, allow_pickle=True)
    message = error_for(path)
    assert "pickle" in message.lower()


def test_raw_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "raw.npy"
    path.write_bytes(pickle.dumps(uniform()))
    error_for(path)


def test_npz_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "post.npz"
    np.savez(path, probs=uniform())
    message = error_for(path)
    assert "npz" in message


@pytest.mark.parametrize("shape", [(N * C,), (2, 2, N, C)])
def test_wrong_number_of_dimensions_is_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    message = error_for(save(tmp_path, np.full(shape, 1.0 / C)))
    assert f"expected (N, C) = ({N}, {C}) or (T, {N}, {C})" in message
    assert str(shape) in message


@pytest.mark.parametrize("shape", [(N + 1, C), (N, C + 1), (3, N - 1, C), (C, N)])
def test_wrong_n_or_c_says_expected_and_found(tmp_path: Path, shape: tuple[int, ...]) -> None:
    message = error_for(save(tmp_path, np.full(shape, 1.0 / shape[-1])))
    assert f"expected (N, C) = ({N}, {C}) or (T, {N}, {C}), got {shape}" in message


def test_nan_and_inf_are_counted_with_the_first_bad_row(tmp_path: Path) -> None:
    p = uniform()
    p[4, 0] = np.nan
    p[2, 1] = np.inf
    p[4, 2] = -np.inf
    message = error_for(save(tmp_path, p))
    assert "3 NaN or inf" in message
    assert "row 2" in message


def test_nan_in_stochastic_samples_names_sample_and_row(tmp_path: Path) -> None:
    samples = np.full((3, N, C), 1.0 / C)
    samples[1, 5, 0] = np.nan
    message = error_for(save(tmp_path, samples))
    assert "stochastic draw 1, row 5" in message


def test_negative_entries_are_refused(tmp_path: Path) -> None:
    p = uniform()
    p[3] = [1.2, -0.2, 0.0]  # sums to 1, but is no distribution
    message = error_for(save(tmp_path, p))
    assert "negative" in message and "row 3" in message


def test_rows_not_summing_to_one_give_first_row_and_its_sum(tmp_path: Path) -> None:
    p = uniform()
    p[1] = [0.5, 0.5, 0.5]
    p[4] = [2.0, 0.0, 0.0]
    message = error_for(save(tmp_path, p))
    assert "row 1" in message and "1.5" in message


def test_row_sums_within_tolerance_are_accepted(tmp_path: Path) -> None:
    p = uniform()
    p[0] = [0.5, 0.25, 0.2505]  # off by 5e-4 < 1e-3
    post = load_posteriors_file(save(tmp_path, p), N, C)
    assert post.probs.shape == (N, C)


def test_array_check_is_the_files_check_and_names_its_holder() -> None:
    from benchmark.posteriors.files import check_posteriors_array

    values = check_posteriors_array(np.ones((N, C), dtype=np.float32) / C, N, C, where="entry.npz: probs")
    assert values.dtype == np.float64
    bad = uniform()
    bad[4, 0] = np.nan
    with pytest.raises(PosteriorsError, match=r"^entry.npz: probs: expected finite .* \(first in row 4\)"):
        check_posteriors_array(bad, N, C, where="entry.npz: probs")
    with pytest.raises(PosteriorsError, match=r"expected \(N, C\) = \(6, 3\), got an array with 3"):
        check_posteriors_array(np.stack([uniform()] * 2), N, C, where="probs", ndim=(2,))


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"id,p0,p1\n0,0.5,0.5\n", "a text table (CSV?)"),
        (b"\x80\x04K\x01.", "a Python pickle"),
        (b"", "an empty file"),
    ],
)
def test_a_file_that_is_not_npy_is_named_for_what_it_is(tmp_path, content, kind):
    path = tmp_path / "probs.npy"
    path.write_bytes(content)
    with pytest.raises(PosteriorsError, match=re.escape(f"{path}: this is {kind}, not a .npy array")):
        load_posteriors_file(path, 2, 2)
