"""The one ONNX Runtime session factory.

Providers are named ``tensorrt``, ``cuda`` and ``cpu`` and tried in the order given
(:mod:`~medbench_fast.models.providers` holds the rules: CUDA after TensorRT, strict
checks, cuDNN/TF32 options, TensorRT caches). After the session exists,
:attr:`OrtSession.providers_in_use` is read from ``session.get_providers()``: the GPU
wheel lists CUDA even on machines where it falls back to CPU, so the requested list is
never trusted. Sessions record where onnxruntime placed every node
(:attr:`OrtSession.placement`, :mod:`~medbench_fast.models.placement`; GPU sessions of
onnxruntime versions without the assignment report read it from the verbose log). Strict sessions
(the default for GPU providers) stop with a :class:`ModelError` that says which of
"libraries missing", "no GPU visible" or "model refused by onnxruntime" it is, or names the
nodes that would compute on the CPU; others warn. On a GPU, inputs and
outputs go through a reused IO binding (:class:`~medbench_fast.models.iobinding.DeviceBinding`).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from medbench_fast import environment
from medbench_fast.models.derived import derived_model
from medbench_fast.models.iobinding import DeviceBinding
from medbench_fast.models.placement import (
    CPU,
    RECORD_ENTRY,
    Placement,
    describe_refused,
    parse_placement_log,
    read_assignment,
    refused,
)
from medbench_fast.models.postgraph import PostOps
from medbench_fast.models.providers import (
    GPU_PROVIDERS,
    PROVIDER_NAMES,
    GpuSettings,
    explain_unavailable,
    file_sha256,
    full_names,
    is_strict,
    load_gpu_libraries,
    provider_options,
    provider_order,
    trt_cache_folder,
    why_not_in_use,
)
from medbench_fast.models.spec import ModelError

GRAPH_OPTIMIZATION = ("disable", "basic", "extended", "all")
_LOOSEN = "To run on what is available instead, pass --no-strict-providers (benchmark.strict_providers: false)"


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

    ``run(feeds)`` takes ``{input name: array}`` and returns the outputs as numpy arrays in
    ``output_names`` order (all outputs, or ``outputs`` if given). ``provider_options``:
    the options in force per provider in use. ``precision``: ``fp32`` or ``fp16``.
    ``binding``: the reused IO binding on a GPU (``None`` on the CPU); set
    ``binding.split = True`` to time host-to-device, device and device-to-host apart.
    ``placement``: where onnxruntime placed the nodes (``None`` where it does not say).
    """

    def __init__(self, session, path: Path, requested: list[str], *, provider_options: dict | None = None,
                 device_id: int = 0, precision: str = "fp32", post: PostOps | None = None, ortvalue=None,
                 placement: Placement | None = None):
        self.session = session
        self.placement = placement
        self.path = path
        self.providers_requested = requested
        self.providers_in_use: list[str] = list(session.get_providers())
        self.inputs = {i.name: i for i in session.get_inputs()}
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.device = "cuda" if self.providers_in_use[0] in GPU_PROVIDERS else "cpu"
        self.device_id = device_id
        self.precision = precision
        self.post = post
        in_force = session.get_provider_options() if hasattr(session, "get_provider_options") else provider_options
        self.provider_options = {k: dict(v) for k, v in (in_force or {}).items() if k in self.providers_in_use}
        self.binding = None
        if self.device == "cuda":
            if ortvalue is None:
                ortvalue = import_onnxruntime().OrtValue
            self.binding = DeviceBinding(session, ortvalue, device_id)

    def end_profiling(self) -> str | None:
        """Finish onnxruntime profiling (when enabled) and return the JSON file's path."""
        return self.session.end_profiling() if self.session.get_session_options().enable_profiling else None

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        names = outputs or self.output_names
        if self.binding is None:
            return self.session.run(names, feeds)
        return self.binding.run(feeds, names)


