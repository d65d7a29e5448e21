"""``medbench estimate``: the wall time of a bigger run, from the per-stage times a run measured.

The model (written out in the README): a worker (process or actor) handles one case at a
time, so a case costs it ``t_case = decode + preprocess + inference + postprocess +
metrics`` seconds (medians over the measured cases, summed over the models). Throughput
is the smallest of four bounds:

- workers: ``W / t_case`` (W = GPUs x workers per GPU, or the CPU workers);
- GPUs: ``G / inference`` when inference ran on a GPU (one GPU runs one inference at a time);
- CPU cores: ``C / cpu_s`` with ``cpu_s`` the core-seconds of a case on the host
  (``t_case - inference`` on a GPU; ``t_case - inference + inference x threads`` on the CPU);
- the writer: ``1 / write`` (the driver alone writes, ``write_s / cases``).

The bound that is smallest names the stage that limits the run (the largest stage for the
worker and CPU bounds). The prediction is calibrated by the ratio of the measured run's
throughput to the model's prediction for the measured set-up (it absorbs overheads such
as transfer and scheduling), and assumes every worker keeps the intra-op threads of the
measured run and that volumes are read as fast as in the measured run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from medbench_fast.store.run_info import read_run_json

STAGES = ("decode", "preprocess", "inference", "postprocess", "metrics")
_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


@dataclass(frozen=True)
class Hardware:
    """A set-up: ``workers`` per GPU or CPU workers, ``gpus``, ``cores``, intra-op ``threads`` per worker."""

    workers: int
    gpus: int
    cores: int
    threads: int


@dataclass(frozen=True)
class StageTimes:
    """Median seconds per case of each stage (summed over models), and the writer's share."""

    decode: float
    preprocess: float
    inference: float
    postprocess: float
    metrics: float
    write: float
    on_gpu: bool

    @property
    def case_s(self) -> float:
        return sum(getattr(self, s) for s in STAGES)

    def cpu_s(self, threads: int) -> float:
        host = self.case_s - self.inference
        return host if self.on_gpu else host + self.inference * threads


def measured_stages(run_dir: str | os.PathLike) -> tuple[StageTimes, dict]:
    """The stage times of a finished run, and its ``run.json``."""
    run_dir = Path(run_dir)
    info = read_run_json(run_dir)
    if info.get("status") != "finished" or not (run_dir / "cases.parquet").exists():
        raise ValueError(f"{run_dir}: not a finished run (run.json status {info.get('status')!r})")
    if info.get("command") not in ("run", "evaluate"):
        raise ValueError(f"{run_dir}: a '{info.get('command')}' run cannot be scaled; estimate needs a "
                         f"'medbench run' or 'medbench evaluate' folder")
    cases = pq.read_table(run_dir / "cases.parquet").to_pylist()
    # an evaluation's cases are decoded and scored, with no inference
    ok = [c for c in cases if c["success"] and (c.get("inference_s") is not None or info["command"] == "evaluate")]
    if not ok:
        raise ValueError(f"{run_dir}: no successful (model, case) pair to measure")
    per_case: dict[str, dict[str, float]] = {}
    for c in ok:
        d = per_case.setdefault(c["case_id"], {s: 0.0 for s in STAGES})
        d["decode"] = c.get("load_s") or 0.0  # read once per case, given to every model
        for stage in ("preprocess", "inference", "postprocess", "metrics"):
            d[stage] += c.get(f"{stage}_s") or 0.0
    med = {s: float(np.median([d[s] for d in per_case.values()])) for s in STAGES}
    providers = [p for m in (info.get("models") or {}).values() for p in (m.get("providers_in_use") or [])[:1]]
    write = (info.get("write_s") or 0.0) / max(1, info.get("cases_run") or len(per_case))
    return StageTimes(**med, write=write, on_gpu=any(p in _GPU_PROVIDERS for p in providers)), info


