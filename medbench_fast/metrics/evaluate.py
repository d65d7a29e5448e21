"""``evaluate_pair``: every metric of every label of one (reference, prediction) pair.

Conventions (METRICS.md): reference first, then prediction; arrays in ``(Z, Y, X)``;
``spacing`` in mm per array axis, keyword-only and required; one row per label, both-empty
labels included; float metrics are NaN where undefined and ``None`` where not requested.
Regions (unions of labels, :mod:`medbench_fast.metrics.regions`) are rows like labels, with
their negative id as ``label``; their counts come from the same joint histogram.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from medbench_fast.metrics.conventions import (
    BOTH_EMPTY_SURFACE,
    check_spacing,
    check_tolerance,
)
from medbench_fast.metrics.counts import LabelCounts, as_label_array, label_counts
from medbench_fast.metrics.overlap import overlap_metrics
from medbench_fast.metrics.regions import Region, make_regions
from medbench_fast.metrics.selection import (
    EMPTY_MODES,
    HD95_MODES,
    SURFACE_METRICS,
    SURFACE_MODES,
    check_choice,
    resolve_metrics,
)

#: Row fields returned for each label, in ``metrics.parquet`` column order.
ROW_FIELDS = (
    "label", "label_name", "tp", "fp", "fn", "tn",
    "dice", "iou", "sensitivity", "specificity", "precision", "volume_similarity",
    "ref_volume_ml", "pred_volume_ml", "hd", "hd95", "assd", "masd", "nsd", "nsd_tolerance_mm",
    "ref_empty", "pred_empty",
)
#: Metrics set to NaN on both-empty rows under ``empty="nan"``.
NAN_WHEN_BOTH_EMPTY = ("dice", "iou", "volume_similarity") + SURFACE_METRICS


def _check_labels(labels: Iterable[int] | None, counts: LabelCounts) -> list[int]:
    if labels is None:
        return [v for v in counts.values.tolist() if v != 0]
    out = []
    for label in labels:
        if isinstance(label, bool) or int(label) != label or label < 0:
            raise ValueError(f"labels: {label!r} is not a non-negative integer label")
        out.append(int(label))
    return sorted(set(out))


def evaluate_pair(
    ref: np.ndarray,
    pred: np.ndarray,
    *,
    spacing: Sequence[float],
    labels: Iterable[int] | None = None,
    metrics: str | Iterable[str] | None = None,
    nsd_tolerance_mm: float = 1.0,
    surface: str = "voxel",
    hd95_mode: str = "max",
    empty: str = "one",
    label_names: Mapping[int, str] | None = None,
    regions: Mapping[str, Iterable[int]] | Iterable[Region] | None = None,
) -> list[dict]:
    """Evaluate every label (and region) of a prediction against its reference.

    Parameters
    ----------
    ref, pred : 3D label maps ``(Z, Y, X)`` of equal shape; any integer or bool dtype,
        integral floats, C- or F-order, read-only memmaps (never written).
    spacing : mm per array axis, required.
    labels : label values to report; default every non-zero value present in either map.
        A requested label absent from both gets its both-empty row.
    metrics : names or groups (``counts``, ``surface``); default both groups. Counts and
        empty flags are always computed; unrequested metrics are ``None``.
    nsd_tolerance_mm : NSD tolerance tau in mm.
    surface : ``"voxel"`` (MONAI / MetricsReloaded borders) or ``"surfel"`` (DeepMind).
    hd95_mode : ``"max"`` of the directed 95th percentiles, or ``"pooled"`` (medpy).
    empty : ``"one"`` (both-empty Dice = 1, METRICS.md) or ``"nan"`` (nnU-Net / MONAI).
    label_names : optional ``{label: name}`` for the ``label_name`` field.
    regions : ``{name: label values}`` (or :class:`Region` objects) scored like labels, after
        them, with ``label`` = ``-1, -2, ...`` in the order given and ``label_name`` = name.

    Returns
    -------
    list of dict, one per label and then one per region, keyed by :data:`ROW_FIELDS`.
    """
    spacing = check_spacing(spacing)
    names = resolve_metrics(metrics)
    check_choice("surface", surface, SURFACE_MODES)
    check_choice("hd95_mode", hd95_mode, HD95_MODES)
    check_choice("empty", empty, EMPTY_MODES)
    check_tolerance("nsd_tolerance_mm", nsd_tolerance_mm)
    ref_a, pred_a = as_label_array(ref, "ref"), as_label_array(pred, "pred")
    if ref_a.shape != pred_a.shape:
        raise ValueError(f"ref and pred shapes differ: {ref_a.shape} vs {pred_a.shape}")
    if ref_a.flags.f_contiguous and pred_a.flags.f_contiguous and not ref_a.flags.c_contiguous:
        # Work on the C-ordered transposes; every metric is invariant to the axis order.
        ref_a, pred_a, spacing = ref_a.T, pred_a.T, spacing[::-1]
    counts = label_counts(ref_a, pred_a)
    regions = make_regions(regions)
    options = dict(names=names, nsd_tolerance_mm=nsd_tolerance_mm, surface=surface, hd95_mode=hd95_mode,
                   empty=empty, label_names=label_names, regions=regions)
    ids = _check_labels(labels, counts) + [r.id for r in regions]
    return rows_from_counts(counts, ids, spacing=spacing, arrays=(ref_a, pred_a), **options)


def rows_from_counts(counts: LabelCounts, labels: list[int], *, spacing, arrays, names, nsd_tolerance_mm,
                     surface, hd95_mode, empty, label_names, regions: tuple[Region, ...] = ()) -> list[dict]:
    """Rows for ``labels`` from a pair's counts: ids ``>= 0`` are label values, ids ``< 0`` the
    ``regions`` of that id. Surface metrics need ``arrays = (ref, pred)`` unless every label
    is absent from both maps (then ``arrays`` may be None)."""
    members = _members(labels, regions)
    rows = _count_rows(counts, labels, members, spacing, names)
    surface_names = tuple(n for n in SURFACE_METRICS if n in names)
    for row, values in zip(rows, members if surface_names else ()):
        box = counts.union_box(values)
        if box is None:
            row.update({n: BOTH_EMPTY_SURFACE[n] for n in surface_names})
            continue
        from medbench_fast.metrics.surface import label_surface_metrics

        ref_a, pred_a = arrays
        if ref_a.dtype != pred_a.dtype or not (ref_a.flags.c_contiguous and pred_a.flags.c_contiguous):
            ref_a, pred_a = np.ascontiguousarray(ref_a), np.ascontiguousarray(pred_a)
            arrays = ref_a, pred_a
        ref_m, pred_m, label, box = _masks_in_box(ref_a, pred_a, values, box)
        row.update(label_surface_metrics(
            ref_m, pred_m, label, box=box, spacing=spacing, tolerance_mm=nsd_tolerance_mm,
            surface=surface, hd95_mode=hd95_mode, metrics=surface_names,
        ))
    region_names = {r.id: r.name for r in regions}
    for row in rows:
        row["nsd_tolerance_mm"] = float(nsd_tolerance_mm) if "nsd" in names else None
        if row["label"] < 0:
            row["label_name"] = region_names[row["label"]]
        else:
            row["label_name"] = None if label_names is None else label_names.get(row["label"])
        if empty == "nan" and row["ref_empty"] and row["pred_empty"]:
            for name in NAN_WHEN_BOTH_EMPTY:
                if row.get(name) is not None:
                    row[name] = float("nan")
    return [_in_field_order(row) for row in rows]


def _in_field_order(row: dict) -> dict:
    """``row`` with every field of :data:`ROW_FIELDS` in that order (None where missing), then
    its other fields in their order."""
    out = dict.fromkeys(ROW_FIELDS)
    out.update(row)  # a key already in ``out`` keeps its place
    return out


def both_empty_rows(labels: list[int], *, n_voxels: int, spacing, metrics=None, nsd_tolerance_mm: float = 1.0,
                    surface: str = "voxel", hd95_mode: str = "max", empty: str = "one", label_names=None,
                    regions=None) -> list[dict]:
    """Rows of labels (or region ids) absent from both maps of a case with ``n_voxels`` voxels
    (options as :func:`evaluate_pair`)."""
    options = dict(names=resolve_metrics(metrics), nsd_tolerance_mm=nsd_tolerance_mm, surface=surface,
                   hd95_mode=hd95_mode, empty=empty, label_names=label_names, regions=make_regions(regions))
    background = LabelCounts(np.zeros(1, np.int64), np.full((1, 1), n_voxels, np.int64),
                             np.zeros((1, 6), np.int64), np.zeros((1, 6), np.int64), n_voxels)
    return rows_from_counts(background, labels, spacing=spacing, arrays=None, **options)


def _members(ids: list[int], regions: tuple[Region, ...]) -> list[tuple[int, ...]]:
    """The label values of each row id: ``(label,)`` for a label, the region's labels for a region."""
    by_id = {r.id: r.labels for r in regions}
    out = []
    for i in ids:
        if i < 0 and i not in by_id:
            raise ValueError(f"label {i}: no region has this id (regions: {sorted(by_id)})")
        out.append((i,) if i >= 0 else by_id[i])
    return out


