"""The cases of a benchmark run: image (one or several channels), optional reference and
case-level targets, from plain folders, a manifest, an nnU-Net raw dataset or a Decathlon task."""

from __future__ import annotations

import csv
import fnmatch
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.config import ConfigError, DatasetConfig
from medbench_fast.data.channels import load_channel_files, load_channels_file
from medbench_fast.data.discovery import list_cases
from medbench_fast.data.layouts import (
    LayoutError, channel_problem, find_dataset_json, group_channel_files, looks_like_channel_files, read_layout,
)
from medbench_fast.data.reader import Volume, case_id_from_path
from medbench_fast.files import name_problem
from medbench_fast.models.base import CASE_OBJECT


@dataclass(frozen=True)
class RunCase:
    """One case. ``image_path`` is the image file (a 4D file holds its channels on the fourth
    axis), or the first of ``channel_paths`` when the case has one file per channel;
    ``channel_names`` name the image's channels in file (or fourth-axis) order where the
    dataset names them."""

    case_id: str
    image_path: str | None
    ref_path: str | None
    problem: str | None = None  # why the case cannot run, naming the file
    channel_paths: tuple[str, ...] = ()
    channel_names: tuple[str, ...] = ()


def load_case_image(case: RunCase, *, cache=None) -> Volume:
    """The case's image: ``(Z, Y, X)``, or ``(C, Z, Y, X)`` for several channels on one grid."""
    if case.channel_paths:
        return load_channel_files(case.channel_paths, case.channel_names, cache=cache)
    return load_channels_file(case.image_path, case.channel_names, cache=cache)


def discover_cases(dataset: DatasetConfig, *, source: str = "config") -> list[RunCase]:
    """Cases from ``dataset.manifest``, ``dataset.image_dir`` (+ ``seg_dir``; nnU-Net channel
    files are grouped), ``dataset.nnunet`` or ``dataset.decathlon``, sorted by id."""
    if dataset.manifest:
        cases = _from_manifest(Path(dataset.manifest))
    elif dataset.image_dir and _is_dicom_dataset(dataset):
        cases = _from_dicom(dataset)
    elif dataset.image_dir:
        cases = _from_folders(dataset.image_dir, dataset.seg_dir, dataset.pattern or "*")
    elif dataset.nnunet or dataset.decathlon:
        cases = _from_layout(dataset, source)
    else:
        raise ConfigError(f"{source}: dataset: give image_dir (and seg_dir), manifest, nnunet or decathlon")
    if not cases:
        raise ConfigError(f"no cases found: {_searched(dataset)}")
    cases.sort(key=lambda c: c.case_id)
    if dataset.max_cases is not None:
        cases = cases[: dataset.max_cases]
    return cases


def _searched(dataset: DatasetConfig) -> str:
    """What :func:`discover_cases` looked for, to say so when it found nothing."""
    from medbench_fast.data.reader import IMAGE_EXTENSIONS

    if dataset.manifest:
        return f"{dataset.manifest} lists no case"
    if dataset.nnunet or dataset.decathlon:
        kind = "nnunet" if dataset.nnunet else "decathlon"
        layout = read_layout(getattr(dataset, kind), kind)
        split = dataset.split or "test"
        if kind == "decathlon":
            key = "training" if split == "train" else "test"
            return f"{layout.json_path}: {key} lists no case (dataset.split: {split})"
        folder = layout.root / ("imagesTr" if split == "train" else "imagesTs")
        return (f"{folder}: no file ending in {layout.file_ending!r} (file_ending of {layout.json_path}; "
                f"dataset.split: {split})")
    if _is_dicom_dataset(dataset):
        return f"{dataset.image_dir}: no DICOM image series with a reference"
    return (f"{dataset.image_dir}: no image file ({', '.join(IMAGE_EXTENSIONS)}, or DICOM series folder) "
            f"matches pattern {dataset.pattern or '*'!r}")


