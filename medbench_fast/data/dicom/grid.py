"""The voxel grid of a DICOM image series, computed from its slice headers.

Slices are sorted by their position along the slice normal (``row x column`` cosines of
ImageOrientationPatient), never by file name or InstanceNumber. The grid is the one
SimpleITK builds for the same series: array axes ``(Z, Y, X)``, X along the row cosine
(increasing column index), Y along the column cosine, Z along the normal; origin is the
first slice's ImagePositionPatient. Any orientation (axial, coronal, sagittal, oblique)
is covered; a gantry-tilted series (slice offsets not along the normal), unequal slice
gaps or slices of different orientation or size are errors naming the folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medbench_fast.data.reader import VolumeError

#: Relative tolerance of slice gaps and of the slice offset's angle to the normal (radians).
GEOMETRY_TOL = 1e-3


@dataclass(frozen=True)
class SeriesGrid:
    """Geometry of a sorted series; ``positions`` are the slices' ImagePositionPatient (mm, LPS)."""

    shape: tuple[int, int, int]  # (Z, Y, X)
    spacing: tuple[float, float, float]  # (sz, sy, sx) mm
    origin_xyz: np.ndarray  # (3,) mm, patient coordinates
    axes_xyz: np.ndarray  # (3, 3): rows are the unit vectors of array axes X, Y, Z in patient space

    @property
    def origin(self) -> tuple[float, float, float]:
        """Origin in the :class:`~medbench_fast.data.reader.Volume` convention ``(oz, oy, ox)``."""
        return tuple(float(v) for v in self.origin_xyz[::-1])  # type: ignore[return-value]

    @property
    def direction(self) -> tuple[float, ...]:
        """Direction cosines re-indexed to ``(Z, Y, X)`` (the Volume convention)."""
        d_xyz = self.axes_xyz.T  # columns are the axis vectors (ITK convention)
        return tuple(float(v) for v in d_xyz[::-1, ::-1].ravel())

    def to_index(self, points_xyz: np.ndarray) -> np.ndarray:
        """Continuous voxel indices ``(i, j, k)`` = (column, row, slice) of patient points ``(N, 3)`` mm.

        Integer indices are voxel centres.
        """
        rel = np.asarray(points_xyz, dtype=np.float64) - self.origin_xyz
        steps = np.array([self.spacing[2], self.spacing[1], self.spacing[0]])
        return (rel @ self.axes_xyz.T) / steps


def grid_from_headers(headers: list, where: str) -> tuple[SeriesGrid, list[int]]:
    """The grid of a series from its slice headers, and the header order along the normal.

    ``headers`` are pydicom datasets with ImagePositionPatient, ImageOrientationPatient,
    PixelSpacing, Rows and Columns. ``where`` names the series in error messages.
    """
    if not headers:
        raise VolumeError(f"{where}: series holds no image slices")
    try:
        iop = np.array([[float(v) for v in h.ImageOrientationPatient] for h in headers])
        ipp = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers])
        pix = np.array([[float(v) for v in h.PixelSpacing] for h in headers])
        sizes = {(int(h.Rows), int(h.Columns)) for h in headers}
    except (AttributeError, TypeError, ValueError) as exc:
        raise VolumeError(f"{where}: a slice lacks geometry (ImagePositionPatient, ImageOrientationPatient, "
                          f"PixelSpacing, Rows, Columns): {exc}") from None
    if len(sizes) != 1:
        raise VolumeError(f"{where}: slices have different sizes {sorted(sizes)}")
    if np.abs(iop - iop[0]).max() > GEOMETRY_TOL or np.abs(pix - pix[0]).max() > GEOMETRY_TOL * pix[0].max():
        raise VolumeError(f"{where}: slices differ in orientation or pixel spacing")
    row, col = iop[0, :3], iop[0, 3:]
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    order = np.argsort(ipp @ normal, kind="stable")
    ipp = ipp[order]
    rows, cols = sizes.pop()
    if len(headers) == 1:
        sz = float(getattr(headers[0], "SliceThickness", None) or 1.0)
    else:
        gaps = np.diff(ipp, axis=0)
        lengths = np.linalg.norm(gaps, axis=1)
        if lengths.min() <= 0:
            raise VolumeError(f"{where}: two slices share one position (duplicate slices?)")
        along = (gaps @ normal) / lengths
        if np.any(along < 1 - GEOMETRY_TOL):
            angle = np.degrees(np.arccos(np.clip(along.min(), -1, 1)))
            raise VolumeError(f"{where}: gantry-tilted series (slices offset {angle:.2f} degrees from the "
                              f"slice normal); medbench places contours and SEG frames only on untilted grids")
        sz = float(np.median(lengths))
        if np.abs(lengths - sz).max() > GEOMETRY_TOL * sz + 1e-4:
            raise VolumeError(f"{where}: unequal slice gaps ({lengths.min():.4g} to {lengths.max():.4g} mm; "
                              f"missing slices?)")
    grid = SeriesGrid((len(headers), rows, cols), (sz, float(pix[0, 0]), float(pix[0, 1])),
                      ipp[0].copy(), np.stack([row, col, normal]))
    return grid, [int(i) for i in order]
