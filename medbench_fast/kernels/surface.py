"""Surface extraction on a crop: voxel borders, surfel neighbour codes, row offsets, areas;
and the voxel-border distances of a pair of masks in one call (:func:`voxel_distances`).

Masks come zero-padded by one voxel on every side, so the background outside the crop
needs no special case and the loops are branch-free.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from medbench_fast.kernels._jit import njit_parallel, njit_serial
from medbench_fast.kernels.edt import directed_sq_distances

_TASKS = 64


@njit_serial
def _border_planes(m, out, t, step):
    """:func:`voxel_border` of planes ``z = t, t + step, ...`` into ``out``."""
    nz, ny, nx = out.shape
    for z in range(t, nz, step):
        for y in range(ny):
            for x in range(nx):
                inner = (m[z, y + 1, x + 1] & m[z + 2, y + 1, x + 1] & m[z + 1, y, x + 1]
                         & m[z + 1, y + 2, x + 1] & m[z + 1, y + 1, x] & m[z + 1, y + 1, x + 2])
                out[z, y, x] = m[z + 1, y + 1, x + 1] & (inner ^ 1)


@njit_parallel
def voxel_border(m):
    """Border of a mask: its voxels with a 6-neighbour outside it.

    Parameters
    ----------
    m : C-contiguous uint8 ``(Z + 2, Y + 2, X + 2)``, the 0/1 mask zero-padded by one voxel.

    Returns
    -------
    uint8 ``(Z, Y, X)``, 1 on border voxels, else 0.
    """
    out = np.empty((m.shape[0] - 2, m.shape[1] - 2, m.shape[2] - 2), np.uint8)
    for t in prange(_TASKS):
        _border_planes(m, out, t, _TASKS)
    return out


@njit_parallel
def surfel_codes(m):
    """Neighbour codes of the voxel corners of a mask (DeepMind surface-distance encoding).

    Corner ``(i, j, k)`` sits between voxels ``i-1, i`` (and likewise on the other axes);
    its code has bit ``7 - (4 da + 2 db + dc)`` set when voxel ``(i-1+da, j-1+db, k-1+dc)``
    is in the mask. Codes 0 and 255 (no surface) are stored as 0.

    Parameters
    ----------
    m : C-contiguous uint8 ``(Z + 2, Y + 2, X + 2)``, the 0/1 mask zero-padded by one voxel.

    Returns
    -------
    uint8 ``(Z + 1, Y + 1, X + 1)``; non-zero exactly on surface corners.
    """
    nz, ny, nx = m.shape[0] - 1, m.shape[1] - 1, m.shape[2] - 1
    out = np.empty((nz, ny, nx), np.uint8)
    for t in prange(_TASKS):
        for i in range(t, nz, _TASKS):
            for j in range(ny):
                for k in range(nx):
                    code = ((m[i, j, k] << 7) | (m[i, j, k + 1] << 6) | (m[i, j + 1, k] << 5)
                            | (m[i, j + 1, k + 1] << 4) | (m[i + 1, j, k] << 3) | (m[i + 1, j, k + 1] << 2)
                            | (m[i + 1, j + 1, k] << 1) | m[i + 1, j + 1, k + 1])
                    out[i, j, k] = code if code != 255 else 0
    return out


@njit_serial
def _row_counts(b, counts, t, step):
    """Non-zero voxels of each row ``z * Y + y`` of planes ``z = t, t + step, ...`` into
    ``counts[z * Y + y + 1]``."""
    nz, ny, nx = b.shape
    for z in range(t, nz, step):
        for y in range(ny):
            c = 0
            for x in range(nx):
                if b[z, y, x] != 0:
                    c += 1
            counts[z * ny + y + 1] = c


@njit_serial
def _running_sum(counts):
    """``counts`` turned into its running sum, in place."""
    for r in range(1, counts.shape[0]):
        counts[r] += counts[r - 1]
    return counts


@njit_parallel
def row_offsets(b):
    """Running count of non-zero voxels of ``b`` before each row ``z * Y + y``.

    Returns int64 ``(Z * Y + 1,)``; the last entry is the total count.
    """
    counts = np.zeros(b.shape[0] * b.shape[1] + 1, np.int64)
    for t in prange(_TASKS):
        _row_counts(b, counts, t, _TASKS)
    return _running_sum(counts)


@njit_parallel
def gather_areas(codes, offsets, table):
    """``table[code]`` of every non-zero code, in C order (float64 ``(offsets[-1],)``, mm²)."""
    nz, ny, nx = codes.shape
    out = np.empty(offsets[-1], np.float64)
    for z in prange(nz):
        for y in range(ny):
            pos = offsets[z * ny + y]
            for x in range(nx):
                c = codes[z, y, x]
                if c != 0:
                    out[pos] = table[c]
                    pos += 1
    return out


@njit_serial
def _border(m, parallel):
    """:func:`voxel_border`, on one thread without a parallel launch unless ``parallel``."""
    if parallel:
        return voxel_border(m)
    out = np.empty((m.shape[0] - 2, m.shape[1] - 2, m.shape[2] - 2), np.uint8)
    _border_planes(m, out, 0, 1)
    return out


@njit_serial
def _offsets(b, parallel):
    """:func:`row_offsets`, on one thread without a parallel launch unless ``parallel``."""
    if parallel:
        return row_offsets(b)
    counts = np.zeros(b.shape[0] * b.shape[1] + 1, np.int64)
    _row_counts(b, counts, 0, 1)
    return _running_sum(counts)


@njit_serial
def voxel_distances(mr, mp, steps, none, w0, w1, w2, parallel):
    """Distances in mm between the voxel borders of two masks, both directions in one call
    (one dispatch instead of eight: :func:`voxel_border`, :func:`row_offsets` and
    :func:`medbench_fast.kernels.edt.directed_sq_distances` of each mask, then square roots).
    ``parallel`` False runs the same loops on the calling thread without the parallel
    kernels' launches (a few µs each: most of the time on a small crop); the values are equal.

    Parameters
    ----------
    mr, mp : C-contiguous uint8 ``(Z + 2, Y + 2, X + 2)``, the 0/1 masks zero-padded by one voxel.
    steps : ``(Z, Y, X)`` scratch of the axis-0 steps (uint16 or uint32, ``none`` its largest value).
    w0, w1, w2 : squared spacing in mm² per axis.
    parallel : run the parallel kernels (worth it with more than one numba thread).

    Returns
    -------
    ``(ref_to_pred, pred_to_ref)``: float64 distances from each border voxel of one mask to
    the border of the other, in C order; +inf throughout when the other border is empty.
    """
    br, bp = _border(mr, parallel), _border(mp, parallel)
    off_r, off_p = _offsets(br, parallel), _offsets(bp, parallel)
    nr, np_ = off_r[-1], off_p[-1]
    if nr == 0 or np_ == 0:
        return np.full(nr, np.inf), np.full(np_, np.inf)
    ref_to_pred = directed_sq_distances(bp, br, off_r, steps, none, w0, w1, w2, parallel)
    pred_to_ref = directed_sq_distances(br, bp, off_p, steps, none, w0, w1, w2, parallel)
    for d in (ref_to_pred, pred_to_ref):
        for i in range(d.shape[0]):
            d[i] = np.sqrt(d[i])
    return ref_to_pred, pred_to_ref
