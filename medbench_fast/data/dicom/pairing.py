"""Cases of a DICOM dataset: an image series plus the SEG or RTSTRUCT that references it.

Pairing is by UIDs, never by file names: every image series found (recursively) is a
case; its reference is the SEG or RTSTRUCT whose ReferencedSeriesInstanceUID is the
series' SeriesInstanceUID (the frame of reference is checked when the object is read).
A case's id is its series folder's name when the folder holds that one series, else
``<folder>_<SeriesNumber>`` (the number made a harmless file name: other characters than
letters, digits and ``._+-=@,`` become ``_``, since case ids name written files). Objects
referencing no series of the dataset, series without or with several references, and
series spread over several folders become cases that carry a ``problem`` (a failed row
naming the file); the run goes on.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.data.dicom.index import DicomIndex, DicomObject, Series, scan
from medbench_fast.data.dicom.labels import LabelRules
from medbench_fast.data.dicom.paths import ObjectPath, SeriesPath
from medbench_fast.files import safe_name


@dataclass(frozen=True)
class DicomCase:
    case_id: str
    image_path: SeriesPath | None
    ref_path: ObjectPath | None
    problem: str | None = None


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


def _orphan(obj: DicomObject) -> str:
    if obj.series_uid is None:
        return f"{obj.path}: {obj.kind} names no referenced series (ReferencedSeriesInstanceUID)"
    return f"{obj.path}: {obj.kind} references series {obj.series_uid}, which is not in the dataset"


def _under(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def run_cases(image_dir: str | os.PathLike, seg_dir: str | os.PathLike | None, rules: LabelRules) -> list[DicomCase]:
    """Cases of ``medbench run``: series under ``image_dir``, references under ``seg_dir``
    (or mixed in ``image_dir``, as exported from a PACS)."""
    index = scan(*([image_dir] + ([seg_dir] if seg_dir else [])))
    ids = _case_ids(index)
    by_series: dict[str, list[DicomObject]] = {}
    cases = []
    for obj in index.objects:
        if obj.series_uid in index.series:
            by_series.setdefault(obj.series_uid, []).append(obj)
        else:
            cases.append(DicomCase(obj.path.name, None, None, _orphan(obj)))
    for uid, s in index.series.items():
        if not _under(s.folder, Path(image_dir)):
            continue
        refs = by_series.get(uid, [])
        problem = _series_problem(s)
        if problem is None and not refs:
            problem = f"{s.folder}: no SEG or RTSTRUCT references series {uid} (case {ids[uid]!r})"
        elif problem is None and len(refs) > 1:
            problem = f"case {ids[uid]!r} has several references: {', '.join(str(r.path) for r in refs)}"
        ref = _object_path(refs[0], index, rules) if len(refs) == 1 else None
        cases.append(DicomCase(ids[uid], SeriesPath(s.folder, uid), ref, problem))
    return cases


def evaluate_cases(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, rules: LabelRules):
    """``(case_id, ref_path, pred_path, problem)`` of ``medbench evaluate``: the SEG / RTSTRUCT
    objects under each folder, paired by the series they reference (which may lie in either
    folder); a prediction may also be a label-map file named by the case id."""
    from medbench_fast.data.reader import case_id_from_path, is_image_path

    index = scan(ref_dir, pred_dir)
    ids = _case_ids(index)
    sides: dict[str, dict[str, list]] = {"ref": {}, "pred": {}}
    rows = []
    for obj in index.objects:
        side = "pred" if _under(obj.path, Path(pred_dir)) else "ref"
        if obj.series_uid not in index.series:
            rows.append((obj.path.name, None, None, _orphan(obj)))
            continue
        sides[side].setdefault(ids[obj.series_uid], []).append(_object_path(obj, index, rules))
    files: dict[str, list[str]] = {}
    for p in sorted(Path(pred_dir).iterdir()):
        if p.is_file() and not p.name.startswith(".") and is_image_path(p):
            files.setdefault(case_id_from_path(p), []).append(str(p))
    for cid in sorted(set(sides["ref"]) | set(sides["pred"]) | (set(files) & set(ids.values()))):
        refs, preds = sides["ref"].get(cid, []), sides["pred"].get(cid, []) + files.get(cid, [])
        problem = None
        if not refs:
            problem = f"{preds[0]}: no reference SEG or RTSTRUCT for case {cid!r} in {ref_dir}"
        elif not preds:
            problem = f"{refs[0]}: no prediction for case {cid!r} in {pred_dir}"
        elif len(refs) > 1 or len(preds) > 1:
            problem = f"case {cid!r} has several files: {', '.join(map(str, refs if len(refs) > 1 else preds))}"
        rows.append((cid, refs[0] if refs else None, preds[0] if preds else None, problem))
    return rows
