"""Case-level classification metrics: ROC AUC with a 95 % interval, threshold metrics, Brier score.

``scores`` are predicted probabilities of the positive class, ``targets`` 0/1 truths; a case
is called positive when ``score >= threshold``. Pairs with a NaN score or target are
dropped. AUC and its interval are None when one class is absent.
"""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054


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


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties averaged."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(scores, targets) -> float | None:
    """Area under the ROC curve: P(score_pos > score_neg) + P(tie) / 2 (Mann-Whitney)."""
    s, t = _clean(scores, targets)
    n1, n0 = int(t.sum()), int((~t).sum())
    if n1 == 0 or n0 == 0:
        return None
    ranks = _midranks(s)
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
    tz = _midranks(np.concatenate([pos, neg]))
    tx, ty = _midranks(pos), _midranks(neg)
    auc = (tz[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    v10 = (tz[:n1] - tx) / n0
    v01 = 1.0 - (tz[n1:] - ty) / n1
    s10 = v10.var(ddof=1) if n1 > 1 else 0.0
    s01 = v01.var(ddof=1) if n0 > 1 else 0.0
    return float(auc), float(s10 / n1 + s01 / n0)


def auc_ci(scores, targets, *, method: str = "delong", n_resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """95 % interval of the ROC AUC: ``delong`` (normal, clipped to [0, 1]) or ``bootstrap``
    (percentile, stratified by class, seeded)."""
    s, t = _clean(scores, targets)
    if method == "delong":
        res = delong_variance(s, t)
        if res is None:
            return None
        auc, var = res
        half = Z_95 * math.sqrt(max(var, 0.0))
        return max(0.0, auc - half), min(1.0, auc + half)
    if method != "bootstrap":
        raise ValueError(f"method: {method!r} is not one of delong, bootstrap")
    pos, neg = s[t], s[~t]
    if pos.size == 0 or neg.size == 0:
        return None
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_resamples)
    labels = np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)]
    for b in range(n_resamples):
        sample = np.r_[pos[rng.integers(0, pos.size, pos.size)], neg[rng.integers(0, neg.size, neg.size)]]
        aucs[b] = roc_auc(sample, labels)
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return float(lo), float(hi)


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
        "brier": brier_score(s, t),
        "at_threshold": threshold_metrics(s, t, threshold),
        "at_youden": None if youden is None else threshold_metrics(s, t, youden),
    }
