"""TorchScript (``torch.jit.save``) -> ONNX, with a spec given by the user or a default one.

The default spec runs the model once on the whole volume resampled to the spatial part of
``input_shape`` (``N, C, *spatial``), argmaxes the channel axis and maps class ``c`` to
label ``c``. A user spec (``spec=`` dict or JSON file) replaces it; its ``inputs`` must
name the exported input (``input_name``, default ``image``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from medbench_fast.models.exports import cached_export
from medbench_fast.models.spec import ModelError, ModelSpec, OutputSpec, StrategySpec


def _load_spec(spec) -> dict | None:
    if spec is None or isinstance(spec, dict):
        return spec
    if isinstance(spec, ModelSpec):
        return spec.to_dict()
    return ModelSpec.from_json(spec).to_dict()


def export_torchscript(pt_path: str | os.PathLike, out: str | os.PathLike, *, input_shape: list[int],
                       spec=None, name: str | None = None, input_name: str = "image", opset: int = 17,
                       cache_dir=None, force: bool = False) -> tuple[Path, ModelSpec, bool]:
    """Export the TorchScript file ``pt_path`` to ONNX at ``out`` (dynamic batch axis).

    ``input_shape``: ``[N, C, *spatial]`` used to trace. Returns ``(onnx path, spec, cache hit)``.
    """
    pt = Path(pt_path)
    if not pt.is_file():
        raise ModelError(f"{pt}: file not found")
    if len(input_shape) not in (4, 5) or min(input_shape) < 1:
        raise ModelError(f"--input-shape {input_shape}: expected N,C,H,W or N,C,D,H,W with positive sizes")
    spec_dict = _load_spec(spec)
    model_name = name or pt.stem
    options = {"input_shape": list(input_shape), "spec": spec_dict, "name": model_name, "input": input_name,
               "opset": opset}

    def build(onnx_path: Path) -> ModelSpec:
        import torch

        try:
            model = torch.jit.load(str(pt), map_location="cpu").eval()
        except Exception as exc:  # torch raises RuntimeError/ValueError variants for non-TorchScript files
            raise ModelError(f"{pt}: not a TorchScript file ({str(exc).strip().splitlines()[0]})") from None
        example = torch.rand(*input_shape)
        with torch.no_grad():
            reference = model(example)
        if not isinstance(reference, torch.Tensor):
            raise ModelError(f"{pt}: model returns {type(reference).__name__}; a single tensor output is needed")
        with warnings.catch_warnings():  # ScriptModules need the TorchScript-based exporter, which warns
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(model, (example,), str(onnx_path), input_names=[input_name], output_names=["output"],
                              dynamic_axes={input_name: {0: "batch"}, "output": {0: "batch"}}, opset_version=opset,
                              dynamo=False)
        if spec_dict is not None:
            result = ModelSpec.from_dict(dict(spec_dict, name=spec_dict.get("name", model_name)), where=f"spec for {pt}")
        else:
            classes = int(reference.shape[1])
            result = ModelSpec(name=model_name, inputs=[input_name], channels=int(input_shape[1]),
                               strategy=StrategySpec(type="whole_volume" if len(input_shape) == 5 else "slice2d",
                                                     input_size=list(input_shape[2:]), interpolation="linear"),
                               output=OutputSpec(kind="segmentation_logits",
                                                 labels={c: c for c in range(1, max(classes, 2))}))
        result.kind = "torchscript"
        result.source = {"file": pt.name, "format": "torchscript", "input_shape": list(input_shape)}
        if result.inputs != [input_name]:
            raise ModelError(f"spec for {pt}: inputs {result.inputs} must be [{input_name!r}]")
        return result

    return cached_export("torchscript", [pt], options, out, build, cache_dir=cache_dir, force=force)