def bounds(stages: StageTimes, hw: Hardware) -> dict[str, float]:
    """Cases per second allowed by each resource."""
    out = {"workers": hw.workers / stages.case_s if stages.case_s > 0 else float("inf"),
           "cpu": hw.cores / stages.cpu_s(hw.threads) if stages.cpu_s(hw.threads) > 0 else float("inf"),
           "write": 1.0 / stages.write if stages.write > 0 else float("inf")}
    if stages.on_gpu:
        out["gpu"] = hw.gpus / stages.inference if stages.inference > 0 else float("inf")
    return out


def measured_hardware(info: dict) -> Hardware:
    """The set-up a run used, from its ``run.json``."""
    workers = info.get("workers") or []
    gpus = {w.get("cuda_visible_devices") for w in workers if w.get("cuda_visible_devices")}
    if info.get("command") == "evaluate":  # one core decodes and scores a case
        return Hardware(workers=max(1, len(workers)), gpus=0, cores=(info.get("hardware") or {}).get("cpu_count")
                        or os.cpu_count() or 1, threads=1)
    threads = max([w.get("threads") or 0 for w in workers] + [(info.get("resolved_config") or {}).get(
        "benchmark", {}).get("threads") or 0]) or (info.get("hardware") or {}).get("cpu_count") or 1
    return Hardware(workers=max(1, len(workers)), gpus=len(gpus), cores=(info.get("hardware") or {}).get("cpu_count")
                    or os.cpu_count() or 1, threads=int(threads))


def estimate(run_dir: str | os.PathLike, *, cases: int, gpus: int = 0, cpu_cores: int | None = None,
             workers_per_gpu: int = 1, workers: int | None = None) -> dict:
    """Predicted wall time and bottleneck of ``cases`` cases on the given hardware."""
    stages, info = measured_stages(run_dir)
    if gpus and not stages.on_gpu:
        raise ValueError(f"{run_dir}: its inference ran on the CPU; an estimate for GPUs needs a run measured "
                         f"on a GPU (or --gpus 0)")
    if stages.on_gpu and not gpus:
        raise ValueError(f"{run_dir}: its inference ran on a GPU; give --gpus N")
    here = measured_hardware(info)
    cores = cpu_cores or here.cores
    if gpus:
        target = Hardware(workers=gpus * workers_per_gpu, gpus=gpus, cores=cores, threads=here.threads)
    else:
        target = Hardware(workers=workers or max(1, cores // here.threads), gpus=0, cores=cores, threads=here.threads)
    measured_rate = (info.get("cases_run") or 0) / info["loop_s"] if info.get("loop_s") else None
    model_rate = min(bounds(stages, here).values())
    calibration = measured_rate / model_rate if measured_rate and np.isfinite(model_rate) else 1.0
    limits = bounds(stages, target)
    resource = min(limits, key=limits.get)
    rate = limits[resource] * calibration
    cold = max([sum((w.get("cold_start_s") or {}).get(m) or 0.0 for m in (w.get("cold_start_s") or {}))
                for w in info.get("workers") or []] or [0.0])
    return {"run": str(run_dir), "cases": cases, "target": vars(target), "measured": vars(here),
            "stages_s": {s: getattr(stages, s) for s in (*STAGES, "write")}, "inference_on_gpu": stages.on_gpu,
            "bounds_cases_per_s": {k: v * calibration for k, v in limits.items()}, "calibration": calibration,
            "bottleneck": _stage_of(resource, stages), "limited_by": resource, "cases_per_s": rate,
            "cold_start_s": cold, "wall_s": cases / rate + cold}


def _stage_of(resource: str, stages: StageTimes) -> str:
    if resource == "gpu":
        return "inference"
    if resource == "write":
        return "write"
    names = [s for s in STAGES if not (resource == "cpu" and stages.on_gpu and s == "inference")]
    return max(names, key=lambda s: getattr(stages, s))
