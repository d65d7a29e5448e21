"""The cases of a dataset, for ``medbench run`` and ``medbench evaluate`` alike.

One record (:class:`Case`), one set of pairing rules and one set of problem messages for
every source of cases:

- two folders paired by case id (:func:`pair_folders`): image files of any supported
  extension, DICOM series folders, and nnU-Net channel files ``<case>_<XXXX>`` grouped
  into one case. ``medbench run`` pairs images with references (``image_dir`` +
  ``seg_dir``), ``medbench evaluate`` predictions with references (:func:`pair_cases`);
- DICOM image series with the SEG / RTSTRUCT objects that reference them, by UIDs
  (:func:`dicom_cases`, :func:`dicom_pairs`; the matching is
  :mod:`medbench_fast.data.dicom.pairing`);
- a manifest CSV (:func:`manifest_cases`);
- an nnU-Net raw dataset or a Decathlon task (:func:`layout_cases`).

A case that cannot be used carries a ``problem`` naming the file (a failed row; the run
goes on): a case without its partner, a case with several files, a channel missing, a
DICOM object referencing no series of the dataset. A dataset that cannot be listed at all
(a missing folder, a bad manifest or ``dataset.json``, no case) is a :class:`DatasetError`.
:func:`find_cases` is the entry of ``medbench run``.
"""

from __future__ import annotations

import csv
import fnmatch
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.data.layouts import (
    SPLIT_FOLDERS, SPLITS, DatasetLayout, LayoutError, find_dataset_json, read_layout,
)
from medbench_fast.data.reader import IMAGE_EXTENSIONS, case_id_from_path, is_image_path
from medbench_fast.files import name_problem

#: Names of files that are no DICOM object: images, and the data files of detached MetaImage
#: (``.mhd``) and NRRD (``.nhdr``) headers.
NOT_DICOM = IMAGE_EXTENSIONS + (".raw", ".raw.gz", ".zraw")
#: ``<case>_<XXXX>``: nnU-Net's name of one channel file (without the file ending).
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class DatasetError(ValueError):
    """The dataset cannot be listed; the message names the file (or the key) and the problem."""


#: ``object_id`` of a case-level score that describes the whole case (per-object models such
#: as AI-ENE number their objects from 1). Targets CSV rows without ``object_id`` join it.
CASE_OBJECT = 0


@dataclass(frozen=True)
class Case:
    """One case of a run or an evaluation.

    ``image_path`` is the image file (a 4D file holds its channels on the fourth axis), or
    the first of ``channel_paths`` when the case has one file per channel; ``channel_names``
    name the image's channels in file (or fourth-axis) order where the dataset names them.
    An evaluation's case has no image: its ``pred_path`` is the prediction to score against
    ``ref_path``. ``problem`` says why the case cannot be used, naming the file.
    """

    case_id: str
    image_path: str | None
    ref_path: str | None
    problem: str | None = None
    channel_paths: tuple[str, ...] = ()
    channel_names: tuple[str, ...] = ()
    pred_path: str | None = None


#: A case of ``medbench run`` and a pair of ``medbench evaluate`` are the same record.
RunCase = Case
CasePair = Case


# -- the messages ---------------------------------------------------------------------------------
def no_partner(path, case_id: str, partner: str, folder) -> str:
    """A case found on one side only: ``path`` is its file, ``partner`` what is missing."""
    return f"{path}: no {partner} for case {case_id!r} in {folder}"


def several_files(case_id: str, paths: Sequence) -> str:
    return f"case {case_id!r} has several files: {', '.join(map(str, paths))}"


def _problem(case_id: str, sides) -> str | None:
    """The one rule of every pairing: each side a case needs holds exactly one file.

    ``sides``: ``(partner, paths, folder)`` in order; ``folder`` None where the side is
    optional. The first side missing is told naming a file of the case that was found.
    """
    for partner, paths, folder in sides:
        if folder is not None and not paths:
            found = next(p[0] for _, p, _ in sides if p)
            return no_partner(found, case_id, partner, folder)
    for _, paths, _ in sides:
        if len(paths) > 1:
            return several_files(case_id, paths)
    return None


