"""Even-odd polygon fill of voxel centres, one slice per polygon group (RTSTRUCT contours).

A voxel centre ``(i, j)`` (column, row; continuous-index units) is inside when a ray from
it towards ``+i`` crosses the group's edges an odd number of times. Edge ``(i0, j0) ->
(i1, j1)`` is crossed when ``(j0 > j) != (j1 > j)`` and ``i < i0 + (j - j0) (i1 - i0) / (j1 - j0)``
(the PNPOLY rule). Contours of one slice are filled together, so holes and islands follow
the even-odd rule. Written voxels take ``max(current, label)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from medbench_fast.kernels._jit import njit_parallel


@njit_parallel
def fill_even_odd(edges, starts, slices, out, label):
    """Fill polygon groups into ``out`` in place.

    ``edges``: float64 ``(E, 4)`` rows ``(i0, j0, i1, j1)``, grouped by slice; group ``g`` is
    ``edges[starts[g]:starts[g + 1]]`` and lies on slice ``slices[g]`` (int64, distinct).
    ``out``: C-ordered integer label map ``(Z, Y, X)``; ``label``: its dtype's value.
    """
    ny, nx = out.shape[1], out.shape[2]
    for g in prange(slices.shape[0]):
        k = slices[g]
        e0, e1 = starts[g], starts[g + 1]
        jmin, jmax = np.inf, -np.inf
        for e in range(e0, e1):
            jmin = min(jmin, edges[e, 1], edges[e, 3])
            jmax = max(jmax, edges[e, 1], edges[e, 3])
        xs = np.empty(e1 - e0, dtype=np.float64)
        for j in range(max(0, int(math.floor(jmin))), min(ny - 1, int(math.ceil(jmax))) + 1):
            m = 0
            for e in range(e0, e1):
                i0, j0, i1, j1 = edges[e, 0], edges[e, 1], edges[e, 2], edges[e, 3]
                if (j0 > j) != (j1 > j):
                    xs[m] = i0 + (j - j0) * (i1 - i0) / (j1 - j0)
                    m += 1
            crossings = np.sort(xs[:m])
            for q in range(0, m - 1, 2):
                start = max(0, int(math.ceil(crossings[q])))
                stop = min(nx, int(math.ceil(crossings[q + 1])))
                for i in range(start, stop):
                    if out[k, j, i] < label:
                        out[k, j, i] = label
