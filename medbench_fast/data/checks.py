"""Checks that a prediction and its reference describe the same grid."""

from __future__ import annotations

import numpy as np

from medbench_fast.data.reader import Volume, VolumeError
from medbench_fast.metrics.options import GEOMETRY_RTOL  # the default of every run's options


def check_same_grid(ref: Volume, pred: Volume, *, rtol: float = GEOMETRY_RTOL, ref_role: str = "reference") -> None:
    """Raise :class:`VolumeError` naming the prediction file when grids differ (``ref_role``
    names what ``ref`` is in the message, e.g. "first channel").

    Shapes must be equal; spacing and origin agree within ``rtol`` relative (origin with an
    absolute floor of ``rtol`` x the largest spacing), direction cosines within ``rtol``.
    """
    name = pred.path or "prediction"
    if ref.shape != pred.shape:
        raise VolumeError(f"{name}: shape {pred.shape} differs from {ref_role} {ref.path}: {ref.shape}")
    if (ref.spacing, ref.origin, ref.direction) == (pred.spacing, pred.origin, pred.direction):
        return  # equal values are within every tolerance (the common case; numpy's checks cost more than a small case)
    rs, ps = np.asarray(ref.spacing), np.asarray(pred.spacing)
    if not np.allclose(ps, rs, rtol=rtol, atol=0):
        raise VolumeError(f"{name}: spacing {_fmt(ps)} mm differs from {ref_role} {ref.path}: {_fmt(rs)} mm")
    if not np.allclose(pred.origin, ref.origin, rtol=rtol, atol=rtol * float(rs.max())):
        raise VolumeError(f"{name}: origin {_fmt(pred.origin)} mm differs from {ref_role} {ref.path}: {_fmt(ref.origin)} mm")
    if not np.allclose(pred.direction, ref.direction, rtol=0, atol=rtol):
        raise VolumeError(f"{name}: direction {_fmt(pred.direction)} differs from {ref_role} {ref.path}: "
                          f"{_fmt(ref.direction)}")


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"