def _from_layout(dataset: DatasetConfig, source: str) -> list[RunCase]:
    kind = "nnunet" if dataset.nnunet else "decathlon"
    try:
        layout = read_layout(getattr(dataset, kind), kind)
        found = layout.cases(dataset.split or "test")
    except LayoutError as exc:
        raise ConfigError(f"{source}: dataset.{kind}: {exc}") from None
    if kind == "decathlon":
        return [RunCase(c.case_id, c.images[0], c.ref, c.problem, channel_names=layout.channel_names) for c in found]
    return [RunCase(c.case_id, c.images[0] if c.images else None, c.ref, c.problem, channel_paths=c.images,
                    channel_names=layout.channel_names) for c in found]


def _from_folders(image_dir: str, seg_dir: str | None, pattern: str) -> list[RunCase]:
    try:
        images = {cid: paths for cid, paths in list_cases(image_dir).items()
                  if any(fnmatch.fnmatch(p.name, pattern) for p in paths)}
        refs = list_cases(seg_dir) if seg_dir else {}
    except FileNotFoundError as exc:
        raise ConfigError(f"dataset: {exc}") from None
    if looks_like_channel_files(image_dir, seg_dir):
        return _channel_folders(images, refs, Path(image_dir), seg_dir)
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


def _is_dicom_dataset(dataset: DatasetConfig) -> bool:
    """True when the references are DICOM-SEG / RTSTRUCT files (in seg_dir, or mixed in image_dir)."""
    from medbench_fast.data.dicom.index import has_dicom_objects

    folder = dataset.seg_dir or dataset.image_dir
    return Path(folder).is_dir() and has_dicom_objects(folder)


def _from_dicom(dataset: DatasetConfig) -> list[RunCase]:
    from medbench_fast.data.dicom.labels import parse_rules
    from medbench_fast.data.dicom.pairing import run_cases

    rules = parse_rules(dataset.dicom_labels, dataset.dicom_unmatched or "error")
    return [RunCase(c.case_id, c.image_path, c.ref_path, c.problem)
            for c in run_cases(dataset.image_dir, dataset.seg_dir, rules)]


def _channel_folders(images: dict, refs: dict, image_dir: Path, seg_dir: str | None) -> list[RunCase]:
    """nnU-Net channel files ``<case>_<XXXX>`` in a plain folder: one case per ``<case>``;
    channel names from a ``dataset.json`` in the folder's parent, when there is one."""
    names: tuple[str, ...] = ()
    try:
        json_path = find_dataset_json(image_dir.parent)
        if json_path is not None:
            names = read_layout(json_path).channel_names
    except LayoutError as exc:
        raise ConfigError(f"dataset.image_dir: {exc}") from None
    files = [p for paths in images.values() for p in paths]
    cases = []
    for cid, channels in group_channel_files(files).items():
        ref = refs.get(cid)
        first = channels[min(channels)] if channels else images[cid][0]
        ending = first.name[len(case_id_from_path(first)):]
        problem = channel_problem(cid, channels, names, image_dir, ending)
        if problem is None and seg_dir and not ref:
            problem = f"{channels[0]}: no reference for case {cid!r} in {seg_dir}"
        paths = tuple(str(channels[i]) for i in sorted(channels))
        cases.append(RunCase(cid, paths[0] if paths else None, str(ref[0]) if ref else None, problem,
                             channel_paths=paths, channel_names=names))
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
        if name_problem(cid):
            raise ConfigError(f"{path}:{line}: case_id {cid!r} cannot name the files written for the case "
                              f"({name_problem(cid)}); use a plain name")
        seen.add(cid)
        images = tuple(p for p in (_rel(path, part) for part in (row["image"] or "").split(";")) if p)
        ref = _rel(path, row.get("reference"))
        channels = images if len(images) > 1 else ()
        cases.append(RunCase(cid, images[0] if images else None, ref, channel_paths=channels))
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
