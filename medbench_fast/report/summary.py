"""Statistics of a run's metric table: per (model, label) and nnU-Net-style summaries.

Pure functions of Arrow tables. Distance metrics may hold +inf (one mask empty,
METRICS.md); means and spreads are over finite values only and ``inf_count`` says how
many were left out, unless ``worst_distance="diagonal"`` replaced them first.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from medbench_fast.metrics.selection import ALL_NAMES, SURFACE_METRIC_NAMES

DISTANCE_METRICS = ("hd", "hd95", "assd", "masd")


def describe(values) -> dict:
    """count, nan_count, inf_count, mean, std (ddof=1), median, q25, q75 over finite values."""
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    out = {"count": int(arr.size), "nan_count": int(np.isnan(arr).sum()), "inf_count": int(np.isinf(arr).sum())}
    if finite.size:
        q25, median, q75 = np.percentile(finite, [25, 50, 75])
        out.update(mean=float(finite.mean()), std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
                   median=float(median), q25=float(q25), q75=float(q75))
    else:
        out.update(mean=None, std=None, median=None, q25=None, q75=None)
    return out


def present_metrics(metrics: pa.Table) -> list[str]:
    """Metric columns of the table that hold at least one computed value."""
    return [m for m in ALL_NAMES if m in metrics.column_names and metrics.column(m).null_count < metrics.num_rows]


def replace_inf_by_diagonal(metrics: pa.Table, cases: pa.Table) -> pa.Table:
    """Replace +inf distances by the case's image diagonal in mm (BraTS-style worst value)."""
    diag = {}
    for row in cases.select(["model", "case_id", "shape", "spacing"]).to_pylist():
        if row["shape"] and row["spacing"]:
            diag[(row["model"], row["case_id"])] = math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(row["shape"], row["spacing"])))
    keys = list(zip(metrics.column("model").to_pylist(), metrics.column("case_id").to_pylist()))
    for name in DISTANCE_METRICS:
        if name not in metrics.column_names:
            continue
        col = metrics.column(name).to_pylist()
        new = [diag.get(k, v) if v is not None and math.isinf(v) else v for k, v in zip(keys, col)]
        metrics = metrics.set_column(metrics.schema.get_field_index(name), name, pa.array(new, pa.float64()))
    return metrics


def per_label_summary(metrics: pa.Table) -> dict:
    """``{model: {label: {"label_name", "cases", metric: describe(...)}}}``."""
    names = present_metrics(metrics)
    out: dict = {}
    rows = metrics.to_pydict()
    groups: dict[tuple[str, int], list[int]] = {}
    for i, key in enumerate(zip(rows["model"], rows["label"])):
        groups.setdefault(key, []).append(i)
    for (model, label), idx in sorted(groups.items()):
        entry = {"label_name": rows["label_name"][idx[0]], "cases": len(idx)}
        for name in names:
            entry[name] = describe([rows[name][i] for i in idx])
        out.setdefault(model, {})[str(label)] = entry
    return out


def nnunet_summary(metrics: pa.Table, cases: pa.Table) -> dict:
    """nnU-Net's ``summary.json`` layout per model: ``metric_per_case``, ``mean``, ``foreground_mean``.

    Dice and IoU follow the run's ``--empty`` convention; means skip NaN (as nnU-Net's nanmean).
    """
    paths = {(r["model"], r["case_id"]): r for r in cases.select(["model", "case_id", "ref_path", "pred_path"]).to_pylist()}
    rows = metrics.select(["model", "case_id", "label", "dice", "iou", "tp", "fp", "fn", "tn"]).to_pylist()
    per_model: dict = {}
    for r in rows:
        m = per_model.setdefault(r["model"], {})
        case = m.setdefault(r["case_id"], {})
        case[str(r["label"])] = {"Dice": r["dice"], "IoU": r["iou"], "TP": r["tp"], "FP": r["fp"], "FN": r["fn"],
                                 "TN": r["tn"], "n_ref": r["tp"] + r["fn"], "n_pred": r["tp"] + r["fp"]}
    out = {}
    for model, per_case in per_model.items():
        labels = sorted({lab for c in per_case.values() for lab in c}, key=int)
        mean = {}
        for lab in labels:
            vals = [c[lab] for c in per_case.values() if lab in c]
            mean[lab] = {k: _nanmean([v[k] for v in vals]) for k in vals[0]}
        fg = [lab for lab in labels if lab != "0"]
        out[model] = {
            "metric_per_case": [
                {"reference_file": paths.get((model, cid), {}).get("ref_path"),
                 "prediction_file": paths.get((model, cid), {}).get("pred_path"), "metrics": per_case[cid]}
                for cid in sorted(per_case)
            ],
            "mean": mean,
            "foreground_mean": {k: _nanmean([mean[lab][k] for lab in fg]) for k in (mean[fg[0]] if fg else {})},
        }
    return out


def _nanmean(values) -> float | None:
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else None


def case_summary(cases: pa.Table) -> dict:
    """Per model: cases, successes, failures (with errors) and success rate."""
    out: dict = {}
    for r in cases.select(["model", "case_id", "success", "error"]).to_pylist():
        m = out.setdefault(r["model"], {"cases": 0, "successful": 0, "failed": 0, "failures": []})
        m["cases"] += 1
        if r["success"]:
            m["successful"] += 1
        else:
            m["failed"] += 1
            m["failures"].append({"case_id": r["case_id"], "error": r["error"]})
    for m in out.values():
        m["success_rate"] = m["successful"] / m["cases"] if m["cases"] else None
    return out
