"""``run_benchmark``: every model on every case, on one executor, resumable, shardable.

A run is a plan (which (case, model) pairs remain, :mod:`~medbench_fast.runner.plan`), a
case worker (load, prepare, infer, score one case, :mod:`~medbench_fast.runner.worker`),
a sink (the single writer of the run's parts, :mod:`~medbench_fast.runner.sink`) and
finalize (:mod:`~medbench_fast.runner.finalize`). Executors differ only in where case
workers run (:mod:`~medbench_fast.runner.executors`): threads in this process (default),
worker processes pinned to GPUs, or Ray actors. ``resume`` skips (model, case) pairs that
finished successfully; a killed run resumed this way yields exactly the rows of an
uninterrupted one. A shard (``K/N``) runs its subset of the cases into the same folder
under its own part namespace; ``resume`` consolidates once every shard has finished.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from medbench_fast.config import Config
from medbench_fast.data.cache import VolumeCache
from medbench_fast.files import atomic_create, path_inside, write_text_atomic
from medbench_fast.runner.executors.base import ExecStats
from medbench_fast.runner.finalize import finalize_run
from medbench_fast.runner.identity import RunFolder, RunFolderError, case_list_change, run_fingerprint
from medbench_fast.runner.plan import RunPlan, Shard, done_pairs
from medbench_fast.runner.profile import peak_rss_mb, summarize
from medbench_fast.runner.scale import ScaleOptions
from medbench_fast.runner.sink import RunSink
from medbench_fast.store import run_info
from medbench_fast.store.fingerprint import Fingerprint
from medbench_fast.store.schema import metrics_schema

#: Where each shard of a run records its status (never written by another shard).
SHARDS_DIR = "shards"


@dataclass
class RunResult:
    run_dir: Path
    run_id: str
    n_cases: int
    n_failed: int
    files: dict
    interrupted: bool = False
    models: dict = field(default_factory=dict)
    shard_done: Shard | None = None  # a shard that finished; the run is consolidated later


def _latency_rows(models: dict, samples: dict[str, list[float]], busy: dict[str, float], warmup: int) -> list[dict]:
    """One ``latency.parquet`` row per model from its per-case inference times (batch = one case);
    throughput is cases over the seconds spent in the model's ``prepare`` + ``execute`` calls
    (per worker: the run's wall-clock rate is ``run.json``'s ``cases_run / loop_s``)."""
    rows = []
    for name, info in models.items():
        if not samples.get(name) or not busy.get(name):
            continue
        rows.append({"model": name, "provider": info["providers_in_use"][0], "batch_size": 1, "warmup": warmup,
                     "cold_start_s": info.get("cold_start_s"), **summarize(samples[name], busy[name], 1, 0.1),
                     "peak_rss_mb": peak_rss_mb()})
    return rows


#: ``run_benchmark(cache=USER_CACHE)``: the volume cache in the user's cache folder.
USER_CACHE = "user"


def run_benchmark(config: Config, *, config_text: str | None = None, run_dir: str | Path | None = None,
                  resume: bool = False, overwrite: bool = False, models: list[str] | None = None,
                  progress: bool | None = None, cache: VolumeCache | str | None = USER_CACHE,
                  scale: ScaleOptions | None = None, shard: Shard | None = None) -> RunResult:
    """Run every configured model on every case and write the run folder.

    ``run_dir``: the run folder (default ``output.dir/<run id>``). A folder that holds another
    run is refused (:class:`~medbench_fast.runner.identity.RunFolderError`) unless
    ``overwrite``; with ``resume`` it must hold a run of the same fingerprint, whose finished
    (model, case) pairs are skipped. ``models``: names to run (default all). ``cache``:
    volume cache (default: the user cache folder; None: none). ``scale``: the executor (default
    local). ``shard``: run only this shard's cases into ``run_dir`` (joined by the other shards).
    """
    def plan_of(shard_: Shard | None) -> RunPlan:
        return RunPlan.from_config(config, models=models, shard=shard_)

    def identity_of(plan: RunPlan) -> Fingerprint:
        return run_fingerprint(config, plan.entries, plan.options, plan.case_ids)

    run_id = run_info.new_run_id()
    if run_dir is None and not resume:
        run_dir = Path(config.output.dir) / run_id
    return execute(plan_of, identity_of, command="run", run_id=run_id, record={"config": run_info.config_record(config_text),
                                                                "resolved_config": config.to_dict()},
                   run_dir=run_dir, resume=resume, overwrite=overwrite, progress=progress,
                   cache=VolumeCache() if cache == USER_CACHE else cache, scale=scale, shard=shard)


def execute(plan_of, identity_of, *, command: str, record: dict, run_dir: str | Path | None,
            run_id: str | None = None, resume: bool = False,
            overwrite: bool = False, progress: bool | None = None, cache: VolumeCache | None = None,
            scale: ScaleOptions | None = None, shard: Shard | None = None) -> RunResult:
    """The engine every command runs on: plan (``plan_of(shard)``), run folder checked against the
    fingerprint (``identity_of(plan)``), executor, sink and finalize; resume, shards and their
    consolidation. ``record``: what ``run.json`` records of the command besides the engine's facts."""
    scale = scale or ScaleOptions()
    scale.check()
    if shard is not None and (overwrite or resume):
        raise RunFolderError(f"--shard runs (or continues) one shard of a run: it takes neither --overwrite nor "
                             f"--resume; consolidate with medbench {command} --resume once all shards have finished")
    if resume and run_dir is None:
        raise ValueError("resume: the run folder is required")
    if resume and _recorded_shards(Path(run_dir)):
        return _finalize_shards(Path(run_dir), plan_of(None), identity_of, command=command)
    plan = plan_of(shard)
    placement = _preflight_executor(scale, plan.settings.threads, len(plan.cases))
    run_id = run_id or run_info.new_run_id()
    run_dir = Path(run_dir)
    identity = identity_of(plan)
    folder = RunFolder(run_dir, command=command)
    previous = folder.open(identity, resume=resume, overwrite=overwrite, shard=shard.namespace if shard else None,
                           case_ids=plan.case_ids)
    if shard is not None and previous and previous.get("shards") != shard.count:
        folder.close()
        raise RunFolderError(f"{run_dir}: holds a run in {previous.get('shards')} shards; --shard {shard} "
                             f"names {shard.count}")
    try:
        return _run_in_folder(plan, run_dir, identity, previous, command=command, record=record,
                              run_id=previous.get("run_id") or run_id, progress=progress, cache=cache, scale=scale,
                              placement=placement)
    except BaseException as exc:
        if shard is None:
            run_info.record_failure(run_dir, exc)
        else:
            _write_shard_status(run_dir, shard, {"status": "interrupted" if isinstance(exc, KeyboardInterrupt)
                                                 else "failed", "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        folder.close()


@dataclass(frozen=True)
class _Placement:
    """Checked executor settings: the worker slots (processes) and the Ray address."""

    slots: list | None = None
    address: str | None = None
    connected_s: float = 0.0  # seconds spent connecting to the Ray cluster at ``address``


def _preflight_executor(scale: ScaleOptions, threads: int | None, cases: int) -> _Placement:
    """Check what the executor needs before anything is written: the GPUs asked for exist,
    Ray imports, and the cluster at its address answers (within a total deadline) and is
    connected to."""
    if scale.executor == "processes":
        from medbench_fast.runner.scale import process_slots

        return _Placement(slots=process_slots(scale, threads=threads, cases=cases))
    if scale.executor != "ray":
        return _Placement()
    from medbench_fast.runner.executors.ray import check_address, connect, import_ray, ray_address

    import_ray()
    address = ray_address(scale.ray_address)
    check_address(address)
    return _Placement(address=address, connected_s=connect(address) if address else 0.0)


def _resolve_models(plan: RunPlan, export_dir: Path) -> dict:
    """Export (cached) every model of the plan and resolve its spec; name -> ResolvedModel."""
    if plan.predictions is not None:  # an evaluation: its predictions are on disk already
        return {}
    from medbench_fast.runner.model_sources import resolve_model

    export_dir.mkdir(parents=True, exist_ok=True)
    resolved = {}
    for entry in plan.entries:
        resolved[entry.name] = resolve_model(entry, export_dir=export_dir, benchmark=plan.config.benchmark)
        if plan.options.labels:
            from medbench_fast.models.spec import ModelSpec

            spec = ModelSpec.from_dict(resolved[entry.name].spec, where=f"model {entry.name!r}")
            if spec.output.kind != "case_scores":
                spec.check_dataset_labels(plan.options.labels, model=entry.name)
    return resolved


def _seg_dir(plan: RunPlan, run_dir: Path) -> Path | None:
    return run_dir / "dicom_seg" if plan.config and plan.config.output.dicom_seg else None


def _pred_dir(plan: RunPlan, run_dir: Path) -> Path | None:
    from medbench_fast.runner.worker import PREDICTIONS_DIR

    return run_dir / PREDICTIONS_DIR if plan.config and plan.config.output.save_predictions else None


def _open_local(plan: RunPlan, resolved: dict, cache: VolumeCache | None, seg_dir: Path | None,
                pred_dir: Path | None):
    from medbench_fast.runner.worker import CaseWorker, PredictionWorker

    if plan.predictions is not None:
        return PredictionWorker(plan.options, cache)
    from medbench_fast.runner.model_sources import open_resolved, watch_gpus

    bench = plan.config.benchmark
    watch_gpus(bench)
    models, info = {}, {}
    for entry in plan.entries:
        t0 = time.perf_counter_ns()
        model = open_resolved(resolved[entry.name], benchmark=bench)
        models[entry.name] = model
        info[entry.name] = {"kind": entry.kind, "note": entry.note,
                               "session_s": (time.perf_counter_ns() - t0) / 1e9,
                               "providers_in_use": model.providers_in_use, "spec": model.spec.to_dict(),
                               **model.run_facts()}
    return CaseWorker(models, info, plan.options, plan.targets, cache, bench.warmup, seg_dir=seg_dir,
                      pred_dir=pred_dir)


def _make_executor(plan: RunPlan, resolved: dict, scale: ScaleOptions, cache: VolumeCache | None, *, run_id: str,
                   placement: _Placement, schema, seg_dir: Path | None, pred_dir: Path | None):
    settings = plan.settings
    if scale.executor == "local":
        from medbench_fast.runner.executors.local import LocalExecutor

        return LocalExecutor(_open_local(plan, resolved, cache, seg_dir, pred_dir), readers=settings.readers,
                             prefetch=settings.prefetch, scorers=settings.scorers)
    from medbench_fast.runner.executors.remote import WorkerInit

    init = WorkerInit(tuple(resolved[e.name] for e in plan.entries), plan.config.benchmark if plan.config
                      else None, plan.options, plan.targets, str(cache.root) if cache is not None else None,
                      cache is not None, schema, threads=settings.threads, seg_dir=str(seg_dir) if seg_dir else None,
                      pred_dir=str(pred_dir) if pred_dir else None, predictions=plan.predictions is not None,
                      warmup=settings.warmup)
    if scale.executor == "processes":
        from medbench_fast.runner.executors.processes import ProcessExecutor

        return ProcessExecutor(init, placement.slots)
    from medbench_fast.runner.executors.ray import RayExecutor
    from medbench_fast.runner.scale import ray_slots

    address = placement.address
    slots = ray_slots(scale, threads=settings.threads, cluster_gpus=_ray_gpus(scale, address), cases=len(plan.cases))
    local_gpus = None if address or scale.gpus is None else math.ceil(sum(s.num_gpus for s in slots) - 1e-9)
    return RayExecutor(init, slots, address=address, run_id=run_id,
                       local_cpus=None if address else max(len(slots), os.cpu_count() or 1), local_gpus=local_gpus,
                       connected_s=placement.connected_s)


def _ray_gpus(scale: ScaleOptions, address: str | None) -> float | None:
    """GPUs of the Ray cluster (``--gpus all``), read after connecting."""
    if scale.gpus != "all":
        return None
    from medbench_fast.runner.executors.ray import NAMESPACE, import_ray

    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, include_dashboard=False)
    return ray.cluster_resources().get("GPU")


def _run_in_folder(plan: RunPlan, run_dir: Path, identity: Fingerprint, previous: dict, *, command: str,
                   record: dict, run_id: str, progress: bool | None, cache: VolumeCache | None, scale: ScaleOptions,
                   placement: _Placement) -> RunResult:
    """The run itself, in a folder opened and locked by :func:`execute`."""
    settings = plan.settings
    shard = plan.shard
    resume = bool(previous) and shard is None
    recorded = {k: v if v is not None else previous.get(k) for k, v in record.items()}
    info = {"run_id": run_id, "started": previous.get("started") or run_info.utc_now(), "command": command,
            **recorded, "status": "starting", "resumed": resume, "error": None,
            "fingerprint": previous["fingerprint"] if previous else identity.to_dict(),
            "case_ids": list(plan.case_ids), "executor": scale.executor,
            **({"shards": shard.count} if shard else {})}
    if shard is None:
        run_info.write_run_json(run_dir, {**previous, **info})
    else:
        _write_shard_status(run_dir, shard, {"status": "starting", "started": run_info.utc_now(), "error": None})
    # each shard exports into its own folder: no file is written by two shards
    exports = path_inside(run_dir, "models", shard.namespace) if shard else path_inside(run_dir, "models")
    resolved = _resolve_models(plan, exports)
    fingerprint = identity.with_specs({n: r.spec for n, r in resolved.items()}) if resolved else identity
    if previous.get("fingerprint"):
        diffs = Fingerprint.from_dict(previous["fingerprint"]).differences(fingerprint)
        if diffs:
            raise RunFolderError(f"{run_dir}: the models resolve to other specs than the recorded run's:\n  "
                                 + "\n  ".join(diffs))
    info.update(fingerprint=fingerprint.to_dict(), status="running")
    if shard is None:
        run_info.write_run_json(run_dir, {**previous, **info})
    else:
        previous = previous or _create_shared_run_json(run_dir, info, fingerprint)
        run_id = previous["run_id"]
        _write_shard_status(run_dir, shard, {"status": "running", "fingerprint": fingerprint.digest})
    joining = shard is not None
    done = done_pairs(run_dir, fingerprint.digest) if (resume or joining) else set()
    todo = plan.todo(done)
    schema = metrics_schema(plan.options.metrics)
    executor = _make_executor(plan, resolved, scale, cache, run_id=run_id, placement=placement, schema=schema,
                              seg_dir=_seg_dir(plan, run_dir), pred_dir=_pred_dir(plan, run_dir))
    sink = RunSink(run_dir, schema, settings.write_every, fingerprint=fingerprint.digest, run_id=run_id,
                   namespace=plan.shard.namespace if plan.shard else "main", max_age_s=settings.write_age_s)
    show = sys.stderr.isatty() if progress is None else progress
    stats: ExecStats = executor.run(todo, sink, progress=show)
    model_info = _model_record(plan, resolved, stats)
    record = {"models": model_info, "loop_s": stats.loop_s, "cases_run": len(todo), "loop_peak_rss_mb": peak_rss_mb(),
              "write_s": sum(sink.write_s), "workers": stats.workers, "executor": scale.executor,
              **({"ray_startup_s": stats.startup_s} if stats.startup_s is not None else {})}
    latency = _latency_rows(model_info, sink.samples, sink.busy, settings.warmup)
    if plan.shard is not None:
        _write_shard_status(run_dir, plan.shard, {
            "status": "interrupted" if stats.interrupted else "finished", "finished": run_info.utc_now(),
            **record, "latency_samples": sink.samples, "latency_busy_s": sink.busy})
        return RunResult(run_dir, run_id, sink.cases_done, 0, {}, interrupted=stats.interrupted, models=model_info,
                         shard_done=None if stats.interrupted else plan.shard)
    info.update(status="interrupted" if stats.interrupted else "finished", **record)
    if stats.interrupted:
        run_info.write_run_json(run_dir, {**previous, **info})
        return RunResult(run_dir, run_id, 0, 0, {}, interrupted=True, models=model_info)
    return _finalize(run_dir, {**previous, **info}, plan, schema, fingerprint.digest, latency, model_info)


def _model_record(plan: RunPlan, resolved: dict, stats: ExecStats) -> dict:
    """run.json's per-model record: kind, note, spec, providers in use, session and cold start."""
    out = {}
    if plan.predictions is not None:  # an evaluation: the "model" is its folder of predictions
        return {plan.evaluated: {"kind": "predictions", "path": plan.predictions}}
    for entry in plan.entries:
        name = entry.name
        rec = dict(stats.model_info.get(name) or {})
        rec.update(kind=entry.kind, note=entry.note, spec=rec.get("spec") or resolved[name].spec)
        rec.setdefault("providers_in_use", ["unknown"])
        out[name] = rec
    return out


def _finalize(run_dir: Path, info: dict, plan: RunPlan, schema, digest: str, latency: list[dict],
              model_info: dict) -> RunResult:
    settings = plan.settings
    stamp = {"run_id": info["run_id"]}
    files = finalize_run(run_dir, info=info, options=plan.options, schema=schema, fingerprint=digest,
                         formats=settings.formats, threshold=settings.threshold,
                         worst_distance=settings.worst_distance, latency_rows=[{**stamp, **r} for r in latency])
    cases_table = files.pop("_cases")
    n_failed = cases_table.num_rows - sum(cases_table.column("success").to_pylist())
    return RunResult(run_dir, info["run_id"], cases_table.num_rows, n_failed, files, models=model_info)


# -- shards -------------------------------------------------------------------------------
def _shard_path(run_dir: Path, shard: Shard) -> Path:
    return run_dir / SHARDS_DIR / f"{shard.namespace}.json"


def _write_shard_status(run_dir: Path, shard: Shard, status: dict) -> None:
    """Merge ``status`` into this shard's own status file (atomic; no other shard writes it)."""
    path = _shard_path(run_dir, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    write_text_atomic(path, json.dumps({**current, **status, "shard": str(shard)}, indent=2, sort_keys=True,
                                       default=str))


def _create_shared_run_json(run_dir: Path, info: dict, identity: Fingerprint) -> dict:
    """The first shard to start writes ``run.json``; the others find it. Returns the record in force."""
    text = json.dumps(info, indent=2, sort_keys=True, default=str) + "\n"
    if atomic_create(run_dir / "run.json", lambda tmp: tmp.write_text(text, encoding="utf-8")):
        return info
    # another shard got there first
    recorded = run_info.read_run_json(run_dir)
    changed = case_list_change(recorded, info.get("case_ids"))
    if changed:
        raise RunFolderError(f"{run_dir}: this shard cannot join the run: {changed}") from None
    diffs = (Fingerprint.from_dict(recorded.get("fingerprint")) or Fingerprint({})).differences(identity)
    if diffs:
        raise RunFolderError(f"{run_dir}: holds shards of another run; this shard differs in:\n  "
                             + "\n  ".join(diffs)) from None
    if recorded.get("shards") != info.get("shards"):
        raise RunFolderError(f"{run_dir}: holds a run in {recorded.get('shards')} shards, not "
                             f"{info.get('shards')}") from None
    return recorded


def _recorded_shards(run_dir: Path) -> int | None:
    try:
        return run_info.read_run_json(run_dir).get("shards")
    except ValueError:
        return None


def shard_statuses(run_dir: Path, count: int) -> dict[str, str]:
    """``{"K/N": status}`` for every shard of a run (``missing`` when it never started)."""
    out = {}
    for k in range(1, count + 1):
        path = _shard_path(run_dir, Shard(k, count))
        out[f"{k}/{count}"] = json.loads(path.read_text(encoding="utf-8")).get("status", "?") if path.exists() \
            else "missing"
    return out


def _finalize_shards(run_dir: Path, plan: RunPlan, identity_of, *, command: str) -> RunResult:
    """Consolidate a sharded run once every shard has finished; otherwise name the others."""
    recorded = run_info.read_run_json(run_dir)
    count = int(recorded["shards"])
    statuses = shard_statuses(run_dir, count)
    unfinished = {k: s for k, s in statuses.items() if s != "finished"}
    if unfinished:
        raise RunFolderError(f"{run_dir}: cannot consolidate yet: shard(s) "
                             + ", ".join(f"{k} ({s})" for k, s in unfinished.items())
                             + f" have not finished; run them with --shard K/{count}")
    identity = identity_of(plan)
    with RunFolder(run_dir, command=command) as folder:
        previous = folder.open(identity, resume=True, case_ids=plan.case_ids)
        fingerprint = Fingerprint.from_dict(previous["fingerprint"])
        shards = [json.loads(_shard_path(run_dir, Shard(k, count)).read_text(encoding="utf-8"))
                  for k in range(1, count + 1)]
        samples: dict[str, list[float]] = {}
        busy: dict[str, float] = {}
        model_info: dict = {}
        for s in shards:
            for name, values in (s.get("latency_samples") or {}).items():
                samples.setdefault(name, []).extend(values)
            for name, seconds in (s.get("latency_busy_s") or {}).items():
                busy[name] = busy.get(name, 0.0) + seconds
            for name, rec in (s.get("models") or {}).items():
                model_info.setdefault(name, rec)
        info = {**previous, "status": "finished", "models": model_info,
                "workers": [w for s in shards for w in s.get("workers", [])],
                "shard_runs": {s["shard"]: {k: s.get(k) for k in ("started", "finished", "cases_run", "loop_s",
                                                                  "write_s", "executor")} for s in shards},
                "cases_run": sum(s.get("cases_run", 0) for s in shards),
                "loop_s": max((s.get("loop_s") or 0.0) for s in shards),
                "write_s": sum(s.get("write_s") or 0.0 for s in shards)}
        schema = metrics_schema(plan.options.metrics)
        latency = _latency_rows(model_info, samples, busy, plan.settings.warmup)
        return _finalize(run_dir, info, plan, schema, fingerprint.digest, latency, model_info)