def create_session(path: str | os.PathLike, *, providers=("cpu",), threads: int | None = None,
                   graph_optimization: str = "all", fp16: bool = False,
                   profile_prefix: str | os.PathLike | None = None, spin: bool = True,
                   gpu: GpuSettings | None = None, post: PostOps | None = None,
                   trt_shapes: dict | None = None) -> OrtSession:
    """Create an :class:`OrtSession` for the ONNX file ``path``.

    ``providers``: short names in order of preference (``tensorrt``, ``cuda``, ``cpu``).
    ``threads``: intra-op threads (``None`` = onnxruntime's default). ``fp16``: convert
    float weights and activations to float16 (inputs and outputs stay float32), whatever
    the providers, and enable TensorRT's fp16 mode too. ``gpu``: GPU options
    (:class:`~medbench_fast.models.providers.GpuSettings`: device, cuDNN search, TF32,
    strict checks, TensorRT cache folder). ``post``: post-processing appended to the graph
    (:mod:`~medbench_fast.models.postgraph`). ``trt_shapes``: input name -> the fixed shape
    the model will see, or ``(min, opt, max)``, used as TensorRT's profile shapes (every
    dynamic input of the graph that runs: :func:`~medbench_fast.models.onnx.trt_profile_shapes`).
    ``spin``: let idle intra-op threads spin-wait (onnxruntime's default: lowest latency for
    back-to-back runs); ``False`` frees the cores between runs for work overlapped with
    inference (reading, pre/post-processing, metrics), as ``medbench run`` does.
    ``profile_prefix``: write onnxruntime's own profiling JSON (per-operator timings) to
    ``<prefix>_<timestamp>.json``; ``OrtSession.end_profiling()`` closes it.
    """
    ort = import_onnxruntime()
    p = Path(path)
    sniff_model_file(p)
    settings = gpu or GpuSettings()
    settings.validate()
    requested = full_names(providers)
    if graph_optimization not in GRAPH_OPTIMIZATION:
        raise ModelError(f"graph_optimization {graph_optimization!r} is not one of {GRAPH_OPTIMIZATION}")
    strict = is_strict(requested, settings)
    wants_gpu = any(name in GPU_PROVIDERS for name in requested)
    if wants_gpu:
        load_gpu_libraries(ort)
    available = set(ort.get_available_providers())
    order = provider_order(requested, strict=strict)
    if strict:
        absent = [name for name in order if name not in available]
        if absent:
            raise ModelError(f"{p.name}: strict providers: {why_not_in_use(ort, absent[0])}. {_LOOSEN}")
    else:
        order = [name for name in order if name in available]
    tensorrt = PROVIDER_NAMES["tensorrt"] in order
    sha = file_sha256(p) if (fp16 or post is not None or tensorrt) else ""
    trt_cache = None
    if tensorrt:
        from medbench_fast.models.exports import export_cache_dir

        root = Path(settings.trt_cache_dir) if settings.trt_cache_dir else export_cache_dir() / "tensorrt"
        trt_cache = trt_cache_folder(root, sha, (environment.visible_gpu(settings.device_id) or {}).get("name"))
        trt_cache.mkdir(parents=True, exist_ok=True)
    option_list = provider_options(order, settings, fp16=fp16, trt_cache=trt_cache, trt_shapes=trt_shapes)

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_optimization]
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    recorded = hasattr(ort.InferenceSession, "get_provider_graph_assignment_info")
    options.log_severity_level = 3
    if recorded:
        options.add_session_config_entry(RECORD_ENTRY, "1")
    elif wants_gpu:  # older onnxruntime: the placement is in its verbose session log
        options.log_severity_level = 0
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)

    source = derived_model(p, sha, fp16=fp16, post=post)
    log = ""
    try:
        with _stderr_captured(wants_gpu and not recorded) as captured:
            # strict: no silent retry on the CPU after a GPU failure (its error is the answer); not
            # strict: onnxruntime's own retry on what loads
            session = ort.InferenceSession(str(source), sess_options=options, providers=order,
                                           provider_options=option_list, **({"enable_fallback": 0} if strict else {}))
        log = captured.text
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if wants_gpu and order[0] in GPU_PROVIDERS:
            reason = explain_unavailable(ort, order[0], settings.device_id)
            if reason is not None:
                raise ModelError(f"{p.name}: {order[0]}: {reason}") from None
            raise ModelError(f"{p.name}: model refused by onnxruntime on {order[0]}: {first}") from None
        raise ModelError(f"{p}: cannot be loaded as an ONNX model: {first}") from None
    placement = read_assignment(session) if recorded else parse_placement_log(log) if wants_gpu else None
    result = OrtSession(session, p, requested, provider_options=dict(zip(order, option_list)),
                        device_id=settings.device_id, precision="fp16" if fp16 else "fp32", post=post,
                        placement=placement)
    if strict:
        check_placement(result, source, ort, order[0], settings.device_id)
    if result.device == "cuda":
        environment.DEVICES_USED.add(settings.device_id)
    missing = [full for full in requested if full not in result.providers_in_use]
    if missing:
        warnings.warn(f"{p.name}: requested provider(s) {missing} not in use; running on {result.providers_in_use}",
                      RuntimeWarning, stacklevel=2)
    return result


def check_placement(session: OrtSession, source: Path, ort, first: str, device_id: int = 0) -> None:
    """Strict providers: ``first`` in use, and nothing but shape arithmetic on the CPU (from
    the placement onnxruntime reported for ``source``, the file the session loaded)."""
    name = session.path.name
    if session.providers_in_use[0] != first:
        raise ModelError(f"{name}: strict providers: {first} requested, {session.providers_in_use[0]} in use: "
                         f"{why_not_in_use(ort, first, device_id)}. {_LOOSEN}")
    if session.placement is None:
        raise ModelError(f"{name}: strict providers: onnxruntime {ort.__version__} did not report where it placed "
                         f"the nodes, so CPU compute cannot be ruled out. {_LOOSEN}")
    if session.placement.on(CPU):
        import onnx

        bad = refused(session.placement, onnx.load(str(source), load_external_data=False), first)
        if bad:
            raise ModelError(f"{name}: strict providers: {describe_refused(bad)} (only shape arithmetic may run "
                             f"there). {_LOOSEN}")


class _Captured:
    text = ""


@contextmanager
def _stderr_captured(active: bool):
    """While active, file descriptor 2 (where onnxruntime's logger writes) goes to a temporary
    file; its text is in the yielded object's ``text`` afterwards."""
    captured = _Captured()
    if not active:
        yield captured
        return
    import sys

    sys.stderr.flush()
    fd, path = tempfile.mkstemp(prefix="medbench-ort-", suffix=".log")
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield captured
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
        with open(path, errors="replace") as fh:
            captured.text = fh.read()
        os.unlink(path)
