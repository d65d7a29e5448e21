"""Report statistics against scipy and slow, obvious references."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from medbench_fast.kernels.resample import resample_means
from medbench_fast.report import stats
from medbench_fast.report.stats import bootstrap_mean_ci, holm, wilcoxon_signed_rank


def slow_bootstrap(values, n_resamples, seed):
    """One resample at a time, the textbook way."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=np.float64)
    means = []
    for _ in range(n_resamples):
        sample = [values[i] for i in rng.integers(0, values.size, size=values.size)]
        means.append(sum(sample) / len(sample))
    return tuple(np.percentile(means, [2.5, 97.5]))


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_bootstrap_matches_slow_reference(rng, n):
    values = rng.normal(0.8, 0.1, n)
    assert bootstrap_mean_ci(values, n_resamples=500, seed=3) == pytest.approx(slow_bootstrap(values, 500, 3), abs=1e-12)


#: Sample sizes around every branch of numpy's pairwise summation: under 8, multiples of 8 and
#: not, the 128-value block and its neighbours, and splits several levels deep.
SUM_SIZES = [*range(1, 41), 63, 64, 65, 127, 128, 129, 130, 135, 136, 137, 255, 256, 257, 263, 264, 1000, 1001,
             1023, 1024, 1025, 2047, 4099, 10007]


@pytest.mark.parametrize("n", SUM_SIZES)
@pytest.mark.parametrize("k", [1, 5])
def test_resample_means_kernel_equals_numpy_to_the_last_bit(n, k):
    """The kernel's means of each column are ``np.mean(column[index], axis=-1)`` bit for bit, on
    values of wildly different magnitudes (where any other order of additions rounds differently)."""
    rng = np.random.default_rng([7, n, k])
    values = rng.normal(0.0, 1.0, (n, k)) * 10.0 ** rng.integers(-8, 9, (n, k))
    index = rng.integers(0, n, (64, n))
    out = np.empty((64, k))
    resample_means(values, index, out)
    for c in range(k):
        expected = np.mean(values[:, c][index], axis=-1)
        assert out[:, c].tobytes() == expected.tobytes()
        if n >= 16:  # the data tell the orders of addition apart: left to right gives other bits
            assert not np.array_equal(np.cumsum(values[:, c][index], axis=-1)[:, -1] / n, expected)


@pytest.fixture(params=[True, False], ids=["kernel", "numpy"])
def means_by(request, monkeypatch):
    """Run a test with the resample means of the numba kernel and of numpy."""
    monkeypatch.setattr(stats, "USE_KERNEL", request.param)
    return request.param


def test_means_choice_follows_numba_being_loaded(monkeypatch):
    """By default the kernel runs only in a process that has numba loaded already."""
    calls = []
    import medbench_fast.kernels.resample as kernels

    monkeypatch.setattr(kernels, "resample_means", lambda *args: calls.append(args))
    index = np.zeros((3, 4), dtype=np.int64)
    columns = np.arange(8.0).reshape(4, 2)
    monkeypatch.delitem(sys.modules, "numba", raising=False)
    assert stats._means(columns, index).tolist() == [[0.0, 1.0]] * 3
    assert not calls
    monkeypatch.setitem(sys.modules, "numba", kernels)
    stats._means(columns, index)
    assert len(calls) == 1


