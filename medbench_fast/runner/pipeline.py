"""``run_benchmark``: every model on every case, overlapped, timed, resumable.

Case-major order: each case's image and reference are read once (in a bounded prefetch
pool, through the volume cache) and given to every model in turn; metric kernels run in
their own thread as soon as a prediction exists, while the next model or case runs.
Finished cases are appended as Parquet parts every ``write_every`` cases (metrics and
scores first, the case rows last, so a case counts as done only once all its rows are
on disk). ``resume`` skips (model, case) pairs that finished successfully; a killed run
resumed this way yields exactly the rows of an uninterrupted one.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medbench_fast.data.cache import VolumeCache
from medbench_fast.data.checks import check_same_grid
from medbench_fast.data.reader import Volume, load_volume
from medbench_fast.metrics.evaluate import evaluate_pair
from medbench_fast.metrics.selection import resolve_metrics
from medbench_fast.models.base import CASE_OBJECT
from medbench_fast.runner.cases import RunCase, discover_cases, read_targets
from medbench_fast.runner.evaluate import EvaluateOptions
from medbench_fast.runner.finalize import finalize_run
from medbench_fast.runner.profile import peak_rss_mb, summarize
from medbench_fast.store import run_info
from medbench_fast.store.parts import PartWriter, dedupe_last, read_parts
from medbench_fast.store.schema import CASES_SCHEMA, SCORES_SCHEMA, metrics_schema


@dataclass
class RunResult:
    run_dir: Path
    run_id: str
    n_cases: int
    n_failed: int
    files: dict
    interrupted: bool = False
    models: dict = field(default_factory=dict)


@dataclass
class _Loaded:
    case: RunCase
    image: Volume | None = None
    ref: Volume | None = None
    load_s: float = 0.0
    error: str | None = None
    prepared: dict = field(default_factory=dict)  # model name -> Prepared or the exception it raised


def options_from_config(config: dict) -> EvaluateOptions:
    bench, data = config["benchmark"], config["dataset"]
    names = data.get("label_names") or None
    return EvaluateOptions(
        labels=tuple(data["labels"]) if data.get("labels") else None,
        metrics=resolve_metrics(bench.get("metrics")), nsd_tolerance_mm=bench["tolerance_mm"],
        surface=bench["surface"], hd95_mode=bench["hd95_mode"], empty=bench["empty"],
        label_names={int(k): str(v) for k, v in names.items()} if names else None,
    )


def _load_case(case: RunCase, cache: VolumeCache | None, models: dict) -> _Loaded:
    """Read a case and preprocess it for each of ``models`` (runs in the prefetch pool)."""
    t0 = time.perf_counter_ns()
    out = _Loaded(case)
    try:
        if case.problem:
            raise ValueError(case.problem)
        out.image = load_volume(case.image_path, cache=cache)
        if case.ref_path:
            out.ref = load_volume(case.ref_path, cache=cache)
            check_same_grid(out.image, out.ref)
    except Exception as exc:  # recorded as failed rows for every model
        out.error = str(exc)
    out.load_s = (time.perf_counter_ns() - t0) / 1e9
    if out.error is None:
        for name, model in models.items():
            try:
                mask = out.ref if _needs_mask(model) else None
                if _needs_mask(model) and mask is None:
                    raise ValueError(f"model {name!r} needs the reference mask; case {case.case_id!r} has none")
                out.prepared[name] = model.prepare(out.image, mask)
            except Exception as exc:  # this model fails on this case; the others go on
                out.prepared[name] = exc
    return out


def _done_pairs(run_dir: Path) -> set[tuple[str, str]]:
    cases = dedupe_last(read_parts(run_dir, "cases", CASES_SCHEMA), ["model", "case_id"])
    return {(m, c) for m, c, ok in zip(*(cases.column(k).to_pylist() for k in ("model", "case_id", "success"))) if ok}


class _Writer:
    """Buffers finished rows and appends them as parts (case rows last)."""

    def __init__(self, run_dir: Path, schema, write_every: int):
        self.metrics = PartWriter(run_dir, "metrics", schema)
        self.scores = PartWriter(run_dir, "scores", SCORES_SCHEMA)
        self.cases = PartWriter(run_dir, "cases", CASES_SCHEMA)
        self.write_every = write_every
        self.buffers: dict[str, list[dict]] = {"metrics": [], "scores": [], "cases": []}
        self.cases_buffered: set[str] = set()
        self.write_s: list[float] = []

    def add(self, case_id: str, metrics: list[dict], scores: list[dict], case: dict) -> None:
        self.buffers["metrics"].extend(metrics)
        self.buffers["scores"].extend(scores)
        self.buffers["cases"].append(case)
        self.cases_buffered.add(case_id)
        if len(self.cases_buffered) >= self.write_every:
            self.flush()

    def flush(self) -> None:
        if not self.buffers["cases"]:
            return
        t0 = time.perf_counter_ns()
        self.metrics.write(self.buffers["metrics"])
        self.scores.write(self.buffers["scores"])
        self.cases.write(self.buffers["cases"])  # the commit marker of the batch
        self.write_s.append((time.perf_counter_ns() - t0) / 1e9)
        for rows in self.buffers.values():
            rows.clear()
        self.cases_buffered.clear()


def _scores_rows(prediction, case_id: str, targets: dict) -> list[dict]:
    rows = []
    for obj in prediction.scores or []:
        oid = int(obj.get("object_id", CASE_OBJECT))
        truth = targets.get((case_id, oid), {})
        for key, value in obj.items():
            if key.startswith("score_"):
                name = key[len("score_"):]
                rows.append({"case_id": case_id, "object_id": oid, "target_name": name, "score": float(value),
                             "target": truth.get(name), "object_voxels": obj.get("voxels")})
    return rows


def _needs_mask(model) -> bool:
    return model.spec.strategy.type == "object_crops"


def _latency_rows(models: dict, samples: dict[str, list[float]], wall: dict[str, float], warmup: int) -> list[dict]:
    """One ``latency.parquet`` row per model from its per-case inference times (batch = one case);
    throughput is cases over the wall time of the model's ``prepare`` + ``execute`` calls."""
    rows = []
    for name, info in models.items():
        if not samples.get(name) or not wall.get(name):
            continue
        rows.append({"model": name, "provider": info["providers_in_use"][0], "batch_size": 1, "warmup": warmup,
                     "cold_start_s": info.get("cold_start_s"), **summarize(samples[name], wall[name], 1, 0.1),
                     "peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": None})
    return rows


