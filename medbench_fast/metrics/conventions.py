"""Conventions shared by every metric function (METRICS.md), written once: spacing and
tolerance validation, the empty-mask values of the surface metrics and the NSD tolerance slack.

Metric names, groups and mode names live in :mod:`medbench_fast.metrics.selection`.
"""

from __future__ import annotations

import math

#: Relative slack of "within tolerance" for NSD: ``d <= tau * (1 + NSD_SLACK)``.
NSD_SLACK = 1e-6
#: Surface metrics of a label absent from both masks.
BOTH_EMPTY_SURFACE = {"hd": 0.0, "hd95": 0.0, "assd": 0.0, "masd": 0.0, "nsd": 1.0}
#: Surface metrics of a label present in exactly one mask.
ONE_EMPTY_SURFACE = {"hd": math.inf, "hd95": math.inf, "assd": math.inf, "masd": math.inf, "nsd": 0.0}


def check_spacing(spacing, ndim: int = 3) -> tuple[float, ...]:
    """Validate ``spacing`` (mm per array axis): ``ndim`` finite positive numbers, widened to float64."""
    if spacing is None:
        raise ValueError("spacing: required (mm per axis, in array axis order)")
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing: expected {ndim} numbers, got {spacing!r}") from None
    if len(values) != ndim:
        raise ValueError(f"spacing: expected {ndim} values (one per axis), got {len(values)}")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing: every value must be finite and > 0, got {values}")
    return values


def check_tolerance(name: str, value) -> float:
    """Validate an NSD tolerance in mm (argument ``name``): a finite number >= 0."""
    try:
        tau = float(value)
    except (TypeError, ValueError):
        tau = math.nan
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"{name}: expected a finite value >= 0 (mm), got {value!r}")
    return tau
