"""Synthetic datasets in the field's layouts (nnU-Net v2 raw, Decathlon) and a multi-channel ONNX model.

Every case has a BraTS-like label map (1 = necrosis inside 2 = oedema, 3 = enhancing rim) and
channels built so that a linear combination of two of them gives the label map plus noise:
``T1c - T1 = label + noise`` while ``T1``, ``T2`` and ``FLAIR`` carry a smooth random base.
The ONNX model of :func:`linear_label_model` computes ``m = sum_c w_c x_c`` and predicts the
class nearest to ``m``: right channels in the right order give a good segmentation, a wrong
order gives a bad one, and the expected prediction is ``clip(rint(sum w_c x_c), 0, K - 1)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from medbench_fast.data.reader import Volume, write_volume

SPACING = (2.0, 1.0, 1.25)
BRATS_NAMES = ("FLAIR", "T1w", "t1gd", "T2w")  # Decathlon Task01 modality order
BRATS_REGIONS = {"whole tumor": [1, 2, 3], "tumor core": [1, 3], "enhancing tumor": [3]}


def case_arrays(rng, shape=(10, 18, 20), *, empty: bool = False, noise: float = 0.25):
    """``(label uint8, channels {name: float32})`` of one case; ``empty``: no tumour at all."""
    z, y, x = np.indices(shape)
    centre = np.array(shape) / 2 + rng.uniform(-2, 2, 3)
    radius = np.sqrt(((z - centre[0]) * SPACING[0]) ** 2 + ((y - centre[1]) * SPACING[1]) ** 2
                     + ((x - centre[2]) * SPACING[2]) ** 2)
    size = rng.uniform(5.0, 8.0)
    label = np.zeros(shape, np.uint8)
    if not empty:
        label[radius < size] = 2
        label[radius < 0.75 * size] = 3
        label[radius < 0.45 * size] = 1
    base = ndimage.gaussian_filter(rng.random(shape), 2.0).astype(np.float32) * 4.0
    t1c = base + label + rng.normal(0.0, noise, shape).astype(np.float32)
    channels = {"FLAIR": base * 0.5 + 1.0, "T1w": base, "t1gd": t1c, "T2w": 2.0 * base}
    return label, {k: v.astype(np.float32) for k, v in channels.items()}


def write_nnunet(root: Path, cases: dict, channel_names, *, split: str = "Ts", regions: bool = False,
                 ending: str = ".nii.gz", scale: dict | None = None) -> Path:
    """``DatasetNNN_Name`` with ``dataset.json``, ``images{split}`` (one file per channel) and
    ``labels{split}``; ``regions`` writes BraTS regions into ``labels``; ``scale`` multiplies
    named channels on disk (undone by the model spec's intensity steps)."""
    root.mkdir(parents=True, exist_ok=True)
    labels = {"background": 0, "necrosis": 1, "edema": 2, "enhancing": 3}
    if regions:
        labels = {"background": 0, **{k: v for k, v in BRATS_REGIONS.items() if len(v) > 1}, "enhancing tumor": 3}
    meta = {"channel_names": {str(i): n for i, n in enumerate(channel_names)}, "labels": labels,
            "numTraining": 0, "file_ending": ending}
    if regions:  # nnU-Net's region-based datasets list the label values their regions are painted with
        meta["regions_class_order"] = [2, 1, 3]
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    for case_id, (label, channels) in cases.items():
        for i, name in enumerate(channel_names):
            array = channels[name] * (scale or {}).get(name, 1.0)
            write_image(root / f"images{split}" / f"{case_id}_{i:04d}{ending}", array)
        write_image(root / f"labels{split}" / f"{case_id}{ending}", label)
    return root


def write_decathlon(root: Path, cases: dict, modality, *, scale: dict | None = None) -> Path:
    """``TaskNN_Name`` with ``dataset.json`` listing every case under ``training`` and 4D images."""
    root.mkdir(parents=True, exist_ok=True)
    training = []
    for case_id, (label, channels) in cases.items():
        stack = np.stack([channels[n] * (scale or {}).get(n, 1.0) for n in modality])
        write_4d(root / "imagesTr" / f"{case_id}.nii.gz", stack)
        write_image(root / "labelsTr" / f"{case_id}.nii.gz", label)
        training.append({"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"})
    meta = {"name": "Synthetic", "modality": {str(i): n for i, n in enumerate(modality)},
            "labels": {"0": "background", "1": "necrosis", "2": "edema", "3": "enhancing"},
            "numTraining": len(training), "numTest": 0, "training": training, "test": []}
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    return root


def write_4d(path: Path, stack: np.ndarray, spacing=SPACING) -> None:
    """``(C, Z, Y, X)`` as a 4D NIfTI whose fourth axis is the channel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(stack), isVector=False)
    image.SetSpacing(tuple(reversed(spacing)) + (1.0,))
    sitk.WriteImage(image, str(path), useCompression=True)


def write_image(path: Path, array: np.ndarray, spacing=SPACING) -> None:
    """One 3D image with the datasets' spacing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_volume(Volume(array, spacing), path)


def expected_prediction(channels: dict, names, weights, n_classes: int = 4) -> np.ndarray:
    """The label map :func:`linear_label_model` gives for ``names`` weighted by ``weights``."""
    m = sum(np.float32(w) * channels[n] for n, w in zip(names, weights))
    return np.clip(np.rint(m), 0, n_classes - 1).astype(np.uint8)


def linear_label_model(path: Path, weights, n_classes: int = 4) -> Path:
    """3D ONNX model ``(N, C, Z, Y, X) -> (N, K, Z, Y, X)`` logits ``-(sum_c w_c x_c - k)^2``."""
    import onnx
    from onnx import TensorProto, helper

    c = len(weights)
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["m"], kernel_shape=[1, 1, 1]),
        helper.make_node("Sub", ["m", "k"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("Neg", ["d2"], ["logits"]),
    ]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [1, c, 1, 1, 1], [float(v) for v in weights]),
             helper.make_tensor("k", TensorProto.FLOAT, [1, n_classes, 1, 1, 1], [float(k) for k in range(n_classes)])]
    graph = helper.make_graph(
        nodes, "linear_label",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", c, "z", "y", "x"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes, "z", "y", "x"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def linear_label_spec(name: str, channel_names, patch, *, intensity=None) -> dict:
    """The spec of :func:`linear_label_model`: one sliding-window patch covering the volume."""
    return {"name": name, "inputs": ["image"], "channels": len(channel_names), "channel_names": list(channel_names),
            "intensity": intensity or [],
            "strategy": {"type": "sliding_window", "patch_size": list(patch), "overlap": 0.0, "batch_size": 1},
            "output": {"kind": "segmentation_logits", "labels": {"0": 0, "1": 1, "2": 2, "3": 3}}}
