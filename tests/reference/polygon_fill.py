"""Slow, obvious even-odd polygon fill: every voxel centre tested against every edge (PNPOLY)."""

from __future__ import annotations

import numpy as np


def fill_slice(polygons: list[np.ndarray], shape_yx: tuple[int, int]) -> np.ndarray:
    """Boolean ``(Y, X)`` mask of voxel centres inside ``polygons`` (each ``(N, 2)`` of (i, j)) by the
    even-odd rule: centre ``(i, j)`` toggles for edge ``a -> b`` when ``(a_j > j) != (b_j > j)`` and
    ``i < a_i + (j - a_j) (b_i - a_i) / (b_j - a_j)``."""
    jj, ii = np.meshgrid(np.arange(shape_yx[0], dtype=np.float64), np.arange(shape_yx[1], dtype=np.float64),
                         indexing="ij")
    inside = np.zeros(shape_yx, dtype=bool)
    for poly in polygons:
        for a, b in zip(poly, np.roll(poly, -1, axis=0)):
            i0, j0, i1, j1 = a[0], a[1], b[0], b[1]
            crosses = (j0 > jj) != (j1 > jj)
            with np.errstate(divide="ignore", invalid="ignore"):
                x = i0 + (jj - j0) * (i1 - i0) / (j1 - j0)
            inside ^= crosses & (ii < x)
    return inside
