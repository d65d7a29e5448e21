"""Hugging Face ``transformers`` vision models -> ONNX (optimum, torch.onnx), run slice by slice.

The spec is read from the model folder as plain JSON: ``config.json`` (``id2label``,
``num_channels``, ``image_size``) and ``preprocessor_config.json`` (``size``,
``rescale_factor``, ``image_mean``, ``image_std``, ``do_normalize``). On a 3D volume, each
slice along ``axis`` is windowed to ``hu_window`` -> [0, 1] (the 8-bit image the processor
would see, divided by 255), rescaled as the processor does, replicated to the model's
channels, resized to the processor's size and normalised. Segmentation logits (SegFormer:
1/4 resolution) are resized to the slice, argmaxed, and class ``c`` maps to dataset label
``c``; classification averages the softmax over slices into case scores named by
``id2label`` (a 2-class model: one score, the positive class's). How the ONNX file is made
and checked: :mod:`.hf_export`.
"""

from __future__ import annotations

import json
import math
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
#: Other names of our tasks (optimum calls some architectures' semantic segmentation so).
TASK_ALIASES = {"image-segmentation": "semantic-segmentation"}
#: Model types whose position embeddings fix the input size although the ONNX axes look dynamic.
FIXED_SIZE_TYPES = ("vit", "deit", "beit", "swin", "swinv2")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None


def _vision(config: dict) -> dict:
    """The part of ``config.json`` describing the image encoder (``vision_config`` of CLIP-like models)."""
    return config.get("vision_config") or config


def _channels(config: dict) -> int:
    for part in (_vision(config), config.get("backbone_config") or {}):
        if "num_channels" in part:
            return int(part["num_channels"])
    return 3  # transformers' default, left out of config.json by save_pretrained


def _input_size(config: dict, processor: dict, where: Path) -> list[int]:
    size = processor.get("crop_size") if processor.get("do_center_crop") else processor.get("size")
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return [int(size["height"]), int(size["width"])]
        if "shortest_edge" in size:
            return [int(size["shortest_edge"])] * 2
    if isinstance(size, int):
        return [size, size]
    if "max_num_patches" in processor:  # SigLIP 2: as many patches as fit, a square grid for a square slice
        side = math.isqrt(int(processor["max_num_patches"])) * int(processor.get("patch_size", 16))
        return [side, side]
    image_size = _vision(config).get("image_size")
    if isinstance(image_size, int):
        return [image_size, image_size]
    if isinstance(image_size, (list, tuple)) and len(image_size) == 2:
        return [int(v) for v in image_size]
    raise ModelError(f"{where}: cannot tell the input size (no size in preprocessor_config.json, no image_size in "
                     f"config.json)")


def _per_channel(processor: dict, key: str, channels: int, where: Path) -> list[float]:
    values = processor[key]
    values = [float(values)] * channels if isinstance(values, (int, float)) else [float(v) for v in values]
    if len(values) not in (1, channels):
        raise ModelError(f"{where}: preprocessor_config.json {key} has {len(values)} values but config.json says the "
                         f"model takes {channels} channel(s): the image processor does not fit this model")
    return values


def _pixel_steps(processor: dict, channels: int, hu_window, where: Path) -> list[IntensityStep]:
    """Intensity steps equal to the image processor's on an 8-bit image made of the HU window.

    The window maps to [0, 1], i.e. pixel / 255; then ``rescale_factor`` (and
    EfficientNet's ``rescale_offset``), then ``image_mean`` / ``image_std`` (EfficientNet's
    ``include_top`` divides by the std once more; ImageGPT's normalisation is to [-1, 1]).
    """
    steps = [IntensityStep(op="window", range=[float(hu_window[0]), float(hu_window[1])])]
    kind = processor.get("image_processor_type", "")
    scale, shift = 255.0, 0.0
    if processor.get("do_rescale", not kind.startswith("ImageGPTImageProcessor")):  # the processors' default
        scale *= float(processor.get("rescale_factor", 1 / 255))
        shift = -1.0 if processor.get("rescale_offset") else 0.0
    # ImageGPT's normalisation to [-1, 1]: by hand in transformers 4 (no mean/std saved), as mean/std 0.5 in 5
    if kind.startswith("ImageGPTImageProcessor") and processor.get("do_normalize", True) \
            and processor.get("image_mean") is None:
        scale, shift = scale * 2 / 255, -1.0
    if abs(scale - 1.0) > 1e-9 or shift:
        steps.append(IntensityStep(op="affine", scale=scale, shift=shift))
    # MobileViT never normalises: transformers 5 saves its inherited mean/std but no do_normalize
    normalize = processor.get("do_normalize", not kind.startswith("MobileViT")) \
        and processor.get("image_mean") is not None
    if normalize:
        mean = _per_channel(processor, "image_mean", channels, where)
        std = _per_channel(processor, "image_std", channels, where)
        if kind.startswith("EfficientNetImageProcessor") and processor.get("include_top", True):
            std = [s * s for s in std]
        steps.append(IntensityStep(op="normalize", mean=mean, std=std))
    elif kind.startswith("EfficientNetImageProcessor") and processor.get("include_top", True):
        std = _per_channel(processor, "image_std", channels, where)
        steps.append(IntensityStep(op="normalize", mean=[0.0] * len(std), std=std))
    return steps


