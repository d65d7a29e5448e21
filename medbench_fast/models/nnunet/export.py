"""nnU-Net v2 trained-model folder -> one ONNX file (every chosen fold, mirroring inside) plus its spec.

The network is built the way nnU-Net's predictor builds it: the checkpoint's trainer class
(``trainer_name``, found among nnunetv2's trainers) calls ``build_network_architecture``
with the plans' architecture, without deep supervision, and loads ``network_weights``. The
graph takes one fixed shape, ``(batch, channels, *patch_size)``, so CUDA and TensorRT get
static shapes; it returns ``(batch, folds, heads, *patch_size)``: for each fold the logits
of the tile, averaged over the mirrored copies exactly as ``nnUNetPredictor`` does it
(``network(x)``, plus each flipped-back ``network(flip(x))`` in nnU-Net's order, divided by
their number) when mirroring is on. The exported graph is checked against PyTorch on a
random tile before it is kept.

Checkpoints are pickles holding numpy scalars: they are loaded as nnU-Net loads them
(``torch.load(weights_only=False)``), which runs code from the file, so only export folders
you trust. Exports are cached by the hash of ``plans.json``, ``dataset.json`` and the
checkpoints, and the options.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
from pathlib import Path

import numpy as np

from medbench_fast.models.exports import cached_export
from medbench_fast.models.nnunet.folder import DEFAULT_STEP_SIZE, TrainedFolder, read_trained_folder
from medbench_fast.models.spec import ModelError, ModelSpec, OutputSpec, StrategySpec

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
#: Largest |ONNX - PyTorch| allowed on the check tile, relative to the largest |logit| (at least 1).
PARITY_TOLERANCE = 1e-3


def import_nnunet():
    """Import nnunetv2 without the notes it prints when its data folders are not set (they are
    not needed to predict), or raise a :class:`ModelError` saying how to install it."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import nnunetv2.paths  # noqa: F401  (prints once per process)
        import nnunetv2
    except ImportError:
        raise ModelError("nnU-Net models need nnunetv2 and torch: pip install nnunetv2") from None
    return nnunetv2


def mirror_combinations(axes) -> list[tuple[int, ...]]:
    """The mirrored copies nnU-Net predicts, as spatial axis tuples, in its order."""
    axes = list(axes or ())
    return [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]


def load_checkpoints(folder: TrainedFolder) -> list[dict]:
    """The chosen folds' checkpoints (trusted files: see the module docstring)."""
    import torch

    out = []
    for path in folder.checkpoint_paths():
        try:
            checkpoint = torch.load(str(path), map_location=torch.device("cpu"), weights_only=False)
        except Exception as exc:  # not a torch file, truncated, foreign pickle
            raise ModelError(f"{path}: not a readable nnU-Net checkpoint ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None
        missing = [k for k in ("network_weights", "trainer_name", "init_args") if k not in checkpoint]
        if not isinstance(checkpoint, dict) or missing:
            raise ModelError(f"{path}: not an nnU-Net checkpoint (missing {missing or 'everything'})")
        out.append(checkpoint)
    return out


def build_networks(folder: TrainedFolder, checkpoints: list[dict]):
    """One network per checkpoint, built as ``nnUNetPredictor.initialize_from_trained_model_folder`` does."""
    import torch  # noqa: F401

    nnunetv2 = import_nnunet()
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    first = checkpoints[0]
    trainer_name = first["trainer_name"]
    trained_on = first["init_args"].get("configuration")
    if trained_on is not None and trained_on != folder.configuration:
        raise ModelError(f"{folder.checkpoint_paths()[0]}: was trained as configuration {trained_on!r}, not "
                         f"{folder.configuration!r}")
    trainer = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"),
                                          trainer_name, "nnunetv2.training.nnUNetTrainer")
    if trainer is None:
        raise ModelError(f"{folder.checkpoint_paths()[0]}: trainer {trainer_name!r} is not among nnunetv2's trainers; "
                         f"the network cannot be built (install the package that defines it into "
                         f"nnunetv2.training.nnUNetTrainer)")
    plans = PlansManager(folder.plans)
    cm = plans.get_configuration(folder.configuration)
    channels = determine_num_input_channels(plans, cm, folder.dataset_json)
    heads = plans.get_label_manager(folder.dataset_json).num_segmentation_heads
    networks = []
    for path, checkpoint in zip(folder.checkpoint_paths(), checkpoints):
        network = trainer.build_network_architecture(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                                     cm.network_arch_init_kwargs_req_import, channels, heads,
                                                     enable_deep_supervision=False)
        try:
            network.load_state_dict(checkpoint["network_weights"])
        except RuntimeError as exc:
            raise ModelError(f"{path}: weights do not fit the network of the plans ({str(exc).splitlines()[0]})") \
                from None
        networks.append(network.eval())
    return networks, channels, heads, trainer_name, first.get("inference_allowed_mirroring_axes")


def _ensemble_module(networks, mirror_axes):
    import torch

    class FoldsAndMirrors(torch.nn.Module):
        """``(B, C, *patch)`` -> ``(B, folds, heads, *patch)``, mirrored copies averaged per fold."""

        def __init__(self):
            super().__init__()
            self.nets = torch.nn.ModuleList(networks)
            self.combos = [tuple(a + 2 for a in c) for c in mirror_combinations(mirror_axes)]

        def forward(self, x):
            b = x.shape[0]
            batch = torch.cat([x] + [torch.flip(x, c) for c in self.combos], 0) if self.combos else x
            outs = []
            for net in self.nets:
                y = net(batch)
                acc = y[:b]
                for i, c in enumerate(self.combos):
                    acc = acc + torch.flip(y[(i + 1) * b:(i + 2) * b], c)
                outs.append(acc / (len(self.combos) + 1) if self.combos else acc)
            return torch.stack(outs, 1)

    return FoldsAndMirrors().eval()


