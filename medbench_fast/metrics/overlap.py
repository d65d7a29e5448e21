"""Counting metrics from the confusion counts of one label (definitions: METRICS.md).

Every function takes counts as integers and returns a float; the empty-mask convention is
stated on each and never differs between siblings. A row's metrics are a few divisions, so
they are worked out in Python numbers: numpy's per-call cost on arrays of a handful of
labels was larger than the arithmetic. Integer counts are exact in float64 (below 2**53), so
every value equals the float64 division of the same counts.
"""

from __future__ import annotations

import math

#: Counting metrics, in the column order of ``metrics.parquet``.
OVERLAP_METRICS = ("dice", "iou", "sensitivity", "specificity", "precision", "volume_similarity")
#: Metrics computed only on request (by name).
EXTRA_METRICS = ("dice_smoothed",)


def _ratio(num: int, den: int, when_zero: float) -> float:
    return num / den if den else when_zero


def dice(tp: int, fp: int, fn: int) -> float:
    """``2tp / (2tp + fp + fn)``; both masks empty: 1.0."""
    return _ratio(2 * tp, 2 * tp + fp + fn, 1.0)


def dice_smoothed(tp: int, fp: int, fn: int) -> float:
    """MLPerf 3D-UNet smoothed Dice ``(2tp + 1e-6) / (2tp + fp + fn + 1e-6)``; never undefined."""
    return (2 * tp + 1e-6) / (2 * tp + fp + fn + 1e-6)


def iou(tp: int, fp: int, fn: int) -> float:
    """``tp / (tp + fp + fn)``; both masks empty: 1.0."""
    return _ratio(tp, tp + fp + fn, 1.0)


def sensitivity(tp: int, fn: int) -> float:
    """``tp / (tp + fn)``; reference empty: NaN."""
    return _ratio(tp, tp + fn, math.nan)


def specificity(tn: int, fp: int) -> float:
    """``tn / (tn + fp)``; ``tn + fp = 0``: NaN."""
    return _ratio(tn, tn + fp, math.nan)


def precision(tp: int, fp: int) -> float:
    """``tp / (tp + fp)``; prediction empty: NaN."""
    return _ratio(tp, tp + fp, math.nan)


def volume_similarity(tp: int, fp: int, fn: int) -> float:
    """``1 - |fp - fn| / (2tp + fp + fn)``; both masks empty: 1.0."""
    return 1.0 - _ratio(abs(fp - fn), 2 * tp + fp + fn, 0.0)


def overlap_metrics(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
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
