"""``.h5`` -> ``.onnx`` + spec for AI-ENE, through the export cache."""

from __future__ import annotations

import os
from pathlib import Path

from medbench_fast.models.aiene.convert import convert_h5
from medbench_fast.models.aiene.model import aiene_spec
from medbench_fast.models.exports import cached_export
from medbench_fast.models.spec import ModelSpec


def export_aiene(h5_path: str | os.PathLike, out: str | os.PathLike, *, name: str | None = None, node_label: int = 1,
                 min_voxels: int = 1, cache_dir=None, force: bool = False) -> tuple[Path, ModelSpec, bool]:
    """Convert a Keras-2 AI-ENE ``.h5`` file to ONNX at ``out`` with its spec beside it.

    ``node_label``: the mask label whose connected components are the nodes; components
    under ``min_voxels`` voxels are ignored. Returns ``(onnx path, spec, cache hit)``.
    """
    h5 = Path(h5_path)
    model_name = name or h5.stem
    options = {"name": model_name, "node_label": node_label, "min_voxels": min_voxels}

    def build(onnx_path: Path) -> ModelSpec:
        shapes = convert_h5(h5, onnx_path)
        return aiene_spec(model_name, shapes["inputs"], node_label=node_label, min_voxels=min_voxels,
                          source={"file": h5.name, "format": "keras2-h5"})

    return cached_export("aiene", [h5], options, out, build, cache_dir=cache_dir, force=force)