def run_benchmark(config: dict, *, config_text: str | None = None, run_dir: str | Path | None = None,
                  resume: bool = False, models: list[str] | None = None, progress: bool | None = None,
                  cache: VolumeCache | None = None) -> RunResult:
    """Run every configured model on every case and write the run folder.

    ``run_dir``: the run folder (default ``output.dir/<run id>``); with ``resume`` it must
    hold an earlier run, whose finished (model, case) pairs are skipped. ``models``: names
    to run (default all). ``cache``: volume cache (default: the user cache folder).
    """
    bench = config["benchmark"]
    options = options_from_config(config)
    entries = [m for m in config["models"] if models is None or m["name"] in models]
    if models is not None:
        unknown = sorted(set(models) - {m["name"] for m in config["models"]})
        if unknown:
            raise ValueError(f"--models: unknown model(s) {unknown}; the config has "
                             f"{[m['name'] for m in config['models']]}")
    if not entries:
        raise ValueError("no models to run: the config's models list is empty")
    cases = discover_cases(config["dataset"])
    targets = read_targets(config["dataset"].get("targets_csv"))
    previous = run_info.read_run_json(run_dir) if resume and run_dir else {}
    if resume and not previous:
        raise ValueError(f"{run_dir}: no run.json; not a run folder to resume")
    run_id = previous.get("run_id") or run_info.new_run_id()
    run_dir = Path(run_dir) if run_dir else Path(config["output"]["dir"]) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    started = previous.get("started") or run_info.utc_now()
    info = {"run_id": run_id, "started": started, "command": "run", "config": run_info.config_record(config_text),
            "status": "running", "resumed": bool(resume)}
    run_info.write_run_json(run_dir, {**previous, **info})
    done = _done_pairs(run_dir) if resume else set()
    extra = tuple(m for m in options.metrics if m == "dice_smoothed")
    schema = metrics_schema(extra)
    cache = cache if cache is not None else VolumeCache()

    from medbench_fast.runner.model_sources import open_model

    export_dir = run_dir / "models"
    export_dir.mkdir(exist_ok=True)
    loaded_models, model_info = {}, {}
    for entry in entries:
        t0 = time.perf_counter_ns()
        model = open_model(entry, export_dir=export_dir, benchmark=bench)
        if options.labels and model.output_kind == "label_map":
            model.check_dataset_labels(options.labels)
        loaded_models[entry["name"]] = model
        model_info[entry["name"]] = {"kind": entry["kind"], "note": entry.get("note"),
                                     "session_s": (time.perf_counter_ns() - t0) / 1e9,
                                     "providers_in_use": model.providers_in_use, "spec": model.spec.to_dict()}
    writer = _Writer(run_dir, schema, bench["write_every"])
    todo = [c for c in cases if any((name, c.case_id) not in done for name in loaded_models)]
    stamp = {"run_id": run_id}
    samples: dict[str, list[float]] = {n: [] for n in loaded_models}
    wall: dict[str, float] = {n: 0.0 for n in loaded_models}
    interrupted = False
    show = sys.stderr.isatty() if progress is None else progress
    from tqdm import tqdm

    bars = [tqdm(total=len(todo), unit="case", desc="run", disable=not show, dynamic_ncols=True, file=sys.stderr)]
    bars += [tqdm(total=len(todo), desc=f"  {n[:24]}", unit="case", disable=not show, dynamic_ncols=True,
                  file=sys.stderr, position=i + 1, leave=False) for i, n in enumerate(loaded_models)]
    metric_pool = ThreadPoolExecutor(1, thread_name_prefix="medbench-metrics")
    load_pool = ThreadPoolExecutor(max(1, bench["workers"]), thread_name_prefix="medbench-load")
    pending: deque[tuple[str, dict, Future | None, list[dict]]] = deque()

    def harvest(block: bool) -> None:
        while pending and (block or pending[0][2] is None or pending[0][2].done()):
            case_id, case_row, future, score_rows = pending.popleft()
            rows: list[dict] = []
            if future is not None:
                try:
                    rows, metrics_s = future.result()
                    case_row["metrics_s"] = metrics_s
                    case_row["total_s"] += metrics_s
                except Exception as exc:  # a metric failure fails this (model, case) only
                    case_row.update(success=False, error=f"metrics: {type(exc).__name__}: {exc}")
                    rows = []
            writer.add(case_id, [{**stamp, "model": case_row["model"], "case_id": case_id, **r} for r in rows],
                       [{**stamp, "model": case_row["model"], **r} for r in score_rows], {**stamp, **case_row})

    def score(ref: Volume, pred: Volume) -> tuple[list[dict], float]:
        t0 = time.perf_counter_ns()
        rows = evaluate_pair(ref.array, pred.array, spacing=ref.spacing, labels=options.labels,
                             **options.pair_kwargs())
        return rows, (time.perf_counter_ns() - t0) / 1e9

    loop_start = time.perf_counter_ns()
    cold_ns = 0
    try:
        queue = iter(todo)
        ahead: deque[Future] = deque()
        warmed: set[str] = set()  # cold starts and warm-ups are left out of loop_s
        while True:
            while len(ahead) < max(1, bench["prefetch"]):
                case = next(queue, None)
                if case is None:
                    break
                pending_models = {n: m for n, m in loaded_models.items() if (n, case.case_id) not in done}
                ahead.append(load_pool.submit(_load_case, case, cache, pending_models))
            if not ahead:
                break
            item: _Loaded = ahead.popleft().result()
            cid = item.case.case_id
            for name, model in loaded_models.items():
                if (name, cid) in done:
                    bars[list(loaded_models).index(name) + 1].update(1)
                    continue
                row = {"model": name, "case_id": cid, "image_path": item.case.image_path, "ref_path": item.case.ref_path,
                       "success": False, "load_s": item.load_s}
                if item.image is not None:
                    row.update(shape=list(item.image.shape), spacing=list(item.image.spacing))
                future, score_rows = None, []
                try:
                    if item.error:
                        raise ValueError(item.error)
                    prepared = item.prepared[name]
                    if isinstance(prepared, Exception):
                        raise prepared
                    if name not in warmed:
                        t_cold = time.perf_counter_ns()
                        first = _cold_start(model, prepared, bench["warmup"], model_info[name])
                        _warm_metrics(item.ref, first.label_map, options)
                        warmed.add(name)
                        cold_ns += time.perf_counter_ns() - t_cold
                    t0 = time.perf_counter_ns()
                    prediction = model.execute(prepared)
                    wall[name] += (time.perf_counter_ns() - t0) / 1e9 + prediction.timings["preprocess_s"]
                    row.update(prediction.timings, success=True, error=None)
                    row["total_s"] = item.load_s + sum(prediction.timings.values())
                    samples[name].append(prediction.timings["inference_s"])
                    if prediction.label_map is not None and item.ref is not None:
                        future = metric_pool.submit(score, item.ref, prediction.label_map)
                    score_rows = _scores_rows(prediction, cid, targets)
                except Exception as exc:  # the case fails for this model; the run goes on
                    row.update(success=False, error=f"{type(exc).__name__}: {exc}" if not item.error else item.error)
                pending.append((cid, row, future, score_rows))
                bars[list(loaded_models).index(name) + 1].update(1)
                harvest(block=len(pending) > 2 * len(loaded_models))
            bars[0].update(1)
        harvest(block=True)
    except KeyboardInterrupt:
        interrupted = True
        for f in ahead:
            f.cancel()
        harvest(block=True)
    finally:
        writer.flush()
        load_pool.shutdown(wait=True, cancel_futures=True)
        metric_pool.shutdown(wait=True)
        for bar in bars:
            bar.close()
    info.update(status="interrupted" if interrupted else "finished", models=model_info,
                loop_s=(time.perf_counter_ns() - loop_start - cold_ns) / 1e9, cases_run=len(todo),
                loop_peak_rss_mb=peak_rss_mb(),
                write_s=sum(writer.write_s), config=run_info.config_record(config_text) or previous.get("config"))
    if interrupted:
        run_info.write_run_json(run_dir, {**previous, **info})
        return RunResult(run_dir, run_id, 0, 0, {}, interrupted=True, models=model_info)
    files = finalize_run(run_dir, info={**previous, **info}, options=options, schema=schema,
                         formats=config["output"]["formats"], threshold=bench["threshold"],
                         latency_rows=[{**stamp, **r} for r in _latency_rows(model_info, samples, wall, bench["warmup"])])
    cases_table = files.pop("_cases")
    n_failed = cases_table.num_rows - sum(cases_table.column("success").to_pylist())
    return RunResult(run_dir, run_id, cases_table.num_rows, n_failed, files, models=model_info)


