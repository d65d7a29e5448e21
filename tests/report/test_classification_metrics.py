"""Classification metrics against brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from medbench_fast.metrics.classification import (
    Z_95,
    auc_ci,
    auc_ci_note,
    brier_score,
    classification_summary,
    delong_variance,
    roc_auc,
    threshold_metrics,
    youden_threshold,
)


def auc_pairwise(scores, targets):
    """Every positive-negative pair: 1 if the positive scores higher, 1/2 on ties."""
    pos = [s for s, t in zip(scores, targets) if t == 1]
    neg = [s for s, t in zip(scores, targets) if t == 0]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


def delong_direct(scores, targets):
    """DeLong's structural components straight from the definition (O(n1 n0))."""
    pos = [s for s, t in zip(scores, targets) if t == 1]
    neg = [s for s, t in zip(scores, targets) if t == 0]

    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    v10 = np.array([np.mean([psi(x, y) for y in neg]) for x in pos])
    v01 = np.array([np.mean([psi(x, y) for x in pos]) for y in neg])
    return v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)


def _sample(rng, n=60, ties=False):
    targets = (rng.uniform(size=n) < 0.4).astype(float)
    targets[:2] = (0.0, 1.0)
    scores = 1 / (1 + np.exp(-(1.2 * (2 * targets - 1) + rng.normal(0, 1, n))))
    return (np.round(scores, 1) if ties else scores), targets


@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_delong_match_direct(rng, ties):
    s, t = _sample(rng, ties=ties)
    assert roc_auc(s, t) == pytest.approx(auc_pairwise(s, t))
    auc, var = delong_variance(s, t)
    assert auc == pytest.approx(auc_pairwise(s, t))
    assert var == pytest.approx(delong_direct(s, t), rel=1e-10)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=40))
def test_auc_property(pairs):
    s = [p[0] / 5 for p in pairs]
    t = [float(p[1]) for p in pairs]
    if len(set(t)) < 2:
        assert roc_auc(s, t) is None and auc_ci(s, t) is None
        return
    assert roc_auc(s, t) == pytest.approx(auc_pairwise(s, t))
    assert roc_auc([1 - v for v in s], t) == pytest.approx(1 - auc_pairwise(s, t))


def test_auc_ci_delong_and_bootstrap(rng):
    s, t = _sample(rng, n=120)
    auc, var = delong_variance(s, t)
    lo, hi = auc_ci(s, t)
    assert (lo, hi) == pytest.approx((auc - Z_95 * math.sqrt(var), min(1.0, auc + Z_95 * math.sqrt(var))))
    blo, bhi = auc_ci(s, t, method="bootstrap", n_resamples=400, seed=1)
    assert blo < auc < bhi
    assert auc_ci(s, t, method="bootstrap", n_resamples=400, seed=1) == (blo, bhi)
    assert abs((bhi - blo) - (hi - lo)) < 0.05
    with pytest.raises(ValueError, match="method"):
        auc_ci(s, t, method="wald")


def test_delong_auc_is_the_mann_whitney_statistic(rng):
    s, t = _sample(rng, n=80, ties=True)
    u = scipy.stats.mannwhitneyu(s[t == 1], s[t == 0]).statistic
    assert delong_variance(s, t)[0] == pytest.approx(u / ((t == 1).sum() * (t == 0).sum()), rel=1e-12)


def test_published_example_hanley_mcneil_1982():
    """Hanley & McNeil (1982), Radiology 143:29-36, Table 1: 109 CT images rated 1 (definitely
    normal) to 5 (definitely abnormal); published AUC 0.893, standard error 0.032 (their
    formula). DeLong's standard error of the same data is close to it."""
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    s = np.r_[normal, abnormal].astype(float)
    t = np.r_[np.zeros(normal.size), np.ones(abnormal.size)]
    auc, var = delong_variance(s, t)
    assert round(auc, 3) == 0.893
    assert var == pytest.approx(delong_direct(s, t), rel=1e-12)
    assert abs(math.sqrt(var) - 0.032) < 0.002
    lo, hi = auc_ci(s, t)
    assert (lo, hi) == pytest.approx((auc - Z_95 * math.sqrt(var), auc + Z_95 * math.sqrt(var)))


def test_small_or_separated_samples_have_no_interval():
    s, t = [0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]
    assert roc_auc(s, t) == 1.0
    assert auc_ci(s, t) is None and auc_ci(s, t, method="bootstrap") is None
    assert "too few cases" in auc_ci_note(s, t) and "2 positive and 2 negative" in auc_ci_note(s, t)
    summary = classification_summary(s, t)
    assert summary["auc"] == 1.0 and summary["auc_ci95"] is None and "too few" in summary["auc_ci_note"]
    big_s = np.r_[np.linspace(0, 0.4, 30), np.linspace(0.6, 1, 30)]
    big_t = np.r_[np.zeros(30), np.ones(30)]
    assert auc_ci(big_s, big_t) is None and "perfectly separated" in auc_ci_note(big_s, big_t)


def test_interval_reflects_sample_size_and_is_clipped():
    widths = []
    for n in (40, 160, 640):
        s, t = _sample(np.random.default_rng(n), n=n)
        lo, hi = auc_ci(s, t)
        assert auc_ci_note(s, t) is None and lo < roc_auc(s, t) < hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    s = np.r_[np.linspace(0, 0.5, 12), np.linspace(0.45, 1, 12)]  # nearly separated
    t = np.r_[np.zeros(12), np.ones(12)]
    assert auc_ci(s, t)[1] == 1.0


def test_threshold_metrics_by_hand():
    s = [0.1, 0.4, 0.5, 0.6, 0.9, 0.3]
    t = [0, 1, 1, 0, 1, 0]
    m = threshold_metrics(s, t, 0.5)  # called positive: 0.5, 0.6, 0.9
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 / 3)
    none = threshold_metrics(s, t, 1.1)
    assert none["precision"] is None and none["sensitivity"] == 0.0


def youden_brute(s, t):
    best, best_j = None, -2.0
    for c in sorted(set(s), reverse=True):
        m = threshold_metrics(s, t, c)
        j = m["sensitivity"] + m["specificity"] - 1
        if j > best_j + 1e-12:
            best, best_j = c, j
    return best


@pytest.mark.parametrize("ties", [False, True])
def test_youden_matches_brute_force(rng, ties):
    s, t = _sample(rng, n=80, ties=ties)
    assert youden_threshold(s, t) == youden_brute(list(s), list(t))


def test_brier_nan_and_validation():
    assert brier_score([0.0, 1.0, 0.5], [0, 1, 1]) == pytest.approx(0.25 / 3)
    assert roc_auc([0.2, np.nan, 0.8], [0, 1, 1]) == 1.0
    assert roc_auc([0.2, 0.3], [1, 1]) is None
    assert youden_threshold([0.2, 0.3], [0, 0]) is None
    with pytest.raises(ValueError, match="targets"):
        roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="scores, targets"):
        roc_auc([0.1], [0, 1])


def test_summary_fields(rng):
    s, t = _sample(rng)
    out = classification_summary(s, t, threshold=0.4)
    assert out["n"] == 60 and out["positives"] + out["negatives"] == 60
    assert out["at_threshold"]["threshold"] == 0.4
    assert out["at_youden"]["threshold"] == youden_threshold(s, t)
    assert out["auc_ci95"][0] <= out["auc"] <= out["auc_ci95"][1]
    single = classification_summary([0.1, 0.9], [1, 1])
    assert single["auc"] is None and single["at_youden"] is None and single["auc_ci95"] is None
