"""Statistics for reports: seeded bootstrap intervals, Wilcoxon signed-rank test, Holm correction.

numpy only (scipy is a test dependency, not a runtime one); the Wilcoxon p-values follow
``scipy.stats.wilcoxon`` defaults (``zero_method="wilcox"``, no continuity correction,
``method="auto"``), so results agree with it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

#: Resamples per bootstrap interval and the default seed (intervals are reproducible).
N_RESAMPLES = 2000
SEED = 0
_CHUNK = 1 << 22  # indices drawn per block, bounding memory for large samples


def bootstrap_mean_ci(values, *, n_resamples: int = N_RESAMPLES, confidence: float = 0.95,
                      seed: int = SEED) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of the finite ``values``; None when there are none.

    Resample ``b`` draws ``n`` indices with ``numpy.random.default_rng(seed).integers(0, n, n)``
    in order, so the result does not depend on how the draws are blocked.
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    n = arr.size
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    step = max(1, _CHUNK // n)
    for start in range(0, n_resamples, step):
        stop = min(n_resamples, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = arr[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def _rank_abs(d: np.ndarray) -> tuple[np.ndarray, bool]:
    """Average ranks of ``|d|`` and whether any ties exist."""
    a = np.abs(d)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(a.size)
    ties = False
    i = 0
    while i < a.size:
        j = i
        while j + 1 < a.size and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        ties = ties or j > i
        i = j + 1
    return ranks, ties


def _signed_rank_counts(n: int) -> np.ndarray:
    """Number of sign patterns of ranks 1..n giving each value 0..n(n+1)/2 of W+."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k].copy()
    return counts


def _normal_two_sided(z: float) -> float:
    return min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))


def wilcoxon_signed_rank(x, y) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired samples ``x`` and ``y``.

    Zero differences are dropped (Wilcox). With n <= 50 pairs and neither ties nor zeros the
    p-value is exact; with ties or zeros and n <= 13 it is the exact sign-flip permutation
    p-value; otherwise the normal approximation with tie correction. Returns ``statistic``
    (min(W+, W-)), ``w_plus``, ``n`` (non-zero differences), ``p_value`` (NaN when every
    difference is zero) and ``method``.
    """
    d_all = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if d_all.size == 0:
        raise ValueError("x, y: need at least one pair")
    d = d_all[d_all != 0]
    n = d.size
    n_zero = d_all.size - n
    if n == 0:
        return {"statistic": 0.0, "w_plus": 0.0, "n": 0, "p_value": math.nan, "method": "none"}
    ranks, ties = _rank_abs(d)
    w_plus = float(ranks[d > 0].sum())
    w_minus = float(ranks[d < 0].sum())
    out = {"statistic": min(w_plus, w_minus), "w_plus": w_plus, "n": int(n)}
    if d_all.size <= 50 and not ties and n_zero == 0:
        counts = _signed_rank_counts(n)
        total = 2.0 ** n
        k = round(w_plus)
        p = 2 * min(counts[k:].sum(), counts[:k + 1].sum()) / total
        return {**out, "p_value": min(1.0, float(p)), "method": "exact"}
    if d_all.size <= 13:
        return {**out, "p_value": _sign_flip_p(d_all, w_plus), "method": "permutation"}
    _, counts = np.unique(np.abs(d), return_counts=True)
    mean = n * (n + 1) / 4.0
    var = (n * (n + 1) * (2 * n + 1) - (counts ** 3 - counts).sum() / 2.0) / 24.0
    z = (w_plus - mean) / math.sqrt(var)
    return {**out, "p_value": _normal_two_sided(z), "method": "normal"}


def _sign_flip_p(d_all: np.ndarray, observed: float) -> float:
    """Exact permutation p-value of W+ over all 2^n sign flips of the differences (zeros stay zero)."""
    d = d_all[d_all != 0]
    ranks, _ = _rank_abs(d)
    flips = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    null = ((flips * np.sign(d)) > 0) @ ranks
    gamma = abs(100 * np.finfo(np.float64).eps * observed)  # tolerance for float ties
    p_less = np.mean(null <= observed + gamma)
    p_greater = np.mean(null >= observed - gamma)
    return float(min(1.0, 2 * min(p_less, p_greater)))


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.size, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    order = valid[np.argsort(p[valid], kind="mergesort")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out.tolist()
