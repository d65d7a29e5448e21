"""What worker processes and Ray actors share: how they start, and how results travel.

A remote worker gets a :class:`WorkerInit` (picklable: resolved models, options, targets,
settings), opens its own sessions after ``CUDA_VISIBLE_DEVICES`` is set for it, and
returns each case as a :class:`PackedResult`: Arrow record batches of its rows plus the
inference samples, so the driver's sink writes exactly what a local run writes.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from medbench_fast.config import BenchmarkConfig
from medbench_fast.runner.worker import (
    CaseResult,
    CaseWorker,
    ModelOutcome,
    worker_identity,
)

#: Case rows travel without these (they are added by the sink).
_CASE_ONLY = ("run_id",)


@dataclass(frozen=True)
class WorkerInit:
    """Everything a remote worker needs to open its models and score cases."""

    resolved: tuple  # ResolvedModel, in model order
    benchmark: BenchmarkConfig | None  # None: an evaluation (no model to open)
    options: object  # MetricOptions
    targets: dict
    cache_dir: str | None
    use_cache: bool
    metrics_schema: pa.Schema
    threads: int | None = None
    gpu: str | None = None
    seg_dir: str | None = None  # output.dicom_seg
    pred_dir: str | None = None  # output.save_predictions
    predictions: bool = False  # an evaluation: the cases carry their saved predictions (no model to open)
    warmup: int = 1


@dataclass
class PackedResult:
    """A :class:`CaseResult` as Arrow record batches (metrics, scores, cases) plus per-model extras."""

    case_id: str
    metrics: pa.RecordBatch
    scores: pa.RecordBatch
    cases: pa.RecordBatch
    extras: list[tuple[float | None, float]] = field(default_factory=list)  # (inference_s, busy_s) per model
    model_info: dict = field(default_factory=dict)
    gpus: list | None = None  # the worker's GPUs with its sampled peak memory so far (GpuWatch.record)


def _schemas(metrics_schema: pa.Schema):
    from medbench_fast.store.schema import CASES_SCHEMA, SCORES_SCHEMA

    drop = lambda schema: pa.schema([f for f in schema if f.name != "run_id"])  # noqa: E731
    return drop(metrics_schema), drop(SCORES_SCHEMA), drop(CASES_SCHEMA)


def pack(result: CaseResult, metrics_schema: pa.Schema, model_info: dict, gpus: list | None = None) -> PackedResult:
    m_schema, s_schema, c_schema = _schemas(metrics_schema)
    metrics, scores, cases, extras = [], [], [], []
    for o in result.outcomes:
        metrics.extend(o.metric_rows)
        scores.extend({"model": o.case_row["model"], **r} for r in o.score_rows)
        cases.append(o.case_row)
        extras.append((o.inference_s, o.busy_s))
    return PackedResult(result.case_id, pa.RecordBatch.from_pylist(metrics, schema=m_schema),
                        pa.RecordBatch.from_pylist(scores, schema=s_schema),
                        pa.RecordBatch.from_pylist(cases, schema=c_schema), extras, model_info, gpus)


def unpack(packed: PackedResult) -> CaseResult:
    """Back to rows; values are exactly those the worker computed (Arrow keeps float64 bits)."""
    metrics = packed.metrics.to_pylist()
    scores = packed.scores.to_pylist()
    outcomes = []
    for row, (inference_s, busy_s) in zip(packed.cases.to_pylist(), packed.extras):
        key = (row["model"], row["case_id"])
        outcomes.append(ModelOutcome(
            row, [r for r in metrics if (r["model"], r["case_id"]) == key],
            [{k: v for k, v in r.items() if k != "model"} for r in scores if r["model"] == row["model"]],
            inference_s, busy_s))
    return CaseResult(packed.case_id, outcomes)


def failed_result(case, names, error: str) -> CaseResult:
    """Failed rows for every model of ``case`` (a worker died on it twice)."""
    outcomes = [ModelOutcome({"model": n, "case_id": case.case_id, "image_path": case.image_path,
                              "ref_path": case.ref_path, "pred_path": case.pred_path, "success": False, "error": error},
                             [], [])
                for n in names]
    return CaseResult(case.case_id, outcomes)


class RetryOnce:
    """The case of a worker that died goes back to the front of ``waiting`` once; the second
    time it becomes failed rows naming the cause (written by ``sink``, counted on ``bar``)."""

    def __init__(self, waiting, sink, bar):
        self.waiting, self.sink, self.bar = waiting, sink, bar
        self.attempts: dict[str, int] = {}

    def worker_died(self, task, cause: str) -> None:
        """``task``: the ``(case, model names)`` the worker held, or None when it was idle."""
        if task is None:
            return
        case, names = task
        self.attempts[case.case_id] = self.attempts.get(case.case_id, 0) + 1
        if self.attempts[case.case_id] > 1:
            self.sink.add(failed_result(case, names, f"{cause} on this case, twice"))
            self.bar.update(1)
        else:
            self.waiting.appendleft(task)


def open_worker(init: WorkerInit) -> tuple[CaseWorker, dict]:
    """Open the models of ``init`` in this process; returns the worker and its identity record."""
    import time

    from medbench_fast.data.cache import VolumeCache
    from medbench_fast.runner.model_sources import open_resolved, watch_gpus
    from medbench_fast.runner.worker import PredictionWorker

    cache = VolumeCache(init.cache_dir) if init.use_cache else None
    if init.predictions:
        return PredictionWorker(init.options, cache), {**worker_identity(), "threads": init.threads}
    watch = watch_gpus(init.benchmark)
    models, info = {}, {}
    for resolved in init.resolved:
        t0 = time.perf_counter_ns()
        model = open_resolved(resolved, benchmark=init.benchmark, threads=init.threads)
        models[resolved.name] = model
        info[resolved.name] = {"session_s": (time.perf_counter_ns() - t0) / 1e9,
                               "providers_in_use": model.providers_in_use, "spec": resolved.spec,
                               **model.run_facts()}
    worker = CaseWorker(models, info, init.options, init.targets, cache, init.warmup,
                        seg_dir=Path(init.seg_dir) if init.seg_dir else None,
                        pred_dir=Path(init.pred_dir) if init.pred_dir else None)
    identity = {**worker_identity(), "threads": init.threads,
                "providers_in_use": {n: m.providers_in_use for n, m in models.items()},
                "gpus": watch.start().record()}
    return worker, identity


def pin_gpu(gpu: str | None) -> None:
    """Set ``CUDA_VISIBLE_DEVICES`` before onnxruntime is imported in this process."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu


def ignore_sigint() -> None:
    """Workers leave Ctrl-C to the driver, which stops them in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
