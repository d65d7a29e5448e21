"""A ``transformers`` vision model -> ONNX ``pixel_values -> logits``, checked against PyTorch.

Three exporters, tried in order until one's file matches PyTorch (:data:`EXPORTERS`):

1. optimum, where it is installed (the ``optimum`` extra, transformers 4.x) and supports the
   architecture for the task, asked with the task name it uses for that architecture
   (``semantic-segmentation`` or ``image-segmentation``);
2. ``torch.onnx.export(dynamo=True)`` (which needs ``onnxscript``) of a thin wrapper
   ``pixel_values -> logits`` with a dynamic batch axis and the processor's fixed ``H x W``.
   Architectures whose model takes something else than pixel values get an input adapter
   inside the wrapper (:data:`INPUT_ADAPTERS`);
3. ``torch.onnx.export(dynamo=False)``, the TorchScript-based exporter, of the same wrapper,
   for graphs the dynamo exporter cannot decompose.

After each export, onnxruntime and PyTorch run the same random fp32 inputs (batch 1 and 3);
a file is accepted only if the largest absolute difference is at most :data:`PARITY_ATOL`,
and only then written to its place (:func:`save_onnx`). When no exporter succeeds the error
lists what each one said. Architectures that cannot work are refused up front with the reason
(:data:`NOT_POSSIBLE`).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medbench_fast.models.spec import ModelError
from medbench_fast.models.onnx_floor import lower_file

#: Largest accepted |ONNX - PyTorch| on the logits of random fp32 inputs.
PARITY_ATOL = 1e-4
#: Batch sizes of the parity check (1, and one that differs from the export example's 2).
PARITY_BATCHES = (1, 3)

_NATTEN = ("its neighbourhood attention runs in the natten extension's custom kernels, which have no ONNX "
           "operators (and natten is not installable here)")
#: model_type -> why no ONNX ``pixel_values -> logits`` model can be made of it.
NOT_POSSIBLE = {
    "dinat": _NATTEN,
    "nat": _NATTEN,
    "shieldgemma2": "it is a Gemma 3 language model that rates an image against text policy prompts: it needs "
                    "text input and a tokenizer, not only pixels",
    "timm_wrapper": "its network is built by the timm library from a name at load time; timm needs "
                    "torchvision, whose PyPI build loads only beside a CUDA build of torch, not the CPU torch "
                    "this project pins",
}

#: Our task -> optimum's task names for it, in order of preference.
OPTIMUM_TASKS = {"semantic-segmentation": ("semantic-segmentation", "image-segmentation"),
                 "image-classification": ("image-classification",)}


def _perceiver(model, pixel_values, processor):
    return model(inputs=pixel_values).logits


def _imagegpt(model, pixel_values, processor):
    """Colour quantisation as ImageGPTImageProcessor does it: the nearest of its ``clusters`` per pixel."""
    import torch

    clusters = torch.as_tensor(np.asarray(processor["clusters"], np.float32))
    pixels = pixel_values.flatten(2).transpose(1, 2)  # N, H*W, 3
    distance = (pixels * pixels).sum(-1, keepdim=True) - 2 * pixels @ clusters.T + (clusters * clusters).sum(-1)
    return model(input_ids=distance.argmin(-1)).logits


def _siglip2(model, pixel_values, processor):
    """Patchify as Siglip2ImageProcessor does (``p x p x C`` per patch, row-major), every patch valid."""
    import torch

    p = int(processor.get("patch_size", 16))
    n, c, h, w = pixel_values.shape
    patches = pixel_values.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(n, -1, p * p * c)
    mask = torch.ones(patches.shape[:2], dtype=torch.int32)
    shapes = torch.tensor([[h // p, w // p]], dtype=torch.int64).expand(n, 2)
    return model(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes).logits


def _pp_lcnet(model, pixel_values, processor):
    """PP-LCNet's classifier returns its logits as ``last_hidden_state``."""
    return model(pixel_values=pixel_values).last_hidden_state


