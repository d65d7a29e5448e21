"""Derived ONNX files: a model converted to fp16 and/or with post-processing appended.

Built once and kept under ``<export cache>/derived/<key>/model.onnx``, the key covering
the source file's sha256, the changes and the onnx/onnxruntime/medbench versions; built in
a temporary folder and renamed into place, so concurrent processes are safe. Weights over
:data:`EXTERNAL_BYTES` are written as external data (protobuf's 2 GB limit).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from medbench_fast import __version__
from medbench_fast.files import atomic_folder
from medbench_fast.models.onnx_floor import MAX_IR_VERSION, save_onnx
from medbench_fast.models.postgraph import PostOps, append_postprocessing
from medbench_fast.models.spec import ModelError

EXTERNAL_BYTES = 1 << 30


def derived_model(path: Path, model_sha256: str, *, fp16: bool, post: PostOps | None) -> Path:
    """The file a session loads for ``path`` with ``fp16`` and ``post`` applied (``path`` if neither)."""
    if not fp16 and post is None:
        return path
    from medbench_fast.models.exports import export_cache_dir

    changes = {"fp16": fp16, "post": post.describe() if post else None, "medbench": __version__, "ir": MAX_IR_VERSION,
               "onnx": _version("onnx"), "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu")}
    key = hashlib.sha256((model_sha256 + json.dumps(changes, sort_keys=True)).encode()).hexdigest()
    root = export_cache_dir() / "derived"
    entry = root / key
    if (entry / "model.onnx").is_file():
        return entry / "model.onnx"
    model = _build(path, fp16=fp16, post=post)
    with atomic_folder(entry, replace=False) as tmp:  # another process may finish the same entry first
        big = sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_BYTES
        save_onnx(model, tmp / "model.onnx", save_as_external_data=big, all_tensors_to_one_file=True,
                  location="model.onnx.data")
    return entry / "model.onnx"


def _build(path: Path, *, fp16: bool, post: PostOps | None):
    import onnx

    model = onnx.load(str(path))
    if fp16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        big = sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_BYTES
        try:
            model = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=big)
        except Exception as exc:  # the converter raises ValueError, onnx errors, protobuf errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: cannot be converted to fp16 ({type(exc).__name__}: {first}); run it in "
                             f"fp32 or give an fp16 ONNX file") from None
    if post is not None:
        append_postprocessing(model, post)
    return model


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
