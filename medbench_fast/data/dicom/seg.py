"""DICOM-SEG onto an image series' grid (binary and fractional; any number of segments).

The file is parsed and its frames decoded with highdicom. Each frame is placed on the
slice its ImagePositionPatient falls on (frames may be sparse, unordered, or cover part of
the volume); its orientation, pixel spacing, size and in-plane position must be the
series'. A fractional frame counts where its value is at least half the
MaximumFractionalValue. Labels come from :mod:`.labels`; the higher label wins overlaps.
"""

from __future__ import annotations

import numpy as np

from medbench_fast.data.dicom.grid import SeriesGrid
from medbench_fast.data.dicom.labels import LabelRules
from medbench_fast.data.reader import VolumeError

#: A frame's position may be off its slice by this fraction of the slice gap (or pixel, in-plane).
POSITION_TOL = 0.25


def _codes(segment) -> tuple[str, ...]:
    seq = getattr(segment, "SegmentedPropertyTypeCodeSequence", None) or []
    return tuple(f"{c.CodingSchemeDesignator}:{c.CodeValue}" for c in seq)


def segment_labels(seg, rules: LabelRules, name: str) -> tuple[dict[int, int], list[str]]:
    """``{segment number: label}`` and the names of unmatched segments (ignored by the rules)."""
    labels, unmatched = {}, []
    for segment in seg.SegmentSequence:
        number, text = int(segment.SegmentNumber), str(getattr(segment, "SegmentLabel", ""))
        label = rules.label_for(text, number, _codes(segment))
        if label is None:
            unmatched.append(f"{number} {text!r}")
        else:
            labels[number] = label
    if unmatched and rules.unmatched == "error":
        raise VolumeError(f"{name}: segment(s) matching no dicom_labels rule: {', '.join(unmatched)} "
                          f"(add a rule, or set dataset.dicom_unmatched: ignore)")
    return labels, unmatched


def _group(frame, shared, sequence: str):
    """First item of a functional group, per frame or else shared (DICOM lets either hold it)."""
    for groups in (frame, shared):
        if groups is not None and sequence in groups:
            return groups[sequence][0]
    return None


def _frame_geometry(seg, name: str):
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else None
    positions, numbers, orientations, spacings = [], [], set(), set()
    for i, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        position = _group(frame, shared, "PlanePositionSequence")
        segment = _group(frame, shared, "SegmentIdentificationSequence")
        orientation = _group(frame, shared, "PlaneOrientationSequence")
        measures = _group(frame, shared, "PixelMeasuresSequence")
        if position is None or segment is None or orientation is None or measures is None:
            raise VolumeError(f"{name}: frame {i + 1} lacks its plane position, orientation, pixel spacing "
                              f"or segment number")
        positions.append([float(v) for v in position.ImagePositionPatient])
        numbers.append(int(segment.ReferencedSegmentNumber))
        orientations.add(tuple(float(v) for v in orientation.ImageOrientationPatient))
        spacings.add(tuple(float(v) for v in measures.PixelSpacing))
    if len(orientations) != 1 or len(spacings) != 1:
        raise VolumeError(f"{name}: frames differ in orientation or pixel spacing")
    return np.array(positions, dtype=np.float64).reshape(-1, 3), np.array(numbers), orientations.pop(), spacings.pop()


def read_seg(path: str):
    """The parsed highdicom Segmentation of ``path`` (errors name the file)."""
    import highdicom as hd

    try:
        return hd.seg.segread(path)
    except (ValueError, AttributeError, KeyError, IndexError, TypeError, OSError) as exc:
        raise VolumeError(f"{path}: not a readable DICOM-SEG: {_seg_problem(path) or exc}") from None


def _seg_problem(path: str) -> str | None:
    """What makes the DICOM-SEG at ``path`` unreadable, where the header tells (None: it does not)."""
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        frames = int(getattr(header, "NumberOfFrames", 1) or 0)
    except Exception:  # noqa: BLE001 - the file's own error is reported instead
        return None
    if frames == 0 or not len(getattr(header, "PerFrameFunctionalGroupsSequence", None) or []):
        return "it has no frames (NumberOfFrames 0); a segmentation needs at least one frame per segment"
    return None


def rasterise_seg(seg, grid: SeriesGrid, rules: LabelRules, name: str) -> tuple[np.ndarray, list[str]]:
    """The label map ``(Z, Y, X)`` of ``seg`` on ``grid``, and the ignored segments."""
    labels, unmatched = segment_labels(seg, rules, name)
    out = np.zeros(grid.shape, dtype=np.uint8 if max(labels.values(), default=0) < 256 else np.uint16)
    n_frames = int(getattr(seg, "NumberOfFrames", 1))
    if n_frames == 0 or not labels:
        return out, unmatched
    positions, numbers, orientation, spacing = _frame_geometry(seg, name)
    if (int(seg.Rows), int(seg.Columns)) != grid.shape[1:]:
        raise VolumeError(f"{name}: frames are {seg.Rows}x{seg.Columns}; the series' slices are "
                          f"{grid.shape[1]}x{grid.shape[2]}")
    iop = np.array([float(v) for v in orientation])
    if np.abs(iop - grid.axes_xyz[:2].ravel()).max() > 1e-3 or \
            np.abs(np.array([float(v) for v in spacing]) - np.array(grid.spacing[1:])).max() > 1e-3 * max(grid.spacing):
        raise VolumeError(f"{name}: frame orientation or pixel spacing differs from the referenced series")
    index = grid.to_index(positions)
    slices = np.rint(index[:, 2]).astype(np.int64)
    off = np.abs(index - np.column_stack([np.zeros((len(index), 2)), slices])).max(axis=1)
    bad = np.flatnonzero((off > POSITION_TOL) | (slices < 0) | (slices >= grid.shape[0]))
    if bad.size:
        f = int(bad[0])
        raise VolumeError(f"{name}: frame {f + 1} (segment {numbers[f]}) at {positions[f].round(3).tolist()} mm "
                          f"lies on no slice of the referenced series")
    pixels = np.asarray(seg.pixel_array).reshape(n_frames, grid.shape[1], grid.shape[2])
    if str(seg.SegmentationType) == "FRACTIONAL":
        pixels = pixels >= 0.5 * float(seg.MaximumFractionalValue)
    pixels = pixels.astype(out.dtype, copy=False)
    for f in range(n_frames):
        label = labels.get(int(numbers[f]))
        if label is not None:
            np.maximum(out[slices[f]], pixels[f] * out.dtype.type(label), out=out[slices[f]])
    return out, unmatched
