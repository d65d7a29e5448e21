"""Sorting a folder of DICOM files into image series and SEG / RTSTRUCT objects by UIDs.

Only headers are read (pydicom, ``stop_before_pixels``). File names never matter: a folder
exported from a PACS, with files of several series mixed and in any order, is sorted into
series by SeriesInstanceUID; a SEG or RTSTRUCT is tied to the series it references by
ReferencedSeriesInstanceUID and checked against its FrameOfReferenceUID.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from medbench_fast.data.reader import IMAGE_EXTENSIONS

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
#: Object kinds by SOP Class UID.
OBJECT_KINDS = {SEG_SOP_CLASS: "SEG", RTSTRUCT_SOP_CLASS: "RTSTRUCT"}
_HEADER_TAGS = ("SOPClassUID", "Modality", "SeriesInstanceUID", "FrameOfReferenceUID", "SeriesNumber",
                "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
                "SliceThickness", "PatientID", "ReferencedSeriesSequence", "ReferencedFrameOfReferenceSequence")


@dataclass
class Series:
    """One image series: its files (unsorted) and the folders they lie in."""

    uid: str
    frame_of_reference: str | None
    files: list[Path] = field(default_factory=list)
    number: str = ""

    @property
    def folder(self) -> Path:
        return self.files[0].parent


@dataclass(frozen=True)
class DicomObject:
    """A SEG or RTSTRUCT file and what it references."""

    path: Path
    kind: str  # "SEG" or "RTSTRUCT"
    series_uid: str | None  # ReferencedSeriesInstanceUID (None: the file names none)
    frame_of_reference: str | None


@dataclass
class DicomIndex:
    """Image series by SeriesInstanceUID and the SEG / RTSTRUCT objects found."""

    series: dict[str, Series] = field(default_factory=dict)
    objects: list[DicomObject] = field(default_factory=list)


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` starts with the DICOM preamble and ``DICM`` marker."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _candidates(folder: Path):
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and not name.lower().endswith(IMAGE_EXTENSIONS):
                yield Path(root) / name


def read_header(path: Path):
    """The header of a DICOM file (no pixel data), or None when it is not DICOM."""
    import pydicom

    if not is_dicom_file(path):
        return None
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError):
        return None


def referenced_series(header) -> tuple[str | None, str | None]:
    """``(ReferencedSeriesInstanceUID, FrameOfReferenceUID)`` of a SEG or RTSTRUCT header."""
    if header.SOPClassUID == SEG_SOP_CLASS:
        refs = getattr(header, "ReferencedSeriesSequence", None) or []
        return (str(refs[0].SeriesInstanceUID) if refs else None), getattr(header, "FrameOfReferenceUID", None)
    frames = getattr(header, "ReferencedFrameOfReferenceSequence", None) or []
    for frame in frames:
        for study in getattr(frame, "RTReferencedStudySequence", None) or []:
            for series in getattr(study, "RTReferencedSeriesSequence", None) or []:
                return str(series.SeriesInstanceUID), str(frame.FrameOfReferenceUID)
    return None, (str(frames[0].FrameOfReferenceUID) if frames else None)


def scan(*folders: str | os.PathLike) -> DicomIndex:
    """Sort every DICOM file under ``folders`` (recursively) into series and objects."""
    index = DicomIndex()
    seen: set[Path] = set()
    for folder in folders:
        for path in _candidates(Path(folder)):
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            header = read_header(path)
            if header is None or "SOPClassUID" not in header:
                continue
            kind = OBJECT_KINDS.get(str(header.SOPClassUID))
            if kind is not None:
                uid, frame = referenced_series(header)
                index.objects.append(DicomObject(path, kind, uid, None if frame is None else str(frame)))
            elif "ImagePositionPatient" in header and "SeriesInstanceUID" in header:
                uid = str(header.SeriesInstanceUID)
                series = index.series.setdefault(uid, Series(uid, getattr(header, "FrameOfReferenceUID", None),
                                                             number=str(getattr(header, "SeriesNumber", "") or "")))
                series.files.append(path)
    return index


def has_dicom_objects(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds (at any depth) a DICOM-SEG or RTSTRUCT file. Files named as
    images (``.nii.gz``, ``.mha``, ...) are not opened, and pydicom is imported only for a
    file with the DICOM preamble."""
    for path in _candidates(Path(folder)):
        if is_dicom_file(path):
            import pydicom

            try:
                header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
            except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError):
                continue
            if str(getattr(header, "SOPClassUID", "")) in OBJECT_KINDS:
                return True
    return False
