"""Counting metrics from confusion counts, vectorised over labels (definitions: METRICS.md).

Every function takes int64 arrays of equal shape and returns float64 arrays; the
empty-mask convention is stated on each and never differs between siblings.
"""

from __future__ import annotations

import numpy as np

#: Counting metrics, in the column order of ``metrics.parquet``.
OVERLAP_METRICS = ("dice", "iou", "sensitivity", "specificity", "precision", "volume_similarity")
#: Metrics computed only on request (by name).
EXTRA_METRICS = ("dice_smoothed",)


def _ratio(num, den, when_zero: float) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, when_zero, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def dice(tp, fp, fn) -> np.ndarray:
    """``2tp / (2tp + fp + fn)``; both masks empty: 1.0."""
    return _ratio(2 * np.asarray(tp), 2 * np.asarray(tp) + fp + fn, 1.0)


def dice_smoothed(tp, fp, fn) -> np.ndarray:
    """MLPerf 3D-UNet smoothed Dice ``(2tp + 1e-6) / (2tp + fp + fn + 1e-6)``; never undefined."""
    tp = np.asarray(tp, dtype=np.float64)
    return (2 * tp + 1e-6) / (2 * tp + fp + fn + 1e-6)


def iou(tp, fp, fn) -> np.ndarray:
    """``tp / (tp + fp + fn)``; both masks empty: 1.0."""
    return _ratio(tp, np.asarray(tp) + fp + fn, 1.0)


def sensitivity(tp, fn) -> np.ndarray:
    """``tp / (tp + fn)``; reference empty: NaN."""
    return _ratio(tp, np.asarray(tp) + fn, np.nan)


def specificity(tn, fp) -> np.ndarray:
    """``tn / (tn + fp)``; ``tn + fp = 0``: NaN."""
    return _ratio(tn, np.asarray(tn) + fp, np.nan)


def precision(tp, fp) -> np.ndarray:
    """``tp / (tp + fp)``; prediction empty: NaN."""
    return _ratio(tp, np.asarray(tp) + fp, np.nan)


def volume_similarity(tp, fp, fn) -> np.ndarray:
    """``1 - |fp - fn| / (2tp + fp + fn)``; both masks empty: 1.0."""
    return 1.0 - _ratio(np.abs(np.asarray(fp) - fn), 2 * np.asarray(tp) + fp + fn, 0.0)


def overlap_metrics(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """All counting metrics of :data:`OVERLAP_METRICS` and :data:`EXTRA_METRICS` at once."""
    return {
        "dice": dice(tp, fp, fn),
        "iou": iou(tp, fp, fn),
        "sensitivity": sensitivity(tp, fn),
        "specificity": specificity(tn, fp),
        "precision": precision(tp, fp),
        "volume_similarity": volume_similarity(tp, fp, fn),
        "dice_smoothed": dice_smoothed(tp, fp, fn),
    }
