"""Exact separable anisotropic squared Euclidean distance transform, sampled at query voxels.

The transform runs one axis at a time (Saito-Toriwaki decomposition): a two-scan binary
pass along axis 0, then along axes 1 and 2 the lower envelope of parabolas of
Felzenszwalb & Huttenlocher (2012, doi:10.4086/toc.2012.v008a019), written out as

    D(z, y, x) = min over features (z', y', x') of
                 (s0 (z - z'))^2 + (s1 (y - y'))^2 + (s2 (x - x'))^2

with ``s`` the spacing in mm. The axis-0 pass keeps integer steps (2 bytes per voxel);
axes 1 and 2 run plane by plane in a per-thread float64 buffer, only on planes that hold
queries, and the last (contiguous) axis is evaluated only at the query voxels: by the
envelope on rows with many queries, by an exact outward search on the others. The output
is a flat float64 array of squared distances in C order of the queries; no index arrays
are kept.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from medbench_fast.kernels._jit import njit_parallel, njit_serial

#: Work items per parallel loop (interleaved planes, so uneven crops balance across threads).
_TASKS = 64
#: Columns of a plane transformed together along axis 1 (whole cache lines in and out).
_BLOCK = 16
#: Rows with at most this many queries search outwards from each query instead of
#: building the row's lower envelope.
_FEW = 8
#: "No feature in this column" of the axis-0 steps (the dtype's largest value), per steps dtype.
_NONE16, _NONE32 = np.uint16(np.iinfo(np.uint16).max), np.uint32(np.iinfo(np.uint32).max)


@njit_serial
def _axis0_rows(features, steps, none, t, step):
    """``steps[z, y, x]`` = voxels along axis 0 to the nearest feature of column ``(y, x)``,
    or ``none`` when the column holds no feature (branch-free scans in both directions), on
    rows ``y = t, t + step, ...``."""
    nz, ny, nx = features.shape
    far = np.int64(none) + 1
    near = np.empty(nx, np.int64)
    for y in range(t, ny, step):
        near[:] = -far
        for z in range(nz):
            for x in range(nx):
                near[x] = z if features[z, y, x] != 0 else near[x]
                steps[z, y, x] = min(z - near[x], none)
        near[:] = nz + far
        for z in range(nz - 1, -1, -1):
            for x in range(nx):
                near[x] = z if features[z, y, x] != 0 else near[x]
                steps[z, y, x] = min(near[x] - z, steps[z, y, x])


@njit_parallel
def _axis0_steps(features, steps, none):
    """:func:`_axis0_rows` of every row, in parallel."""
    for t in prange(_TASKS):
        _axis0_rows(features, steps, none, t, _TASKS)


@njit_serial
def _envelope(g, w2, v, b):
    """Lower envelope of the parabolas ``g[q] + w2 (x - q)^2`` over finite ``g[q]``.

    Fills sites ``v[:k]`` and boundaries ``b[:k + 1]``; returns ``k`` (0 when all infinite).
    """
    k = 0
    for q in range(g.shape[0]):
        gq = g[q]
        if gq == np.inf:
            continue
        hq = gq + w2 * q * q
        s = -np.inf
        while k > 0:
            p = v[k - 1]
            s = (hq - (g[p] + w2 * p * p)) / (2.0 * w2 * (q - p))
            if s > b[k - 1]:
                break
            k -= 1
        if k == 0:
            s = -np.inf
        v[k] = q
        b[k] = s
        k += 1
    b[k] = np.inf
    return k


@njit_serial
def _nearest(g, w2, x):
    """min over ``q`` of ``g[q] + w2 (x - q)^2``, searching outwards from ``x``.

    Exact: ``g >= 0``, so the search stops once ``w2 d^2`` reaches the best value.
    """
    n = g.shape[0]
    best = g[x]
    d = 1
    while x - d >= 0 or x + d < n:
        r = w2 * d * d
        if r >= best:
            break
        if x - d >= 0 and g[x - d] + r < best:
            best = g[x - d] + r
        if x + d < n and g[x + d] + r < best:
            best = g[x + d] + r
        d += 1
    return best


@njit_serial
def _planes(steps, none, queries, offsets, w0, w1, w2, out, t, step):
    """Axes 1 and 2 of the transform on planes ``z = t, t + step, ...``; writes the queries
    of row ``l = z * Y + y`` to ``out[offsets[l]:offsets[l + 1]]``."""
    nz, ny, nx = steps.shape
    n = max(ny, nx)
    plane = np.empty((ny, nx), np.float64)
    lines = np.empty((_BLOCK, ny), np.float64)
    result = np.empty((_BLOCK, ny), np.float64)
    finite = np.empty(_BLOCK, np.bool_)
    v = np.empty(n, np.int64)
    b = np.empty(n + 1, np.float64)
    for z in range(t, nz, step):
        if offsets[z * ny] == offsets[(z + 1) * ny]:
            continue
        for x0 in range(0, nx, _BLOCK):
            w = min(_BLOCK, nx - x0)
            finite[:] = False
            for y in range(ny):
                for c in range(w):
                    s = steps[z, y, x0 + c]
                    if s == none:
                        lines[c, y] = np.inf
                    else:
                        lines[c, y] = w0 * s * s
                        finite[c] = True
            for c in range(w):
                g = lines[c]
                if not finite[c]:
                    result[c, :] = np.inf
                    continue
                _envelope(g, w1, v, b)
                j = 0
                for y in range(ny):
                    while b[j + 1] < y:
                        j += 1
                    d = y - v[j]
                    result[c, y] = g[v[j]] + w1 * d * d
            for y in range(ny):
                for c in range(w):
                    plane[y, x0 + c] = result[c, y]
        for y in range(ny):
            row = z * ny + y
            pos = offsets[row]
            if offsets[row + 1] == pos:
                continue
            g = plane[y]
            if offsets[row + 1] - pos <= _FEW:
                for x in range(nx):
                    if queries[z, y, x] != 0:
                        out[pos] = _nearest(g, w2, x)
                        pos += 1
                continue
            k = _envelope(g, w2, v, b)
            j = 0
            for x in range(nx):
                if queries[z, y, x] != 0:
                    if k == 0:
                        out[pos] = np.inf
                    else:
                        while b[j + 1] < x:
                            j += 1
                        d = x - v[j]
                        out[pos] = g[v[j]] + w2 * d * d
                    pos += 1


@njit_parallel
def _planes_at(steps, none, queries, offsets, w0, w1, w2, out):
    """:func:`_planes` of every plane, in parallel."""
    for t in prange(_TASKS):
        _planes(steps, none, queries, offsets, w0, w1, w2, out, t, _TASKS)


def sq_distances_at(features, queries, offsets, spacing):
    """Squared Euclidean distance in mm² from each query voxel to the nearest feature voxel.

    Parameters
    ----------
    features, queries : 3D uint8 arrays of equal shape ``(Z, Y, X)``; non-zero marks a
        feature / query voxel. Any memory order; read only.
    offsets : int64 ``(Z * Y + 1,)``, running count of queries before each row
        ``z * Y + y`` (see :func:`medbench_fast.kernels.surface.row_offsets`).
    spacing : three floats, mm per axis.

    Returns
    -------
    float64 ``(offsets[-1],)`` squared distances of the queries in C order; +inf everywhere
    when there is no feature.
    """
    s0, s1, s2 = (float(s) for s in spacing)
    none = steps_none(features.shape)
    steps = np.empty(features.shape, none.dtype)
    out = np.empty(int(offsets[-1]), np.float64)
    _axis0_steps(features, steps, none)
    _planes_at(steps, none, queries, offsets, s0 * s0, s1 * s1, s2 * s2, out)
    return out


def steps_none(shape) -> np.unsignedinteger:
    """The "no feature in this column" value of the axis-0 steps of a ``shape`` array, whose
    dtype is the steps' dtype: uint16 unless axis 0 is too long for it."""
    return _NONE16 if shape[0] < _NONE16 else _NONE32


@njit_serial
def directed_sq_distances(features, queries, offsets, steps, none, w0, w1, w2, parallel):
    """:func:`sq_distances_at` for jitted callers: ``steps`` is the caller's scratch (see
    :func:`steps_none`), ``w0, w1, w2`` the squared spacing; on one thread without a parallel
    launch unless ``parallel`` (the values are the same)."""
    out = np.empty(offsets[-1], np.float64)
    if parallel:
        _axis0_steps(features, steps, none)
        _planes_at(steps, none, queries, offsets, w0, w1, w2, out)
    else:
        _axis0_rows(features, steps, none, 0, 1)
        _planes(steps, none, queries, offsets, w0, w1, w2, out, 0, 1)
    return out
