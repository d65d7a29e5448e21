"""The case worker: load, prepare, infer and score one case for its models.

A :class:`CaseWorker` owns the opened models of a run and turns a case into rows. Every
executor runs the same worker: the local executor calls its stages from its own threads
(``load`` in the prefetch pool, ``run_model`` on the main thread, ``score`` in the metric
thread) so that they overlap; worker processes and Ray actors call :meth:`CaseWorker.process`
for one case at a time. Rows are built by the same functions everywhere, so every
executor writes the same rows. Inference is timed here, around the session call, so
transport between processes never enters latency statistics.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medbench_fast.data.cache import VolumeCache
from medbench_fast.data.checks import check_same_grid
from medbench_fast.data.reader import Volume, VolumeError, load_volume
from medbench_fast.files import path_inside
from medbench_fast.metrics.evaluate import check_spacing, evaluate_pair
from medbench_fast.runner.cases import CASE_OBJECT, RunCase, load_case_image


#: Exceptions that mean a mistake in medbench-fast's own code, never a problem of the data. Raised
#: while a case is worked on, they stop the command (exit 1, :class:`CaseBug`) instead of
#: becoming a failed row blamed on the case's files; every other exception (an unreadable or
#: mismatched volume, a model that refuses the input) is a failed row and the run goes on.
PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, KeyError, IndexError, AssertionError, ZeroDivisionError,
                      RecursionError)


class CaseBug(RuntimeError):
    """An unexpected exception in medbench-fast's own code while working on a case."""

    def __init__(self, case_id: str, model: str | None, stage: str, exc: BaseException):
        self.case_id, self.model, self.stage = case_id, model, stage
        on = f"case {case_id!r}" + (f", model {model!r}" if model else "")
        super().__init__(f"internal error (a bug in medbench-fast, not a problem of the data) on {on}, while "
                         f"{stage}: {type(exc).__name__}: {exc}; the case was not recorded (rerun with --debug "
                         f"for the traceback, and report it)")


def raise_if_bug(exc: BaseException, case_id: str, model: str | None, stage: str) -> None:
    """Raise :class:`CaseBug` (chained to ``exc``) when ``exc`` is a programming error."""
    if isinstance(exc, PROGRAMMING_ERRORS):
        raise CaseBug(case_id, model, stage, exc) from exc


@dataclass
class Loaded:
    """A case read from disk and prepared for each of its models (or the error that stopped it)."""

    case: RunCase
    names: tuple[str, ...] = ()  # the models this case is loaded for
    image: Volume | None = None
    ref: Volume | None = None
    load_s: float = 0.0
    error: str | None = None
    prepared: dict = field(default_factory=dict)  # model name -> Prepared or the exception it raised
    prediction: Volume | None = None  # an evaluation's saved prediction


@dataclass
class ModelOutcome:
    """One (model, case): its case row, metric rows, score rows and inference sample (None when failed)."""

    case_row: dict
    metric_rows: list[dict]
    score_rows: list[dict]
    inference_s: float | None = None
    busy_s: float = 0.0  # preprocess + execute seconds: the model's share of the wall clock


@dataclass
class CaseResult:
    """Everything one case produced, for the sink; ``worker`` names who computed it."""

    case_id: str
    outcomes: list[ModelOutcome]
    worker: str = ""


def worker_identity() -> dict:
    """Host, pid and the GPUs this process may use (``CUDA_VISIBLE_DEVICES`` as set for it)."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def needs_mask(model) -> bool:
    """Models that take the reference mask as an input (AI-ENE crops around its nodes)."""
    return model.spec.strategy.type == "object_crops"


def scores_rows(prediction, case_id: str, targets: dict) -> list[dict]:
    """Case-level outputs as ``scores.parquet`` rows, joined to the targets by (case, object)."""
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


def save_dicom_seg(label_map: Volume, case: RunCase, seg_dir: Path, model: str, label_names: dict | None) -> None:
    """Write a DICOM case's prediction as ``SEG_DIR/MODEL/CASE.dcm`` (DICOM-SEG referencing its series)."""
    from medbench_fast.data.dicom.paths import SeriesPath
    from medbench_fast.data.dicom.write import write_prediction_seg

    if isinstance(case.image_path, SeriesPath):
        target = path_inside(seg_dir, model, f"{case.case_id}.dcm")
        write_prediction_seg(label_map.array, case.image_path, target, model=model, label_names=label_names)


