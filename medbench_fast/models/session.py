"""The one ONNX Runtime session factory.

Providers are named ``tensorrt``, ``cuda`` and ``cpu`` and tried in the order given. After
the session exists, :attr:`OrtSession.providers_in_use` is read from
``session.get_providers()``: the GPU wheel lists CUDA even on machines where it falls
back to CPU, so the requested list is never trusted. A warning names every requested
provider that is not in use. On CUDA, inputs and outputs go through IO binding.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from medbench_fast.models.spec import ModelError

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
GRAPH_OPTIMIZATION = ("disable", "basic", "extended", "all")


def import_onnxruntime():
    """Import ``onnxruntime`` or raise a :class:`ModelError` that says how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("neither onnxruntime nor onnxruntime-gpu is installed: "
                         "pip install 'medbench-fast[cpu]' (or 'medbench-fast[gpu]')") from None
    return onnxruntime


def sniff_model_file(path: Path) -> None:
    """Raise :class:`ModelError` if ``path`` is missing or is plainly not an ONNX file."""
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head:
        raise ModelError(f"{path}: file is empty (0 bytes)")
    if head.startswith(b"\x89HDF"):
        raise ModelError(f"{path}: is an HDF5 (Keras) file, not ONNX; convert it with `medbench export --aiene {path}`")
    if head.startswith(b"PK"):
        raise ModelError(f"{path}: is a zip archive (TorchScript?), not ONNX; convert it with "
                         f"`medbench export --torchscript {path} --input-shape ...`")


class OrtSession:
    """An ``onnxruntime.InferenceSession`` with the providers actually in use recorded.

    ``run(feeds)`` takes ``{input name: float32 array}`` and returns the outputs as numpy
    arrays in ``output_names`` order (all outputs, or ``outputs`` if given).
    """

    def __init__(self, session, path: Path, requested: list[str]):
        self.session = session
        self.path = path
        self.providers_requested = requested
        self.providers_in_use: list[str] = list(session.get_providers())
        self.inputs = {i.name: i for i in session.get_inputs()}
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.device = "cuda" if self.providers_in_use[0] in (PROVIDER_NAMES["cuda"], PROVIDER_NAMES["tensorrt"]) else "cpu"

    def end_profiling(self) -> str | None:
        """Finish onnxruntime profiling (when enabled) and return the JSON file's path."""
        return self.session.end_profiling() if self.session.get_session_options().enable_profiling else None

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        names = outputs or self.output_names
        if self.device == "cpu":
            return self.session.run(names, feeds)
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in names:
            binding.bind_output(name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def create_session(path: str | os.PathLike, *, providers=("cpu",), threads: int | None = None,
                   graph_optimization: str = "all", fp16: bool = False,
                   profile_prefix: str | os.PathLike | None = None, spin: bool = True) -> OrtSession:
    """Create an :class:`OrtSession` for the ONNX file ``path``.

    ``providers``: short names in order of preference (``tensorrt``, ``cuda``, ``cpu``);
    CPU is always appended as the last fallback. ``threads``: intra-op threads (``None`` =
    onnxruntime's default). ``fp16``: convert float weights and activations to float16
    (inputs and outputs stay float32); on TensorRT its own fp16 mode is enabled instead.
    ``spin``: let idle intra-op threads spin-wait (onnxruntime's default: lowest latency for
    back-to-back runs); ``False`` frees the cores between runs for work overlapped with
    inference (reading, pre/post-processing, metrics), as ``medbench run`` does.
    ``profile_prefix``: write onnxruntime's own profiling JSON (per-operator timings) to
    ``<prefix>_<timestamp>.json``; ``OrtSession.end_profiling()`` closes it.
    """
    ort = import_onnxruntime()
    p = Path(path)
    sniff_model_file(p)
    unknown = [name for name in providers if name not in PROVIDER_NAMES]
    if unknown:
        raise ModelError(f"unknown provider(s) {unknown}; choose from {list(PROVIDER_NAMES)}")
    if graph_optimization not in GRAPH_OPTIMIZATION:
        raise ModelError(f"graph_optimization {graph_optimization!r} is not one of {GRAPH_OPTIMIZATION}")
    requested = [PROVIDER_NAMES[name] for name in providers]
    available = set(ort.get_available_providers())
    chosen: list = []
    for full in requested:
        if full not in available:
            continue
        if full == PROVIDER_NAMES["tensorrt"] and fp16:
            chosen.append((full, {"trt_fp16_enable": True}))
        else:
            chosen.append(full)
    if PROVIDER_NAMES["cpu"] not in requested:
        chosen.append(PROVIDER_NAMES["cpu"])

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_optimization]
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)

    source: str | bytes = str(p)
    if fp16 and PROVIDER_NAMES["tensorrt"] not in [c if isinstance(c, str) else c[0] for c in chosen]:
        source = _to_fp16(p)
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{p}: cannot be loaded as an ONNX model: {first}") from None
    result = OrtSession(session, p, requested)
    missing = [full for full in requested if full not in result.providers_in_use]
    if missing:
        warnings.warn(f"{p.name}: requested provider(s) {missing} not in use; running on {result.providers_in_use}",
                      RuntimeWarning, stacklevel=2)
    return result


def _to_fp16(path: Path) -> bytes:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    return model.SerializeToString()
