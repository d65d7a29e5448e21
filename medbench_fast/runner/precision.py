"""Precision variants: every model run in fp32 and fp16 in one run, compared side by side.

:func:`expand_precisions` resolves ``benchmark.precision`` (or ``--precision``) at model
resolution time: with two precisions each model entry becomes ``<name>-fp32`` and
``<name>-fp16``, which run as ordinary models on the same cases. :func:`precision_report`
then pairs them in the finished run folder: per label, the mean Dice and HD95 of each
precision and the paired per-case differences (fp16 minus fp32), and per model the median
``inference_s`` of each and the speed-up (fp32 median over fp16 median).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from medbench_fast.config import Config
from medbench_fast.files import write_text_atomic

PRECISIONS = ("fp32", "fp16")


def parse_precisions(text: str | None) -> list[str] | None:
    """``"fp32,fp16"`` -> ``["fp32", "fp16"]``; a :class:`ValueError` names a bad value."""
    if not text:
        return None
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in PRECISIONS]
    if bad or not values or len(set(values)) != len(values):
        raise ValueError(f"--precision: {text!r} must list distinct values among {', '.join(PRECISIONS)}")
    return values


def expand_precisions(config: Config, precisions: list[str] | None) -> tuple[Config, dict[str, dict[str, str]]]:
    """``config`` with one model entry per model and precision, and ``{base name: {precision:
    model name}}``.

    One precision keeps model names (the entry's ``precision`` is set); several add a
    ``-<precision>`` suffix. A config expanded already (a resumed run's) is returned as it is.
    """
    pairs: dict[str, dict[str, str]] = {}
    if not precisions or any(e.precision for e in config.models):  # none asked, or expanded already
        return config, recorded_precisions(config)
    expanded = []
    for entry in config.models:
        for precision in precisions:
            name = entry.name if len(precisions) == 1 else f"{entry.name}-{precision}"
            expanded.append(replace(entry, name=name, precision=precision))
            pairs.setdefault(entry.name, {})[precision] = name
    return replace(config, models=tuple(expanded)), pairs


def recorded_precisions(config: Config) -> dict[str, dict[str, str]]:
    """``{base name: {precision: model name}}`` of models already expanded (a resumed run's config)."""
    pairs: dict[str, dict[str, str]] = {}
    for entry in config.models:
        precision = entry.precision
        if precision:
            name = entry.name
            base = name[: -len(precision) - 1] if name.endswith(f"-{precision}") else name
            pairs.setdefault(base, {})[precision] = name
    return pairs


def _mean(values) -> float | None:
    a = np.asarray([v for v in values if v is not None and not math.isnan(v) and not math.isinf(v)], np.float64)
    return float(a.mean()) if a.size else None


def _max_abs(values) -> float | None:
    a = np.asarray([v for v in values if v is not None and not math.isnan(v) and not math.isinf(v)], np.float64)
    return float(np.abs(a).max()) if a.size else None


def precision_report(run_dir: str | Path, pairs: dict[str, dict[str, str]]) -> dict:
    """Compare fp16 with fp32 per model and label in ``run_dir``; writes ``precision.json``
    and ``precision.csv`` there and returns ``{"labels": rows, "speed": rows}``."""
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    metrics = pq.read_table(run_dir / "metrics.parquet", columns=["model", "case_id", "label", "dice", "hd95"]).to_pylist()
    cases = pq.read_table(run_dir / "cases.parquet", columns=["model", "case_id", "success", "inference_s"]).to_pylist()
    by_label: dict[tuple[str, int], dict[str, dict]] = {}
    for r in metrics:
        by_label.setdefault((r["model"], r["label"]), {})[r["case_id"]] = r
    label_rows, speed_rows = [], []
    for base, names in sorted(pairs.items()):
        if "fp32" not in names or "fp16" not in names:
            continue
        ref, half = names["fp32"], names["fp16"]
        labels = sorted(label for model, label in by_label if model == ref)
        for label in labels:
            a_rows, b_rows = by_label[(ref, label)], by_label.get((half, label), {})
            paired = [(a_rows[c], b_rows[c]) for c in sorted(a_rows) if c in b_rows]
            row = {"model": base, "label": label, "cases": len(paired)}
            for metric in ("dice", "hd95"):
                a = [p[0][metric] for p in paired]
                b = [p[1][metric] for p in paired]
                deltas = [y - x for x, y in zip(a, b) if x is not None and y is not None]
                row.update({f"{metric}_fp32": _mean(a), f"{metric}_fp16": _mean(b),
                            f"{metric}_delta_mean": _mean(deltas), f"{metric}_delta_max_abs": _max_abs(deltas)})
            label_rows.append(row)
        times = {}
        for precision, name in (("fp32", ref), ("fp16", half)):
            values = [c["inference_s"] for c in cases if c["model"] == name and c["success"] and c["inference_s"]]
            times[precision] = float(np.median(values)) if values else None
        speedup = times["fp32"] / times["fp16"] if times["fp32"] and times["fp16"] else None
        speed_rows.append({"model": base, "inference_s_fp32": times["fp32"], "inference_s_fp16": times["fp16"],
                           "speedup": speedup})
    report = {"labels": label_rows, "speed": speed_rows}
    table = io.StringIO(newline="")
    if label_rows:
        speed = {r["model"]: r for r in speed_rows}
        fields = list(label_rows[0]) + ["inference_s_fp32", "inference_s_fp16", "speedup"]
        writer = csv.DictWriter(table, fieldnames=fields)
        writer.writeheader()
        for row in label_rows:
            writer.writerow({**row, **{k: v for k, v in speed[row["model"]].items() if k != "model"}})
    write_text_atomic(run_dir / "precision.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(run_dir / "precision.csv", table.getvalue())
    return report


def format_report(report: dict) -> str:
    """A plain-text table of :func:`precision_report`'s result."""
    def f(v, digits=4):
        return "-" if v is None else f"{v:.{digits}f}"

    lines = [f"{'model':<20} {'label':>5} {'dice fp32':>9} {'dice fp16':>9} {'d dice':>9} {'max|d|':>9} "
             f"{'hd95 fp32':>9} {'hd95 fp16':>9} {'d hd95':>9}"]
    for r in report["labels"]:
        lines.append(f"{r['model'][:20]:<20} {r['label']:>5} {f(r['dice_fp32']):>9} {f(r['dice_fp16']):>9} "
                     f"{f(r['dice_delta_mean'], 5):>9} {f(r['dice_delta_max_abs'], 5):>9} {f(r['hd95_fp32'], 2):>9} "
                     f"{f(r['hd95_fp16'], 2):>9} {f(r['hd95_delta_mean'], 3):>9}")
    for r in report["speed"]:
        lines.append(f"{r['model']}: inference p50 fp32 {f(r['inference_s_fp32'])} s, fp16 {f(r['inference_s_fp16'])} s, "
                     f"speed-up {f(r['speedup'], 2)}x")
    return "\n".join(lines)
