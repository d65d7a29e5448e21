"""The field's dataset layouts: nnU-Net v2 raw datasets and Medical Segmentation Decathlon tasks.

nnU-Net v2 (``DatasetNNN_Name/dataset.json``)::

    {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "PZ": 1, "TZ": 2},
     "file_ending": ".nii.gz", "numTraining": 32}

Images are ``imagesTr/<case>_<XXXX><file_ending>``, one file per channel ``XXXX`` (four
digits, the key of ``channel_names``); references are ``labelsTr/<case><file_ending>``
(``imagesTs`` / ``labelsTs`` for the test split). A ``labels`` entry whose value is a list
of label values is a region (nnU-Net's region-based training, e.g. BraTS
``"whole tumor": [1, 2, 3]``).

Decathlon (``TaskNN_Name/dataset.json``)::

    {"modality": {"0": "FLAIR", "1": "T1w"}, "labels": {"0": "background", "1": "edema"},
     "training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}],
     "test": ["./imagesTs/y.nii.gz"]}

Multi-modal images are one 4D NIfTI whose fourth axis is the channel, in ``modality`` order.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.data.reader import case_id_from_path, is_image_path
from medbench_fast.files import read_json_object

#: ``<case>_<XXXX>``: nnU-Net's name of one channel file (without the file ending).
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
LAYOUTS = ("nnunet", "decathlon")
SPLITS = ("train", "test")
_FOLDERS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}


class LayoutError(ValueError):
    """A dataset folder or its ``dataset.json`` is not usable; the message names the file and key."""


@dataclass(frozen=True)
class LayoutCase:
    """One case of a layout: its channel files (nnU-Net) or one 4D file (Decathlon)."""

    case_id: str
    images: tuple[str, ...]
    ref: str | None
    problem: str | None = None  # why the case cannot run, naming the file


@dataclass(frozen=True)
class DatasetLayout:
    """A parsed ``dataset.json``.

    ``channel_names`` in channel order; ``label_names`` ``{value: name}`` of the foreground
    labels; ``regions`` ``{name: label values}``; ``file_ending`` (nnU-Net; '' for Decathlon).
    """

    kind: str
    json_path: Path
    channel_names: tuple[str, ...]
    label_names: dict[int, str]
    regions: dict[str, tuple[int, ...]]
    file_ending: str
    raw: dict
    labels: tuple[int, ...] = ()  # every foreground label value the file defines

    @property
    def root(self) -> Path:
        return self.json_path.parent

    def scoring(self) -> dict:
        """``labels`` (every foreground label the file defines), ``label_names`` and ``regions``
        to score, as the config keys of the same names take them (regions name only those
        labels: :func:`read_layout` checks it)."""
        return {"labels": sorted(self.labels) or None, "label_names": dict(self.label_names),
                "regions": {k: list(v) for k, v in self.regions.items()} or None}

    def cases(self, split: str) -> list[LayoutCase]:
        """The cases of ``split`` (``train`` or ``test``), sorted by case id."""
        if split not in SPLITS:
            raise LayoutError(f"{self.json_path}: split {split!r} is not one of {', '.join(SPLITS)}")
        found = self._nnunet_cases(split) if self.kind == "nnunet" else self._decathlon_cases(split)
        return sorted(found, key=lambda c: c.case_id)

    def _nnunet_cases(self, split: str) -> list[LayoutCase]:
        images_dir, labels_dir = (self.root / name for name in _FOLDERS[split])
        if not images_dir.is_dir():
            other = "train" if split == "test" else "test"
            raise LayoutError(f"{self.json_path}: no {images_dir.name}/ folder beside it for split {split!r} "
                              f"(set dataset.split: {other}?)")
        files = sorted(p for p in images_dir.iterdir()
                       if p.name.endswith(self.file_ending) and not p.name.startswith("."))
        groups = group_channel_files(files, self.file_ending)
        out = []
        for case_id, channels in groups.items():
            ref = labels_dir / f"{case_id}{self.file_ending}"
            problem = channel_problem(case_id, channels, self.channel_names, images_dir, self.file_ending)
            if problem is None and labels_dir.is_dir() and not ref.is_file():
                problem = f"{channels[0]}: no reference for case {case_id!r} (expected {ref})"
            paths = tuple(str(channels[i]) for i in sorted(channels))
            out.append(LayoutCase(case_id, paths, str(ref) if ref.is_file() else None, problem))
        return out

    def _decathlon_cases(self, split: str) -> list[LayoutCase]:
        key = "training" if split == "train" else "test"
        entries = self.raw.get(key)
        if not isinstance(entries, list):
            raise LayoutError(f"{self.json_path}: {key}: expected a list of cases")
        out, seen = [], set()
        for i, entry in enumerate(entries):
            image = entry.get("image") if isinstance(entry, dict) else entry
            label = entry.get("label") if isinstance(entry, dict) else None
            if not isinstance(image, str) or (label is not None and not isinstance(label, str)):
                raise LayoutError(f"{self.json_path}: {key}[{i}]: expected an image path (and a label path)")
            image_path = (self.root / image).resolve()
            case_id = case_id_from_path(image_path)
            if case_id in seen:
                raise LayoutError(f"{self.json_path}: {key}[{i}]: case {case_id!r} is listed twice")
            seen.add(case_id)
            if label is None:  # test cases: a labelsTs/ folder beside imagesTs/ may hold references
                beside = self.root / _FOLDERS[split][1] / image_path.name
                ref_path = beside if beside.is_file() else None
            else:
                ref_path = (self.root / label).resolve()
            problem = None
            if not image_path.exists():
                problem = f"{image_path}: image file not found ({self.json_path}: {key}[{i}].image)"
            elif ref_path is not None and not ref_path.exists():
                problem = f"{ref_path}: reference file not found ({self.json_path}: {key}[{i}].label)"
            out.append(LayoutCase(case_id, (str(image_path),), None if ref_path is None else str(ref_path), problem))
        return out


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


def looks_like_channel_files(image_dir, seg_dir=None) -> bool:
    """True when every image in ``image_dir`` is named ``<case>_<XXXX>`` and, with ``seg_dir``,
    the references are named by the case ids without that suffix (nnU-Net's naming).

    A plain folder whose case ids merely end in four digits (``case_0001`` paired with
    ``case_0001``) is not taken for channel files.
    """
    names = [case_id_from_path(p) for p in Path(image_dir).iterdir()
             if not p.name.startswith(".") and is_image_path(p)]
    matches = [CHANNEL_FILE.match(n) for n in names]
    if not names or not all(matches):
        return False
    if seg_dir is None:
        return any(m["channel"] != "0000" for m in matches) or find_dataset_json(Path(image_dir).parent) is not None
    refs = {case_id_from_path(p) for p in Path(seg_dir).iterdir() if not p.name.startswith(".") and is_image_path(p)}
    return not (set(names) & refs) and bool({m["case"] for m in matches} & refs)


def find_dataset_json(folder) -> Path | None:
    """``folder/dataset.json`` if it exists and looks like an nnU-Net or Decathlon one. One that
    is not JSON is a :class:`LayoutError` (ignoring it would drop its labels and regions)."""
    p = Path(folder) / "dataset.json"
    if not p.is_file():
        return None
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except OSError:
        return None
    except ValueError as exc:
        raise LayoutError(f"{p}: not valid JSON ({exc}); fix it, or move it out of {p.parent}") from None
    looks = isinstance(raw, dict) and "labels" in raw and ("channel_names" in raw or "modality" in raw)
    return p if looks else None


def read_layout(path: str | os.PathLike, kind: str | None = None) -> DatasetLayout:
    """Parse the ``dataset.json`` of a dataset folder (or the file itself).

    ``kind``: ``nnunet``, ``decathlon`` or None (told apart by ``channel_names`` /
    ``modality`` with ``training``). Raises :class:`LayoutError` naming the file and the key.
    """
    p = Path(path).expanduser()
    json_path = p if p.is_file() else p / "dataset.json"
    if not json_path.is_file():
        raise LayoutError(f"{json_path}: not found (a dataset folder holds dataset.json)")
    raw = read_json_object(json_path, LayoutError)
    if kind is None:
        kind = "nnunet" if "channel_names" in raw or "file_ending" in raw else "decathlon"
    if kind not in LAYOUTS:
        raise LayoutError(f"{json_path}: layout {kind!r} is not one of {', '.join(LAYOUTS)}")
    # nnU-Net v2 also reads the v1 name "modality"
    key = "modality" if kind == "decathlon" or ("channel_names" not in raw and "modality" in raw) else "channel_names"
    channels = _channel_names(raw.get(key), json_path, key)
    if kind == "nnunet":
        ending = raw.get("file_ending")
        if not isinstance(ending, str) or not ending.startswith("."):
            raise LayoutError(f"{json_path}: file_ending: expected a file ending such as '.nii.gz', got {ending!r}")
        names, regions = _nnunet_labels(raw.get("labels"), json_path)
        labels = _defined_labels(names, regions, raw.get("regions_class_order"), json_path)
    else:
        ending = ""
        names, regions = _decathlon_labels(raw.get("labels"), json_path), {}
        labels = tuple(sorted(names))
    return DatasetLayout(kind, json_path.resolve(), channels, names, regions, ending, raw, labels)


def _defined_labels(names: dict[int, str], regions: dict, order, path: Path) -> tuple[int, ...]:
    """The label values an nnU-Net ``dataset.json`` defines: each single-valued ``labels``
    entry and, for region-based datasets, the values of ``regions_class_order`` (the labels
    the regions are painted with). Every region must name only these: the same check
    (:func:`~medbench_fast.metrics.regions.make_regions`) as regions from the config or
    ``--regions``, so a value no label defines is never scored as a label of its own."""
    from medbench_fast.metrics.regions import make_regions

    defined = set(names)
    if order is not None:
        if not isinstance(order, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                   for v in order):
            raise LayoutError(f"{path}: regions_class_order: expected a list of label values > 0, got {order!r}")
        defined |= set(order)
    try:
        make_regions(regions, known_labels=defined, where="labels")
    except ValueError as exc:
        hint = "" if order is not None else " (a region-based dataset lists its label values in regions_class_order)"
        raise LayoutError(f"{path}: {exc}{hint}") from None
    return tuple(sorted(defined))


def _channel_names(value, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(value, dict) or not value:
        raise LayoutError(f"{path}: {key}: expected a mapping of channel index to name, e.g. {{\"0\": \"CT\"}}")
    try:
        items = sorted((int(k), v) for k, v in value.items())
    except ValueError:
        raise LayoutError(f"{path}: {key}: keys must be channel indices 0, 1, ...; got {sorted(value)}") from None
    if [k for k, _ in items] != list(range(len(items))) or not all(isinstance(v, str) and v for _, v in items):
        raise LayoutError(f"{path}: {key}: expected names for channels 0..{len(items) - 1}, got {value}")
    names = tuple(v for _, v in items)
    if len({n.lower() for n in names}) != len(names):
        raise LayoutError(f"{path}: {key}: channel names repeat: {list(names)}")
    return names


def _label_value(value, path: Path, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LayoutError(f"{path}: {where}: expected a non-negative integer label value, got {value!r}")
    if value:
        from medbench_fast.metrics.regions import check_label

        try:
            check_label(value, where)
        except ValueError as exc:
            raise LayoutError(f"{path}: {exc}") from None
    return value


def _nnunet_labels(value, path: Path) -> tuple[dict[int, str], dict[str, tuple[int, ...]]]:
    """nnU-Net ``labels``: ``{name: value}`` or ``{name: [values]}`` (a region)."""
    if not isinstance(value, dict) or not value:
        raise LayoutError(f"{path}: labels: expected a mapping of label name to value, e.g. {{\"background\": 0}}")
    names: dict[int, str] = {}
    regions: dict[str, tuple[int, ...]] = {}
    for name, v in value.items():
        where = f"labels.{name}"
        if isinstance(v, list):
            if not v:
                raise LayoutError(f"{path}: {where}: a region needs at least one label value")
            regions[name] = tuple(sorted({_label_value(x, path, where) for x in v}))
            continue
        label = _label_value(v, path, where)
        if label in names:
            raise LayoutError(f"{path}: {where}: value {label} is also {names[label]!r}")
        names[label] = name
    names.pop(0, None)
    return names, regions


def _decathlon_labels(value, path: Path) -> dict[int, str]:
    """Decathlon ``labels``: ``{"value": name}``."""
    if not isinstance(value, dict) or not value:
        raise LayoutError(f"{path}: labels: expected a mapping of label value to name, e.g. {{\"0\": \"background\"}}")
    names = {}
    for k, name in value.items():
        try:
            label = int(k)
        except ValueError:
            raise LayoutError(f"{path}: labels: key {k!r} is not a label value") from None
        if label < 0 or not isinstance(name, str):
            raise LayoutError(f"{path}: labels.{k}: expected a name for a non-negative label value")
        names[label] = name
    names.pop(0, None)
    return names
