"""What makes a run the run it is: its fingerprint components, and the run folder's rules.

:func:`run_fingerprint` and :func:`evaluate_fingerprint` list everything that changes a
number of a ``medbench run`` or ``medbench evaluate``. :class:`RunFolder` enforces one run
per folder: it takes the writer lock, refuses a folder that holds another run (naming what
differs) unless asked to overwrite it, and lets ``--resume`` continue only the recorded run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from medbench_fast.metrics.options import MetricOptions
from medbench_fast.config import Config, ModelEntry
from medbench_fast.store import run_info
from medbench_fast.store.fingerprint import Fingerprint, file_sha256, flatten
from medbench_fast.store.lock import RunLock

#: Files and folders a run writes in its folder (everything ``--overwrite`` replaces).
RUN_FILES = ("run.json", "parts", "shards", "models", "dicom_seg", "predictions", "metrics.parquet", "cases.parquet",
             "scores.parquet", "latency.parquet", "results.csv", "cases.csv", "summary.json", "leaderboard.html")


class RunFolderError(ValueError):
    """The run folder cannot take this run (another run, another fingerprint, not writable)."""


def _options_components(options: MetricOptions, threshold: float | None) -> dict:
    out = options.fingerprint_components()
    if threshold is not None:
        out["threshold"] = float(threshold)
    return out


def _model_components(entry: ModelEntry) -> dict:
    """A model's config entry and the sha256 of its source file or folder."""
    record = {k: v for k, v in entry.to_dict().items() if k not in ("name", "note") and v is not None}
    path = entry.path
    if path:
        p = Path(path)
        record["sha256"] = file_sha256(p) if p.exists() else "missing"
    return record


