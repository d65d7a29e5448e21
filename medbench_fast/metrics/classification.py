"""Case-level classification metrics: ROC AUC with a 95 % interval, threshold metrics, Brier score.

``scores`` are predicted probabilities of the positive class, ``targets`` 0/1 truths; a case
is called positive when ``score >= threshold``. Pairs with a NaN score or target are
dropped. AUC and its interval are None when one class is absent. An interval needs at least
:data:`MIN_CLASS_CASES` cases of each class and a non-degenerate DeLong variance; otherwise
it is None and :func:`auc_ci_note` says why (a DeLong interval of (1.0, 1.0) from a handful
of perfectly separated cases would claim a certainty the sample cannot give).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats

Z_95 = 1.959963984540054
#: Fewest positives and fewest negatives for an AUC interval (DeLong and the bootstrap are
#: large-sample methods; with fewer, the interval is reported as missing, with the reason).
MIN_CLASS_CASES = 10


def _clean(scores, targets) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if s.shape != t.shape or s.ndim != 1:
        raise ValueError(f"scores, targets: expected two 1-D arrays of one length, got {s.shape} and {t.shape}")
    keep = ~(np.isnan(s) | np.isnan(t))
    s, t = s[keep], t[keep]
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError("targets: expected 0/1 values")
    return s, t.astype(bool)


def roc_auc(scores, targets) -> float | None:
    """Area under the ROC curve: P(score_pos > score_neg) + P(tie) / 2 (Mann-Whitney)."""
    s, t = _clean(scores, targets)
    n1, n0 = int(t.sum()), int((~t).sum())
    if n1 == 0 or n0 == 0:
        return None
    ranks = scipy.stats.rankdata(s)
    return float((ranks[t].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def delong_variance(scores, targets) -> tuple[float, float] | None:
    """AUC and its DeLong variance (DeLong et al. 1988, midrank form of Sun & Xu 2014).

    ``V10_i`` (per positive) and ``V01_j`` (per negative) are the structural components;
    ``var = s10 / n1 + s01 / n0`` with their sample variances.
    """
    s, t = _clean(scores, targets)
    pos, neg = s[t], s[~t]
    n1, n0 = pos.size, neg.size
    if n1 == 0 or n0 == 0:
        return None
    tz = scipy.stats.rankdata(np.concatenate([pos, neg]))
    tx, ty = scipy.stats.rankdata(pos), scipy.stats.rankdata(neg)
    auc = (tz[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    v10 = (tz[:n1] - tx) / n0
    v01 = 1.0 - (tz[n1:] - ty) / n1
    s10 = v10.var(ddof=1) if n1 > 1 else 0.0
    s01 = v01.var(ddof=1) if n0 > 1 else 0.0
    return float(auc), float(s10 / n1 + s01 / n0)


def auc_ci_note(scores, targets) -> str | None:
    """Why there is no AUC interval for this sample, or None when there is one."""
    s, t = _clean(scores, targets)
    n1, n0 = int(t.sum()), int((~t).sum())
    if n1 == 0 or n0 == 0:
        return "one class is absent"
    if min(n1, n0) < MIN_CLASS_CASES:
        return (f"too few cases for an interval: {n1} positive and {n0} negative, "
                f"at least {MIN_CLASS_CASES} of each needed")
    if delong_variance(s, t)[1] <= 0.0:
        return "no interval: the DeLong variance is 0 (the classes are perfectly separated or every score is tied)"
    return None


def _auc_of_groups(pos: np.ndarray, neg: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUC of positives ``pos`` against negatives ``neg`` along ``axis`` (Mann-Whitney U / n1 n0)."""
    u = scipy.stats.mannwhitneyu(pos, neg, axis=axis, method="asymptotic").statistic
    return u / (pos.shape[axis] * neg.shape[axis])


def auc_ci(scores, targets, *, method: str = "delong", n_resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """95 % interval of the ROC AUC: ``delong`` (normal, clipped to [0, 1]) or ``bootstrap``
    (``scipy.stats.bootstrap`` percentile interval, resampling each class apart, seeded).
    None where :func:`auc_ci_note` gives a reason."""
    if method not in ("delong", "bootstrap"):
        raise ValueError(f"method: {method!r} is not one of delong, bootstrap")
    s, t = _clean(scores, targets)
    if auc_ci_note(s, t) is not None:
        return None
    if method == "delong":
        auc, var = delong_variance(s, t)
        half = Z_95 * math.sqrt(var)
        return max(0.0, auc - half), min(1.0, auc + half)
    res = scipy.stats.bootstrap((s[t], s[~t]), _auc_of_groups, n_resamples=n_resamples, method="percentile",
                                rng=seed, vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def threshold_metrics(scores, targets, threshold: float = 0.5) -> dict:
    """Confusion counts and sensitivity, specificity, precision, accuracy, F1 at ``score >= threshold``."""
    s, t = _clean(scores, targets)
    called = s >= threshold
    tp, fp = int((called & t).sum()), int((called & ~t).sum())
    fn, tn = int((~called & t).sum()), int((~called & ~t).sum())
    return {
        "threshold": float(threshold), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp), "precision": _ratio(tp, tp + fp),
        "accuracy": _ratio(tp + tn, s.size), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def youden_threshold(scores, targets) -> float | None:
    """The score threshold maximising sensitivity + specificity - 1 (the highest one on ties)."""
    s, t = _clean(scores, targets)
    n1, n0 = int(t.sum()), int((~t).sum())
    if n1 == 0 or n0 == 0:
        return None
    cut = np.unique(s)[::-1]  # candidate thresholds, high to low
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    # cases with score >= cut[k]: the first searchsorted(-s_sorted, -cut[k], "right") of them
    upto = np.searchsorted(-s_sorted, -cut, side="right")
    tp = np.concatenate([[0], np.cumsum(t_sorted)])[upto]
    fp = upto - tp
    j = tp / n1 - fp / n0
    return float(cut[int(np.argmax(j))])


def brier_score(scores, targets) -> float | None:
    """Mean squared difference between score and 0/1 target."""
    s, t = _clean(scores, targets)
    return float(np.mean((s - t) ** 2)) if s.size else None


def classification_summary(scores, targets, *, threshold: float = 0.5, ci: str = "delong") -> dict:
    """Every METRICS.md classification metric of one (model, target)."""
    s, t = _clean(scores, targets)
    youden = youden_threshold(s, t)
    interval = auc_ci(s, t, method=ci)
    return {
        "n": int(s.size), "positives": int(t.sum()), "negatives": int((~t).sum()),
        "auc": roc_auc(s, t), "auc_ci95": None if interval is None else list(interval), "auc_ci_method": ci,
        "auc_ci_note": auc_ci_note(s, t),
        "brier": brier_score(s, t),
        "at_threshold": threshold_metrics(s, t, threshold),
        "at_youden": None if youden is None else threshold_metrics(s, t, youden),
    }
