"""``evaluate_folders``: score a folder of predictions against a folder of references.

An evaluation is a run whose "model" is the folder of predictions: its cases pair each
prediction with its reference, and it runs on the engine of ``medbench run``
(:func:`~medbench_fast.runner.pipeline.execute`: plan, executor, case worker, sink,
finalize), so the local, processes and Ray executors, ``--resume`` and ``--shard`` work
alike and write the same rows. A case that cannot be evaluated becomes a failed row in
``cases.parquet`` naming the file and the problem, and the run goes on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from medbench_fast.data.cache import VolumeCache
from medbench_fast.data.layouts import DatasetLayout, find_dataset_json, read_layout
from medbench_fast.data.pairing import pair_cases
from medbench_fast.metrics.options import MetricOptions
from medbench_fast.runner.cases import RunCase
from medbench_fast.runner.identity import evaluate_fingerprint


#: An evaluation writes its rows once the oldest unwritten case is this many seconds old, or every
#: :data:`WRITE_EVERY` cases if that comes first: an interruption loses at most this much work.
WRITE_AGE_S = 5.0
#: Cases per Parquet part at most (the default of ``--write-every``). It bounds the rows held in
#: memory; the age rule decides when parts are written, so a folder of small cases scored in a
#: few seconds writes one part, not one per few dozen cases that finalize reads back.
WRITE_EVERY = 1024


def find_layout(pred_dir, ref_dir, path=None) -> DatasetLayout | None:
    """The ``dataset.json`` describing an evaluation: ``path`` when given, else the one nnU-Net
    writes into its prediction folder, else the one of the dataset that holds the reference
    folder (``Dataset001/labelsTs`` -> ``Dataset001/dataset.json``); None when there is none."""
    if path is None:
        path = find_dataset_json(pred_dir) or find_dataset_json(Path(ref_dir).resolve().parent)
    return None if path is None else read_layout(path)


def with_layout(options: MetricOptions, layout: DatasetLayout | None) -> MetricOptions:
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
    interrupted: bool = False
    shard_done: object = None  # the Shard that finished (the evaluation is consolidated later)


def evaluation_cases(pred_dir, ref_dir, case_ids: Iterable[str] | None = None) -> list[RunCase]:
    """The cases of an evaluation: prediction and reference paired by case id (or DICOM UIDs),
    as run cases whose prediction is ``pred_path``; ``case_ids`` keeps only those."""
    pairs = pair_cases(pred_dir, ref_dir)
    if case_ids is not None:
        wanted = set(case_ids)
        pairs = [p for p in pairs if p.case_id in wanted]
    if not pairs:
        from medbench_fast.config import ConfigError
        from medbench_fast.data.reader import IMAGE_EXTENSIONS

        raise ConfigError(f"no cases found: no image file ({', '.join(IMAGE_EXTENSIONS)}), DICOM series or DICOM "
                          f"object in {pred_dir} or {ref_dir}" + (" among the given case ids" if case_ids else ""))
    return [RunCase(p.case_id, None, p.ref_path, p.problem, pred_path=p.pred_path) for p in pairs]


def evaluate_folders(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    options: MetricOptions | None = None,
    workers: int | None = None,
    cache: VolumeCache | None = None,
    progress: bool | None = None,
    model: str | None = None,
    batch_size: int = WRITE_EVERY,
    case_ids: Iterable[str] | None = None,
    worst_distance: str = "inf",
    overwrite: bool = False,
    resume: bool = False,
    scale=None,
    shard=None,
) -> EvaluateResult:
    """Evaluate every case of ``pred_dir`` against ``ref_dir`` and write the run folder.

    Writes ``metrics.parquet``, ``cases.parquet``, ``run.json``, ``results.csv``, ``summary.json``
    and the leaderboard under ``out_dir``. An evaluation is a run whose model is the folder of
    predictions: it runs on the engine of ``medbench run``
    (:func:`~medbench_fast.runner.pipeline.execute`), with its executors, resume and shards.
    ``model`` defaults to the prediction folder's name; ``cache`` None decodes every file each
    time; ``workers`` reading threads of the local executor (default: CPU count); ``scale``
    the executor (:class:`~medbench_fast.runner.scale.ScaleOptions`, default local); ``shard``
    one :class:`~medbench_fast.runner.plan.Shard` of the cases; ``resume`` continues the
    evaluation that ``out_dir`` holds (finished cases are skipped; consolidates finished shards);
    ``progress`` None shows a bar only on a terminal; ``worst_distance="diagonal"`` replaces
    +inf distances by the image diagonal in the summary. A folder that holds another run is
    refused (:class:`~medbench_fast.runner.identity.RunFolderError`) unless ``overwrite``.
    """
    from medbench_fast.runner.pipeline import execute
    from medbench_fast.runner.plan import EngineSettings, RunPlan

    options = options or MetricOptions()
    model = model or Path(pred_dir).resolve().name
    subset = None if case_ids is None else sorted(set(case_ids))
    cases = evaluation_cases(pred_dir, ref_dir, subset)
    readers = max(1, workers or os.cpu_count() or 1)
    settings = EngineSettings(readers=readers, prefetch=2 * readers, write_every=batch_size, warmup=0,
                              worst_distance=worst_distance, scorers=readers,
                              write_age_s=WRITE_AGE_S)

    def plan_of(part):
        return RunPlan.for_evaluation(cases, model=model, pred_dir=str(Path(pred_dir).resolve()), options=options,
                                      settings=settings, shard=part)

    def identity_of(_plan):
        return evaluate_fingerprint(pred_dir, ref_dir, model, options, subset)

    record = {"pred_dir": str(Path(pred_dir).resolve()), "ref_dir": str(Path(ref_dir).resolve()), "model": model}
    result = execute(plan_of, identity_of, command="evaluate", record=record, run_dir=out_dir, resume=resume,
                     overwrite=overwrite, progress=progress, cache=cache, scale=scale, shard=shard)
    return EvaluateResult(result.run_dir, result.run_id, result.n_cases, result.n_failed, result.files,
                          interrupted=result.interrupted, shard_done=result.shard_done)