def case_list_components(case_ids) -> dict:
    """A run's case list as fingerprint components: how many, and the sha256 of the sorted ids."""
    ids = sorted(case_ids)
    return {"cases.count": len(ids), "cases.sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()}


def case_list_change(recorded: dict, case_ids) -> str | None:
    """How the dataset's cases differ from those recorded in ``run.json`` (``case_ids``), or None."""
    before = recorded.get("case_ids")
    if before is None or case_ids is None:
        return None
    added, removed = sorted(set(case_ids) - set(before)), sorted(set(before) - set(case_ids))
    if not added and not removed:
        return None

    def listed(ids):
        shown = ", ".join(ids[:10]) + (f", ... ({len(ids) - 10} more)" if len(ids) > 10 else "")
        return f"{len(ids)} ({shown})" if ids else "none"

    return (f"the dataset's cases changed since the run started (added: {listed(added)}; removed: "
            f"{listed(removed)}); a run (and each of its shards) covers the cases it started with: "
            f"start a new run in another folder to score the changed dataset")


def run_fingerprint(config: Config, entries: list[ModelEntry], options: MetricOptions, case_ids=None) -> Fingerprint:
    """The fingerprint of a ``medbench run`` of ``entries`` (model entries) under ``config``
    on the dataset's ``case_ids`` (every case, whatever the shard)."""
    data, bench = config.dataset, config.benchmark
    dataset = {k: v for k, v in data.to_dict().items() if k not in ("labels", "label_names", "regions")}  # in options
    if data.targets_csv and Path(data.targets_csv).is_file():
        dataset["targets_sha256"] = file_sha256(data.targets_csv)
    components = {"command": "run", **flatten("dataset", dataset), **flatten("options", _options_components(
        options, bench.threshold)), "providers": list(bench.providers), "fp16": bool(bench.fp16),
                  "tf32": bench.tf32, "cudnn_search": bench.cudnn_search, "postprocess": bench.postprocess}
    if case_ids is not None:
        components.update(case_list_components(case_ids))
    for entry in entries:
        components.update(flatten(f"models.{entry.name}", _model_components(entry)))
    return Fingerprint(components)


def evaluate_fingerprint(pred_dir, ref_dir, model: str, options: MetricOptions, case_ids=None) -> Fingerprint:
    """The fingerprint of a ``medbench evaluate`` of ``pred_dir`` against ``ref_dir``."""
    components = {"command": "evaluate", "pred_dir": str(Path(pred_dir).resolve()),
                  "ref_dir": str(Path(ref_dir).resolve()), "model": model,
                  "case_ids": None if case_ids is None else sorted(case_ids),
                  **flatten("options", _options_components(options, None))}
    return Fingerprint(components)


def _has_results(run_dir: Path) -> bool:
    """Whether any part (of any namespace) was written: a run without one has no result to lose."""
    return any((run_dir / "parts").glob("*/part-*.parquet"))


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run (its ``run.json`` or parts): no other command writes there."""
    return (run_dir / "run.json").exists() or (run_dir / "parts").exists()


class RunFolder:
    """The folder of one run, held by this process for the run's duration (a context manager)."""

    def __init__(self, run_dir: str | os.PathLike, *, command: str):
        self.path = Path(run_dir)
        self.command = command
        self.lock: RunLock | None = None
        self.case_ids = None

    def open(self, fingerprint: Fingerprint, *, resume: bool = False, overwrite: bool = False,
             shard: str | None = None, case_ids=None) -> dict:
        """Create and lock the folder and check it against ``fingerprint``; return the recorded
        ``run.json`` when resuming or joining (else ``{}``). Raises :class:`RunFolderError` or
        :class:`~medbench_fast.store.lock.RunLockedError` without writing anything.

        ``shard``: the part namespace of one shard; its lock is its own, and a folder holding
        the same run (same fingerprint) is joined instead of refused. ``case_ids``: the dataset's
        cases; a resume or shard of a run recorded with other cases is refused, naming them."""
        self.case_ids = case_ids
        self._make()
        self.lock = RunLock(self.path, command=f"medbench {self.command}", namespace=shard or "main").acquire()
        try:
            if shard is not None:
                return self._join(fingerprint)
            return self._check(fingerprint, resume=resume, overwrite=overwrite)
        except BaseException:
            self.close()
            raise

    def _make(self) -> None:
        p = self.path
        for parent in [p, *p.parents]:
            if parent.exists() and not parent.is_dir():
                raise RunFolderError(f"{p}: cannot create the run folder: {parent} is a file")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"{p}: cannot create the run folder ({exc.strerror or exc})") from None
        if not os.access(p, os.W_OK | os.X_OK):
            raise RunFolderError(f"{p}: the run folder is not writable")

    def _check(self, fingerprint: Fingerprint, *, resume: bool, overwrite: bool) -> dict:
        for leftover in self.path.glob(".medbench-replaced-*"):  # an interrupted --overwrite
            shutil.rmtree(leftover, ignore_errors=True)
        recorded = run_info.read_run_json(self.path)
        if resume:
            if not recorded:
                raise RunFolderError(f"{self.path}: no run.json; not a run folder to resume")
            if recorded.get("command") != self.command:
                raise RunFolderError(f"{self.path}: holds a 'medbench {recorded.get('command')}' run, "
                                     f"not a 'medbench {self.command}' run")
            previous = Fingerprint.from_dict(recorded.get("fingerprint"))
            if previous is None:
                raise RunFolderError(f"{self.path}: run.json has no fingerprint (written by an older medbench-fast); "
                                     f"it cannot be resumed safely: start a new run")
            changed = case_list_change(recorded, self.case_ids)
            if changed:
                raise RunFolderError(f"{self.path}: cannot resume: {changed}")
            diffs = previous.differences(fingerprint)
            if diffs:
                raise RunFolderError(f"{self.path}: --resume continues the recorded run; the given settings "
                                     f"change its fingerprint:\n  " + "\n  ".join(diffs))
            return recorded
        if holds_run(self.path):
            if overwrite or not _has_results(self.path):  # a run that stopped before its first case is replaced
                self._replace()
                return {}
            previous = Fingerprint.from_dict(recorded.get("fingerprint"))
            what = (f"run {recorded.get('run_id')} ({recorded.get('command')}, {recorded.get('status')})"
                    if recorded else "the parts of an unfinished run")
            if previous is not None:
                diffs = previous.differences(fingerprint)
                detail = ("; it differs in:\n  " + "\n  ".join(diffs)) if diffs else "; with the same settings"
            else:
                detail = ""
            hint = "use --resume to continue it, " if recorded.get("command") == self.command else ""
            raise RunFolderError(f"{self.path}: already holds {what}{detail}\n"
                                 f"A run folder holds exactly one run: {hint}choose another folder, "
                                 f"or pass --overwrite to replace it.")
        return {}

    def _join(self, fingerprint: Fingerprint) -> dict:
        """A shard joins the run recorded in the folder when it is the same run."""
        recorded = run_info.read_run_json(self.path)
        if not recorded:
            if (self.path / "parts").exists():
                raise RunFolderError(f"{self.path}: holds the parts of an unfinished run without run.json; "
                                     f"choose another folder")
            return {}
        changed = case_list_change(recorded, self.case_ids)
        if changed and recorded.get("command") == self.command:
            raise RunFolderError(f"{self.path}: this shard cannot join the run: {changed}")
        previous = Fingerprint.from_dict(recorded.get("fingerprint"))
        diffs = previous.differences(fingerprint) if previous else ["no fingerprint recorded"]
        if recorded.get("command") != self.command or not recorded.get("shards") or diffs:
            raise RunFolderError(f"{self.path}: holds another run (run {recorded.get('run_id')}); a shard joins only "
                                 f"shards of the same run" + ("; it differs in:\n  " + "\n  ".join(diffs) if diffs else ""))
        return recorded

    def _replace(self) -> None:
        """Move the old run aside (run.json first, so a crash leaves the old run or none) and delete it."""
        trash = self.path / f".medbench-replaced-{uuid.uuid4().hex[:8]}"
        trash.mkdir()
        for name in RUN_FILES:
            src = self.path / name
            if src.exists():
                os.replace(src, trash / name)
        shutil.rmtree(trash, ignore_errors=True)

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
