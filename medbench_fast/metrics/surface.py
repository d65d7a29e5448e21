"""Surface-distance metrics of one label: HD, HD95, ASSD, MASD, NSD (definitions: METRICS.md).

One intermediate per (case, label), :func:`surface_distances`: the directed distances in
mm from every border element of one mask to the border of the other (and, in surfel mode,
the area of every element), computed on the label's bounding box only. The metrics are
cheap reducers over it. Empty masks, for every metric and both surface modes:

============  =====================  =====
case          hd, hd95, assd, masd   nsd
============  =====================  =====
both empty    0.0                    1.0
one empty     +inf                   0.0
============  =====================  =====
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np

from medbench_fast.kernels._jit import parallel_launch
from medbench_fast.kernels.edt import sq_distances_at, steps_none
from medbench_fast.kernels.surface import (
    gather_areas,
    row_offsets,
    surfel_codes,
    voxel_distances,
)
from medbench_fast.metrics.conventions import (
    BOTH_EMPTY_SURFACE,
    NSD_SLACK,
    ONE_EMPTY_SURFACE,
    check_spacing,
    check_tolerance,
)
from medbench_fast.metrics.selection import (
    HD95_MODES,
    SURFACE_METRICS,
    SURFACE_MODES,
    check_choice,
)


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed border-to-border distances of one label.

    Attributes
    ----------
    ref_to_pred, pred_to_ref : float64 distances in mm from each border element of the
        reference (prediction) to the nearest border element of the other mask, in C order
        of the elements; empty for an empty mask, +inf when only the other mask is empty.
    ref_areas, pred_areas : float64 element areas in mm² (surfel mode), or None (voxel mode,
        every element weighs 1).
    """

    ref_to_pred: np.ndarray
    pred_to_ref: np.ndarray
    ref_areas: np.ndarray | None = None
    pred_areas: np.ndarray | None = None


def _check_inputs(ref, pred, label, box, surface):
    if isinstance(label, (float, np.floating)) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"label must be an integer label value, got {label!r}")
    for name, arr in (("ref", ref), ("pred", pred)):
        if getattr(arr, "ndim", None) != 3:
            raise ValueError(f"{name} must be a 3D array (Z, Y, X), got shape {getattr(arr, 'shape', None)}")
    if ref.shape != pred.shape:
        raise ValueError(f"ref and pred must have equal shapes, got {ref.shape} and {pred.shape}")
    check_choice("surface", surface, SURFACE_MODES)
    if box is None:
        return None
    try:
        bounds = tuple((int(lo), int(hi)) for lo, hi in box)
    except (TypeError, ValueError):
        bounds = ()
    if len(bounds) != 3 or any(not 0 <= lo < hi <= n for (lo, hi), n in zip(bounds, ref.shape)):
        raise ValueError(f"box must be 3 half-open (start, stop) ranges inside shape {ref.shape}, got {box!r}")
    return bounds


@lru_cache(maxsize=32)
def _surfel_area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    """Area in mm² of the surface elements of each 2x2x2 neighbour code (DeepMind table)."""
    try:
        from surface_distance.lookup_tables import (
            create_table_neighbour_code_to_surface_area,
        )
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("surface='surfel' needs the 'surface-distance' package (pip install surface-distance)") from exc
    table = np.asarray(create_table_neighbour_code_to_surface_area(spacing), dtype=np.float64)
    table[255] = 0.0
    table.setflags(write=False)
    return table


def surface_distances(ref, pred, label, *, box, spacing, surface="voxel") -> SurfaceDistances:
    """Directed border-to-border distances of ``label`` between two label maps.

    Parameters
    ----------
    ref, pred : 3D integer label maps ``(Z, Y, X)`` of equal shape (ndarray or read-only
        memmap; never written).
    label : label value; the masks are ``ref == label`` and ``pred == label``.
    box : ``((z0, z1), (y0, y1), (x0, x1))`` half-open index ranges containing every voxel
        of ``label`` in both maps, or None when the label is absent from both.
    spacing : 3 floats, mm per array axis.
    surface : ``"voxel"`` (border voxels: mask minus its 6-connected erosion, outside the
        array is background) or ``"surfel"`` (DeepMind surface elements on the voxel-corner
        grid, with areas from that package's neighbour-code table: needs ``surface-distance``).

    Returns
    -------
    SurfaceDistances, distances in mm. Only the box is processed: the nearest border
    element of the other mask always lies inside it, so no margin is needed (surfel corners
    extend the box by one corner, with background outside).
    """
    spacing = check_spacing(spacing)
    bounds = _check_inputs(ref, pred, label, box, surface)
    empty = np.empty(0, np.float64)
    if bounds is None:
        areas = empty if surface == "surfel" else None
        return SurfaceDistances(empty, empty, areas, areas)
    sl = tuple(slice(lo, hi) for lo, hi in bounds)
    r, p = np.asarray(ref)[sl], np.asarray(pred)[sl]
    with parallel_launch(r.size):
        return _distances(r, p, label, spacing, surface)


