"""Which conventions each compared metric depends on, and whether two runs' numbers may be tested.

A paired test between models of different runs is meaningful only when both runs computed
the metric under the same conventions (``metrics.parquet`` key-value metadata: surface
mode, HD95 mode, NSD tolerance, both-empty policy; METRICS.md). The summary records every
pair that was not tested and why.
"""

from __future__ import annotations

#: Metric -> the conventions (``metrics.parquet`` metadata keys) its values depend on.
METRIC_CONVENTIONS: dict[str, tuple[str, ...]] = {
    "dice": ("empty_mode",),
    "iou": ("empty_mode",),
    "nsd": ("surface_mode", "nsd_tolerance_mm", "empty_mode"),
    "hd95": ("surface_mode", "hd95_mode", "empty_mode"),
    "hd": ("surface_mode", "empty_mode"),
    "assd": ("surface_mode", "empty_mode"),
    "masd": ("surface_mode", "empty_mode"),
}


def convention_differences(metric: str, a: dict[str, str], b: dict[str, str]) -> list[str]:
    """``["surface_mode: voxel vs surfel", ...]``: the conventions of ``metric`` that differ between
    the conventions ``a`` and ``b`` of two runs (empty when the values are comparable)."""
    out = []
    for key in METRIC_CONVENTIONS.get(metric, ()):
        va, vb = a.get(key), b.get(key)
        if va != vb:
            out.append(f"{key}: {va} vs {vb}")
    return out


def label_sets(metrics_by_run: dict[str, set[int]]) -> dict:
    """The labels every run scored (``compared``) and, per run, the labels left out of comparisons."""
    sets = list(metrics_by_run.values())
    common = set.intersection(*sets) if sets else set()
    return {"compared": sorted(common),
            "dropped": {run: sorted(labels - common) for run, labels in metrics_by_run.items() if labels - common}}
