"""Case discovery: pair prediction and reference files by case id."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.data.reader import case_id_from_path, is_image_path


@dataclass(frozen=True)
class CasePair:
    """One case: its id and the files found for it (None where a folder lacks it)."""

    case_id: str
    ref_path: str | None
    pred_path: str | None
    problem: str | None = None  # why the case cannot be evaluated, naming the files


def list_cases(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """Image files and DICOM series folders in ``folder`` (not recursive), by case id."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    found: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not is_image_path(entry):
            continue
        found.setdefault(case_id_from_path(entry), []).append(entry)
    return found


def pair_cases(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike) -> list[CasePair]:
    """Pair cases by id; a case in only one folder, or with two files, carries a ``problem``.

    Folders holding DICOM-SEG or RTSTRUCT files are paired by UIDs instead
    (:func:`medbench_fast.data.dicom.pairing.evaluate_cases`).
    """
    from medbench_fast.data.dicom.index import has_dicom_objects

    if has_dicom_objects(ref_dir) or has_dicom_objects(pred_dir):
        from medbench_fast.data.dicom.labels import LabelRules
        from medbench_fast.data.dicom.pairing import evaluate_cases

        return [CasePair(*row) for row in evaluate_cases(pred_dir, ref_dir, LabelRules())]
    preds, refs = list_cases(pred_dir), list_cases(ref_dir)
    pairs = []
    for case_id in sorted(set(preds) | set(refs)):
        p, r = preds.get(case_id, []), refs.get(case_id, [])
        problem = None
        if not p:
            problem = f"{r[0]}: no prediction for case {case_id!r} in {pred_dir}"
        elif not r:
            problem = f"{p[0]}: no reference for case {case_id!r} in {ref_dir}"
        elif len(p) > 1 or len(r) > 1:
            dupes = p if len(p) > 1 else r
            problem = f"case {case_id!r} has several files: {', '.join(map(str, dupes))}"
        pairs.append(CasePair(case_id, str(r[0]) if r else None, str(p[0]) if p else None, problem))
    return pairs