#: Folder of the run folder holding saved label maps (``output.save_predictions``).
PREDICTIONS_DIR = "predictions"


def prediction_path(folder: Path, model: str, case_id: str) -> Path:
    """Where a model's label map of a case is saved: ``FOLDER/MODEL/CASE.nii.gz`` (the one rule)."""
    return path_inside(folder, model, f"{case_id}.nii.gz")


def save_prediction(label_map: Volume, folder: Path, model: str, case_id: str) -> Path:
    """Write a label map as NIfTI with its geometry, atomically (a killed run leaves no partial file)."""
    from medbench_fast.data.reader import write_volume
    from medbench_fast.files import atomic_path

    path = prediction_path(folder, model, case_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".nii.gz") as tmp:
        write_volume(label_map, tmp)
    return path


class CaseWorker:
    """The opened models of a run and what is needed to score their predictions.

    ``models``: name -> opened model; ``model_info``: name -> run.json record (session time,
    providers, spec), updated with the cold start on each model's first case; ``warmup``:
    untimed runs after the first one; ``seg_dir``: where DICOM cases' label maps are saved as
    DICOM-SEG (``RUN_DIR/dicom_seg``; None: not saved); ``pred_dir``: where every label map is
    saved as NIfTI (``RUN_DIR/predictions``; None: not saved).
    """

    #: Whether the local executor may run this worker's cases in its main thread once they prove
    #: tiny: never for models, whose inference overlaps reading and scoring.
    inline_when_tiny = False

    def __init__(self, models: dict, model_info: dict, options, targets: dict, cache: VolumeCache | None,
                 warmup: int, seg_dir: Path | None = None, pred_dir: Path | None = None):
        self.pred_dir = pred_dir
        self.seg_dir = seg_dir  # output.dicom_seg: DICOM cases' predictions are saved here as DICOM-SEG
        self.models = models
        self.model_info = model_info
        self.options = options
        self.targets = targets
        self.cache = cache
        self.warmup = warmup
        self.warmed: set[str] = set()
        self.cold_ns = 0

    # -- stages ---------------------------------------------------------------------------
    def load(self, case: RunCase, names) -> Loaded:
        """Read a case and prepare it for the models ``names`` (runs in a prefetch thread)."""
        t0 = time.perf_counter_ns()
        out = Loaded(case, tuple(names))
        try:
            if case.problem:
                raise ValueError(case.problem)
            out.image = load_case_image(case, cache=self.cache)
            if case.ref_path:
                out.ref = load_volume(case.ref_path, cache=self.cache)
                check_same_grid(out.image, out.ref)
        except Exception as exc:  # recorded as failed rows for every model
            raise_if_bug(exc, case.case_id, None, "reading the case")
            out.error = str(exc)
        out.load_s = (time.perf_counter_ns() - t0) / 1e9
        if out.error is None:
            for name in names:
                model = self.models[name]
                try:
                    mask = out.ref if needs_mask(model) else None
                    if needs_mask(model) and mask is None:
                        raise ValueError(f"model {name!r} needs the reference mask; case {case.case_id!r} has none")
                    out.prepared[name] = model.prepare(out.image, mask)
                except Exception as exc:  # this model fails on this case; the others go on
                    raise_if_bug(exc, case.case_id, name, "preparing the input")
                    out.prepared[name] = exc
        return out

    def check_fits(self, name: str, item: Loaded) -> None:
        """Before a model's first case: a model-wide input misfit stops the run (ModelError)."""
        if name not in self.warmed and item.image is not None:
            self.models[name].check_volume(item.image.shape, item.image.spacing,
                                           f"model {name!r} on {item.case.image_path}")

    def run_model(self, name: str, item: Loaded):
        """Run model ``name`` on a loaded case: ``(outcome, label map or None)``; the outcome's
        metric rows are filled by :meth:`score` on the label map (in another thread locally)."""
        model = self.models[name]
        cid = item.case.case_id
        row = {"model": name, "case_id": cid, "image_path": item.case.image_path, "ref_path": item.case.ref_path,
               "success": False, "load_s": item.load_s}
        if item.image is not None:
            row.update(shape=list(item.image.shape), spacing=list(item.image.spacing))
        outcome = ModelOutcome(row, [], [])
        try:
            if item.error:
                raise ValueError(item.error)
            prepared = item.prepared[name]
            if isinstance(prepared, Exception):
                raise prepared
            if name not in self.warmed:
                t_cold = time.perf_counter_ns()
                first = self._cold_start(model, prepared, self.model_info[name])
                self._warm_metrics(item.ref, first.label_map)
                self.warmed.add(name)
                self.cold_ns += time.perf_counter_ns() - t_cold
            t0 = time.perf_counter_ns()
            prediction = model.execute(prepared)
            outcome.busy_s = (time.perf_counter_ns() - t0) / 1e9 + prediction.timings["preprocess_s"]
            row.update(prediction.timings, success=True, error=None)
            row["total_s"] = item.load_s + sum(prediction.timings.values())
            outcome.inference_s = prediction.timings["inference_s"]
            outcome.score_rows = scores_rows(prediction, cid, self.targets)
            row["patches"] = prediction.patches
            if self.pred_dir is not None and prediction.label_map is not None:
                row["pred_path"] = str(save_prediction(prediction.label_map, self.pred_dir, name, cid))
            if self.seg_dir is not None and prediction.label_map is not None:
                save_dicom_seg(prediction.label_map, item.case, self.seg_dir, name, self.options.label_names)
            label_map = prediction.label_map if item.ref is not None else None
        except Exception as exc:  # the case fails for this model; the run goes on
            raise_if_bug(exc, cid, name, "running the model")
            row.update(success=False, error=f"{type(exc).__name__}: {exc}" if not item.error else item.error)
            label_map = None
        return outcome, label_map

    def score(self, ref: Volume, pred: Volume) -> tuple[list[dict], float]:
        """Metric rows of a prediction against the reference, and the seconds they took."""
        t0 = time.perf_counter_ns()
        rows = evaluate_pair(ref.array, pred.array, spacing=ref.spacing, labels=self.options.labels,
                             **self.options.pair_kwargs())
        return rows, (time.perf_counter_ns() - t0) / 1e9

    def metric_error(self, outcome: ModelOutcome, exc: Exception) -> str:
        """The failed row's text for a metric error (bad values in a prediction)."""
        return f"metrics: {type(exc).__name__}: {exc}"

    def attach_metrics(self, outcome: ModelOutcome, compute) -> None:
        """Fill ``outcome`` from ``compute() -> (rows, seconds)``; a metric error fails this pair only."""
        try:
            rows, metrics_s = compute()
        except Exception as exc:
            raise_if_bug(exc, outcome.case_row["case_id"], outcome.case_row["model"], "computing the metrics")
            outcome.case_row.update(success=False, error=self.metric_error(outcome, exc))
            outcome.metric_rows = []
            return
        outcome.case_row["metrics_s"] = metrics_s
        outcome.case_row["total_s"] += metrics_s
        outcome.metric_rows = [{"model": outcome.case_row["model"], "case_id": outcome.case_row["case_id"], **r}
                               for r in rows]

    def process(self, case: RunCase, names) -> CaseResult:
        """Every stage of one case for the models ``names``, one after the other (remote workers)."""
        item = self.load(case, names)
        outcomes = []
        for name in names:
            self.check_fits(name, item)
            outcome, label_map = self.run_model(name, item)
            if label_map is not None:
                self.attach_metrics(outcome, lambda: self.score(item.ref, label_map))
            outcomes.append(outcome)
        return CaseResult(case.case_id, outcomes)

    # -- cold start -----------------------------------------------------------------------
    def _warm_metrics(self, ref: Volume | None, pred: Volume | None) -> None:
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
        evaluate_pair(tiny[0], tiny[1], spacing=(1.0, 1.0, 1.0), labels=[1], **self.options.pair_kwargs())

    def _cold_start(self, model, prepared, info: dict):
        """First run (cold start, added to session creation) and untimed warm-up runs, on a
        prepared case; the timed run of that case follows them. Returns the first prediction."""
        t0 = time.perf_counter_ns()
        first_prediction = model.execute(prepared)
        first = (time.perf_counter_ns() - t0) / 1e9 + prepared.preprocess_s
        info["first_run_s"] = first
        info["cold_start_s"] = info["session_s"] + first
        warm = []
        for _ in range(max(0, self.warmup - 1)):
            t0 = time.perf_counter_ns()
            model.execute(prepared)
            warm.append((time.perf_counter_ns() - t0) / 1e9)
        info["warmup_s"] = [first, *warm]
        return first_prediction


