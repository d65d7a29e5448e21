"""Small nnU-Net v2 trained-model folders built with nnunetv2 itself, for tests and benchmarks.

:func:`build_trained_folder` writes a generated raw dataset (``imagesTr``/``labelsTr``,
``imagesTs``, ``dataset.json``), runs nnunetv2's own fingerprint extraction and experiment
planning on it (in a child process, because nnunetv2 reads its folders from the
environment when it is imported), and writes a trained-model folder
``<root>/results/<Dataset>/nnUNetTrainer__nnUNetPlans__<configuration>/`` with
``dataset.json``, ``plans.json``, ``dataset_fingerprint.json`` and one
``fold_<k>/checkpoint_final.pth`` per fold, in the format ``nnUNetTrainer.save_checkpoint``
writes. The networks are built from the plans by nnunetv2 (``nnUNetTrainer.build_network_architecture``)
with seeded random weights; the output layer is scaled so that the classes are far from
ties and predictions have structure. Patch sizes and network widths are shrunk in the plans
(``patch_3d``, ``patch_2d``, ``features``) so that prediction takes seconds on a CPU; the
spacings, normalisation and resampling settings stay the planner's.

Needs the ``[dev]`` extra (torch, nnunetv2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

TRAINER = "nnUNetTrainer"
PLANS = "nnUNetPlans"


def _ellipsoid(shape, center, radii) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)) <= 1.0


def _case(rng, shape, channels: int) -> tuple[list[np.ndarray], np.ndarray]:
    label = np.zeros(shape, np.uint8)
    center = [n / 2 + rng.uniform(-2, 2) for n in shape]
    outer = _ellipsoid(shape, center, [n * rng.uniform(0.3, 0.38) for n in shape])
    inner = _ellipsoid(shape, [c + rng.uniform(-1, 1) for c in center], [n * rng.uniform(0.14, 0.2) for n in shape])
    label[outer] = 1
    label[inner] = 2
    images = []
    for c in range(channels):
        base = np.choose(label, [0.0, 80.0 + 40 * c, 160.0 - 30 * c]).astype(np.float32)
        images.append((base + rng.normal(0, 25, shape) + 100 * c).astype(np.float32))
    return images, label


def _write(path: Path, array: np.ndarray, spacing_zyx) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    image.SetOrigin((12.5, -30.0, 4.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def write_raw_dataset(raw: Path, dataset_id: int, *, channels=("CT",), regions: bool = False, n_train: int = 4,
                      n_test: int = 2, shape=(18, 30, 34), spacing=(3.0, 0.9, 0.9), seed: int = 0) -> Path:
    """A generated nnU-Net raw dataset ``Dataset<id>_Synth`` (training and held-out test cases)."""
    rng = np.random.default_rng(seed)
    folder = raw / f"Dataset{dataset_id:03d}_Synth"
    for split, count in (("Tr", n_train), ("Ts", n_test)):
        for i in range(count):
            case = f"synth_{split.lower()}{i:03d}"
            size = [n + int(rng.integers(-2, 3)) for n in shape]
            sp = [s * rng.uniform(0.9, 1.1) for s in spacing]
            images, label = _case(rng, size, len(channels))
            for c, image in enumerate(images):
                _write(folder / f"images{split}" / f"{case}_{c:04d}.nii.gz", image, sp)
            if split == "Tr":
                _write(folder / "labelsTr" / f"{case}.nii.gz", label, sp)
            else:
                _write(folder / "labelsTs" / f"{case}.nii.gz", label, sp)
    labels = {"background": 0, "whole": [1, 2], "core": 2} if regions else {"background": 0, "outer": 1, "inner": 2}
    dataset = {"channel_names": {str(i): n for i, n in enumerate(channels)}, "labels": labels,
               "numTraining": n_train, "file_ending": ".nii.gz"}
    if regions:
        dataset["regions_class_order"] = [1, 2]
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2), encoding="utf-8")
    return folder


_PLAN = """
import sys
from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
if __name__ == "__main__":
    ids = [int(a) for a in sys.argv[1:]]
    extract_fingerprints(ids, check_dataset_integrity=True, num_processes=1)
    plan_experiments(ids)
