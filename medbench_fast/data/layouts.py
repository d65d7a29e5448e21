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

This module reads ``dataset.json``; the cases of a layout are listed by
:func:`medbench_fast.data.pairing.layout_cases`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.files import read_json_object

LAYOUTS = ("nnunet", "decathlon")
SPLITS = ("train", "test")
#: ``{split: (images folder, labels folder)}`` of an nnU-Net raw dataset (and a Decathlon task).
SPLIT_FOLDERS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}


class LayoutError(ValueError):
    """A dataset folder or its ``dataset.json`` is not usable; the message names the file and key."""


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