def _pixels(model, pixel_values, processor):
    return model(pixel_values=pixel_values).logits


@contextmanager
def _siglip2_static_grid(model, input_shape):
    """SigLIP 2 resizes its position table to sizes read from a tensor, which ``torch.export``
    cannot trace; for the export the grid is the fixed ``H/p x W/p`` (every patch valid)."""
    import torch.nn.functional as F

    embeddings = model.vision_model.embeddings
    p = int(model.config.vision_config.patch_size)
    grid = (input_shape[1] // p, input_shape[2] // p)

    def resize(positional_embeddings, spatial_shapes, max_length):
        dim = positional_embeddings.shape[-1]
        table = positional_embeddings.permute(2, 0, 1).unsqueeze(0).float()
        table = F.interpolate(table, size=grid, mode="bilinear", align_corners=False, antialias=True)
        table = table.reshape(dim, grid[0] * grid[1]).transpose(0, 1).to(positional_embeddings.dtype)
        return table.unsqueeze(0).expand(spatial_shapes.shape[0], -1, -1)

    embeddings.resize_positional_embeddings = resize
    try:
        yield
    finally:
        del embeddings.resize_positional_embeddings


#: model_type -> context manager ``(model, input_shape)`` active during the torch.onnx export only
#: (the parity check runs the unpatched model).
EXPORT_PATCHES = {"siglip2": _siglip2_static_grid}


#: model_type -> ``(model, pixel_values, processor dict) -> logits`` for models not called as
#: ``model(pixel_values=...).logits``; these skip optimum, whose ONNX file would differ.
INPUT_ADAPTERS = {"perceiver": _perceiver, "imagegpt": _imagegpt, "siglip2": _siglip2, "pp_lcnet": _pp_lcnet}


#: The exporters in the order they are tried (names recorded as the spec's ``source.export``).
DYNAMO = "torch.onnx dynamo"
TORCHSCRIPT = "torch.onnx torchscript"
EXPORTERS = ("optimum", DYNAMO, TORCHSCRIPT)


@dataclass
class ExportResult:
    """How the ONNX file was made: the exporter (one of :data:`EXPORTERS`), optimum's task, parity,
    notes on the exporters skipped or failed before it, and the versions of the libraries used."""

    path: str
    optimum_task: str | None
    max_abs_diff: float
    output_classes: int
    notes: list[str]
    versions: dict[str, str]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


@contextmanager
def _quiet():
    """Silence the exporters' progress logs, deprecation and tracer warnings."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    names = ("optimum", "optimum.exporters", "optimum.exporters.onnx", "onnxscript", "torch", "torch.onnx",
             "torch.export", "torch._export", "torch._dynamo", "torch._subclasses.fake_tensor",
             "torch.fx.experimental.symbolic_shapes")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def load_torch_model(folder: Path, task: str, classes: int | None = None):
    """The PyTorch model of ``folder`` for ``task`` (eval mode, CPU, fp32, eager attention: the form
    both torch.onnx exporters decompose).

    The class named by ``config.json``'s ``architectures`` is used when it is one of the
    task's auto-mapping classes (transformers 4.57 cannot resolve some saved model types
    itself, e.g. ``vit-hybrid``), else the task's auto class. ``classes`` (the length of
    ``id2label``) is passed on as ``num_labels``: some configs (PVT in transformers 4.57)
    otherwise reset ``id2label`` to their 1000-class default.
    """
    import json

    import torch
    import transformers
    from transformers.models.auto import modeling_auto

    if task == "semantic-segmentation":
        auto = transformers.AutoModelForSemanticSegmentation
        mapping = modeling_auto.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES
    else:
        auto = transformers.AutoModelForImageClassification
        mapping = modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
    known = {name for names in mapping.values() for name in ((names,) if isinstance(names, str) else names)}
    named = (json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or [None])[0]
    loader = getattr(transformers, named) if named in known else auto
    try:
        # fp32 whatever the checkpoint's dtype (transformers 5 loads the saved dtype by default); ``dtype``
        # is the keyword of both 4.56+ and 5.x (``torch_dtype`` is deprecated)
        return loader.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager",
                                      **({"num_labels": classes} if classes else {})).eval()
    except (ValueError, KeyError, OSError, ImportError, RuntimeError) as exc:
        raise ModelError(f"{folder}: transformers cannot load it for {task}: {_first_line(exc)}") from None


def pixels_to_logits(model, model_type: str, processor: dict):
    """The thin ``torch.nn.Module`` ``pixel_values -> logits`` around ``model`` (its input adapter inside)."""
    import torch

    adapter = INPUT_ADAPTERS.get(model_type, _pixels)

    class PixelsToLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return adapter(self.model, pixel_values, processor)

    return PixelsToLogits().eval()


def optimum_installed() -> bool:
    """Whether optimum's ONNX exporter can be imported (the ``optimum`` extra, transformers 4.x)."""
    try:
        import optimum.exporters.onnx  # noqa: F401
    except ImportError:
        return False
    except Exception:  # noqa: BLE001  an optimum built for another transformers fails at import in many ways
        return False
    return True