def _name_file(exc: Exception, ref_path: str | None, pred_path: str | None, reading: str | None) -> str:
    """An evaluation's error text naming the file: ``ref:``/``pred:`` prefixes become the file
    paths; another error names the file being read when it was raised (else the prediction)."""
    text = str(exc)
    for side, path in (("ref", ref_path), ("pred", pred_path)):
        if text.startswith(side + ":"):
            return f"{path}:{text[len(side) + 1:]}"
    if isinstance(exc, VolumeError):
        return text
    return f"{reading or pred_path}: {type(exc).__name__}: {text}"


class PredictionWorker(CaseWorker):
    """The case worker of an evaluation, whose "model" is a folder of saved predictions: loading
    a case reads its reference and its prediction (``RunCase.pred_path``) and checks that they
    share a grid; "running" the model hands over the prediction; scoring is the run's."""

    inline_when_tiny = True  # no inference to overlap: tiny cases run best in one thread

    def __init__(self, options, cache: VolumeCache | None):
        super().__init__({}, {}, options, {}, cache, warmup=0)

    def load(self, case: RunCase, names) -> Loaded:
        t0 = time.perf_counter_ns()
        out = Loaded(case, tuple(names))
        reading = None
        try:
            if case.problem:
                raise VolumeError(case.problem)
            reading = case.ref_path
            out.ref = load_volume(case.ref_path, cache=self.cache)
            reading = case.pred_path
            out.prediction = load_volume(case.pred_path, cache=self.cache)
            reading = None
            check_spacing(out.ref.spacing)
            check_same_grid(out.ref, out.prediction, rtol=self.options.geometry_rtol)
        except Exception as exc:  # a failed row naming the file; the run goes on
            raise_if_bug(exc, case.case_id, None, "reading the case")
            out.error = _name_file(exc, case.ref_path, case.pred_path, reading)
        out.load_s = (time.perf_counter_ns() - t0) / 1e9
        return out

    def metric_error(self, outcome: ModelOutcome, exc: Exception) -> str:
        return _name_file(exc, outcome.case_row["ref_path"], outcome.case_row["pred_path"], None)

    def check_fits(self, name: str, item: Loaded) -> None:
        """Saved predictions fit by definition: their grid is checked against the reference on load."""

    def run_model(self, name: str, item: Loaded):
        case = item.case
        row = {"model": name, "case_id": case.case_id, "ref_path": case.ref_path, "pred_path": case.pred_path,
               "success": False}
        if item.error is not None:
            row.update(error=item.error, total_s=item.load_s)
            return ModelOutcome(row, [], []), None
        row.update(shape=list(item.ref.shape), spacing=list(item.ref.spacing), success=True, load_s=item.load_s, total_s=item.load_s)
        return ModelOutcome(row, [], []), item.prediction
