"""The ONNX adapter: an ``.onnx`` file plus its spec becomes a :class:`Model`.

Every model kind (user ONNX, AI-ENE, Hugging Face, TorchScript) ends up here once it has
been exported; the spec's ``strategy.type`` picks the :class:`Model` subclass.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from medbench_fast.models.base import Model
from medbench_fast.models.session import create_session, sniff_model_file
from medbench_fast.models.spec import ModelError, ModelSpec, spec_path_for

#: strategy type -> "module:class"
MODEL_CLASSES = {
    "slice2d": "medbench_fast.models.strategies:SliceModel",
    "sliding_window": "medbench_fast.models.strategies:SlidingWindowModel",
    "whole_volume": "medbench_fast.models.strategies:WholeVolumeModel",
    "object_crops": "medbench_fast.models.aiene.model:ObjectCropModel",
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
               fp16: bool = False, spin: bool = True) -> Model:
    """Open an ONNX model for inference.

    ``path``: an ``.onnx`` file; its spec is ``spec`` (dict or :class:`ModelSpec`) or the
    ``<name>.spec.json`` file beside it. ``providers``: ``tensorrt``/``cuda``/``cpu`` in order
    of preference. ``threads``: intra-op threads. ``fp16``: run in half precision.
    ``spin``: see :func:`~medbench_fast.models.session.create_session`.
    Errors (file not ONNX, spec invalid, spec inputs not matching the graph's names, rank
    or fixed sizes) are raised as :class:`ModelError` before any case runs.
    """
    p = Path(path)
    sniff_model_file(p)
    model_spec = resolve_spec(p, spec)
    module_name, cls_name = MODEL_CLASSES[model_spec.strategy.type].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    session = create_session(p, providers=providers, threads=threads, fp16=fp16, spin=spin)
    return cls(session, model_spec)