def optimum_task(model_type: str, task: str) -> str | None:
    """The task name optimum uses for ``model_type``'s ``task``, or ``None`` if optimum lacks it
    (or is not installed)."""
    if not optimum_installed():
        return None
    import optimum.exporters.onnx.model_configs  # noqa: F401  registers the architectures
    from optimum.exporters.tasks import TasksManager

    try:
        known = TasksManager.get_supported_tasks_for_model_type(model_type, exporter="onnx",
                                                                library_name="transformers")
    except KeyError:
        return None
    return next((name for name in OPTIMUM_TASKS[task] if name in known), None)


def versions(exporter: str) -> dict[str, str]:
    """The versions of the libraries that made a file with ``exporter`` (recorded in the spec)."""
    from importlib import metadata

    names = ["transformers", "torch", "onnx"]
    names += {"optimum": ["optimum-onnx", "optimum"], DYNAMO: ["onnxscript"]}.get(exporter, [])
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _optimum_export(folder: Path, onnx_path: Path, task_name: str, opset: int) -> None:
    from optimum.exporters.onnx import main_export

    work = onnx_path.parent / "optimum"
    main_export(str(folder), output=str(work), task=task_name, opset=opset, do_validation=False, device="cpu")
    if any(work.glob("*.onnx_data")) or any(work.glob("*.onnx.data")):
        raise ModelError("the export needs ONNX external data (model > 2 GB), which the export cache does not hold")
    (work / "model.onnx").replace(onnx_path)


def _torch_export(wrapper, model_type: str, onnx_path: Path, example, opset: int, *, dynamo: bool) -> None:
    import torch

    patch = EXPORT_PATCHES.get(model_type)
    with patch(wrapper.model, tuple(example.shape[1:])) if patch else nullcontext():
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(wrapper, (example,), str(onnx_path), input_names=["pixel_values"],
                              output_names=["logits"], dynamic_shapes={"pixel_values": {0: batch}},
                              opset_version=max(opset, 18), dynamo=True, verbose=False, external_data=False)
        else:
            torch.onnx.export(wrapper, (example,), str(onnx_path), input_names=["pixel_values"],
                              output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"},
                                                                     "logits": {0: "batch"}},
                              opset_version=opset, dynamo=False, verbose=False)


def save_onnx(candidate: Path, onnx_path: Path) -> None:
    """Put the checked ONNX file ``candidate`` at ``onnx_path``: the one place the export writes it."""
    candidate.replace(onnx_path)