def _warm_metrics(ref: Volume | None, pred: Volume | None, options: EvaluateOptions) -> None:
    """Load the metric kernels for this pair's dtypes and memory flags on tiny arrays, so
    the first case does not pay numba's dispatch and cache loading inside the timed loop."""
    if ref is None or pred is None:
        return
    tiny = []
    for vol in (ref, pred):
        arr = np.zeros((4, 4, 4), dtype=vol.array.dtype)
        arr[1:3, 1:3, 1:3] = 1
        arr.flags.writeable = bool(np.asarray(vol.array).flags.writeable)
        tiny.append(arr)
    evaluate_pair(tiny[0], tiny[1], spacing=(1.0, 1.0, 1.0), labels=[1], **options.pair_kwargs())


def _cold_start(model, prepared, warmup: int, info: dict):
    """First run (cold start, added to session creation) and untimed warm-up runs, on a
    prepared case; the timed run of that case follows them. Returns the first prediction."""
    t0 = time.perf_counter_ns()
    first_prediction = model.execute(prepared)
    first = (time.perf_counter_ns() - t0) / 1e9 + prepared.preprocess_s
    info["first_run_s"] = first
    info["cold_start_s"] = info["session_s"] + first
    warm = []
    for _ in range(max(0, warmup - 1)):
        t0 = time.perf_counter_ns()
        model.execute(prepared)
        warm.append((time.perf_counter_ns() - t0) / 1e9)
    info["warmup_s"] = [first, *warm]
    return first_prediction
