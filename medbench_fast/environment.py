"""Facts about the machine and this process: package versions, CPU, GPUs and GPU memory.

The bottom of the package (beside :mod:`medbench_fast.files`): it imports nothing else of
medbench-fast, so models, the runner and the CLI may all ask it. The runner collects these
facts and hands them to the store as plain data (``run.json``'s ``versions``, ``hardware``
and ``git_commit``). Sessions record the CUDA devices they run on in :data:`DEVICES_USED`;
:class:`GpuWatch` samples this process's memory on those devices.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

#: Distributions whose versions every run records (absent ones are skipped).
VERSIONED = ("medbench-fast", "numpy", "numba", "SimpleITK", "pyarrow", "onnxruntime", "onnxruntime-gpu",
             "torch", "transformers", "optimum-onnx", "onnxscript", "huggingface_hub", "ray")

#: CUDA ordinals that sessions of this process run on (``run.json`` records these GPUs).
DEVICES_USED: set[int] = set()


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
    root = Path(__file__).resolve().parents[1]
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
    Where the CUDA driver library is loadable, the UUID comes from it (``cuDeviceGetUuid``)
    and name and memory from NVML (:func:`nvml_gpu`), so nvidia-smi is not needed.

    NVML and nvidia-smi ignore ``CUDA_VISIBLE_DEVICES`` and number GPUs in PCI order, so a
    bare ordinal is matched as an nvidia-smi index only when the variable is unset. A MIG
    instance is returned as ``{"uuid": "MIG-...", "mig": True}``. None when unresolvable.
    """
    uuid = cuda_device_uuid(ordinal)  # the driver's own numbering: exact, no nvidia-smi needed
    gpus = nvidia_smi_gpus() or []
    if uuid is not None:
        row = next((gpu for gpu in gpus if gpu["uuid"] == uuid), None)
        return row or {"uuid": uuid, **nvml_gpu(uuid)}
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


def nvml_gpu(uuid: str) -> dict:
    """Name and total memory of the GPU ``uuid`` through NVML (``nvidia-ml-py``), or {}."""
    nvml = _nvml()
    if nvml is None:
        return {}
    try:
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
        name = nvml.nvmlDeviceGetName(handle)
        total = nvml.nvmlDeviceGetMemoryInfo(handle).total
        driver = nvml.nvmlSystemGetDriverVersion()
    except nvml.NVMLError:
        return {}
    text = (lambda v: v.decode() if isinstance(v, bytes) else str(v))
    return {"name": text(name), "driver": text(driver), "memory_total_mib": float(total) / 2**20}


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


def gpus_used(workers: list[dict] | None = None) -> list[dict] | None:
    """The GPUs the run's sessions ran on, with every worker process's sampled peak memory.

    ``workers``: ``run.json``'s worker records (every executor: local, processes, Ray), each
    with ``gpus`` from its process's :class:`GpuWatch`. One
    entry per GPU (by UUID): its facts, ``processes`` (pid, host, ``process_peak_mib``,
    ``memory_source``) and ``process_peak_mib``, the largest of them. Without worker
    records, this process's own GPUs. None when no session ran on a GPU.
    """
    rows = [gpu for worker in workers or () for gpu in worker.get("gpus") or ()]
    if not rows:
        rows = GpuWatch.of_process().record() or []
    if not rows:
        return None
    out: dict[str, dict] = {}
    for row in rows:
        key = row.get("uuid") or f"{row.get('host')}:{row.get('cuda_ordinal')}"
        process = {k: row.get(k) for k in ("pid", "host", "process_peak_mib", "memory_source")}
        entry = out.setdefault(key, {k: v for k, v in row.items() if k not in process and k != "cuda_ordinal"}
                               | {"processes": []})
        entry["processes"].append(process)
    for entry in out.values():
        peaks = [p["process_peak_mib"] for p in entry["processes"] if p["process_peak_mib"] is not None]
        entry["process_peak_mib"] = max(peaks) if peaks else None
    return list(out.values())


def hardware(workers: list[dict] | None = None) -> dict:
    """CPU, platform, Python, every GPU, the GPUs used (:func:`gpus_used`) and onnxruntime's build."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "gpus": gpu_info(), "gpus_used": gpus_used(workers),
            "onnxruntime_build": onnxruntime_build()}


def tensorrt_version() -> str:
    """The TensorRT runtime version: its pip distribution, else the ``libnvinfer`` the loader
    finds (``getInferLibVersion``, a system install), else ``unknown``."""
    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-libs", "tensorrt-cu13-libs",
                 "tensorrt-cu12-libs"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return library_tensorrt_version() or "unknown"


def decode_trt_version(number: int) -> str:
    """``getInferLibVersion()``'s integer as ``major.minor.patch`` (10.x: M*10000 + m*100 + p;
    before 10: M*1000 + m*100 + p)."""
    if number >= 100000:
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    return f"{number // 1000}.{number // 100 % 10}.{number % 100}"


def library_tensorrt_version() -> str | None:
    """The version of the ``libnvinfer`` the dynamic loader finds, or None."""
    for name in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        getter = getattr(lib, "getInferLibVersion", None)
        if getter is not None:
            getter.restype = ctypes.c_int32
            return decode_trt_version(int(getter()))
    return None


def cuda_device_uuid(ordinal: int) -> str | None:
    """The ``GPU-...`` UUID of CUDA device ``ordinal`` as this process numbers it (after
    ``CUDA_VISIBLE_DEVICES``), from ``libcuda`` itself; None without a driver or device."""
    try:
        lib = ctypes.CDLL("libcuda.so.1" if sys.platform.startswith("linux") else "nvcuda.dll")
    except OSError:
        return None
    device, raw = ctypes.c_int(0), (ctypes.c_ubyte * 16)()
    getter = getattr(lib, "cuDeviceGetUuid_v2", None) or getattr(lib, "cuDeviceGetUuid", None)
    if getter is None or lib.cuInit(0) != 0 or lib.cuDeviceGet(ctypes.byref(device), int(ordinal)) != 0:
        return None
    if getter(raw, device) != 0:
        return None
    h = bytes(raw).hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _nvml():
    """The initialised ``pynvml`` module (``nvidia-ml-py``), or None without it, its library or a driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    return pynvml