def parity(onnx_path: Path, wrapper, input_shape: tuple[int, int, int], *, seed: int = 0) -> float:
    """Max |ONNX - PyTorch| over the logits of random N(0, 1) inputs at :data:`PARITY_BATCHES`."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if names != ["pixel_values"]:
        raise ModelError(f"the ONNX model takes inputs {names}, not only pixel_values")
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in PARITY_BATCHES:
        x = rng.standard_normal((n, *input_shape)).astype(np.float32)
        ours = session.run(None, {"pixel_values": x})[0]
        with torch.no_grad():
            ref = wrapper(torch.from_numpy(x)).numpy()
        if ours.shape != ref.shape:
            raise ModelError(f"ONNX logits have shape {list(ours.shape)}, PyTorch's {list(ref.shape)}")
        worst = max(worst, float(np.max(np.abs(ours.astype(np.float64) - ref))))
    return worst


def _exporters(folder: Path, model_type: str, task: str, wrapper, input_shape, opset: int):
    """``(name, optimum task, export(path))`` of each exporter to try, in order; and notes on those skipped."""
    import torch

    example = torch.randn((2, *input_shape))
    runs, notes = [], []
    name = None if model_type in INPUT_ADAPTERS else optimum_task(model_type, task)
    if name is not None:
        runs.append(("optimum", name, lambda path: _optimum_export(folder, path, name, opset)))
    elif optimum_installed():
        notes.append(f"optimum skipped: {model_type} is not called as model(pixel_values).logits"
                     if model_type in INPUT_ADAPTERS else f"optimum does not export {model_type} for {task}")
    for exporter, dynamo in ((DYNAMO, True), (TORCHSCRIPT, False)):
        runs.append((exporter, None, lambda path, d=dynamo: _torch_export(wrapper, model_type, path, example, opset,
                                                                          dynamo=d)))
    return runs, notes


def export_checked(folder: Path, onnx_path: Path, *, task: str, model_type: str, processor: dict,
                   input_shape: tuple[int, int, int], classes: int | None = None, opset: int = 17) -> ExportResult:
    """Export ``folder``'s model to ``onnx_path`` with the first exporter of :data:`EXPORTERS` whose
    file matches PyTorch.

    ``input_shape``: ``(C, H, W)`` the image processor produces; ``classes``: the config's
    number of labels. Raises :class:`ModelError` naming the architecture and what each exporter
    said when none gives a file that matches PyTorch, or when the model cannot be run at all.
    """
    import torch

    if model_type in NOT_POSSIBLE:
        raise ModelError(f"{folder}: architecture {model_type!r} cannot be exported to ONNX here: "
                         f"{NOT_POSSIBLE[model_type]}")
    with _quiet():
        model = load_torch_model(folder, task, classes)
        wrapper = pixels_to_logits(model, model_type, processor)
        try:
            with torch.no_grad():
                outputs = int(wrapper(torch.zeros((2, *input_shape))).shape[1])
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            raise ModelError(f"{folder}: the {model_type} model fails on a {list(input_shape)} input (channels and "
                             f"size from the config and image processor): {_first_line(exc)}") from None
        runs, notes = _exporters(folder, model_type, task, wrapper, input_shape, opset)
        said, mismatch = [], False
        for exporter, name, run in runs:
            label = f"{exporter} ({name})" if name else exporter
            candidate = onnx_path.with_name(f"candidate-{exporter.replace(' ', '-')}.onnx")
            try:
                run(candidate)
                lower_file(candidate)  # the file checked is the file kept: within the onnxruntime floor
                diff = parity(candidate, wrapper, input_shape)
            except Exception as exc:  # noqa: BLE001  the exporters raise many types (dynamo, onnxscript, ORT)
                said.append(f"{label}: {_first_line(exc)}")
                candidate.unlink(missing_ok=True)
                continue
            if diff <= PARITY_ATOL:
                save_onnx(candidate, onnx_path)
                return ExportResult(exporter, name, diff, outputs, notes + said, versions(exporter))
            candidate.unlink()
            mismatch = True
            said.append(f"{label}: differs from PyTorch by {diff:.2e}")
    what = "no exporter made a file that matches PyTorch" if mismatch else "every exporter failed"
    raise ModelError(f"{folder}: architecture {model_type!r} could not be exported to ONNX for {task}: {what} "
                     f"(max abs on fp32 logits; limit {PARITY_ATOL:g}): {'; '.join(notes + said)}")
