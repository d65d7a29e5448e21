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
             "torch", "transformers", "optimum-onnx", "onnxscript", "huggingface_hub", "ray")


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


def _smi(*args: str) -> str | None:
    """stdout of ``nvidia-smi args`` or None (not installed, failed, hung)."""
    try:
        out = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _mib(text: str) -> float | None:
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def nvidia_smi_gpus() -> list[dict] | None:
    """Every GPU ``nvidia-smi`` lists (``index``, ``uuid``, ``name``, ``driver``,
    ``memory_total_mib``), or None without nvidia-smi. Lines that are not a GPU row
    (warnings, blank lines, a changed format) are skipped, never raised on."""
    text = _smi("--query-gpu=index,uuid,name,driver_version,memory.total", "--format=csv,noheader,nounits")
    if text is None:
        return None
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 5 or not parts[0].isdigit() or not parts[1].startswith("GPU-"):
            continue
        gpus.append({"index": int(parts[0]), "uuid": parts[1], "name": parts[2], "driver": parts[3],
                     "memory_total_mib": _mib(parts[4])})
    return gpus or None


def driver_cuda_version() -> str | None:
    """The highest CUDA version the driver supports (``nvidia-smi``'s header), or None."""
    text = _smi() or ""
    for token in text.split("|"):
        if "CUDA Version:" in token:
            rest = token.split("CUDA Version:", 1)[1].split()
            return rest[0] if rest else None
    return None


def visible_gpu(ordinal: int) -> dict | None:
    """The GPU that CUDA device ``ordinal`` is, resolved through ``CUDA_VISIBLE_DEVICES``
    (indices, ``GPU-`` UUIDs or their prefixes, ``MIG-`` instances) to nvidia-smi's row.

    NVML and nvidia-smi ignore ``CUDA_VISIBLE_DEVICES`` and number GPUs in PCI order, so a
    bare ordinal is matched as an nvidia-smi index only when the variable is unset. A MIG
    instance is returned as ``{"uuid": "MIG-...", "mig": True}``. None when unresolvable.
    """
    gpus = nvidia_smi_gpus() or []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    entry = str(ordinal)
    if env is not None:
        items = [item.strip() for item in env.split(",") if item.strip()]
        if ordinal >= len(items):
            return None
        entry = items[ordinal]
    if entry.startswith("MIG-"):
        return {"uuid": entry, "mig": True}
    for gpu in gpus:
        if (entry.isdigit() and gpu["index"] == int(entry)) or (entry.startswith("GPU-") and gpu["uuid"].startswith(entry)):
            return gpu
    return None


def onnxruntime_build() -> dict | None:
    """onnxruntime's package and the CUDA/cuDNN/TensorRT versions it was built against
    (read only when onnxruntime is already imported)."""
    ort = sys.modules.get("onnxruntime")
    if ort is None:
        return None
    info = getattr(getattr(ort, "capi", None), "build_and_package_info", None)
    out = {"package": getattr(info, "package_name", None), "version": getattr(ort, "__version__", None),
           "providers_available": list(ort.get_available_providers())}
    for key in ("cuda_version", "cudnn_version", "trt_version", "tensorrt_version"):
        value = getattr(info, key, None) or getattr(ort, key, None)
        if value:
            out[key] = str(value)
    from medbench_fast.models.providers import tensorrt_version

    if "TensorrtExecutionProvider" in out["providers_available"]:
        out["tensorrt_runtime"] = tensorrt_version()
    return out


def gpu_info() -> list[dict] | None:
    """Every NVIDIA GPU of the machine (``nvidia-smi``) with the driver's CUDA version, or None."""
    gpus = nvidia_smi_gpus()
    if not gpus:
        return None
    cuda = driver_cuda_version()
    return [{**gpu, "driver_cuda": cuda} for gpu in gpus]


def gpus_used() -> list[dict] | None:
    """The GPUs this process's sessions ran on (name, UUID, memory), or None.

    ``process_memory_end_mib``: this process's GPU memory on it when recorded (NVML); with
    onnxruntime's arena, which keeps what it grew to, that is about the run's peak.
    """
    session = sys.modules.get("medbench_fast.models.session")
    ordinals = sorted(getattr(session, "DEVICES_USED", ()))
    if not ordinals:
        return None
    from medbench_fast.runner.profile import GpuMemory

    return [{"cuda_ordinal": i, **(visible_gpu(i) or {"uuid": None}),
             "process_memory_end_mib": GpuMemory(i).process_mib()} for i in ordinals]


def hardware() -> dict:
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "gpus": gpu_info(), "gpus_used": gpus_used(),
            "onnxruntime_build": onnxruntime_build()}


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
