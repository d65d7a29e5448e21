"""Matching DICOM image series and SEG / RTSTRUCT objects by UIDs (the DICOM part of
:mod:`medbench_fast.data.pairing`, which turns these matches into cases).

Pairing is by UIDs, never by file names: every image series found (recursively) is a
case; its reference is the SEG or RTSTRUCT whose ReferencedSeriesInstanceUID is the
series' SeriesInstanceUID (the frame of reference is checked when the object is read).
A case's id is its series folder's name when the folder holds that one series, else
``<folder>_<SeriesNumber>`` (the number made a harmless file name: other characters than
letters, digits and ``._+-=@,`` become ``_``, since case ids name written files). Objects
referencing no series of the dataset and series spread over several folders are problems
only DICOM has; they are told here, naming the file.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medbench_fast.data.dicom.index import DicomIndex, DicomObject, Series, scan
from medbench_fast.data.dicom.labels import LabelRules
from medbench_fast.data.dicom.paths import ObjectPath, SeriesPath
from medbench_fast.files import safe_name


@dataclass(frozen=True)
class SeriesMatch:
    """An image series and the SEG / RTSTRUCT objects that reference it."""

    case_id: str
    series: SeriesPath
    refs: tuple[ObjectPath, ...]
    problem: str | None = None  # a problem of the series itself (spread over folders)


@dataclass
class ObjectMatches:
    """SEG / RTSTRUCT objects by case id, on each side of an evaluation, and the orphans."""

    refs: dict[str, list[ObjectPath]] = field(default_factory=dict)
    preds: dict[str, list[ObjectPath]] = field(default_factory=dict)
    orphans: list[tuple[str, str]] = field(default_factory=list)  # (file name, problem)
    case_ids: set[str] = field(default_factory=set)  # of every series found


def _case_ids(index: DicomIndex) -> dict[str, str]:
    per_folder = Counter(s.folder for s in index.series.values())
    ids = {}
    for uid, s in sorted(index.series.items(), key=lambda kv: (str(kv[1].folder), kv[1].number, kv[0])):
        ids[uid] = s.folder.name if per_folder[s.folder] == 1 else f"{s.folder.name}_{safe_name(s.number or uid[-8:])}"
    counts = Counter(ids.values())
    return {uid: cid if counts[cid] == 1 else f"{cid}_{uid[-8:]}" for uid, cid in ids.items()}


def _series_problem(s: Series) -> str | None:
    folders = sorted({str(f.parent) for f in s.files})
    if len(folders) > 1:
        return f"{folders[0]}: series {s.uid} is spread over {len(folders)} folders ({', '.join(folders)}); " \
               f"put a series' files in one folder"
    return None


def _object_path(obj: DicomObject, index: DicomIndex, rules: LabelRules) -> ObjectPath:
    s = index.series.get(obj.series_uid or "")
    return ObjectPath(obj.path, obj.kind, SeriesPath(s.folder, s.uid) if s else None, rules)


def _orphan(obj: DicomObject) -> tuple[str, str]:
    if obj.series_uid is None:
        return obj.path.name, f"{obj.path}: {obj.kind} names no referenced series (ReferencedSeriesInstanceUID)"
    return obj.path.name, f"{obj.path}: {obj.kind} references series {obj.series_uid}, which is not in the dataset"


def _under(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def match_series(image_dir: str | os.PathLike, seg_dir: str | os.PathLike | None,
                 rules: LabelRules) -> tuple[list[SeriesMatch], list[tuple[str, str]]]:
    """The series under ``image_dir`` with the objects referencing them (under ``seg_dir``, or
    mixed in ``image_dir`` as exported from a PACS), and the orphan objects."""
    index = scan(*([image_dir] + ([seg_dir] if seg_dir else [])))
    ids = _case_ids(index)
    by_series: dict[str, list[ObjectPath]] = {}
    orphans = []
    for obj in index.objects:
        if obj.series_uid in index.series:
            by_series.setdefault(obj.series_uid, []).append(_object_path(obj, index, rules))
        else:
            orphans.append(_orphan(obj))
    matches = [SeriesMatch(ids[uid], SeriesPath(s.folder, uid), tuple(by_series.get(uid, ())), _series_problem(s))
               for uid, s in index.series.items() if _under(s.folder, Path(image_dir))]
    return matches, orphans


def match_objects(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, rules: LabelRules) -> ObjectMatches:
    """The SEG / RTSTRUCT objects under each folder, by the case id of the series they
    reference (which may lie in either folder)."""
    index = scan(ref_dir, pred_dir)
    ids = _case_ids(index)
    out = ObjectMatches(case_ids=set(ids.values()))
    for obj in index.objects:
        if obj.series_uid not in index.series:
            out.orphans.append(_orphan(obj))
            continue
        side = out.preds if _under(obj.path, Path(pred_dir)) else out.refs
        side.setdefault(ids[obj.series_uid], []).append(_object_path(obj, index, rules))
    return out