def write_onnx(module, example, path: Path, *, opset: int) -> None:
    """The one place this exporter writes an ONNX file: fixed input shape, one input, one output."""
    import warnings

    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=opset, dynamo=False)


def _check_parity(module, path: Path, example) -> float:
    import torch

    from medbench_fast.models.session import import_onnxruntime

    ort = import_onnxruntime()
    with torch.no_grad():
        reference = module(example).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: example.numpy()})[0]
    diff = float(np.max(np.abs(got - reference)))
    if not diff <= PARITY_TOLERANCE * max(1.0, float(np.max(np.abs(reference)))):
        raise ModelError(f"{path}: the ONNX export differs from PyTorch by {diff:.3g} on a test tile")
    return diff


def nnunet_spec(folder: TrainedFolder, *, name: str, channels: int, heads: int, trainer: str, mirror_axes,
                batch_size: int, step_size: float = DEFAULT_STEP_SIZE) -> ModelSpec:
    """The spec of an export: the plans and dataset.json ride along in ``source`` (the runtime
    rebuilds nnU-Net's plans manager from them)."""
    dataset = folder.dataset_json
    labels = dataset.get("labels") or {}
    regions = dataset.get("regions_class_order")
    if regions:
        values = sorted({int(v) for v in regions if int(v) != 0})
    else:
        values = sorted({int(v) for v in labels.values() if not isinstance(v, (list, tuple)) and int(v) != 0}
                        - ({int(labels["ignore"])} if "ignore" in labels else set()))
    names = dataset.get("channel_names") or dataset.get("modality") or {}
    channel_names = [str(names[k]) for k in sorted(names, key=int)] if names else None
    if channel_names and (len(channel_names) != channels or len({n.lower() for n in channel_names}) != channels):
        channel_names = None
    patch = [int(p) for p in folder.config["patch_size"]]
    spec = ModelSpec(name=name, kind="nnunet", inputs=[INPUT_NAME], channels=channels, channel_names=channel_names,
                     strategy=StrategySpec(type="nnunet", batch_size=batch_size, patch_size=patch),
                     output=OutputSpec(kind="segmentation_logits", name=OUTPUT_NAME,
                                       activation="sigmoid" if regions else "softmax",
                                       labels={v: v for v in values}),
                     source={"format": "nnunet", "configuration": folder.configuration,
                             "folds": list(folder.folds), "checkpoint": folder.checkpoint, "trainer": trainer,
                             "heads": heads, "mirror_axes": list(mirror_axes or []),
                             "tile_step_size": float(step_size), "plans": folder.plans,
                             "dataset_json": folder.dataset_json})
    spec.validate(str(folder.folder))
    return spec


def export_nnunet(folder: str | os.PathLike, out: str | os.PathLike, *, configuration: str | None = None,
                  folds=None, checkpoint: str | None = None, mirroring: bool = True, step_size: float | None = None,
                  batch_size: int = 1, name: str | None = None, opset: int = 17, cache_dir=None,
                  force: bool = False) -> tuple[Path, ModelSpec, bool]:
    """Export an nnU-Net v2 trained-model folder to ONNX at ``out`` plus its spec.

    ``configuration``/``folds``/``checkpoint``: see
    :func:`~medbench_fast.models.nnunet.folder.read_trained_folder`. ``mirroring``: average
    the mirrored copies over the checkpoint's ``inference_allowed_mirroring_axes`` (nnU-Net's
    default). ``step_size``: tile step as a fraction of the patch (nnU-Net's 0.5).
    ``batch_size``: tiles per session call. Returns ``(onnx path, spec, cache hit)``.
    """
    trained = read_trained_folder(folder, configuration=configuration, folds=folds, checkpoint=checkpoint)
    step = DEFAULT_STEP_SIZE if step_size is None else float(step_size)
    if not 0.0 < step <= 1.0:
        raise ModelError(f"step size {step} is not in (0, 1]")
    model_name = name or trained.folder.parent.name
    options = {"configuration": trained.configuration, "folds": list(trained.folds), "checkpoint": trained.checkpoint,
               "mirroring": bool(mirroring), "batch_size": int(batch_size), "name": model_name, "opset": opset}

    def build(onnx_path: Path) -> ModelSpec:
        import torch

        checkpoints = load_checkpoints(trained)
        networks, channels, heads, trainer, allowed = build_networks(trained, checkpoints)
        axes = [int(a) for a in allowed] if (mirroring and allowed is not None) else []
        module = _ensemble_module(networks, axes)
        patch = [int(p) for p in trained.config["patch_size"]]
        example = torch.randn(int(batch_size), channels, *patch, generator=torch.Generator().manual_seed(0))
        write_onnx(module, example, onnx_path, opset=opset)
        spec = nnunet_spec(trained, name=model_name, channels=channels, heads=heads, trainer=trainer,
                           mirror_axes=axes, batch_size=int(batch_size), step_size=step)
        spec.source.update(export="torch.onnx", parity_max_abs_diff=_check_parity(module, onnx_path, example))
        return spec

    path, spec, hit = cached_export("nnunet", trained.source_files(), options, out, build, cache_dir=cache_dir,
                                    force=force)
    if spec.source.get("tile_step_size") != step:  # a run-time option: not part of the cache key
        from medbench_fast.files import atomic_write
        from medbench_fast.models.exports import output_paths

        spec.source["tile_step_size"] = step
        atomic_write(output_paths(out)[1], spec.to_json)
    return path, spec, hit