def _padded_mask(crop: np.ndarray, label) -> np.ndarray:
    """``crop == label`` as C-contiguous uint8, zero-padded by one voxel on every side."""
    m = np.zeros(tuple(n + 2 for n in crop.shape), np.uint8)
    np.equal(crop, label, out=m[1:-1, 1:-1, 1:-1].view(np.bool_))
    return m


def _distances(r, p, label, spacing, surface) -> SurfaceDistances:
    if surface == "voxel":  # one kernel call; parallel launches only where numba has several threads
        s0, s1, s2 = spacing
        none = steps_none(r.shape)
        return SurfaceDistances(*voxel_distances(_padded_mask(r, label), _padded_mask(p, label),
                                                 np.empty(r.shape, none.dtype), none, s0 * s0, s1 * s1, s2 * s2,
                                                 numba.get_num_threads() > 1))
    br = surfel_codes(_padded_mask(r, label))
    bp = surfel_codes(_padded_mask(p, label))
    off_r, off_p = row_offsets(br), row_offsets(bp)
    nr, np_ = int(off_r[-1]), int(off_p[-1])
    if nr and np_:
        ref_to_pred = np.sqrt(sq_distances_at(bp, br, off_r, spacing))
        pred_to_ref = np.sqrt(sq_distances_at(br, bp, off_p, spacing))
    else:
        ref_to_pred = np.full(nr, np.inf)
        pred_to_ref = np.full(np_, np.inf)
    table = _surfel_area_table(spacing)
    return SurfaceDistances(ref_to_pred, pred_to_ref, gather_areas(br, off_r, table), gather_areas(bp, off_p, table))


def _weighted_percentile(d: np.ndarray, w: np.ndarray, q: float) -> float:
    """First sorted distance whose cumulative weight fraction reaches ``q`` (not interpolated)."""
    order = np.argsort(d, kind="stable")
    cum = np.cumsum(w[order]) / np.sum(w)
    i = min(int(np.searchsorted(cum, q)), d.size - 1)
    return float(d[order[i]])


def _weighted_sum(d: np.ndarray, w: np.ndarray) -> float:
    """``sum(d * w)`` in a fixed order: numpy's pairwise summation, single-threaded. Never
    ``np.dot``: BLAS splits a long dot product over its threads, so its last bits would
    depend on the thread count of the process (a Ray worker runs with one)."""
    return float(np.sum(d * w))


def percentile95(d: np.ndarray) -> float:
    """``np.percentile(d, 95)`` (method ``"linear"``) of a 1-D float64 array without NaN, to
    the last bit: the same virtual index, neighbours and interpolation formula as numpy's
    ``_quantile`` and ``_lerp``, in Python floats (IEEE doubles, as numpy's float64 scalars),
    with one partition instead of numpy's general path (about 60 µs a call on small arrays)."""
    n = d.size
    virtual = (n - 1) * 0.95
    if virtual >= n - 1:  # n == 1: numpy takes the last element with index -1 and gamma virtual + 1
        a = b = float(d[-1])
        t = virtual + 1.0
    else:
        i = math.floor(virtual)
        part = np.partition(d, (i, i + 1))
        a, b = float(part[i]), float(part[i + 1])
        t = virtual - i
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _percentile95(d: np.ndarray, top: float) -> float:
    """``np.percentile(d, 95)`` of distances; ``top`` is NaN where ``d`` holds a NaN (then numpy's own)."""
    return percentile95(d) if top == top else float(np.percentile(d, 95))


def _reduce(sd: SurfaceDistances, tolerance_mm: float, hd95_mode: str, metrics) -> dict[str, float]:
    d_r, d_p = sd.ref_to_pred, sd.pred_to_ref
    if d_r.size == 0 and d_p.size == 0:
        return {m: BOTH_EMPTY_SURFACE[m] for m in metrics}
    if d_r.size == 0 or d_p.size == 0:
        return {m: ONE_EMPTY_SURFACE[m] for m in metrics}
    if sd.ref_areas is None:
        return _reduce_voxel(d_r, d_p, tolerance_mm, hd95_mode, metrics)
    w_r, w_p = sd.ref_areas, sd.pred_areas
    out = {}
    if "hd" in metrics:
        out["hd"] = float(max(d_r.max(), d_p.max()))
    if "hd95" in metrics:
        if hd95_mode == "max":
            out["hd95"] = max(_weighted_percentile(d_r, w_r, 0.95), _weighted_percentile(d_p, w_p, 0.95))
        else:
            out["hd95"] = _weighted_percentile(np.concatenate([d_r, d_p]), np.concatenate([w_r, w_p]), 0.95)
    sum_r, sum_p = _weighted_sum(d_r, w_r), _weighted_sum(d_p, w_p)
    area_r, area_p = float(np.sum(w_r)), float(np.sum(w_p))
    if "assd" in metrics:
        out["assd"] = (sum_r + sum_p) / (area_r + area_p)
    if "masd" in metrics:
        out["masd"] = 0.5 * (sum_r / area_r + sum_p / area_p)
    if "nsd" in metrics:
        tau = tolerance_mm * (1.0 + NSD_SLACK)
        within = float(np.sum(w_r[d_r <= tau])) + float(np.sum(w_p[d_p <= tau]))
        out["nsd"] = within / (area_r + area_p)
    return {m: out[m] for m in metrics}


