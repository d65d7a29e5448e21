"""Slow, obvious float64 references for the surface-distance metrics (METRICS.md).

Borders by scipy erosion, distances by scipy's exact EDT with ``sampling``; surfels by the
DeepMind definition in plain numpy; reducers written straight from the definitions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

CROSS = ndimage.generate_binary_structure(3, 1)


def voxel_border(mask: np.ndarray) -> np.ndarray:
    """Mask minus its 6-connected erosion, outside the array as background."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, structure=CROSS, border_value=0)


def surfel_codes(mask: np.ndarray) -> np.ndarray:
    """DeepMind neighbour code of every voxel corner, shape ``mask.shape + 1``."""
    padded = np.pad(np.asarray(mask, dtype=np.int64), 1)
    nz, ny, nx = mask.shape
    code = np.zeros((nz + 1, ny + 1, nx + 1), np.int64)
    for da in (0, 1):
        for db in (0, 1):
            for dc in (0, 1):
                bit = 7 - (4 * da + 2 * db + dc)
                code += padded[da:da + nz + 1, db:db + ny + 1, dc:dc + nx + 1] << bit
    return code


def surfel_area_table(spacing) -> np.ndarray:
    from surface_distance.lookup_tables import create_table_neighbour_code_to_surface_area

    return np.asarray(create_table_neighbour_code_to_surface_area(tuple(spacing)), np.float64)


def _directed(border_from: np.ndarray, border_to: np.ndarray, spacing) -> np.ndarray:
    if not border_to.any():
        return np.full(int(border_from.sum()), np.inf)
    dist = ndimage.distance_transform_edt(~border_to, sampling=spacing)
    return dist[border_from]


def surface_distances(mask_ref, mask_pred, spacing, surface="voxel"):
    """``(ref_to_pred, pred_to_ref, ref_areas, pred_areas)`` in mm / mm², C order.

    Areas are None in voxel mode.
    """
    spacing = tuple(float(s) for s in spacing)
    if surface == "voxel":
        br, bp = voxel_border(mask_ref), voxel_border(mask_pred)
        return _directed(br, bp, spacing), _directed(bp, br, spacing), None, None
    cr, cp = surfel_codes(mask_ref), surfel_codes(mask_pred)
    br, bp = (cr != 0) & (cr != 255), (cp != 0) & (cp != 255)
    table = surfel_area_table(spacing)
    return _directed(br, bp, spacing), _directed(bp, br, spacing), table[cr[br]], table[cp[bp]]


def _weighted_percentile(d, w, q):
    order = np.lexsort((w, d))
    cum = np.cumsum(w[order]) / np.sum(w)
    return float(d[order][min(int(np.searchsorted(cum, q)), d.size - 1)])


def metrics(mask_ref, mask_pred, spacing, *, tolerance_mm=1.0, surface="voxel", hd95_mode="max"):
    """All five metrics by their METRICS.md definitions, empty-mask table included."""
    mask_ref, mask_pred = np.asarray(mask_ref, bool), np.asarray(mask_pred, bool)
    if not mask_ref.any() and not mask_pred.any():
        return {"hd": 0.0, "hd95": 0.0, "assd": 0.0, "masd": 0.0, "nsd": 1.0}
    if not mask_ref.any() or not mask_pred.any():
        return {"hd": math.inf, "hd95": math.inf, "assd": math.inf, "masd": math.inf, "nsd": 0.0}
    d_r, d_p, a_r, a_p = surface_distances(mask_ref, mask_pred, spacing, surface)
    if a_r is None:
        a_r, a_p = np.ones_like(d_r), np.ones_like(d_p)
    tau = tolerance_mm * (1 + 1e-6)
    if surface == "voxel":
        directed95 = [np.percentile(d_r, 95), np.percentile(d_p, 95)]
        pooled95 = np.percentile(np.concatenate([d_r, d_p]), 95)
    else:
        directed95 = [_weighted_percentile(d_r, a_r, 0.95), _weighted_percentile(d_p, a_p, 0.95)]
        pooled95 = _weighted_percentile(np.concatenate([d_r, d_p]), np.concatenate([a_r, a_p]), 0.95)
    return {
        "hd": float(max(d_r.max(), d_p.max())),
        "hd95": float(max(directed95) if hd95_mode == "max" else pooled95),
        "assd": float((np.sum(d_r * a_r) + np.sum(d_p * a_p)) / (a_r.sum() + a_p.sum())),
        "masd": float((np.sum(d_r * a_r) / a_r.sum() + np.sum(d_p * a_p) / a_p.sum()) / 2),
        "nsd": float((a_r[d_r <= tau].sum() + a_p[d_p <= tau].sum()) / (a_r.sum() + a_p.sum())),
    }