class GpuMemory:
    """This process's GPU memory on the device a session uses, in MiB, through NVML.

    Create it before the session (it reads the device's baseline), call :meth:`sample`
    after work; :attr:`peak_mib` is the largest sample. The device is CUDA ordinal
    ``ordinal`` resolved to its UUID through ``CUDA_VISIBLE_DEVICES``
    (:func:`visible_gpu`; NVML ignores that variable). A
    sample is this process's entry in the device's compute-process list
    (:attr:`source` ``process``); where the driver lists none for it (MIG, containers
    without the host's PID namespace), the device's used memory minus the baseline
    (``device_delta``). Everything is None without NVML or a resolvable device.
    """

    def __init__(self, ordinal: int = 0):
        self.peak_mib: float | None = None
        self.source: str | None = None
        self.uuid: str | None = None
        self._nvml = _nvml()
        self._handle = None
        gpu = visible_gpu(ordinal) if self._nvml is not None else None
        if not gpu or not gpu.get("uuid"):
            return
        try:
            self._handle = self._nvml.nvmlDeviceGetHandleByUUID(gpu["uuid"])
            self._baseline = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used
        except self._nvml.NVMLError:
            self._handle = None
            return
        self.uuid = gpu["uuid"]

    def process_mib(self) -> float | None:
        """This process's entry in the device's compute-process list (MiB), or None."""
        if self._handle is None:
            return None
        try:
            mine = [p.usedGpuMemory for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
                    if p.pid == os.getpid() and p.usedGpuMemory is not None]
        except self._nvml.NVMLError:
            return None
        return float(sum(mine)) / 2**20 if mine else None

    def sample(self) -> float | None:
        """Read this process's GPU memory now (MiB) and update the peak."""
        if self._handle is None:
            return None
        mib = self.process_mib()
        self.source = "process"
        if mib is None:
            try:
                used = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used
            except self._nvml.NVMLError:
                return None
            mib, self.source = max(float(used - self._baseline), 0.0) / 2**20, "device_delta"
        self.peak_mib = mib if self.peak_mib is None else max(self.peak_mib, mib)
        return mib


class GpuWatch:
    """This process's GPU memory on each device its sessions use, sampled in a thread.

    :meth:`before_sessions` reads each device's baseline before the first session creates
    its CUDA context (so the device-delta fallback includes the context); :meth:`start`
    samples every ``every`` seconds until :meth:`record`, which returns one entry per device:
    the GPU (:func:`visible_gpu`), this process's peak MiB and
    its source (``process``, ``device_delta`` or ``not measured``), pid and host. One per
    process: :meth:`of_process`.
    """

    _process: GpuWatch | None = None

    def __init__(self, every: float = 0.25):
        import threading

        self.every = every
        self.memories: dict[int, GpuMemory] = {}
        self._gpus: dict[int, dict] = {}  # ordinal -> visible_gpu(), read once
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    @classmethod
    def of_process(cls) -> GpuWatch:
        if cls._process is None:
            cls._process = cls()
        return cls._process

    def before_sessions(self, ordinals) -> None:
        for ordinal in ordinals:
            with self._lock:
                if ordinal not in self.memories:
                    self.memories[ordinal] = GpuMemory(ordinal)

    def _used(self) -> list[int]:
        return sorted(DEVICES_USED)

    def sample(self) -> None:
        self.before_sessions(self._used())
        with self._lock:
            for memory in self.memories.values():
                memory.sample()

    def start(self) -> GpuWatch:
        import threading

        if self._thread is None and self._used():
            self._thread = threading.Thread(target=self._loop, name="medbench-gpu-memory", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def record(self) -> list[dict] | None:
        """The devices used so far with this process's sampled peak (None: no GPU session)."""
        import socket

        used = self._used()
        if not used:
            return None
        self.sample()
        out = []
        for ordinal in used:
            memory = self.memories[ordinal]
            if ordinal not in self._gpus:
                self._gpus[ordinal] = visible_gpu(ordinal) or {"uuid": memory.uuid}
            out.append({"cuda_ordinal": ordinal, **self._gpus[ordinal],
                        "pid": os.getpid(), "host": socket.gethostname(), "process_peak_mib": memory.peak_mib,
                        "memory_source": memory.source or "not measured"})
        return out