def _reduce_voxel(d_r: np.ndarray, d_p: np.ndarray, tolerance_mm: float, hd95_mode: str,
                  metrics) -> dict[str, float]:
    """:func:`_reduce` where every element weighs 1: element counts stand for the areas (sums
    of ones, exact), counts of ``d <= tau`` for the weights within τ, and the distance sums
    are numpy's pairwise ``add.reduce`` (as ``np.sum``), so the values equal the weighted
    formulas to the last bit with a few numpy calls per label."""
    out = {}
    if "hd" in metrics or "hd95" in metrics:
        max_r, max_p = float(d_r.max()), float(d_p.max())
        out["hd"] = max(max_r, max_p)
        if hd95_mode == "max":
            out["hd95"] = max(_percentile95(d_r, max_r), _percentile95(d_p, max_p))
        else:
            out["hd95"] = _percentile95(np.concatenate([d_r, d_p]), max_r + max_p)
    area_r, area_p = float(d_r.size), float(d_p.size)
    if "assd" in metrics or "masd" in metrics:
        sum_r, sum_p = float(np.add.reduce(d_r)), float(np.add.reduce(d_p))
        out["assd"] = (sum_r + sum_p) / (area_r + area_p)
        out["masd"] = 0.5 * (sum_r / area_r + sum_p / area_p)
    if "nsd" in metrics:
        tau = tolerance_mm * (1.0 + NSD_SLACK)
        within = float(np.count_nonzero(d_r <= tau)) + float(np.count_nonzero(d_p <= tau))
        out["nsd"] = within / (area_r + area_p)
    return {m: out[m] for m in metrics}


def label_surface_metrics(ref, pred, label, *, box, spacing, tolerance_mm=1.0,
                          surface="voxel", hd95_mode="max", metrics=SURFACE_METRICS) -> dict[str, float]:
    """Surface-distance metrics of one label, in mm (definitions and conventions: METRICS.md).

    Parameters
    ----------
    ref, pred : full 3D integer label maps ``(Z, Y, X)`` of equal shape (C-contiguous
        ndarray or read-only memmap; never written).
    label : label value; the masks are ``ref == label`` and ``pred == label``.
    box : union bounding box of ``label`` in ``ref | pred`` as ``((z0, z1), (y0, y1), (x0, x1))``
        half-open index ranges, or None when the label is absent from both.
    spacing : 3 floats, mm per array axis; required, finite and positive.
    tolerance_mm : NSD tolerance τ in mm; "within τ" means ``d <= τ (1 + 1e-6)``.
    surface : ``"voxel"`` (border voxels, counts) or ``"surfel"`` (DeepMind surface
        elements, area-weighted).
    hd95_mode : ``"max"`` (larger of the two directed 95th percentiles) or ``"pooled"``
        (95th percentile of both directions pooled, as medpy). Voxel mode interpolates
        linearly as ``numpy.percentile``; surfel mode takes the first distance whose
        cumulative area fraction reaches 0.95.
    metrics : names out of :data:`SURFACE_METRICS`.

    Returns
    -------
    ``{name: float}`` for the requested names. ``hd`` largest distance; ``hd95`` as above;
    ``assd`` mean of both directions pooled; ``masd`` mean of the two directed means;
    ``nsd`` share of border elements within τ of the other border. Both masks empty:
    hd, hd95, assd, masd 0.0 and nsd 1.0; exactly one empty: +inf and nsd 0.0.
    """
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in SURFACE_METRICS]
    if unknown:
        raise ValueError(f"metrics must be names out of {SURFACE_METRICS}, got {unknown}")
    check_choice("hd95_mode", hd95_mode, HD95_MODES)
    tau = check_tolerance("tolerance_mm", tolerance_mm)
    sd = surface_distances(ref, pred, label, box=box, spacing=spacing, surface=surface)
    return _reduce(sd, tau, hd95_mode, metrics)
