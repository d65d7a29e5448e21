"""Path strings that know how to read themselves: a DICOM series, or a SEG / RTSTRUCT on one.

Case discovery returns these in place of plain paths. They *are* strings (the series
folder, or the SEG / RTSTRUCT file: what tables show and error messages name) and carry
what reading needs: the series' SeriesInstanceUID, and for an object, its series and the
label rules. :func:`medbench_fast.data.reader.load_volume` dispatches on them.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from medbench_fast.data.dicom.labels import LabelRules
from medbench_fast.data.reader import Volume, VolumeError


class SeriesPath(str):
    """The folder holding an image series, with the series' SeriesInstanceUID."""

    uid: str = ""

    def __new__(cls, folder, uid: str = ""):
        self = super().__new__(cls, str(folder))
        self.uid = uid
        return self


class ObjectPath(str):
    """A DICOM-SEG or RTSTRUCT file, with the series it is placed on and the label rules."""

    kind: str = ""
    series: SeriesPath | None = None
    rules: LabelRules = LabelRules()

    def __new__(cls, path, kind: str = "", series: SeriesPath | None = None, rules: LabelRules = LabelRules()):
        self = super().__new__(cls, str(path))
        self.kind, self.series, self.rules = kind, series, rules
        return self


_GRID_TAGS = ["SeriesInstanceUID", "FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient",
              "PixelSpacing", "Rows", "Columns", "SliceThickness", "SOPClassUID"]


@functools.lru_cache(maxsize=8)
def _scan_series(folder: str, uid: str, fingerprint: tuple) -> tuple[list[str], list]:
    """Files of series ``uid`` in ``folder`` and their geometry headers (cached per folder state)."""
    import pydicom

    from medbench_fast.data.dicom.index import is_dicom_file

    files, headers = [], []
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and not path.name.startswith(".") and is_dicom_file(path):
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_GRID_TAGS)
            if str(getattr(header, "SeriesInstanceUID", "")) == uid and "ImagePositionPatient" in header:
                files.append(str(path))
                headers.append(header)
    if not files:
        raise VolumeError(f"{folder}: no files of series {uid}")
    return files, headers


def _sorted_series(series: SeriesPath):
    """The series' grid, and its files in grid order."""
    from medbench_fast.data.cache import source_fingerprint
    from medbench_fast.data.dicom.grid import grid_from_headers

    fingerprint = tuple(source_fingerprint(Path(series)).values())
    files, headers = _scan_series(str(series), series.uid, fingerprint)
    grid, order = grid_from_headers(headers, str(series))
    return grid, [files[i] for i in order]


def series_grid(series: SeriesPath):
    """The :class:`~.grid.SeriesGrid` of ``series`` and its full headers (no pixel data) in grid order."""
    import pydicom

    grid, files = _sorted_series(series)
    return grid, [pydicom.dcmread(f, stop_before_pixels=True) for f in files]


def _read_series(series: SeriesPath) -> Volume:
    import SimpleITK as sitk

    from medbench_fast.data.reader import sitk_to_volume

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(_sorted_series(series)[1])
    try:
        return sitk_to_volume(reader.Execute(), series)
    except RuntimeError as exc:
        raise VolumeError(f"{series}: series {series.uid} cannot be read: {str(exc).strip().splitlines()[-1]}") from None


def _read_object(obj: ObjectPath) -> Volume:
    from medbench_fast.data.dicom.rtstruct import rasterise_rtstruct, read_rtstruct
    from medbench_fast.data.dicom.seg import rasterise_seg, read_seg

    if obj.series is None:
        raise VolumeError(f"{obj}: a {obj.kind} is read on its referenced image series; none was paired with it")
    grid, files = _sorted_series(obj.series)
    dataset = read_seg(str(obj)) if obj.kind == "SEG" else read_rtstruct(str(obj))
    check_references(dataset, obj, _scan_series_header(obj.series, files[0]))
    rasterise = rasterise_seg if obj.kind == "SEG" else rasterise_rtstruct
    array, unmatched = rasterise(dataset, grid, obj.rules, str(obj))
    return Volume(array, grid.spacing, grid.origin, grid.direction, str(obj),
                  {"dicom": obj.kind, "series": str(obj.series), "ignored": unmatched})


def _scan_series_header(series: SeriesPath, file: str):
    import pydicom

    return pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["FrameOfReferenceUID"])


def check_references(dataset, obj: ObjectPath, slice_header) -> None:
    """The object must reference the series' SeriesInstanceUID and share its FrameOfReferenceUID."""
    from medbench_fast.data.dicom.index import referenced_series

    series_uid, frame = referenced_series(dataset)
    if series_uid != obj.series.uid:
        raise VolumeError(f"{obj}: references series {series_uid}, not the paired series {obj.series.uid} ({obj.series})")
    image_frame = str(getattr(slice_header, "FrameOfReferenceUID", ""))
    if frame is None or str(frame) != image_frame:
        raise VolumeError(f"{obj}: frame of reference {frame} differs from its series' {image_frame or 'none'} "
                          f"({obj.series})")


def load_dicom_path(path: SeriesPath | ObjectPath, *, cache=None) -> Volume:
    """Read a series or an object placed on its series, through ``cache`` when given.

    The cache entry of an object covers the rasterised label map; it is keyed by the
    object, its series and the label rules, and is valid while none of their files changed.
    """
    if isinstance(path, ObjectPath):
        sources = [Path(path)] + ([Path(path.series)] if path.series is not None else [])
        key = f"{path.kind}|{path}|{path.series}|{getattr(path.series, 'uid', '')}|{path.rules.key}"
        decode = lambda: _read_object(path)  # noqa: E731
    else:
        sources, key, decode = [Path(path)], f"series|{path}|{path.uid}", lambda: _read_series(path)  # noqa: E731
    if cache is None:
        return decode()
    return cache.load_derived(hashlib.sha256(key.encode()).hexdigest(), sources, decode, label=str(path))
