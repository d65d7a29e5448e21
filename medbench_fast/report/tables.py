"""Report files derived from a run folder's Parquet tables: ``results.csv`` and ``summary.json``.

Pure functions of ``metrics.parquet``, ``cases.parquet`` and ``run.json``: rebuilding them
from the same files gives byte-identical output.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from medbench_fast.report.summary import case_summary, nnunet_summary, per_label_summary, replace_inf_by_diagonal
from medbench_fast.store.run_info import read_run_json


def _json_safe(value):
    """NaN becomes null and infinities the strings "inf"/"-inf" (strict JSON has neither)."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def build_summary(run_dir: str | os.PathLike, *, worst_distance: str = "inf") -> dict:
    """The ``summary.json`` content of a run folder (``worst_distance``: ``inf`` or ``diagonal``)."""
    run_dir = Path(run_dir)
    metrics = pq.read_table(run_dir / "metrics.parquet")
    cases = pq.read_table(run_dir / "cases.parquet")
    if worst_distance == "diagonal":
        metrics = replace_inf_by_diagonal(metrics, cases)
    elif worst_distance != "inf":
        raise ValueError(f"worst_distance: {worst_distance!r} is not one of inf, diagonal")
    info = read_run_json(run_dir)
    meta = {k.decode(): v.decode() for k, v in (metrics.schema.metadata or {}).items() if not k.startswith(b"ARROW")}
    return {
        "run_id": info.get("run_id"),
        "conventions": {**meta, "worst_distance": worst_distance},
        "cases": case_summary(cases),
        "per_label": per_label_summary(metrics),
        "nnunet": nnunet_summary(metrics, cases),
    }


def write_reports(run_dir: str | os.PathLike, *, worst_distance: str = "inf") -> dict[str, Path]:
    """Write ``results.csv`` (one row per model, case, label) and ``summary.json``."""
    run_dir = Path(run_dir)
    csv_path = run_dir / "results.csv"
    pcsv.write_csv(pq.read_table(run_dir / "metrics.parquet"), csv_path)
    summary_path = run_dir / "summary.json"
    summary = _json_safe(build_summary(run_dir, worst_distance=worst_distance))
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return {"csv": csv_path, "summary": summary_path}
