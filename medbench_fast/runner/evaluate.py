"""``evaluate_folders``: score a folder of predictions against a folder of references.

Reading (through the volume cache) runs in a bounded thread pool while metric kernels run
on finished reads; each finished batch of cases is appended as Parquet parts, so a failure
or interruption never loses computed rows. A case that cannot be evaluated becomes a
failed row in ``cases.parquet`` naming the file and the problem, and the run goes on.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from medbench_fast.data.cache import VolumeCache
from medbench_fast.data.checks import check_same_grid
from medbench_fast.data.pairing import CasePair, pair_cases
from medbench_fast.data.layouts import DatasetLayout, find_dataset_json, read_layout
from medbench_fast.data.reader import VolumeError, load_volume
from medbench_fast.metrics.evaluate import check_spacing, evaluate_pair
from medbench_fast.metrics.options import MetricOptions
from medbench_fast.store import run_info
from medbench_fast.runner.finalize import finalize_run
from medbench_fast.runner.identity import RunFolder, evaluate_fingerprint
from medbench_fast.store.schema import metrics_schema


#: The metric options of an evaluation (one object for every command; kept under this name too).
EvaluateOptions = MetricOptions


def find_layout(pred_dir, ref_dir, path=None) -> DatasetLayout | None:
    """The ``dataset.json`` describing an evaluation: ``path`` when given, else the one nnU-Net
    writes into its prediction folder, else the one of the dataset that holds the reference
    folder (``Dataset001/labelsTs`` -> ``Dataset001/dataset.json``); None when there is none."""
    if path is None:
        path = find_dataset_json(pred_dir) or find_dataset_json(Path(ref_dir).resolve().parent)
    return None if path is None else read_layout(path)


def with_layout(options: EvaluateOptions, layout: DatasetLayout | None) -> EvaluateOptions:
    """``options`` with labels, label names and regions taken from ``layout`` where unset."""
    if layout is None:
        return options
    given = {"labels": options.labels, "label_names": options.label_names,
             "regions": {r.name: list(r.labels) for r in options.regions} or None}
    values = {k: v if v is not None else layout.scoring()[k] for k, v in given.items()}
    labels = tuple(values["labels"]) if values["labels"] is not None else None
    return replace(options, labels=labels, label_names=values["label_names"], regions=values["regions"])


@dataclass
class EvaluateResult:
    run_dir: Path
    run_id: str
    n_cases: int
    n_failed: int
    files: dict[str, Path]


def _relabel_error(exc: Exception, pair: CasePair, reading: str | None) -> str:
    """Error text naming the file: ``ref:``/``pred:`` prefixes become the file paths; another
    error names the file being read when it was raised (else the prediction)."""
    text = str(exc)
    for side, path in (("ref", pair.ref_path), ("pred", pair.pred_path)):
        if text.startswith(side + ":"):
            return f"{path}:{text[len(side) + 1:]}"
    if isinstance(exc, VolumeError):
        return text
    return f"{reading or pair.pred_path}: {type(exc).__name__}: {text}"


def evaluate_case(pair: CasePair, options: EvaluateOptions, cache: VolumeCache | None) -> tuple[list[dict], dict]:
    """Metric rows and the case row of one pair; failures become a case row with the error."""
    case = {"case_id": pair.case_id, "ref_path": pair.ref_path, "pred_path": pair.pred_path, "success": False}
    t0 = time.perf_counter_ns()
    reading = None
    try:
        if pair.problem:
            raise VolumeError(pair.problem)
        reading = pair.ref_path
        ref = load_volume(pair.ref_path, cache=cache)
        reading = pair.pred_path
        pred = load_volume(pair.pred_path, cache=cache)
        reading = None
        case.update(shape=list(ref.shape), spacing=list(ref.spacing))
        check_spacing(ref.spacing)
        check_same_grid(ref, pred, rtol=options.geometry_rtol)
        t1 = time.perf_counter_ns()
        rows = evaluate_pair(ref.array, pred.array, spacing=ref.spacing, labels=options.labels, **options.pair_kwargs())
        t2 = time.perf_counter_ns()
    except Exception as exc:  # every failure is recorded as a row; the run goes on
        case.update(error=_relabel_error(exc, pair, reading), total_s=(time.perf_counter_ns() - t0) / 1e9)
        return [], case
    case.update(success=True, load_s=(t1 - t0) / 1e9, metrics_s=(t2 - t1) / 1e9, total_s=(t2 - t0) / 1e9)
    return [{"case_id": pair.case_id, **row} for row in rows], case


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="case", desc="evaluate", disable=not enabled, dynamic_ncols=True, file=sys.stderr)


def evaluate_folders(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    options: EvaluateOptions | None = None,
    workers: int | None = None,
    cache: VolumeCache | None = None,
    progress: bool | None = None,
    model: str | None = None,
    batch_size: int = 16,
    case_ids: Iterable[str] | None = None,
    worst_distance: str = "inf",
    overwrite: bool = False,
) -> EvaluateResult:
    """Evaluate every case of ``pred_dir`` against ``ref_dir`` and write the run folder.

    Writes ``metrics.parquet``, ``cases.parquet``, ``run.json``, ``results.csv`` and
    ``summary.json`` under ``out_dir``. ``model`` defaults to the prediction folder's name;
    ``cache`` None decodes every file each time; ``workers`` reading threads
    (default: CPU count); ``progress`` None shows a bar only on a terminal;
    ``worst_distance="diagonal"`` replaces +inf distances by the image diagonal in the summary.
    A folder that holds another run is refused (:class:`~medbench_fast.runner.identity.RunFolderError`)
    unless ``overwrite``.
    """
    options = options or EvaluateOptions()
    run_dir = Path(out_dir)
    model = model or Path(pred_dir).resolve().name
    pairs = pair_cases(pred_dir, ref_dir)
    if case_ids is not None:
        case_ids = sorted(set(case_ids))
        pairs = [p for p in pairs if p.case_id in set(case_ids)]
    if not pairs:
        from medbench_fast.config import ConfigError
        from medbench_fast.data.reader import IMAGE_EXTENSIONS

        raise ConfigError(f"no cases found: no image file ({', '.join(IMAGE_EXTENSIONS)}), DICOM series or DICOM "
                          f"object in {pred_dir} or {ref_dir}" + (" among the given case ids" if case_ids else ""))
    fingerprint = evaluate_fingerprint(pred_dir, ref_dir, model, options, case_ids)
    with RunFolder(run_dir, command="evaluate") as folder:
        folder.open(fingerprint, overwrite=overwrite)
        info = {"run_id": run_info.new_run_id(), "started": run_info.utc_now(), "command": "evaluate",
                "pred_dir": str(Path(pred_dir).resolve()), "ref_dir": str(Path(ref_dir).resolve()), "model": model,
                "status": "running", "fingerprint": fingerprint.to_dict()}
        run_info.write_run_json(run_dir, info)
        try:
            _evaluate_pairs(pairs, run_dir, options, info["run_id"], fingerprint.digest, model=model,
                            workers=workers, cache=cache, progress=progress, batch_size=batch_size)
            files = finalize_run(run_dir, info={**info, "status": "finished"}, options=options,
                                 schema=metrics_schema(options.metrics), fingerprint=fingerprint.digest,
                                 worst_distance=worst_distance)
        except BaseException as exc:
            run_info.record_failure(run_dir, exc)
            raise
    cases = files.pop("_cases")
    n_failed = cases.num_rows - sum(cases.column("success").to_pylist())
    return EvaluateResult(run_dir, info["run_id"], cases.num_rows, n_failed, files)


def _evaluate_pairs(pairs: list[CasePair], run_dir: Path, options: EvaluateOptions, run_id: str, fingerprint: str, *,
                    model: str, workers: int | None, cache: VolumeCache | None, progress: bool | None,
                    batch_size: int) -> None:
    """Score ``pairs`` in a reading thread pool; the run's sink appends finished batches as parts."""
    from medbench_fast.runner.sink import RunSink
    from medbench_fast.runner.worker import CaseResult, ModelOutcome

    sink = RunSink(run_dir, metrics_schema(options.metrics), batch_size, fingerprint=fingerprint, run_id=run_id)
    workers = max(1, workers or os.cpu_count() or 1)
    show = sys.stderr.isatty() if progress is None else progress
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medbench-eval") as pool, \
            _progress(len(pairs), show) as bar:
        queue = iter(pairs)
        running = set()
        try:
            while True:
                while len(running) < 2 * workers:
                    pair = next(queue, None)
                    if pair is None:
                        break
                    running.add(pool.submit(evaluate_case, pair, options, cache))
                if not running:
                    break
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    rows, case = future.result()
                    row = {"model": model, **case}
                    sink.add(CaseResult(case["case_id"], [ModelOutcome(row, [{"model": model, **r} for r in rows], [])]))
                    bar.update(1)
        finally:
            sink.flush()
