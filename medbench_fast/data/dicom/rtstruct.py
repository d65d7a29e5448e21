"""RTSTRUCT closed planar contours rasterised onto an image series' grid.

The rule (also in the README and docs/metrics.md): contour points (mm, patient space) are
mapped to continuous voxel indices of the referenced series; a contour must lie in one
slice plane (all points within :data:`SLICE_TOL` of a slice gap of the nearest slice,
else an error naming the ROI). On its slice, a voxel belongs to the ROI when its centre is
inside by the even-odd rule over all of that ROI's contours on the slice (so holes and
islands need no flags): :func:`medbench_fast.kernels.polyfill.fill_even_odd`. Labels come
from :mod:`.labels`; the higher label wins where ROIs overlap.
"""

from __future__ import annotations

import numpy as np

from medbench_fast.data.dicom.grid import SeriesGrid
from medbench_fast.data.dicom.labels import LabelRules
from medbench_fast.data.reader import VolumeError

#: Largest distance, in slice gaps, from a contour's plane to the nearest slice centre.
SLICE_TOL = 0.25


def read_rtstruct(path: str):
    """The RTSTRUCT dataset of ``path`` (errors name the file)."""
    import pydicom

    try:
        return pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise VolumeError(f"{path}: not a readable RTSTRUCT: {exc}") from None


def roi_contours(ds, name: str) -> list[tuple[int, str, list]]:
    """``(ROINumber, ROIName, contour items)`` of every ROI in the structure set."""
    contours = {int(item.ReferencedROINumber): list(getattr(item, "ContourSequence", None) or [])
                for item in getattr(ds, "ROIContourSequence", None) or []}
    rois = [(int(r.ROINumber), str(getattr(r, "ROIName", "")), contours.get(int(r.ROINumber), []))
            for r in getattr(ds, "StructureSetROISequence", None) or []]
    if not rois:
        raise VolumeError(f"{name}: structure set holds no ROI")
    return rois


def _contour_data(item) -> np.ndarray:
    """ContourData as float64, parsed from the raw bytes (pydicom's per-value DS objects are slow)."""
    if "ContourData" not in item:
        return np.zeros(0)
    raw = item.get_item(0x30060050).value
    if isinstance(raw, bytes):
        text = raw.strip(b" \0")
        return np.array(text.split(b"\\"), dtype=np.float64) if text else np.zeros(0)
    return np.array([float(v) for v in raw], dtype=np.float64)


def _edges(points_ijk: np.ndarray) -> np.ndarray:
    """Closed polygon edges ``(i0, j0, i1, j1)`` of one contour."""
    ij = points_ijk[:, :2]
    return np.hstack([ij, np.roll(ij, -1, axis=0)])


def contour_edges(contours: list, grid: SeriesGrid, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges grouped by slice, for :func:`fill_even_odd`: ``(edges, starts, slices)``."""
    per_slice: dict[int, list[np.ndarray]] = {}
    for n, item in enumerate(contours, start=1):
        kind = str(getattr(item, "ContourGeometricType", "CLOSED_PLANAR"))
        if kind != "CLOSED_PLANAR":
            raise VolumeError(f"{where}: contour {n} is {kind}; only CLOSED_PLANAR contours enclose voxels")
        data = _contour_data(item)
        if data.size % 3 or data.size < 9:
            raise VolumeError(f"{where}: contour {n} has {data.size // 3} point(s); a closed contour needs at least 3")
        ijk = grid.to_index(data.reshape(-1, 3))
        k = int(np.rint(ijk[:, 2].mean()))
        off = np.abs(ijk[:, 2] - k).max()
        if off > SLICE_TOL or not 0 <= k < grid.shape[0]:
            z_mm = float(ijk[:, 2].mean())
            raise VolumeError(f"{where}: contour {n} lies {'off the series' if not 0 <= k < grid.shape[0] else 'between slices'} "
                              f"(slice index {z_mm:.3f}, {off:.3f} slice gaps from slice {k}; tolerance {SLICE_TOL})")
        per_slice.setdefault(k, []).append(_edges(ijk))
    slices = np.array(sorted(per_slice), dtype=np.int64)
    groups = [np.vstack(per_slice[k]) for k in slices]
    starts = np.zeros(len(groups) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(g) for g in groups])
    edges = np.vstack(groups) if groups else np.zeros((0, 4))
    return np.ascontiguousarray(edges, dtype=np.float64), starts, slices


def rasterise_rtstruct(ds, grid: SeriesGrid, rules: LabelRules, name: str) -> tuple[np.ndarray, list[str]]:
    """The label map ``(Z, Y, X)`` of the structure set's ROIs on ``grid``, and the ignored ROIs."""
    from medbench_fast.kernels._jit import PARALLEL_LOCK, threads_for
    from medbench_fast.kernels.polyfill import fill_even_odd

    planned, unmatched = [], []
    for number, roi_name, contours in roi_contours(ds, name):
        label = rules.label_for(roi_name, number)
        if label is None:
            unmatched.append(f"{number} {roi_name!r}")
            continue
        where = f"{name}: ROI {roi_name!r} (number {number})"
        if not contours:
            raise VolumeError(f"{where}: is empty (no contours)")
        planned.append((label, contour_edges(contours, grid, where)))
    if unmatched and rules.unmatched == "error":
        raise VolumeError(f"{name}: ROI(s) matching no dicom_labels rule: {', '.join(unmatched)} "
                          f"(add a rule, or set dataset.dicom_unmatched: ignore)")
    top = max((label for label, _ in planned), default=0)
    out = np.zeros(grid.shape, dtype=np.uint8 if top < 256 else np.uint16)
    with PARALLEL_LOCK, threads_for(sum(len(e[0]) for _, e in planned) * grid.shape[2]):
        for label, (edges, starts, slices) in planned:
            fill_even_odd(edges, starts, slices, out, out.dtype.type(label))
    return out, unmatched