def _score_name(label: str, index: int) -> str:
    return re.sub(r"\W+", "_", label).strip("_").lower() or str(index)


def _classifier_output(id2label: dict[int, str], positive_class, where: Path) -> OutputSpec:
    """Softmax case scores named by ``id2label``; a 2-class model (or a chosen class) gives one score.

    ``positive_class``: a class name or index; default for 2 classes: class 1.
    """
    classes = max(id2label, default=0) + 1
    names = [_score_name(id2label.get(i, str(i)), i) for i in range(classes)]
    if positive_class is None and classes != 2:
        return OutputSpec(kind="case_scores", name="logits", activation="softmax", score_names=names)
    if positive_class is None:
        index = 1
    elif str(positive_class).isdigit() and int(positive_class) < classes:
        index = int(positive_class)
    else:
        matches = [i for i in range(classes) if positive_class in (id2label.get(i), names[i])]
        if not matches:
            raise ModelError(f"{where}: positive class {positive_class!r} is not among the config's classes "
                             f"{[id2label.get(i, str(i)) for i in range(classes)]} (give a name or an index)")
        index = matches[0]
    return OutputSpec(kind="case_scores", name="logits", activation="softmax", score_names=[names[index]],
                      score_classes=[index])


def hf_spec(model_dir: str | os.PathLike, task: str, *, name: str, hu_window=(-1000.0, 1000.0),
            axis: int = 0, batch_size: int = 8, positive_class: str | int | None = None) -> ModelSpec:
    """The spec of a Hugging Face model folder from ``config.json`` and its image processor.

    ``preprocessor_config.json`` gives the input size, rescaling and mean/std; the config
    gives the channel count and ``id2label`` (segmentation: class ``c`` -> label ``c``;
    classification: softmax scores named by the labels, see :func:`_classifier_output`).
    """
    folder = Path(model_dir)
    config = _read_json(folder / "config.json")
    if not config:
        raise ModelError(f"{folder}: no config.json")
    processor = _read_json(folder / "preprocessor_config.json")
    if not processor:
        raise ModelError(f"{folder}: no preprocessor_config.json: the image processor (input size, rescaling, "
                         f"mean/std) is needed to feed the model as it was trained; save it beside the model with "
                         f"AutoImageProcessor.save_pretrained")
    if processor.get("do_color_quantize") and processor.get("clusters") is None:
        raise ModelError(f"{folder}: preprocessor_config.json asks for colour quantisation but has no clusters")
    id2label = {int(k): str(v) for k, v in config.get("id2label", {}).items()}
    channels = _channels(config)
    strategy = StrategySpec(type="slice2d", axis=axis, batch_size=batch_size,
                            input_size=_input_size(config, processor, folder))
    if task == "semantic-segmentation":
        if positive_class is not None:
            raise ModelError(f"{folder}: a positive class applies to image-classification models only")
        classes = max(id2label, default=1) + 1
        output = OutputSpec(kind="segmentation_logits", name="logits", labels={c: c for c in range(1, classes)})
    else:
        output = _classifier_output(id2label, positive_class, folder)
    spec = ModelSpec(name=name, kind="huggingface", inputs=["pixel_values"], channels=channels, strategy=strategy,
                     intensity=_pixel_steps(processor, channels, hu_window, folder), output=output,
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
              force: bool = False, positive_class: str | int | None = None) -> tuple[Path, ModelSpec, bool]:
    """Export a Hugging Face model folder (or Hub id) to ONNX at ``out`` plus its spec.

    optimum (where installed) exports the architectures it supports, asked with its own task
    name; then ``torch.onnx`` (dynamo, then TorchScript) a wrapper; the first file whose logits
    match PyTorch is kept (:mod:`medbench_fast.models.hf_export`); the spec's ``source`` records
    the exporter and the versions of the libraries that made the file. ``task`` may also be
    optimum's ``image-segmentation``. Returns ``(onnx path, spec, cache hit)``.
    """
    task = TASK_ALIASES.get(task, task)
    if task not in TASKS:
        raise ModelError(f"task {task!r} is not one of {TASKS}")
    folder = _resolve(str(model))
    model_name = name or folder.name
    options = {"task": task, "name": model_name, "hu_window": list(hu_window), "axis": axis, "opset": opset,
               "positive_class": positive_class}
    spec = hf_spec(folder, task, name=model_name, hu_window=hu_window, axis=axis, positive_class=positive_class)

    def build(onnx_path: Path) -> ModelSpec:
        from medbench_fast.models.hf_export import export_checked

        model_type = spec.source.get("model_type") or "?"
        processor = _read_json(folder / "preprocessor_config.json")
        shape = (spec.channels, *spec.strategy.input_size)
        named = len(spec.source["id2label"]) or None
        result = export_checked(folder, onnx_path, task=task, model_type=model_type, processor=processor,
                                input_shape=shape, classes=named, opset=opset)
        classes = result.output_classes
        named = named or classes
        if classes != named:
            raise ModelError(f"{folder}: config.json id2label names {named} classes but the model outputs {classes} "
                             f"logits")
        spec.source.update(export=result.path, optimum_task=result.optimum_task, exporter_versions=result.versions,
                           parity_max_abs_diff=result.max_abs_diff, export_notes=result.notes)
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
