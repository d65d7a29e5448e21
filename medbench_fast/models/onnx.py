"""The ONNX adapter: an ``.onnx`` file plus its spec becomes a :class:`Model`.

Every model kind (user ONNX, AI-ENE, Hugging Face, TorchScript) ends up here once it has
been exported; the spec's ``strategy.type`` picks the :class:`Model` subclass.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from medbench_fast.models.base import Model
from medbench_fast.models.postgraph import SIZE_INPUT, PostOps, plan_postprocessing
from medbench_fast.models.providers import GpuSettings
from medbench_fast.models.session import create_session, sniff_model_file
from medbench_fast.models.spec import ModelError, ModelSpec, spec_path_for

#: strategy type -> "module:class"
MODEL_CLASSES = {
    "slice2d": "medbench_fast.models.strategies:SliceModel",
    "sliding_window": "medbench_fast.models.strategies:SlidingWindowModel",
    "whole_volume": "medbench_fast.models.strategies:WholeVolumeModel",
    "object_crops": "medbench_fast.models.aiene.model:ObjectCropModel",
    "nnunet": "medbench_fast.models.nnunet.model:NnUNetModel",
}


def resolve_spec(path: Path, spec) -> ModelSpec:
    """``spec`` as given (dict or :class:`ModelSpec`) or read from ``<name>.spec.json`` beside ``path``."""
    if isinstance(spec, ModelSpec):
        spec.validate(str(path))
        return spec
    if isinstance(spec, dict):
        return ModelSpec.from_dict(spec, where=f"spec for {path}")
    if spec is not None:
        raise ModelError(f"{path}: spec must be a dict or ModelSpec, got {type(spec).__name__}")
    beside = spec_path_for(path)
    if not beside.is_file():
        raise ModelError(f"{path}: no spec given and none found beside it (expected {beside.name})")
    return ModelSpec.from_json(beside)


def load_model(path: str | os.PathLike, *, providers=("cpu",), spec=None, threads: int | None = None,
               fp16: bool = False, spin: bool = True, gpu: GpuSettings | None = None,
               postprocess: str = "graph") -> Model:
    """Open an ONNX model for inference.

    ``path``: an ``.onnx`` file; its spec is ``spec`` (dict or :class:`ModelSpec`) or the
    ``<name>.spec.json`` file beside it. ``providers``: ``tensorrt``/``cuda``/``cpu`` in order
    of preference. ``threads``: intra-op threads. ``fp16``: run in half precision.
    ``spin``: see :func:`~medbench_fast.models.session.create_session`. ``gpu``: GPU
    options (:class:`~medbench_fast.models.providers.GpuSettings`). ``postprocess``:
    ``graph`` appends activation, resize and argmax (or the blending weight) to the graph
    where the spec allows (:mod:`~medbench_fast.models.postgraph`); ``host`` keeps them in
    numpy (``bench/bench_postprocess.py`` measures both).
    Errors (file not ONNX, spec invalid, spec inputs not matching the graph's names, rank
    or fixed sizes) are raised as :class:`ModelError` before any case runs.
    """
    if postprocess not in ("graph", "host"):
        raise ModelError(f"postprocess {postprocess!r} is not 'graph' or 'host'")
    p = Path(path)
    sniff_model_file(p)
    model_spec = resolve_spec(p, spec)
    module_name, cls_name = MODEL_CLASSES[model_spec.strategy.type].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    wants_trt = "tensorrt" in providers
    may_post = postprocess == "graph" and model_spec.output.kind == "segmentation_logits"
    graph = _read_graph(p) if (may_post or wants_trt) else None
    post = plan_postprocessing(model_spec, graph) if postprocess != "host" and graph is not None else None
    trt_shapes = trt_profile_shapes(model_spec, graph, post) if wants_trt and graph is not None else None
    session = create_session(p, providers=providers, threads=threads, fp16=fp16, spin=spin, gpu=gpu, post=post,
                             trt_shapes=trt_shapes)
    return cls(session, model_spec)


def _read_graph(path: Path):
    """The ONNX graph without its external weights, or None if onnx cannot parse it (the
    session's own error then names the problem)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError):
        return None


def fixed_input_shapes(spec: ModelSpec, graph) -> dict[str, list[int]] | None:
    """Input name -> the one shape the model will see (batch padded to ``strategy.batch_size``,
    1 for ``whole_volume``; dynamic spatial axes from ``input_size``/``patch_size``), for
    TensorRT's profile shapes; None when a size is known only per case."""
    s = spec.strategy
    batch = 1 if s.type == "whole_volume" else s.batch_size
    sizes = s.patch_size if s.type == "sliding_window" else s.input_size
    shapes = {}
    inputs = {v.name: v for v in graph.graph.input}
    for name in spec.inputs:
        if name not in inputs:
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[name].type.tensor_type.shape.dim]
        if len(dims) < 3:
            return None
        spatial_axes = range(2, len(dims)) if spec.layout == "channels_first" else range(1, len(dims) - 1)
        channel_axis = 1 if spec.layout == "channels_first" else len(dims) - 1
        shape = [batch] + dims[1:]
        shape[channel_axis] = shape[channel_axis] or spec.channels
        for k, axis in enumerate(spatial_axes):
            if shape[axis] is None:
                if sizes is None or k >= len(sizes):
                    return None
                shape[axis] = int(sizes[k])
        shapes[name] = [int(d) for d in shape]
    return shapes


#: The largest output grid (per spatial axis) a TensorRT engine with in-graph post-processing
#: is built for: the range of the :data:`~medbench_fast.models.postgraph.SIZE_INPUT` values.
TRT_MAX_GRID = {2: 2048, 3: 1024}


def trt_profile_shapes(spec: ModelSpec, graph, post: PostOps | None) -> dict | None:
    """TensorRT profiles for every dynamic input of the graph that runs: input name ->
    ``(min, opt, max)``. The spec's inputs get their one shape (:func:`fixed_input_shapes`);
    the post-processing's output-size input (a shape tensor: its profile is a range of
    values) ``[batch, C, 1, ...]`` to ``[batch, C, *TRT_MAX_GRID]``. None (TensorRT then
    builds profiles from the shapes it meets) where any dynamic input cannot be sized."""
    fixed = fixed_input_shapes(spec, graph)
    if fixed is None:
        return None
    profiles = {name: (shape, shape, shape) for name, shape in fixed.items()}
    for value in graph.graph.input:
        if value.name in profiles or value.name in {i.name for i in graph.graph.initializer}:
            continue
        dims = value.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            return None  # a dynamic input the spec does not size
    if post is not None and post.kind == "labels":
        batch = next(iter(fixed.values()))[0]
        channels = post.channels if post.resample == "linear" else 1
        grid = TRT_MAX_GRID[post.spatial_rank]
        sizes = spec.strategy.input_size or [grid // 4] * post.spatial_rank
        profiles[SIZE_INPUT] = ([batch, channels] + [1] * post.spatial_rank,
                                [batch, channels] + [int(s) for s in sizes][-post.spatial_rank:],
                                [batch, channels] + [grid] * post.spatial_rank)
    return profiles
