"""Latency statistics: per-stage percentiles from ``cases.parquet`` and profiles from ``latency.parquet``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Timed stages of ``cases.parquet`` (``<stage>_s`` columns), in pipeline order.
STAGES = ("load", "preprocess", "inference", "postprocess", "metrics", "total")
PERCENTILES = (50, 90, 95, 99)


def stage_stats(seconds) -> dict:
    """count, p50/p90/p95/p99, mean and std in ms, total seconds, and throughput (items per second
    of stage time, i.e. as if the stage ran alone, one item at a time)."""
    arr = np.asarray(seconds, dtype=np.float64)
    ms = arr * 1e3
    out = {"count": int(arr.size)}
    out.update({f"p{q}_ms": float(v) for q, v in zip(PERCENTILES, np.percentile(ms, PERCENTILES))})
    total = float(arr.sum())
    out.update(mean_ms=float(ms.mean()), std_ms=float(ms.std(ddof=1)) if arr.size > 1 else 0.0, total_s=total,
               throughput_per_s=arr.size / total if total > 0 else None)
    return out


def stage_summary(cases: pa.Table) -> dict:
    """``{model: {stage: stage_stats}}`` over successful cases, for stages that were timed."""
    stages = [s for s in STAGES if f"{s}_s" in cases.column_names]
    rows = cases.select(["model", "success"] + [f"{s}_s" for s in stages]).to_pylist()
    out: dict = {}
    for model in sorted({r["model"] for r in rows}):
        ok = [r for r in rows if r["model"] == model and r["success"]]
        per_stage = {}
        for stage in stages:
            values = [r[f"{stage}_s"] for r in ok if r[f"{stage}_s"] is not None]
            if values:
                per_stage[stage] = stage_stats(values)
        out[model] = per_stage
    return out


def headline_stage(stages: dict) -> str | None:
    """The stage the leaderboard quotes: ``inference`` when timed, else ``total``."""
    for stage in ("inference", "total"):
        if stage in stages:
            return stage
    return None


def profile_rows(latency: pa.Table | None) -> dict:
    """``{model: [profile rows without raw samples]}`` from ``latency.parquet``, sorted by provider and batch size."""
    if latency is None:
        return {}
    columns = [c for c in latency.column_names if c not in ("samples_ms", "run_id")]
    out: dict = {}
    for row in latency.select(columns).to_pylist():
        out.setdefault(row["model"], []).append({k: v for k, v in row.items() if k != "model"})
    return {m: sorted(rows, key=lambda r: (r["provider"] or "", r["batch_size"] or 0)) for m, rows in sorted(out.items())}


def wall_throughput(info: dict) -> dict | None:
    """Cases per second of the run's pipeline loop on the wall clock, when ``run.json`` records it
    (``cases_run`` and ``loop_s``); every model and overlapped stage together."""
    cases, seconds = info.get("cases_run"), info.get("loop_s")
    if not cases or not seconds:
        return None
    return {"cases": cases, "seconds": seconds, "cases_per_s": cases / seconds}
