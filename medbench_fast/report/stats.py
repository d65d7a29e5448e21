"""Statistics for reports: seeded bootstrap intervals, Wilcoxon signed-rank test, Holm correction.

The bootstrap is ``scipy.stats.bootstrap``'s percentile interval, computed here with numpy
and a numba kernel that sums each resample in numpy's order (the same resamples from the
same seeded generator, the same means and quantiles: equal to the last bit, tested against
scipy) because importing ``scipy.stats`` costs more than a whole small evaluation. The Wilcoxon test is ``scipy.stats``'s, imported when a report compares models.
This module fixes their options (percentile bootstrap with a seed, so reports are
reproducible; ``zero_method="wilcox"``, no continuity correction, ``method="auto"``) and
shapes their results for the summary.
"""

from __future__ import annotations

import functools
import math
import sys

import numpy as np

#: Resamples per bootstrap interval and the default seed (intervals are reproducible).
N_RESAMPLES = 2000
SEED = 0
_CHUNK = 1 << 22  # values drawn per bootstrap batch, bounding memory for large samples
#: Resample means by the numba kernel (True), by numpy (False) or by the kernel where numba is
#: loaded already (None; see :func:`_means`). Every choice gives the same bits.
USE_KERNEL: bool | None = None


def bootstrap_mean_ci(values, *, n_resamples: int = N_RESAMPLES, confidence: float = 0.95,
                      seed: int = SEED) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of the finite ``values`` (as ``scipy.stats.bootstrap``
    with ``method="percentile"``, ``rng=seed``, ``vectorized=True`` and batches of ``_CHUNK``
    values computes it); None when there are none. One value (or all equal) gives the
    degenerate interval."""
    return bootstrap_mean_cis([values], n_resamples=n_resamples, confidence=confidence, seed=seed)[0]


def bootstrap_mean_cis(samples, *, n_resamples: int = N_RESAMPLES, confidence: float = 0.95,
                       seed: int = SEED) -> list[tuple[float, float] | None]:
    """:func:`bootstrap_mean_ci` of each of ``samples``, computed together: samples with the
    same number of finite values (a report's labels and metrics over one set of cases) share
    their resamples, and their means are taken in one pass over the resample indices."""
    out: list[tuple[float, float] | None] = [None] * len(samples)
    groups: dict[int, list[tuple[int, np.ndarray]]] = {}
    for i, values in enumerate(samples):
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            continue
        if np.all(arr == arr[0]):  # every resample has the same mean
            out[i] = float(arr[0]), float(arr[0])
        else:
            groups.setdefault(arr.size, []).append((i, arr))
    alpha = np.float64((1 - confidence) / 2)
    p = np.stack([alpha, 1 - alpha])
    for size, members in groups.items():
        columns = np.stack([arr for _, arr in members], axis=1)  # one sample per column
        means = np.concatenate([_means(columns, index) for index in _resamples(seed, size, n_resamples)])
        for c, (i, _) in enumerate(members):
            low, high = _quantile_linear(means[:, c], p)
            out[i] = float(low), float(high)
    return out


def _means(columns: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``out[:, c] = np.mean(columns[index, c], axis=-1)``, by
    :func:`~medbench_fast.kernels.resample.resample_means` (the same bits, each index read once
    for every column, no ``index``-shaped array of values: 4-12 times faster on a report's
    intervals) where numba is loaded already (the CLI's ``evaluate``, ``run`` and ``report``, whose metric
    kernels load it), else by numpy: importing numba and loading a compiled kernel (0.3-0.4 s)
    would cost more than it saves. :data:`USE_KERNEL` overrides the choice."""
    if not (("numba" in sys.modules) if USE_KERNEL is None else USE_KERNEL):
        return np.stack([np.mean(columns[:, c][index], axis=-1) for c in range(columns.shape[1])], axis=1)
    from medbench_fast.kernels.resample import resample_means

    out = np.empty((index.shape[0], columns.shape[1]), dtype=np.float64)
    resample_means(np.ascontiguousarray(columns, dtype=np.float64), np.ascontiguousarray(index), out)
    return out


def _resamples(seed: int, size: int, n_resamples: int):
    """The bootstrap's resample index batches for samples of ``size`` values: batches of at most
    ``_CHUNK`` indices from a generator seeded with ``seed``. They depend only on the seed and
    the sizes, so a report's intervals over one set of cases (every label and metric) share
    them: drawn once where they fit in one batch (32 MiB), drawing being most of the work."""
    if size * n_resamples <= _CHUNK:
        return _resamples_once(seed, size, n_resamples)
    return _draw_resamples(seed, size, n_resamples)


@functools.lru_cache(maxsize=8)
def _resamples_once(seed: int, size: int, n_resamples: int) -> tuple[np.ndarray, ...]:
    batches = tuple(_draw_resamples(seed, size, n_resamples))
    for batch in batches:
        batch.flags.writeable = False
    return batches


def _draw_resamples(seed: int, size: int, n_resamples: int):
    """scipy's draws (``rng.integers(0, size, (batch, size))``), as 32-bit integers where they
    fit: numpy draws any range below 2**32 by the same 32-bit method whatever the integer
    type, so the indices are scipy's (tested), in half the memory, read twice as fast."""
    rng = np.random.default_rng(seed)
    batch = max(1, _CHUNK // size)
    dtype = np.int32 if size <= np.iinfo(np.int32).max else np.int64
    for k in range(0, n_resamples, batch):
        yield rng.integers(0, size, (min(batch, n_resamples - k), size), dtype=dtype)


def _quantile_linear(values: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Quantiles ``p`` of ``values`` by Hyndman and Fan's method 7 ("linear"), with the
    arithmetic of ``scipy.stats.quantile`` (numpy's differs in the last bit)."""
    y = np.sort(values)
    n = np.float64(y.size)
    jg = p * n + (1 - p)
    jp1 = jg // 1
    j = jp1 - 1
    g = np.where(j < 0, 0.0, jg % 1)
    j, jp1 = np.clip(j, 0.0, n - 1).astype(np.int64), np.clip(jp1, 0.0, n - 1).astype(np.int64)
    return (1 - g) * y[j] + g * y[jp1]


def _auto_method(n_total: int, ties: bool, zeros: bool) -> str:
    """The method ``scipy.stats.wilcoxon(method="auto")`` uses: exact up to 50 pairs without
    ties or zeros, the permutation distribution up to 13 pairs otherwise, else the normal
    approximation."""
    if n_total <= 50 and not ties and not zeros:
        return "exact"
    return "permutation" if n_total <= 13 else "normal"


def wilcoxon_signed_rank(x, y) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired samples ``x`` and ``y`` (``scipy.stats.wilcoxon``).

    Zero differences are dropped (Wilcox). Returns ``statistic`` (min(W+, W-)), ``w_plus``,
    ``n`` (non-zero differences), ``p_value`` (NaN when every difference is zero) and
    ``method`` (``exact``, ``permutation`` or ``normal``, as scipy chose).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d_all = x - y
    if d_all.size == 0:
        raise ValueError("x, y: need at least one pair")
    d = d_all[d_all != 0]
    if d.size == 0:
        return {"statistic": 0.0, "w_plus": 0.0, "n": 0, "p_value": math.nan, "method": "none"}
    import scipy.stats

    ranks = scipy.stats.rankdata(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    test = scipy.stats.wilcoxon(x, y, zero_method="wilcox", correction=False, method="auto")
    ties = np.unique(np.abs(d)).size < d.size
    return {"statistic": float(test.statistic), "w_plus": w_plus, "n": int(d.size),
            "p_value": min(1.0, float(test.pvalue)), "method": _auto_method(d_all.size, ties, d.size < d_all.size)}


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
