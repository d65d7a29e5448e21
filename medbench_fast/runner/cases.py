"""The cases of a benchmark run: image, optional reference and case-level targets."""

from __future__ import annotations

import csv
import fnmatch
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.config import ConfigError
from medbench_fast.data.discovery import list_cases
from medbench_fast.models.base import CASE_OBJECT


@dataclass(frozen=True)
class RunCase:
    case_id: str
    image_path: str | None
    ref_path: str | None
    problem: str | None = None  # why the case cannot run, naming the file


def discover_cases(dataset: dict, *, source: str = "config") -> list[RunCase]:
    """Cases from ``dataset.manifest`` or ``dataset.image_dir`` (+ ``seg_dir``), sorted by id."""
    if dataset.get("manifest"):
        cases = _from_manifest(Path(dataset["manifest"]))
    elif dataset.get("image_dir"):
        cases = _from_folders(dataset["image_dir"], dataset.get("seg_dir"), dataset.get("pattern") or "*")
    else:
        raise ConfigError(f"{source}: dataset: give image_dir (and seg_dir) or manifest")
    cases.sort(key=lambda c: c.case_id)
    if dataset.get("max_cases") is not None:
        cases = cases[: dataset["max_cases"]]
    return cases


def _from_folders(image_dir: str, seg_dir: str | None, pattern: str) -> list[RunCase]:
    try:
        images = {cid: paths for cid, paths in list_cases(image_dir).items()
                  if any(fnmatch.fnmatch(p.name, pattern) for p in paths)}
        refs = list_cases(seg_dir) if seg_dir else {}
    except FileNotFoundError as exc:
        raise ConfigError(f"dataset: {exc}") from None
    cases = []
    for cid, paths in images.items():
        ref = refs.get(cid)
        problem = None
        if len(paths) > 1:
            problem = f"case {cid!r} has several images: {', '.join(map(str, paths))}"
        elif seg_dir and not ref:
            problem = f"{paths[0]}: no reference for case {cid!r} in {seg_dir}"
        cases.append(RunCase(cid, str(paths[0]), str(ref[0]) if ref else None, problem))
    return cases


def _from_manifest(path: Path) -> list[RunCase]:
    if not path.is_file():
        raise ConfigError(f"{path}: manifest not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"case_id", "image"} - set(reader.fieldnames or [])
        if missing:
            raise ConfigError(f"{path}: manifest lacks column(s) {sorted(missing)} (needs case_id,image[,reference])")
        rows = list(reader)
    cases, seen = [], set()
    for line, row in enumerate(rows, start=2):
        cid = (row["case_id"] or "").strip()
        if not cid or cid in seen:
            raise ConfigError(f"{path}:{line}: case_id {cid!r} is empty or repeated")
        seen.add(cid)
        image = _rel(path, row["image"])
        ref = _rel(path, row.get("reference"))
        cases.append(RunCase(cid, image, ref))
    return cases


def _rel(manifest: Path, value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    p = Path(value.strip()).expanduser()
    return str(p if p.is_absolute() else (manifest.parent / p).resolve())


def read_targets(path: str | None) -> dict[tuple[str, int], dict[str, float]]:
    """``{(case_id, object_id): {target_name: value}}`` from the targets CSV (None: empty).

    Rows without an ``object_id`` are targets of the whole case (:data:`CASE_OBJECT`);
    per-object models such as AI-ENE number their objects from 1.
    """
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: targets CSV not found")
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "case_id" not in fields:
            raise ConfigError(f"{p}: targets CSV lacks a case_id column")
        names = [f for f in fields if f not in ("case_id", "object_id")]
        out = {}
        for line, row in enumerate(reader, start=2):
            try:
                key = (row["case_id"], int(row.get("object_id") or CASE_OBJECT))
                out[key] = {n: float(row[n]) for n in names if row[n] not in ("", None)}
            except ValueError as exc:
                raise ConfigError(f"{p}:{line}: {exc}") from None
    return out
