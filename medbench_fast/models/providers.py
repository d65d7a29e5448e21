"""Execution providers: their order, their options, strict checks and GPU library loading.

Short names ``tensorrt``, ``cuda`` and ``cpu`` map to onnxruntime's provider names. The
rules every session follows:

- TensorRT is always followed by CUDA, so nodes TensorRT rejects run on the GPU.
- CUDA libraries are loaded the same way for every model of a process: once, before the
  first GPU session, with ``onnxruntime.preload_dlls()`` where the wheel has it (it finds
  the CUDA/cuDNN libraries of the ``nvidia-*`` pip wheels, which onnxruntime otherwise
  sees only after ``import torch``).
- Strict providers (default on when a GPU provider is requested): the first requested
  provider must be the one in use, and no node that computes on tensors may run on the
  CPU. The decision is made on the placement onnxruntime reports after partitioning
  (:mod:`~medbench_fast.models.placement`): the shape arithmetic the CUDA provider puts on
  the CPU by design is accepted, anything else is refused by name. CPU stays last in the
  provider list so that shape arithmetic has somewhere to go; onnxruntime's own retry on the
  CPU after a GPU failure is switched off, so its error is what the user sees.
- Why a GPU provider is not in use is told apart (:func:`explain_unavailable`): not in this
  onnxruntime build, libraries missing, no GPU visible (no driver, none visible, or the
  ordinal beyond them), or none of these (a driver too old for the build's CUDA).
- cuDNN's convolution algorithm search and TF32 are explicit options, recorded with the
  rest of the provider options.
- TensorRT keeps engine and timing caches under the export cache, in a folder keyed by the
  model's hash, the GPU's name and the TensorRT version (pip metadata, else the loaded
  ``libnvinfer``); profile shapes cover every dynamic input of the graph that runs.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.environment import tensorrt_version
from medbench_fast.models.spec import ModelError

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
GPU_PROVIDERS = (PROVIDER_NAMES["tensorrt"], PROVIDER_NAMES["cuda"])
CUDNN_SEARCH = ("exhaustive", "heuristic", "default")

#: Shared libraries each GPU provider needs (Linux sonames, by CUDA major version).
_CUDA_LIBS = {
    "12": ("libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12", "libcufft.so.11", "libcurand.so.10",
           "libcudnn.so.9"),
    "13": ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcufft.so.12", "libcurand.so.10",
           "libcudnn.so.9"),
}
_TRT_LIBS = ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10")


@dataclass(frozen=True)
class GpuSettings:
    """GPU options of a session (all recorded in ``run.json`` through the provider options).

    ``device_id``: CUDA device ordinal (after ``CUDA_VISIBLE_DEVICES``). ``cudnn_search``:
    cuDNN convolution algorithm search, ``exhaustive`` (benchmark every algorithm on the
    first run of each input shape; onnxruntime's default), ``heuristic`` or ``default``.
    ``tf32``: let float32 matrix and convolution work use TF32 tensor cores (Ampere and
    newer; about 10 mantissa bits). ``strict``: see the module docstring; ``None`` = on
    when a GPU provider is requested. ``trt_cache_dir``: root of the TensorRT caches
    (default ``<export cache>/tensorrt``).
    """

    device_id: int = 0
    cudnn_search: str = "exhaustive"
    tf32: bool = False
    strict: bool | None = None
    trt_cache_dir: str | None = None

    def validate(self) -> None:
        if self.cudnn_search not in CUDNN_SEARCH:
            raise ModelError(f"cudnn_search {self.cudnn_search!r} is not one of {CUDNN_SEARCH}")
        if self.device_id < 0:
            raise ModelError(f"device_id must be >= 0, got {self.device_id}")


def full_names(providers) -> list[str]:
    """Short names -> onnxruntime names, in order; unknown names are a :class:`ModelError`."""
    unknown = [name for name in providers if name not in PROVIDER_NAMES]
    if unknown:
        raise ModelError(f"unknown provider(s) {unknown}; choose from {list(PROVIDER_NAMES)}")
    return [PROVIDER_NAMES[name] for name in providers]


def is_strict(requested: list[str], settings: GpuSettings) -> bool:
    """Strict checks apply to GPU runs only: on unless ``settings.strict`` is False."""
    return any(p in GPU_PROVIDERS for p in requested) and settings.strict is not False


def provider_order(requested: list[str], *, strict: bool) -> list[str]:
    """The providers handed to onnxruntime: CUDA right after TensorRT, CPU last (strict or
    not: onnxruntime puts shape arithmetic there; strict runs check what else it put there)."""
    order: list[str] = []
    for name in requested:
        if name not in order:
            order.append(name)
        if name == PROVIDER_NAMES["tensorrt"] and PROVIDER_NAMES["cuda"] not in requested:
            order.append(PROVIDER_NAMES["cuda"])
    cpu = PROVIDER_NAMES["cpu"]
    return [p for p in order if p != cpu] + [cpu]


def provider_options(order: list[str], settings: GpuSettings, *, fp16: bool,
                     trt_cache: Path | None = None, trt_shapes: dict[str, list[int]] | None = None) -> list[dict]:
    """onnxruntime provider options (all values strings) for each provider of ``order``.
    ``trt_shapes``: input name -> one shape, or ``(min, opt, max)`` (for a shape tensor such
    as the post-processing's output size, its values)."""
    out = []
    for name in order:
        if name == PROVIDER_NAMES["cuda"]:
            out.append({"device_id": str(settings.device_id),
                        "cudnn_conv_algo_search": settings.cudnn_search.upper(),
                        "use_tf32": "1" if settings.tf32 else "0"})
        elif name == PROVIDER_NAMES["tensorrt"]:
            opts = {"device_id": str(settings.device_id), "trt_fp16_enable": "True" if fp16 else "False"}
            if trt_cache is not None:
                opts.update(trt_engine_cache_enable="True", trt_engine_cache_path=str(trt_cache),
                            trt_timing_cache_enable="True", trt_timing_cache_path=str(trt_cache))
            if trt_shapes:
                ranges = {n: (v if isinstance(v, tuple) else (v, v, v)) for n, v in trt_shapes.items()}
                for k, key in enumerate(("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")):
                    opts[key] = ",".join(f"{n}:{'x'.join(str(int(d)) for d in r[k])}" for n, r in ranges.items())
            out.append(opts)
        else:
            out.append({})
    return out


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def trt_cache_folder(root: Path, model_sha256: str, gpu_name: str | None) -> Path:
    """``<root>/<model hash>-<gpu>-trt<version>``: engines are valid only for that triple."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name or "gpu").strip("-").lower()
    return Path(root) / f"{model_sha256[:16]}-{gpu}-trt{tensorrt_version()}"


_PRELOADED: list[str] = []


def load_gpu_libraries(ort) -> str:
    """Load CUDA/cuDNN once per process, the same way for every model; returns how."""
    if _PRELOADED:
        return _PRELOADED[0]
    how = "default library search"
    if hasattr(ort, "preload_dlls") and getattr(ort, "cuda_version", None):
        ort.preload_dlls()
        how = "onnxruntime.preload_dlls()"
    _PRELOADED.append(how)
    return how


def missing_libraries(provider: str, cuda_version: str | None) -> list[str]:
    """Sonames ``provider`` needs that the dynamic loader cannot find (Linux; else [])."""
    if not sys.platform.startswith("linux"):
        return []
    major = (cuda_version or "12").split(".")[0]
    names = list(_CUDA_LIBS.get(major, _CUDA_LIBS["12"]))
    if provider == PROVIDER_NAMES["tensorrt"]:
        names += _TRT_LIBS
    missing = []
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.append(name)
    return missing


def cuda_device_count() -> int | None:
    """GPUs the CUDA driver shows this process (after ``CUDA_VISIBLE_DEVICES``), through
    ``libcuda`` itself; None where no NVIDIA driver is installed."""
    try:
        lib = ctypes.CDLL("libcuda.so.1" if sys.platform.startswith("linux") else "nvcuda.dll")
    except OSError:
        return None
    if lib.cuInit(0) != 0:  # CUDA_ERROR_NO_DEVICE (100) and friends: nothing usable
        return 0
    count = ctypes.c_int(0)
    return int(count.value) if lib.cuDeviceGetCount(ctypes.byref(count)) == 0 else 0


def explain_unavailable(ort, provider: str, device_id: int = 0) -> str | None:
    """Why ``provider`` cannot run: not in this onnxruntime build, libraries missing, or no GPU
    visible; None when none of these holds (the model itself was refused, or the driver is
    older than the build's CUDA)."""
    package = getattr(getattr(getattr(ort, "capi", None), "build_and_package_info", None), "package_name",
                      "onnxruntime")
    if provider not in ort.get_available_providers():
        return (f"{provider} is not in this onnxruntime build ({package} {ort.__version__}, providers "
                f"{ort.get_available_providers()}); install the GPU wheel: pip uninstall onnxruntime && "
                f"pip install 'medbench-fast[gpu]'")
    missing = missing_libraries(provider, getattr(ort, "cuda_version", None))
    if missing:
        return (f"libraries missing: {provider} needs {', '.join(missing)} (pip install 'medbench-fast[gpu]' "
                f"installs the CUDA and cuDNN wheels; or add their folders to LD_LIBRARY_PATH)")
    count = cuda_device_count()
    if count is None:
        return f"no GPU visible: no NVIDIA driver found (libcuda.so.1) for {provider}"
    if count <= device_id:
        import os

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return f"no GPU visible: the driver shows {count} GPU(s){where}, device_id {device_id} asked for"
    return None


def why_not_in_use(ort, provider: str, device_id: int = 0) -> str:
    """:func:`explain_unavailable`, or what is left when libraries and GPU are both there."""
    return explain_unavailable(ort, provider, device_id) or (
        f"{provider} did not start although its libraries and a GPU are visible (a driver older than "
        f"the CUDA {getattr(ort, 'cuda_version', None) or '?'} this onnxruntime was built for?)")