def _masks_in_box(ref, pred, values: tuple[int, ...], box):
    """``(ref, pred, label, box)`` for :func:`label_surface_metrics`: the maps themselves for one
    label, or the union masks of a label set cropped to ``box`` (uint8, label 1)."""
    if len(values) == 1:
        return ref, pred, values[0], box
    sl = tuple(slice(lo, hi) for lo, hi in box)
    ref_m = np.isin(ref[sl], values).view(np.uint8)
    pred_m = np.isin(pred[sl], values).view(np.uint8)
    return ref_m, pred_m, 1, tuple((0, n) for n in ref_m.shape)


def _count_rows(counts: LabelCounts, labels: list[int], members: list[tuple[int, ...]], spacing,
                names) -> list[dict]:
    """Counts of each row from the joint histogram: ``tp = sum C[S, S]``, ``fn = sum C[S, :] - tp``,
    ``fp = sum C[:, S] - tp`` over the row's label set ``S`` (one value for a label)."""
    position = {v: i for i, v in enumerate(counts.values.tolist())}
    sets = np.zeros((len(labels), len(position)), np.int64)  # sets[j, i]: values[i] is in row j's set
    for j, values in enumerate(members):
        for v in values:
            if v in position:
                sets[j, position[v]] = 1
    hist = counts.hist
    tp = ((sets @ hist) * sets).sum(axis=1)
    fn = sets @ hist.sum(axis=1) - tp
    fp = sets @ hist.sum(axis=0) - tp
    ml_per_voxel = float(np.prod(np.asarray(spacing, np.float64))) / 1000.0
    n_voxels = int(counts.n_voxels)
    rows = []
    for label, tp_, fp_, fn_ in zip(labels, tp.tolist(), fp.tolist(), fn.tolist()):
        tn_ = n_voxels - tp_ - fp_ - fn_
        row = {"label": label, "tp": tp_, "fp": fp_, "fn": fn_, "tn": tn_,
               "ref_empty": tp_ + fn_ == 0, "pred_empty": tp_ + fp_ == 0}
        values = overlap_metrics(tp_, fp_, fn_, tn_)
        values["ref_volume_ml"] = (tp_ + fn_) * ml_per_voxel
        values["pred_volume_ml"] = (tp_ + fp_) * ml_per_voxel
        if "dice_smoothed" not in names:
            del values["dice_smoothed"]
        row.update((name, value if name in names else None) for name, value in values.items())
        rows.append(row)
    return rows
