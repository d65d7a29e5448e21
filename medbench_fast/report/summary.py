"""Statistics of a run's metric table: per (model, label) and nnU-Net-style summaries.

Pure functions of Arrow tables. Distance metrics may hold +inf (one mask empty,
METRICS.md); means and spreads are over finite values only and ``inf_count`` says how
many were left out, unless ``worst_distance="diagonal"`` replaced them first.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from medbench_fast.metrics.selection import ALL_NAMES
from medbench_fast.report.stats import bootstrap_mean_cis

DISTANCE_METRICS = ("hd", "hd95", "assd", "masd")


def describe(values) -> dict:
    """count, nan_count, inf_count, mean, std (ddof=1), median, q25, q75 and ``ci95`` (seeded
    bootstrap interval of the mean) over the finite values."""
    return describe_many([values])[0]


def describe_many(samples) -> list[dict]:
    """:func:`describe` of each of ``samples``, their bootstrap intervals computed together
    (:func:`~medbench_fast.report.stats.bootstrap_mean_cis`)."""
    arrays = [np.asarray(values, dtype=np.float64) for values in samples]  # None -> NaN
    finites = [arr[np.isfinite(arr)] for arr in arrays]
    out = []
    for arr, finite, ci in zip(arrays, finites, bootstrap_mean_cis(finites)):
        entry = {"count": int(arr.size), "nan_count": int(np.isnan(arr).sum()), "inf_count": int(np.isinf(arr).sum())}
        if finite.size:
            q25, median, q75 = np.percentile(finite, [25, 50, 75])
            entry.update(mean=float(finite.mean()), std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
                         median=float(median), q25=float(q25), q75=float(q75), ci95=list(ci))
        else:
            entry.update(mean=None, std=None, median=None, q25=None, q75=None, ci95=None)
        out.append(entry)
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


def foreground_per_case(metrics: pa.Table) -> tuple[dict, dict]:
    """Per-case means over foreground labels (label 0 left out) and their left-out infinities.

    Returns ``(means, inf_labels)``, both ``{model: {case_id: {metric: ...}}}``, cases in
    (model, case_id) order: the mean over the case's labels with a finite value (NaN labels
    skipped; +inf when every defined label is +inf, NaN when none is defined), and how many
    labels were +inf (left out of the mean). Each mean is numpy's ``finite.mean()`` of the
    case's finite values in table order, to the last bit: numpy sums fewer than 8 values left
    to right from 0, as the vectorised sum here does one label position at a time (adding 0
    for a value left out changes no bit); cases with 8 or more finite labels use numpy itself.
    """
    names = present_metrics(metrics)
    rows = metrics.select(["model", "case_id", "label", *names]).to_pydict()
    foreground = [i for i, label in enumerate(rows["label"]) if label != 0]
    keys = [(rows["model"][i], rows["case_id"][i]) for i in foreground]
    order = sorted(set(keys))
    group_of = {key: g for g, key in enumerate(order)}
    group = np.fromiter((group_of[key] for key in keys), dtype=np.int64, count=len(keys))
    by_group = np.argsort(group, kind="stable")  # each case's rows in table order
    picked = np.asarray(foreground, dtype=np.int64)[by_group]
    group = group[by_group]
    starts = np.searchsorted(group, np.arange(len(order)))
    sizes = np.bincount(group, minlength=len(order))
    position = np.arange(group.size) - starts[group]
    columns_mean, columns_inf = {}, {}
    for name in names:
        values = np.asarray(rows[name], dtype=np.float64)[picked]  # None -> NaN
        finite = np.isfinite(values)
        n_finite = np.bincount(group[finite], minlength=len(order))
        n_inf = np.bincount(group[np.isinf(values)], minlength=len(order))
        total = np.zeros(len(order))
        for j in range(int(position.max()) + 1 if position.size else 0):
            at = position == j
            total[group[at]] += np.where(finite[at], values[at], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n_finite
        for g in np.flatnonzero(n_finite >= 8):  # numpy's pairwise summation
            case = values[starts[g]:starts[g] + sizes[g]]
            mean[g] = case[np.isfinite(case)].mean()
        columns_mean[name] = np.where(n_finite > 0, mean, np.where(n_inf > 0, math.inf, math.nan)).tolist()
        columns_inf[name] = n_inf.tolist()
    means: dict = {}
    infs: dict = {}
    for g, (model, case_id) in enumerate(order):
        means.setdefault(model, {})[case_id] = {name: columns_mean[name][g] for name in names}
        infs.setdefault(model, {})[case_id] = {name: columns_inf[name][g] for name in names}
    return means, infs


def model_summary(means: dict, inf_labels: dict) -> dict:
    """``{model: {"cases": n, metric: describe(...) + inf_labels, cases_with_inf}}`` over the
    per-case foreground means of :func:`foreground_per_case`."""
    out = {}
    keys, samples = [], []
    for model, cases in means.items():
        out[model] = {"cases": len(cases)}
        for name in next(iter(cases.values())).keys() if cases else ():
            keys.append((model, name))
            samples.append([v[name] for v in cases.values()])
    for (model, name), stats in zip(keys, describe_many(samples)):
        counts = [inf_labels[model][c][name] for c in means[model]]
        out[model][name] = {**stats, "inf_labels": sum(counts), "cases_with_inf": sum(1 for n in counts if n)}
    return out


def per_label_summary(metrics: pa.Table) -> dict:
    """``{model: {label: {"label_name", "cases", metric: describe(...)}}}``."""
    names = present_metrics(metrics)
    out: dict = {}
    rows = metrics.to_pydict()
    groups: dict[tuple[str, int], list[int]] = {}
    for i, key in enumerate(zip(rows["model"], rows["label"])):
        groups.setdefault(key, []).append(i)
    keys, samples = [], []
    for (model, label), idx in sorted(groups.items()):
        out.setdefault(model, {})[str(label)] = {"label_name": rows["label_name"][idx[0]], "cases": len(idx)}
        for name in names:
            keys.append((model, str(label), name))
            column = rows[name]
            samples.append([column[i] for i in idx])
    for (model, label, name), stats in zip(keys, describe_many(samples)):
        out[model][label][name] = stats
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


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    arr = np.asarray(values, dtype=np.float64)
    if not arr.size:
        return None, None
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def case_summary(cases: pa.Table) -> dict:
    """Per model: cases, successes, failures (with errors), success rate and the mean and std
    (ddof=1) of the inference time of successful cases in seconds (None when not timed)."""
    out: dict = {}
    times: dict[str, list[float]] = {}
    for r in cases.select(["model", "case_id", "success", "error", "inference_s"]).to_pylist():
        m = out.setdefault(r["model"], {"cases": 0, "successful": 0, "failed": 0, "failures": []})
        m["cases"] += 1
        if r["success"]:
            m["successful"] += 1
            if r["inference_s"] is not None:
                times.setdefault(r["model"], []).append(r["inference_s"])
        else:
            m["failed"] += 1
            m["failures"].append({"case_id": r["case_id"], "error": r["error"]})
    for model, m in out.items():
        m["success_rate"] = m["successful"] / m["cases"] if m["cases"] else None
        m["avg_inference_time"], m["std_inference_time"] = _mean_std(times.get(model, []))
    return out


def seed_fields(cases: pa.Table) -> dict:
    """The seed prototype's summary fields over all rows of ``cases.parquet``."""
    rows = cases.select(["success", "inference_s"]).to_pylist()
    ok = [r for r in rows if r["success"]]
    avg, std = _mean_std([r["inference_s"] for r in ok if r["inference_s"] is not None])
    return {"total_cases": len(rows), "successful_cases": len(ok),
            "success_rate": len(ok) / len(rows) if rows else None,
            "avg_inference_time": avg, "std_inference_time": std}