def box_of(ref: np.ndarray, pred: np.ndarray, label) -> tuple | None:
    """Half-open union bounding box of ``label`` in ``ref | pred``, or None when absent."""
    mask = (np.asarray(ref) == label) | (np.asarray(pred) == label)
    if not mask.any():
        return None
    box = []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append((int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _blob(rng, shape, fill):
    noise = ndimage.gaussian_filter(rng.random(shape), sigma=rng.uniform(0.7, 2.0))
    return noise > np.quantile(noise, 1.0 - fill)


def generated_pairs(seed: int, n: int):
    """``n`` labelled test pairs ``(name, ref, pred, label, spacing)`` covering the edge cases.

    Kinds, in turn: smooth blobs, a blob against a shifted copy, one-voxel lines and
    planes, single voxels, objects touching the array border, multi-label maps (int16),
    scattered noise. Spacings are anisotropic, drawn per pair.
    """
    rng = np.random.default_rng(seed)
    kinds = ("blobs", "shifted", "thin", "single", "border", "multilabel", "noise")
    for i in range(n):
        kind = kinds[i % len(kinds)]
        shape = tuple(int(s) for s in rng.integers(4, 22, 3))
        spacing = tuple(float(s) for s in rng.uniform(0.3, 3.0, 3))
        label = 1
        if kind == "blobs":
            ref, pred = _blob(rng, shape, rng.uniform(0.05, 0.5)), _blob(rng, shape, rng.uniform(0.05, 0.5))
        elif kind == "shifted":
            ref = _blob(rng, shape, rng.uniform(0.1, 0.4))
            pred = np.roll(ref, tuple(int(s) for s in rng.integers(-2, 3, 3)), axis=(0, 1, 2))
        elif kind == "thin":
            ref, pred = np.zeros(shape, bool), np.zeros(shape, bool)
            a, b = rng.integers(0, min(shape), 2)
            ref[a, :, min(b, shape[2] - 1)] = True           # a line along Y
            pred[:, min(b, shape[1] - 1), :] = True          # a plane normal to Y
            pred &= rng.random(shape) < 0.9
        elif kind == "single":
            ref, pred = np.zeros(shape, bool), np.zeros(shape, bool)
            ref[tuple(rng.integers(0, shape))] = True
            pred[tuple(rng.integers(0, shape))] = True
        elif kind == "border":
            ref = _blob(rng, shape, 0.6)
            ref[0, :, :] = True
            pred = _blob(rng, shape, 0.6)
            pred[:, :, -1] = True
        elif kind == "multilabel":
            ref = np.zeros(shape, np.int16)
            pred = np.zeros(shape, np.int16)
            for value in (1, 2, 3, 300):
                ref[_blob(rng, shape, 0.2)] = value
                pred[_blob(rng, shape, 0.2)] = value
            label = int(rng.choice([2, 300]))
        else:
            ref, pred = rng.random(shape) < 0.3, rng.random(shape) < 0.3
        if kind in ("blobs", "shifted", "multilabel"):
            pads = [tuple(int(w) for w in rng.integers(0, 4, 2)) for _ in range(3)]
            ref, pred = np.pad(ref, pads), np.pad(pred, pads)
        if ref.dtype == bool:
            ref, pred = ref.astype(np.uint8), pred.astype(np.uint8)
        yield f"{i}-{kind}", ref, pred, label, spacing
