"""The simulated expert: i.i.d. label draws from each sample's true distribution.

Draw ``k`` of sample ``i`` in a run with seed ``s`` uses the uniform number ``u(s, i, k)``, a
counter-based hash (splitmix64) of the three integers. So the expert answers a sample the same
way whichever strategy selects it and whenever it does: strategies are compared on common
random numbers, which removes the expert's luck from their differences, and the draws of many
samples can be made in one vectorised step.
"""

from __future__ import annotations

import bisect

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SAMPLE_STRIDE = np.uint64(0xD1B54A32D192ED03)
_DRAW_STRIDE = np.uint64(0xABC98388FB8FAC03)


def uniforms(seed: int, sample: np.ndarray, draw: np.ndarray) -> np.ndarray:
    """Uniform numbers in [0, 1), one per (sample, draw) pair; a pure function of its inputs."""
    with np.errstate(over="ignore"):
        x = np.asarray(sample, dtype=np.uint64) * _SAMPLE_STRIDE
        x ^= np.asarray(draw, dtype=np.uint64) * _DRAW_STRIDE
        x += np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + _GOLDEN
        x ^= x >> np.uint64(30)
        x *= _MIX1
        x ^= x >> np.uint64(27)
        x *= _MIX2
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def draw_labels(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: the class of each row of ``cdf`` (M, C) for uniforms ``u`` (M,)."""
    return np.minimum((u[:, None] >= cdf).sum(axis=1), cdf.shape[1] - 1)


def cumulative(p: np.ndarray) -> np.ndarray:
    """Row-wise CDFs of ``p`` (M, C) whose last column is exactly 1."""
    cdf = np.cumsum(p, axis=1)
    return cdf / cdf[:, -1:]


def has_strict_majority(counts: np.ndarray) -> np.ndarray:
    """(M,) bool: the largest count of each row exceeds the second largest."""
    if counts.shape[1] == 1:
        return np.ones(counts.shape[0], dtype=bool)
    top2 = np.partition(counts, -2, axis=1)[:, -2:]
    return top2[:, 1] > top2[:, 0]


def annotate(
    counts: np.ndarray,
    cdf: np.ndarray,
    samples: np.ndarray,
    draws_made: np.ndarray,
    seed: int,
    max_draws: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-annotate several samples until each has a strict majority (the paper's stopping rule).

    Args:
        counts: (M, C) current label counts of the samples; not modified.
        cdf: (M, C) CDFs of their true distributions (see :func:`cumulative`).
        samples: (M,) their indices in the task (the hash key of their draws).
        draws_made: (M,) expert draws already made for each sample in this run, so that a
            re-selected sample continues its own sequence of draws.
        seed: the run's seed.
        max_draws: optional cap on the draws of one episode; None means no cap.

    Returns:
        (new_counts (M, C), draws (M,)): at least one draw per sample.
    """
    counts = counts.copy()
    n = np.zeros(len(samples), dtype=np.int64)
    active = np.arange(len(samples))
    while active.size:
        u = uniforms(seed, samples[active], draws_made[active] + n[active])
        labels = draw_labels(cdf[active], u)
        counts[active, labels] += 1
        n[active] += 1
        done = has_strict_majority(counts[active])
        if max_draws is not None:
            done |= n[active] >= max_draws
        active = active[~done]
    return counts, n


_MASK = 0xFFFFFFFFFFFFFFFF


def uniform_one(seed: int, sample: int, draw: int) -> float:
    """:func:`uniforms` for one (sample, draw) pair in plain Python: the same number, without
    NumPy's per-call overhead (the oracle's returns to single samples use it)."""
    x = ((sample * int(_SAMPLE_STRIDE)) & _MASK) ^ ((draw * int(_DRAW_STRIDE)) & _MASK)
    x = (x + (int(seed) & _MASK) * int(_GOLDEN) + int(_GOLDEN)) & _MASK
    x ^= x >> 30
    x = (x * int(_MIX1)) & _MASK
    x ^= x >> 27
    x = (x * int(_MIX2)) & _MASK
    x ^= x >> 31
    return (x >> 11) * (1.0 / 9007199254740992.0)


def annotate_one(
    counts: list[int],
    cdf: list[float],
    sample: int,
    draws_made: int,
    seed: int,
    max_draws: int | None = None,
) -> int:
    """:func:`annotate` for a single sample, updating ``counts`` in place; returns the draws."""
    n = 0
    last = len(cdf) - 1
    while True:
        u = uniform_one(seed, sample, draws_made + n)
        counts[min(bisect.bisect_right(cdf, u), last)] += 1
        n += 1
        top = sorted(counts)[-2:]
        if len(counts) == 1 or top[1] > top[0] or (max_draws is not None and n >= max_draws):
            return n