@pytest.mark.parametrize("use_kernel", [True, False])
def test_intervals_computed_together_equal_each_alone(use_kernel, monkeypatch):
    """Samples of several sizes (some equal, some with non-finite values, constant, empty) give
    together what each gives alone, which is scipy's."""
    monkeypatch.setattr(stats, "USE_KERNEL", use_kernel)
    rng = np.random.default_rng(3)
    samples = [rng.normal(0, 1, 40), rng.uniform(size=40), np.r_[rng.uniform(size=38), np.nan, np.inf],
               rng.uniform(size=130), [0.25] * 5, [], rng.normal(5, 2, 130), rng.normal(0, 1, 3)]
    together = stats.bootstrap_mean_cis(samples, n_resamples=700, seed=4)
    assert together == [bootstrap_mean_ci(v, n_resamples=700, seed=4) for v in samples]
    assert together[4] == (0.25, 0.25) and together[5] is None
    for values, ci in zip(samples, together):
        finite = np.asarray(values, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size and np.ptp(finite) > 0:
            res = scipy.stats.bootstrap((finite,), np.mean, n_resamples=700, batch=max(1, stats._CHUNK // finite.size),
                                        confidence_level=0.95, method="percentile", rng=4, vectorized=True)
            assert ci == (float(res.confidence_interval.low), float(res.confidence_interval.high))


@pytest.mark.parametrize("n", [2, 5, 20, 333, 5000])
def test_bootstrap_equals_scipy_to_the_last_bit(n, means_by):
    """The numpy bootstrap is scipy's percentile bootstrap, bit for bit (same draws, same quantiles)."""
    for seed in range(3):
        values = np.random.default_rng([n, seed]).normal(0.0, 10.0, n)
        res = scipy.stats.bootstrap((values,), np.mean, n_resamples=2000, batch=max(1, stats._CHUNK // n),
                                    confidence_level=0.95, method="percentile", rng=seed, vectorized=True)
        ci = res.confidence_interval
        assert bootstrap_mean_ci(values, seed=seed) == (float(ci.low), float(ci.high))


@pytest.mark.parametrize("n", [3, 8, 9, 127, 129, 1000, 1001, 2100])
def test_bootstrap_kernel_and_numpy_give_scipys_bits_on_varied_sizes_and_seeds(n, monkeypatch):
    """Both ways of taking the resample means give scipy's interval, for several seeds and
    confidence levels, on sizes that cross numpy's summation branches (2100: drawn in batches)."""
    for seed in (0, 11):
        values = np.random.default_rng([n, seed, 1]).lognormal(0.0, 3.0, n)
        res = scipy.stats.bootstrap((values,), np.mean, n_resamples=999, batch=max(1, stats._CHUNK // n),
                                    confidence_level=0.9, method="percentile", rng=seed, vectorized=True)
        expected = (float(res.confidence_interval.low), float(res.confidence_interval.high))
        for use_kernel in (True, False):
            monkeypatch.setattr(stats, "USE_KERNEL", use_kernel)
            assert bootstrap_mean_ci(values, n_resamples=999, confidence=0.9, seed=seed) == expected


@pytest.mark.parametrize("size", [1, 2, 3, 7, 255, 256, 1000, 4097, 65535, 65536, 65537, 1 << 20])
def test_resample_indices_are_scipys_draws(size):
    """The 32-bit draws are the indices scipy draws (64-bit) from the same seed, batch by batch."""
    n_resamples = 3 if size > 5000 else 40
    rng = np.random.default_rng(9)
    batch = max(1, stats._CHUNK // size)
    ours = list(stats._draw_resamples(9, size, n_resamples))
    assert all(b.dtype == np.int32 for b in ours)
    for got in ours:
        assert np.array_equal(got, rng.integers(0, size, (got.shape[0], size)))
    assert sum(b.shape[0] for b in ours) == n_resamples and ours[0].shape[0] == min(batch, n_resamples)


def test_bootstrap_resamples_drawn_once_serve_every_sample_of_that_size():
    """A report's intervals share one draw of resample indices per sample size; each still equals scipy's."""
    stats._resamples_once.cache_clear()
    for k in range(4):
        values = np.random.default_rng(k).uniform(0.0, 1.0, 50)
        res = scipy.stats.bootstrap((values,), np.mean, n_resamples=2000, batch=max(1, stats._CHUNK // 50),
                                    confidence_level=0.95, method="percentile", rng=0, vectorized=True)
        assert bootstrap_mean_ci(values) == (float(res.confidence_interval.low), float(res.confidence_interval.high))
    assert stats._resamples_once.cache_info().misses == 1
    assert not any(batch.flags.writeable for batch in stats._resamples_once(0, 50, 2000))


def test_bootstrap_does_not_depend_on_blocking(rng, monkeypatch):
    values = rng.uniform(size=33)
    whole = bootstrap_mean_ci(values, n_resamples=300)
    monkeypatch.setattr(stats, "_CHUNK", 50)  # one resample per block
    assert bootstrap_mean_ci(values, n_resamples=300) == whole


def test_bootstrap_is_seeded_and_skips_non_finite(rng):
    values = rng.uniform(size=20)
    assert bootstrap_mean_ci(values) == bootstrap_mean_ci(values.copy())
    assert bootstrap_mean_ci(values, seed=1) != bootstrap_mean_ci(values, seed=2)
    with_bad = np.r_[values, np.nan, np.inf]
    assert bootstrap_mean_ci(with_bad) == bootstrap_mean_ci(values)
    lo, hi = bootstrap_mean_ci(values)
    assert lo <= values.mean() <= hi


def test_bootstrap_empty_and_constant():
    assert bootstrap_mean_ci([]) is None
    assert bootstrap_mean_ci([np.nan, np.inf]) is None
    assert bootstrap_mean_ci([0.5] * 9) == (0.5, 0.5)


def test_bootstrap_interval_covers_like_theory():
    """For normal data the percentile interval is close to mean +- 1.96 s / sqrt(n)."""
    values = np.random.default_rng(5).normal(10.0, 2.0, 400)
    lo, hi = bootstrap_mean_ci(values, n_resamples=4000)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert lo == pytest.approx(values.mean() - half, abs=0.05)
    assert hi == pytest.approx(values.mean() + half, abs=0.05)


def _pairs(rng, n, *, ties=False, zeros=0):
    x = rng.normal(0.7, 0.1, n)
    y = x + rng.normal(0.02, 0.05, n)
    if ties:
        x, y = np.round(x, 2), np.round(y, 2)
    y[:zeros] = x[:zeros]
    return x, y


@pytest.mark.parametrize("n, ties, zeros, method", [
    (5, False, 0, "exact"), (20, False, 0, "exact"), (50, False, 0, "exact"),
    (8, True, 0, "permutation"), (12, False, 3, "permutation"),
    (51, False, 0, "normal"), (30, True, 0, "normal"), (80, True, 10, "normal"),
])
def test_wilcoxon_matches_scipy(rng, n, ties, zeros, method):
    x, y = _pairs(rng, n, ties=ties, zeros=zeros)
    ours = wilcoxon_signed_rank(x, y)
    ref = scipy.stats.wilcoxon(x, y)
    assert ours["method"] == method
    assert ours["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours["statistic"] == pytest.approx(ref.statistic)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-6, 6), st.integers(-6, 6)), min_size=1, max_size=60))
def test_wilcoxon_property_against_scipy(pairs):
    x, y = (np.array(v, dtype=np.float64) for v in zip(*pairs))
    ours = wilcoxon_signed_rank(x, y)
    if np.all(x == y):
        assert np.isnan(ours["p_value"]) and ours["n"] == 0
        return
    ref = scipy.stats.wilcoxon(x, y)
    assert ours["p_value"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)


def test_wilcoxon_is_antisymmetric_and_validates(rng):
    x, y = _pairs(rng, 15)
    a, b = wilcoxon_signed_rank(x, y), wilcoxon_signed_rank(y, x)
    assert a["p_value"] == b["p_value"]
    assert a["w_plus"] + b["w_plus"] == 15 * 16 / 2
    with pytest.raises(ValueError, match="x, y"):
        wilcoxon_signed_rank([], [])


def holm_reference(p):
    """Step-down definition: adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j))."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    for rank, i in enumerate(order):
        out[i] = max(min(1.0, (m - j) * p[order[j]]) for j in range(rank + 1))
    return out


@pytest.mark.parametrize("p", [[0.01], [0.01, 0.04, 0.03, 0.005], [0.2, 0.2, 0.01, 0.9, 0.04, 0.5], [1.0, 1.0]])
def test_holm_matches_definition(p):
    assert holm(p) == pytest.approx(holm_reference(p))


def test_holm_properties_and_nan(rng):
    p = rng.uniform(0, 0.2, 12).tolist()
    adj = holm(p)
    assert all(a >= b for a, b in zip(adj, p))
    ranked = sorted(zip(p, adj))
    assert all(x[1] <= y[1] for x, y in itertools.pairwise(ranked))
    with_nan = holm([0.01, float("nan"), 0.02])
    assert np.isnan(with_nan[1]) and with_nan[0] == pytest.approx(0.02) and with_nan[2] == pytest.approx(0.02)
