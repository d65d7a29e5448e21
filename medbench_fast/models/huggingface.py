"""Hugging Face ``transformers`` vision models -> ONNX through optimum, run slice by slice.

The spec is read from the model folder as plain JSON: ``config.json`` (``id2label``,
``num_channels``, ``image_size``) and ``preprocessor_config.json`` (``size``,
``image_mean``, ``image_std``, ``do_normalize``). On a 3D volume, each slice along ``axis``
is windowed to ``hu_window`` -> [0, 1] (what ``rescale_factor`` = 1/255 does to 8-bit
pixels), replicated to the model's channels, resized to the processor's size and
normalised. Segmentation logits (SegFormer: 1/4 resolution) are resized to the slice,
argmaxed, and class ``c`` maps to dataset label ``c``; classification averages the
softmax over slices into case scores named by ``id2label``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from medbench_fast.models.exports import cached_export
from medbench_fast.models.spec import (
    IntensityStep,
    ModelError,
    ModelSpec,
    OutputSpec,
    StrategySpec,
    spec_path_for,
)

TASKS = ("semantic-segmentation", "image-classification")
#: Model types whose position embeddings fix the input size although the ONNX axes look dynamic.
FIXED_SIZE_TYPES = ("vit", "deit", "beit", "swin", "swinv2")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None


def _input_size(config: dict, processor: dict, where: Path) -> list[int]:
    size = processor.get("crop_size") if processor.get("do_center_crop") else processor.get("size")
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return [int(size["height"]), int(size["width"])]
        if "shortest_edge" in size:
            return [int(size["shortest_edge"])] * 2
    if isinstance(size, int):
        return [size, size]
    image_size = config.get("image_size")
    if isinstance(image_size, int):
        return [image_size, image_size]
    if isinstance(image_size, (list, tuple)) and len(image_size) == 2:
        return [int(v) for v in image_size]
    raise ModelError(f"{where}: cannot tell the input size (no size in preprocessor_config.json, no image_size in "
                     f"config.json)")


def hf_spec(model_dir: str | os.PathLike, task: str, *, name: str, hu_window=(-1000.0, 1000.0),
            axis: int = 0, batch_size: int = 8) -> ModelSpec:
    """The spec for an exported Hugging Face model folder (``config.json`` + ``preprocessor_config.json``)."""
    folder = Path(model_dir)
    config = _read_json(folder / "config.json")
    if not config:
        raise ModelError(f"{folder}: no config.json")
    processor = _read_json(folder / "preprocessor_config.json")
    id2label = {int(k): str(v) for k, v in config.get("id2label", {}).items()}
    channels = int(config.get("num_channels", 3))
    intensity = [IntensityStep(op="window", range=[float(hu_window[0]), float(hu_window[1])])]
    if processor.get("do_normalize", bool(processor.get("image_mean"))) and processor.get("image_mean") is not None:
        mean, std = list(processor["image_mean"]), list(processor["image_std"])
        intensity.append(IntensityStep(op="normalize", mean=mean[:channels] if len(mean) >= channels else mean,
                                       std=std[:channels] if len(std) >= channels else std))
    strategy = StrategySpec(type="slice2d", axis=axis, batch_size=batch_size,
                            input_size=_input_size(config, processor, folder))
    if task == "semantic-segmentation":
        classes = max(id2label, default=1) + 1
        output = OutputSpec(kind="segmentation_logits", name="logits", labels={c: c for c in range(1, classes)})
    else:
        names = [re.sub(r"\W+", "_", id2label.get(i, str(i))).strip("_").lower() or str(i)
                 for i in range(max(id2label, default=0) + 1)]
        output = OutputSpec(kind="case_scores", name="logits", activation="softmax", score_names=names)
    spec = ModelSpec(name=name, kind="huggingface", inputs=["pixel_values"], channels=channels, strategy=strategy,
                     intensity=intensity, output=output,
                     source={"model_type": config.get("model_type"), "task": task,
                             "id2label": {str(k): v for k, v in id2label.items()}})
    if config.get("model_type") in FIXED_SIZE_TYPES:
        spec.source["fixed_input_size"] = _input_size(config, {}, folder)
    spec.validate(str(folder))
    return spec


def _resolve(model: str) -> Path:
    folder = Path(model)
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model))
    except Exception as exc:  # offline, unknown id, gated repo: all end here
        raise ModelError(f"{model}: not a local folder and not fetchable from the Hub ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None


def export_hf(model: str | os.PathLike, out: str | os.PathLike, *, task: str, name: str | None = None,
              hu_window=(-1000.0, 1000.0), axis: int = 0, opset: int = 17, cache_dir=None,
              force: bool = False) -> tuple[Path, ModelSpec, bool]:
    """Export a Hugging Face model folder (or Hub id) with optimum to ``out`` plus its spec.

    Returns ``(onnx path, spec, cache hit)``.
    """
    if task not in TASKS:
        raise ModelError(f"task {task!r} is not one of {TASKS}")
    folder = _resolve(str(model))
    model_name = name or folder.name
    options = {"task": task, "name": model_name, "hu_window": list(hu_window), "axis": axis, "opset": opset}
    spec = hf_spec(folder, task, name=model_name, hu_window=hu_window, axis=axis)

    def build(onnx_path: Path) -> ModelSpec:
        import logging
        import warnings

        from optimum.exporters.onnx import main_export
        from transformers.utils import logging as hf_logging

        work = onnx_path.parent / "optimum"
        hf_logging.set_verbosity_error()
        for name in ("optimum", "optimum.exporters", "optimum.exporters.onnx"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():  # deprecation and tracer notices of the exporters
                warnings.simplefilter("ignore")
                main_export(str(folder), output=str(work), task=task, opset=opset, do_validation=False,
                            device="cpu")
        except (KeyError, ValueError) as exc:
            raise ModelError(f"{folder}: optimum cannot export it for {task}: {exc}") from None
        if any(work.glob("*.onnx_data")) or any(work.glob("*.onnx.data")):
            raise ModelError(f"{folder}: the export needs ONNX external data (model > 2 GB), which the export cache "
                             f"does not hold")
        (work / "model.onnx").replace(onnx_path)
        return spec

    return cached_export("huggingface", [folder], options, out, build, cache_dir=cache_dir, force=force)


def export_hub(repo_id: str, revision: str, out: str | os.PathLike, *, task: str, name: str, cache_dir=None,
               force: bool = False) -> tuple[Path, ModelSpec, bool]:
    """Export a Hub model at ``revision`` (branch, tag or sha), cached by the commit sha it resolves to.

    The snapshot comes from :func:`medbench_fast.hub.download.fetch_model` (only the files the
    export needs); the export is :func:`export_hf`'s; the spec's ``source`` records the repo,
    the revision asked for, the commit sha and the license. Returns ``(onnx path, spec, cache hit)``.
    """
    import shutil

    from medbench_fast.hub.client import HubError
    from medbench_fast.hub.download import fetch_model

    try:
        snapshot = fetch_model(repo_id, revision)
    except HubError as exc:
        raise ModelError(str(exc)) from None
    options = {"task": task, "name": name, **snapshot.source(), "revision": None}

    def build(onnx_path: Path) -> ModelSpec:
        inner = onnx_path.parent / "export"
        _, spec, _ = export_hf(snapshot.folder, onnx_path, task=task, name=name, cache_dir=inner, force=True)
        shutil.rmtree(inner)
        spec.source.update(snapshot.source())
        return spec

    path, spec, hit = cached_export("huggingface-hub", [], options, out, build, cache_dir=cache_dir, force=force)
    spec.source["revision"] = revision  # the sha keys the cache; the revision asked for is this call's
    spec.to_json(spec_path_for(path))
    return path, spec, hit