"""


def plan_datasets(root: Path, dataset_ids) -> None:
    """Run nnunetv2's fingerprint extraction and planning on datasets of ``<root>/raw`` (one child process)."""
    env = {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
           "nnUNet_results": str(root / "results")}
    env.pop("nnUNet_n_proc_DA", None)
    done = subprocess.run([sys.executable, "-c", _PLAN, *map(str, dataset_ids)], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nnU-Net planning failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def _shrink(config: dict, patch, features: int) -> None:
    """Smaller patch and network (n_stages from the patch) in one configuration of the plans."""
    dims = len(patch)
    stages = 3
    config["patch_size"] = list(patch)
    kwargs = config["architecture"]["arch_kwargs"]
    kwargs.update(n_stages=stages, features_per_stage=[features * 2 ** i for i in range(stages)],
                  kernel_sizes=[[3] * dims] * stages, strides=[[1] * dims] + [[2] * dims] * (stages - 1),
                  n_conv_per_stage=[1] * stages, n_conv_per_stage_decoder=[1] * (stages - 1))


def _calibrate(network, dims: int, channels: int, patch, scale: float, seed: int) -> None:
    """Rescale the last output layer so that every class has logits of mean 0 and spread ``scale``
    on random input: classes then share the image, with structure from the input, and ties are rare."""
    import torch

    network.decoder.deep_supervision = False
    layer = network.decoder.seg_layers[-1]
    x = torch.randn(2, channels, *patch, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits = network.eval()(x).transpose(0, 1).reshape(layer.out_channels, -1)
        mean, std = logits.mean(1), logits.std(1).clamp_min(1e-6)
        shape = (-1,) + (1,) * (layer.weight.ndim - 1)
        layer.weight.mul_((scale / std).reshape(shape))
        layer.bias.sub_(mean).mul_(scale / std)
    network.decoder.deep_supervision = True


def save_checkpoint(path: Path, *, plans: dict, dataset_json: dict, configuration: str, fold, seed: int,
                    mirror_axes=None, trainer: str = TRAINER, scale: float = 4.0) -> None:
    """A checkpoint in ``nnUNetTrainer.save_checkpoint``'s format with seeded random weights."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(plans)
    cm = manager.get_configuration(configuration)
    torch.manual_seed(seed)
    network = nnUNetTrainer.build_network_architecture(
        cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
        determine_num_input_channels(manager, cm, dataset_json),
        manager.get_label_manager(dataset_json).num_segmentation_heads, enable_deep_supervision=True)
    _calibrate(network, len(cm.patch_size), determine_num_input_channels(manager, cm, dataset_json), cm.patch_size,
               scale, seed)
    if mirror_axes is None:
        mirror_axes = tuple(range(len(cm.patch_size)))
    checkpoint = {"network_weights": network.state_dict(), "optimizer_state": None, "grad_scaler_state": None,
                  "logging": {"epoch_end_timestamps": [np.float64(1.0)]}, "_best_ema": np.float64(0.5),
                  "current_epoch": 1,
                  "init_args": {"plans": plans, "configuration": configuration, "fold": fold,
                                "dataset_json": dataset_json, "device": torch.device("cpu")},
                  "trainer_name": trainer, "inference_allowed_mirroring_axes": mirror_axes}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, str(path))


def build_trained_folders(root: str | os.PathLike, datasets: dict[int, dict]) -> dict[int, dict[str, Path]]:
    """Generate, plan and "train" (seeded weights) several datasets with one planning process.

    ``datasets``: dataset id -> keyword arguments of :func:`build_trained_folder`. Returns
    dataset id -> configuration -> trained-model folder; the raw datasets are
    ``<root>/raw/Dataset<id>_Synth`` (held-out cases in ``imagesTs``/``labelsTs``).
    """
    root = Path(root)
    options = {i: {**DEFAULTS, **kw} for i, kw in datasets.items()}
    raws = {i: write_raw_dataset(root / "raw", i, **{k: o[k] for k in _RAW_KEYS}) for i, o in options.items()}
    plan_datasets(root, list(datasets))
    return {i: _train(root, raws[i], options[i]) for i in datasets}


def build_trained_folder(root: str | os.PathLike, dataset_id: int = 501, **kwargs) -> dict[str, Path]:
    """One dataset (see :data:`DEFAULTS` for the keywords): configuration -> trained-model folder."""
    return build_trained_folders(root, {dataset_id: kwargs})[dataset_id]


#: Keywords of :func:`build_trained_folder`, with their defaults.
DEFAULTS = {"configurations": ("3d_fullres",), "folds": (0,), "channels": ("CT",), "regions": False, "n_train": 4,
            "n_test": 2, "shape": (18, 30, 34), "spacing": (3.0, 0.9, 0.9), "patch_3d": (8, 16, 16),
            "patch_2d": (16, 16), "features": 4, "seed": 0}
_RAW_KEYS = ("channels", "regions", "n_train", "n_test", "shape", "spacing", "seed")


def _train(root: Path, raw_folder: Path, o: dict) -> dict[str, Path]:
    preprocessed = root / "preprocessed" / raw_folder.name
    plans = json.loads((preprocessed / f"{PLANS}.json").read_text(encoding="utf-8"))
    dataset_json = json.loads((raw_folder / "dataset.json").read_text(encoding="utf-8"))
    for configuration in o["configurations"]:
        if configuration not in plans["configurations"]:
            raise ValueError(f"the planner made no {configuration!r} configuration for {raw_folder}")
        _shrink(plans["configurations"][configuration], o["patch_2d"] if configuration == "2d" else o["patch_3d"],
                o["features"])
    out = {}
    for configuration in o["configurations"]:
        folder = root / "results" / raw_folder.name / f"{TRAINER}__{PLANS}__{configuration}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "plans.json").write_text(json.dumps(plans, indent=2), encoding="utf-8")
        (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2), encoding="utf-8")
        (folder / "dataset_fingerprint.json").write_bytes((preprocessed / "dataset_fingerprint.json").read_bytes())
        for k, fold in enumerate(o["folds"]):
            save_checkpoint(folder / f"fold_{fold}" / "checkpoint_final.pth", plans=plans, dataset_json=dataset_json,
                            configuration=configuration, fold=fold, seed=o["seed"] * 100 + k + 7)
        out[configuration] = folder
    return out
