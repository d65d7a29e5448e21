"""``run.json``: what was run, when, on what, with which versions.

The store writes the facts it is handed (the runner collects versions and hardware from
:mod:`medbench_fast.environment`); it asks no model or runner itself.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import uuid
from pathlib import Path

from medbench_fast.files import write_text_atomic

def new_run_id() -> str:
    """A sortable, unique run id: UTC timestamp plus 6 random hex digits."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def config_record(text: str | None) -> dict | None:
    if text is None:
        return None
    return {"text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}


def write_run_json(run_dir: str | os.PathLike, info: dict) -> Path:
    """Write ``info`` as ``RUN_DIR/run.json`` atomically (keys sorted, stable bytes)."""
    target = Path(run_dir) / "run.json"
    write_text_atomic(target, json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return target


def record_failure(run_dir: str | os.PathLike, exc: BaseException) -> None:
    """Mark a run that stopped on ``exc`` as ``failed`` (``interrupted`` for Ctrl-C) in its run.json,
    keeping everything recorded so far; best effort (the disk may be what failed)."""
    try:
        info = read_run_json(run_dir)
        if info.get("status") in ("starting", "running"):
            interrupted = isinstance(exc, KeyboardInterrupt)
            info.update(status="interrupted" if interrupted else "failed",
                        error=None if interrupted else f"{type(exc).__name__}: {exc}", finished=utc_now())
            write_run_json(run_dir, info)
    except (OSError, ValueError):
        pass


def record_reports(run_dir: str | os.PathLike, failure: dict | None) -> bool:
    """Record in run.json that the run's reports failed (``failure``: status, error, written and
    missing files), or clear that record (None) once they are written; best effort (the disk
    may be full). Returns whether run.json now says so."""
    try:
        info = read_run_json(run_dir)
        if not info or info.get("reports") == failure:
            return bool(info)
        if failure is None:
            info.pop("reports", None)
        else:
            info["reports"] = failure
        write_run_json(run_dir, info)
        return True
    except (OSError, ValueError):
        return False


def read_run_json(run_dir: str | os.PathLike) -> dict:
    """``RUN_DIR/run.json`` ({} when absent); an unreadable one raises ValueError naming it."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable run.json ({exc})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: not a run.json (expected a JSON object)")
    return info
