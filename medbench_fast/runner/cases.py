"""The cases of a benchmark run (listed by :mod:`medbench_fast.data.pairing`), their images
and their case-level targets."""

from __future__ import annotations

import csv
from pathlib import Path

from medbench_fast.config import ConfigError, DatasetConfig
from medbench_fast.data.channels import load_channel_files, load_channels_file
from medbench_fast.data.pairing import CASE_OBJECT, DatasetError, RunCase, find_cases
from medbench_fast.data.reader import Volume

__all__ = ["RunCase", "discover_cases", "load_case_image", "read_targets"]


def load_case_image(case: RunCase, *, cache=None) -> Volume:
    """The case's image: ``(Z, Y, X)``, or ``(C, Z, Y, X)`` for several channels on one grid."""
    if case.channel_paths:
        return load_channel_files(case.channel_paths, case.channel_names, cache=cache)
    return load_channels_file(case.image_path, case.channel_names, cache=cache)


def discover_cases(dataset: DatasetConfig, *, source: str = "config") -> list[RunCase]:
    """Cases of the config's ``dataset`` section (:func:`~medbench_fast.data.pairing.find_cases`)."""
    keys = ("image_dir", "seg_dir", "pattern", "manifest", "nnunet", "decathlon", "split", "max_cases",
            "dicom_labels", "dicom_unmatched")
    try:
        return find_cases(**{k: getattr(dataset, k) for k in keys}, source=source)
    except DatasetError as exc:
        raise ConfigError(str(exc)) from None


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
