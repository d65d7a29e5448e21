"""``run.json``: what was run, when, on what, with which versions."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path

#: Distributions whose versions every run records (absent ones are skipped).
VERSIONED = ("medbench-fast", "numpy", "numba", "SimpleITK", "pyarrow", "onnxruntime", "onnxruntime-gpu",
             "torch", "transformers", "optimum-onnx", "ray")


def new_run_id() -> str:
    """A sortable, unique run id: UTC timestamp plus 6 random hex digits."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    out = []
    for name in VERSIONED:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(out)


def package_versions() -> dict[str, str]:
    """Versions of the :data:`VERSIONED` distributions installed (read once per process)."""
    return dict(_versions())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The commit of the medbench-fast checkout in use, when run from one."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def gpu_info() -> list[dict] | None:
    """Name, driver, memory and CUDA version of each NVIDIA GPU (``nvidia-smi``), or None.

    cuDNN's version is added when torch is already imported (it is never imported for this).
    """
    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if query.returncode != 0:
        return None
    cuda = None
    for token in header.stdout.split("|"):
        if "CUDA Version:" in token:
            cuda = token.split("CUDA Version:")[1].split()[0]
    cudnn = None
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch.backends, "cudnn", None) is not None and torch.cuda.is_available():
        cudnn = torch.backends.cudnn.version()
    gpus = []
    for line in query.stdout.strip().splitlines():
        name, driver, memory = (part.strip() for part in line.split(","))
        gpus.append({"name": name, "driver": driver, "memory": memory, "cuda": cuda, "cudnn": cudnn})
    return gpus or None


def hardware() -> dict:
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "gpus": gpu_info()}


def config_record(text: str | None) -> dict | None:
    if text is None:
        return None
    return {"text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}


def write_run_json(run_dir: str | os.PathLike, info: dict) -> Path:
    """Write ``info`` as ``RUN_DIR/run.json`` atomically (keys sorted, stable bytes)."""
    target = Path(run_dir) / "run.json"
    tmp = target.with_name(f".run.json.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
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