def channel_problem(case_id: str, channels: dict[int, Path], names, folder: Path, ending: str) -> str | None:
    """Why a case's channel files are incomplete (naming the expected file), or None."""
    if not channels:
        return f"{folder / (case_id + ending)}: not named <case>_<XXXX>{ending} (nnU-Net channel files)"
    expected = range(len(names)) if names else range(max(channels) + 1)
    for c in expected:
        if c not in channels:
            label = f" ({names[c]})" if names else ""
            return f"{folder / f'{case_id}_{c:04d}{ending}'}: channel {c}{label} of case {case_id!r} is missing"
    extra = sorted(set(channels) - set(expected))
    if extra:
        return (f"{channels[extra[0]]}: channel {extra[0]} of case {case_id!r} is not among the "
                f"{len(expected)} channels the dataset declares")
    return None


# -- folders --------------------------------------------------------------------------------------
def list_cases(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """Image files and DICOM series folders in ``folder`` (not recursive), by case id."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    with os.scandir(root) as scan:  # names and file types from the listing: no file is opened
        entries = sorted(((e.name, e.is_dir()) for e in scan if not e.name.startswith(".")))
    found: dict[str, list[Path]] = {}
    for name, is_dir in entries:
        path = root / name
        if is_image_path(path) if is_dir else name.lower().endswith(IMAGE_EXTENSIONS):
            found.setdefault(case_id_from_path(name), []).append(path)
    return found


def _only_image_files(folder: Path) -> bool:
    """True when every entry of ``folder`` is a file named as a non-DICOM image (``.nii.gz``,
    ``.mha``, ...; :data:`NOT_DICOM`): it holds no DICOM object, and telling so opens no file."""
    with os.scandir(folder) as entries:  # the file type comes with the entry: no file is opened
        return all(entry.name.startswith(".") or (entry.name.lower().endswith(NOT_DICOM) and entry.is_file())
                   for entry in entries)


def holds_dicom_objects(*folders) -> bool:
    """True when one of ``folders`` holds (at any depth) a DICOM-SEG or RTSTRUCT file.

    A folder whose entries are all image files by name is not scanned, so pairing folders
    of NIfTI, NRRD or MetaImage files opens no file.
    """
    from medbench_fast.data.dicom import index

    for folder in folders:
        if folder is None or not Path(folder).is_dir() or _only_image_files(Path(folder)):
            continue
        if index.has_dicom_objects(folder):
            return True
    return False


def group_channel_files(files, file_ending: str = "") -> dict[str, dict[int, Path]]:
    """``{case_id: {channel: path}}`` of nnU-Net channel files ``<case>_<XXXX><ending>``.

    ``file_ending`` '' takes the image extension off each name. A file whose name has no
    ``_XXXX`` suffix becomes a case of its own with no channel (reported by
    :func:`channel_problem`).
    """
    groups: dict[str, dict[int, Path]] = {}
    for path in files:
        path = Path(path)
        stem = path.name[: -len(file_ending)] if file_ending else case_id_from_path(path)
        match = CHANNEL_FILE.match(stem)
        if match is None:
            groups.setdefault(stem, {})
            continue
        groups.setdefault(match["case"], {})[int(match["channel"])] = path
    return groups


def _channel_files(names, ref_names, parent: Path) -> bool:
    """True when every image case id ``names`` is ``<case>_<XXXX>`` and, with references
    (``ref_names`` not None), the references are named by the case ids without that suffix
    (nnU-Net's naming); without references, when a channel other than 0000 or a
    ``dataset.json`` in ``parent`` says so.

    A plain folder whose case ids merely end in four digits (``case_0001`` paired with
    ``case_0001``) is not taken for channel files.
    """
    matches = [CHANNEL_FILE.match(n) for n in names]
    if not names or not all(matches):
        return False
    if ref_names is None:
        return any(m["channel"] != "0000" for m in matches) or find_dataset_json(parent) is not None
    return not (set(names) & set(ref_names)) and bool({m["case"] for m in matches} & set(ref_names))


def pair_folders(image_dir: str | os.PathLike, ref_dir: str | os.PathLike | None = None, *, pattern: str = "*",
                 predictions: bool = False) -> list[Case]:
    """Pair the files (or DICOM series folders) of two folders by case id.

    ``medbench run`` (``predictions`` False): one case per image in ``image_dir`` whose
    name matches ``pattern``, with its reference from ``ref_dir`` when given; nnU-Net
    channel files are grouped into one case (channel names from a ``dataset.json`` in the
    image folder's parent). ``medbench evaluate`` (``predictions`` True): every case id of
    either folder, the prediction in ``pred_path``. Raises :class:`FileNotFoundError` for a
    folder that is not one, :class:`~medbench_fast.data.layouts.LayoutError` for a
    ``dataset.json`` beside channel files that cannot be read.
    """
    every = list_cases(image_dir)
    found = every if pattern == "*" else {cid: paths for cid, paths in every.items()
                                          if any(fnmatch.fnmatch(p.name, pattern) for p in paths)}
    refs = list_cases(ref_dir) if ref_dir else {}
    if not predictions and _channel_files(list(every), refs if ref_dir else None, Path(image_dir).parent):
        return _channel_cases(found, refs, Path(image_dir), ref_dir)
    role = "prediction" if predictions else "image"
    cases = []
    for cid in sorted(set(found) | set(refs) if predictions else found):
        own, ref = found.get(cid, []), refs.get(cid, [])
        problem = _problem(cid, ((role, own, image_dir), ("reference", ref, ref_dir)))
        path = str(own[0]) if own else None
        cases.append(Case(cid, None if predictions else path, str(ref[0]) if ref else None, problem,
                          pred_path=path if predictions else None))
    return cases


def _channel_cases(images: dict, refs: dict, image_dir: Path, seg_dir) -> list[Case]:
    """nnU-Net channel files ``<case>_<XXXX>`` in a plain folder: one case per ``<case>``."""
    json_path = find_dataset_json(image_dir.parent)
    names = read_layout(json_path).channel_names if json_path is not None else ()
    cases = []
    for cid, channels in group_channel_files([p for paths in images.values() for p in paths]).items():
        ref = refs.get(cid, [])
        first = channels[min(channels)] if channels else images[cid][0]
        ending = first.name[len(case_id_from_path(first)):]
        problem = (channel_problem(cid, channels, names, image_dir, ending)
                   or _problem(cid, (("image", [first], image_dir), ("reference", ref, seg_dir))))
        paths = tuple(str(channels[i]) for i in sorted(channels))
        cases.append(Case(cid, paths[0] if paths else None, str(ref[0]) if ref else None, problem,
                          channel_paths=paths, channel_names=names))
    return cases


def pair_cases(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike) -> list[Case]:
    """The cases of ``medbench evaluate``: predictions paired with references by case id, or
    by UIDs where either folder holds DICOM-SEG or RTSTRUCT objects (:func:`dicom_pairs`)."""
    if holds_dicom_objects(ref_dir, pred_dir):
        from medbench_fast.data.dicom.labels import LabelRules

        return dicom_pairs(pred_dir, ref_dir, LabelRules())
    return pair_folders(pred_dir, ref_dir, predictions=True)


# -- DICOM ----------------------------------------------------------------------------------------
def dicom_cases(image_dir, seg_dir, rules) -> list[Case]:
    """The cases of ``medbench run`` on DICOM: each image series under ``image_dir`` with the
    SEG or RTSTRUCT that references it (under ``seg_dir``, or mixed in ``image_dir``)."""
    from medbench_fast.data.dicom.pairing import match_series

    matches, orphans = match_series(image_dir, seg_dir, rules)
    cases = [Case(name, None, None, problem) for name, problem in orphans]
    for m in matches:
        partner = f"SEG or RTSTRUCT referencing series {m.series.uid}"
        problem = m.problem or _problem(m.case_id, (("image", [m.series], image_dir),
                                                    (partner, m.refs, seg_dir or image_dir)))
        cases.append(Case(m.case_id, m.series, m.refs[0] if len(m.refs) == 1 else None, problem))
    return cases


def dicom_pairs(pred_dir, ref_dir, rules) -> list[Case]:
    """The cases of ``medbench evaluate`` on DICOM: the SEG / RTSTRUCT objects under each
    folder, paired by the series they reference (which may lie in either folder); a
    prediction may also be a label-map file named by the series' case id."""
    from medbench_fast.data.dicom.pairing import match_objects

    found = match_objects(pred_dir, ref_dir, rules)
    files: dict[str, list[str]] = {}
    for p in (p for paths in list_cases(pred_dir).values() for p in paths):
        if p.is_file() and case_id_from_path(p) in found.case_ids:
            files.setdefault(case_id_from_path(p), []).append(str(p))
    cases = [Case(name, None, None, problem) for name, problem in found.orphans]
    for cid in sorted(set(found.refs) | set(found.preds) | set(files)):
        refs, preds = found.refs.get(cid, []), found.preds.get(cid, []) + files.get(cid, [])
        problem = _problem(cid, (("prediction", preds, pred_dir), ("reference", refs, ref_dir)))
        cases.append(Case(cid, None, refs[0] if refs else None, problem, pred_path=preds[0] if preds else None))
    return cases


# -- manifest and layouts -------------------------------------------------------------------------
def manifest_cases(path: str | os.PathLike) -> list[Case]:
    """Cases listed by a CSV with columns ``case_id,image[,reference]``; several channel files
    of one image are separated by ``;``. Paths are relative to the manifest."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"case_id", "image"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: manifest lacks column(s) {sorted(missing)} (needs case_id,image[,reference])")
        rows = list(reader)
    cases, seen = [], set()
    for line, row in enumerate(rows, start=2):
        cid = (row["case_id"] or "").strip()
        if not cid or cid in seen:
            raise DatasetError(f"{path}:{line}: case_id {cid!r} is empty or repeated")
        if name_problem(cid):
            raise DatasetError(f"{path}:{line}: case_id {cid!r} cannot name the files written for the case "
                               f"({name_problem(cid)}); use a plain name")
        seen.add(cid)
        images = tuple(p for p in (_relative(path, part) for part in (row["image"] or "").split(";")) if p)
        channels = images if len(images) > 1 else ()
        cases.append(Case(cid, images[0] if images else None, _relative(path, row.get("reference")),
                          channel_paths=channels))
    return cases


def _relative(manifest: Path, value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    p = Path(value.strip()).expanduser()
    return str(p if p.is_absolute() else (manifest.parent / p).resolve())


def layout_cases(layout: DatasetLayout, split: str) -> list[Case]:
    """The cases of ``split`` (``train`` or ``test``) of an nnU-Net raw dataset (one file per
    channel) or a Decathlon task (one 4D file), sorted by case id. Raises
    :class:`~medbench_fast.data.layouts.LayoutError` naming the file and the key."""
    if split not in SPLITS:
        raise LayoutError(f"{layout.json_path}: split {split!r} is not one of {', '.join(SPLITS)}")
    found = _nnunet_cases(layout, split) if layout.kind == "nnunet" else _decathlon_cases(layout, split)
    return sorted(found, key=lambda c: c.case_id)


def _nnunet_cases(layout: DatasetLayout, split: str) -> list[Case]:
    images_dir, labels_dir = (layout.root / name for name in SPLIT_FOLDERS[split])
    if not images_dir.is_dir():
        other = "train" if split == "test" else "test"
        raise LayoutError(f"{layout.json_path}: no {images_dir.name}/ folder beside it for split {split!r} "
                          f"(set dataset.split: {other}?)")
    ending = layout.file_ending
    files = sorted(p for p in images_dir.iterdir() if p.name.endswith(ending) and not p.name.startswith("."))
    out = []
    for case_id, channels in group_channel_files(files, ending).items():
        ref = labels_dir / f"{case_id}{ending}"
        refs = [ref] if ref.is_file() else []
        problem = channel_problem(case_id, channels, layout.channel_names, images_dir, ending)
        if problem is None:
            problem = _problem(case_id, (("image", [channels[0]], images_dir),
                                         ("reference", refs, labels_dir if labels_dir.is_dir() else None)))
        paths = tuple(str(channels[i]) for i in sorted(channels))
        out.append(Case(case_id, paths[0] if paths else None, str(ref) if refs else None, problem,
                        channel_paths=paths, channel_names=layout.channel_names))
    return out


def _decathlon_cases(layout: DatasetLayout, split: str) -> list[Case]:
    key = "training" if split == "train" else "test"
    entries = layout.raw.get(key)
    if not isinstance(entries, list):
        raise LayoutError(f"{layout.json_path}: {key}: expected a list of cases")
    out, seen = [], set()
    for i, entry in enumerate(entries):
        image = entry.get("image") if isinstance(entry, dict) else entry
        label = entry.get("label") if isinstance(entry, dict) else None
        if not isinstance(image, str) or (label is not None and not isinstance(label, str)):
            raise LayoutError(f"{layout.json_path}: {key}[{i}]: expected an image path (and a label path)")
        image_path = (layout.root / image).resolve()
        case_id = case_id_from_path(image_path)
        if case_id in seen:
            raise LayoutError(f"{layout.json_path}: {key}[{i}]: case {case_id!r} is listed twice")
        seen.add(case_id)
        if label is None:  # test cases: a labelsTs/ folder beside imagesTs/ may hold references
            beside = layout.root / SPLIT_FOLDERS[split][1] / image_path.name
            ref_path = beside if beside.is_file() else None
        else:
            ref_path = (layout.root / label).resolve()
        problem = None
        if not image_path.exists():
            problem = f"{image_path}: image file not found ({layout.json_path}: {key}[{i}].image)"
        elif ref_path is not None and not ref_path.exists():
            problem = f"{ref_path}: reference file not found ({layout.json_path}: {key}[{i}].label)"
        out.append(Case(case_id, str(image_path), None if ref_path is None else str(ref_path), problem,
                        channel_names=layout.channel_names))
    return out


# -- the entry of medbench run --------------------------------------------------------------------
def find_cases(*, image_dir: str | None = None, seg_dir: str | None = None, pattern: str | None = None,
               manifest: str | None = None, nnunet: str | None = None, decathlon: str | None = None,
               split: str | None = None, max_cases: int | None = None, dicom_labels: dict | None = None,
               dicom_unmatched: str | None = None, source: str = "config") -> list[Case]:
    """The cases of ``medbench run``, sorted by id (the first ``max_cases``): from a
    ``manifest``, an ``image_dir`` (+ ``seg_dir``; DICOM when the references are SEG or
    RTSTRUCT objects), or an ``nnunet`` / ``decathlon`` layout's ``split`` (default test).
    Raises :class:`DatasetError` naming ``source`` and the key where the dataset cannot be
    listed or holds no case."""
    if manifest:
        cases = manifest_cases(manifest)
    elif image_dir and holds_dicom_objects(seg_dir or image_dir):
        from medbench_fast.data.dicom.labels import parse_rules

        cases = dicom_cases(image_dir, seg_dir, parse_rules(dicom_labels, dicom_unmatched or "error"))
    elif image_dir:
        try:
            cases = pair_folders(image_dir, seg_dir, pattern=pattern or "*")
        except FileNotFoundError as exc:
            raise DatasetError(f"dataset: {exc}") from None
        except LayoutError as exc:
            raise DatasetError(f"dataset.image_dir: {exc}") from None
    elif nnunet or decathlon:
        kind, folder = ("nnunet", nnunet) if nnunet else ("decathlon", decathlon)
        try:
            cases = layout_cases(read_layout(folder, kind), split or "test")
        except LayoutError as exc:
            raise DatasetError(f"{source}: dataset.{kind}: {exc}") from None
    else:
        raise DatasetError(f"{source}: dataset: give image_dir (and seg_dir), manifest, nnunet or decathlon")
    if not cases:
        raise DatasetError(f"no cases found: {_searched(image_dir, seg_dir, pattern, manifest, nnunet, decathlon, split)}")
    cases.sort(key=lambda c: c.case_id)
    return cases if max_cases is None else cases[:max_cases]


def _searched(image_dir, seg_dir, pattern, manifest, nnunet, decathlon, split) -> str:
    """What :func:`find_cases` looked for, to say so when it found nothing."""
    if manifest:
        return f"{manifest} lists no case"
    if nnunet or decathlon:
        kind = "nnunet" if nnunet else "decathlon"
        layout = read_layout(nnunet or decathlon, kind)
        split = split or "test"
        if kind == "decathlon":
            return f"{layout.json_path}: {'training' if split == 'train' else 'test'} lists no case (dataset.split: {split})"
        folder = layout.root / SPLIT_FOLDERS[split][0]
        return (f"{folder}: no file ending in {layout.file_ending!r} (file_ending of {layout.json_path}; "
                f"dataset.split: {split})")
    if holds_dicom_objects(seg_dir or image_dir):
        return f"{image_dir}: no DICOM image series with a reference"
    return (f"{image_dir}: no image file ({', '.join(IMAGE_EXTENSIONS)}, or DICOM series folder) "
            f"matches pattern {pattern or '*'!r}")
