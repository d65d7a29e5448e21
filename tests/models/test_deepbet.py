"""A real trained model on real scans: deepbet's 128^3 brain-extraction LinkNet3D (TorchScript).

The wheel is fetched once with ``pip download --no-deps deepbet==1.0.2`` and pinned by
sha256; the tests skip (saying why) only when the registry is unreachable.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from medbench_fast import evaluate_pair
from medbench_fast.data.reader import load_volume
from medbench_fast.models import load_model
from medbench_fast.models.torchscript import export_torchscript

pytestmark = [pytest.mark.real, pytest.mark.slow]
torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "deepbet" / "deepbet_bbox.spec.json"


@pytest.fixture(scope="module")
def deepbet_onnx(deepbet_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("deepbet")
    path, spec, _ = export_torchscript(deepbet_models["bbox_model.pt"], out / "deepbet.onnx",
                                       input_shape=[1, 1, 128, 128, 128], spec=SPEC, cache_dir=out / "cache")
    return path


@pytest.fixture(scope="module")
def deepbet_model(deepbet_onnx):
    """Post-processing (resize of the scores back, argmax) inside the graph, the default."""
    return load_model(deepbet_onnx, threads=2)


@pytest.fixture(scope="module")
def deepbet_host(deepbet_onnx):
    """The raw logits out of the graph, post-processed in numpy."""
    return load_model(deepbet_onnx, threads=2, postprocess="host")


def test_onnx_equals_torchscript(deepbet_host, deepbet_models, brain_scans):
    _, image, _ = brain_scans[0]
    x, _, _ = deepbet_host._prepare(load_volume(image), None)  # the model's real preprocessed input
    ours = deepbet_host.session.run({"image": x})[0]
    net = torch.jit.load(str(deepbet_models["bbox_model.pt"]), map_location="cpu").eval()
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert ours.shape == (1, 2, 128, 128, 128)
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)


def test_graph_postprocessing_equals_host_on_real_scans(deepbet_model, deepbet_host, brain_scans):
    assert deepbet_model.post is not None
    for _, image, _ in brain_scans:
        volume = load_volume(image)
        np.testing.assert_array_equal(deepbet_model.predict(volume).label_map.array,
                                      deepbet_host.predict(volume).label_map.array)


def dice(reference: np.ndarray, prediction: np.ndarray, spacing) -> float:
    return evaluate_pair((reference > 0).astype(np.uint8), (prediction > 0).astype(np.uint8), spacing=spacing,
                         labels=[1], metrics="counts")[0]["dice"]


def test_dice_on_real_scans(deepbet_model, brain_scans):
    """deepbet's own pipeline (bbox model + 256^3 model + hole filling) reaches 0.93-0.96 on such scans."""
    for name, image, mask in brain_scans:
        volume, reference = load_volume(image), load_volume(mask)
        pred = deepbet_model.predict(volume)
        assert pred.label_map.array.shape == volume.shape
        value = dice(reference.array, pred.label_map.array, volume.spacing)
        assert value > 0.92, f"{name}: Dice {value:.4f}"


def test_dice_matches_deepbet_pipeline(deepbet_model, brain_scans, tmp_path):
    """Within 0.01 of deepbet's own pipeline; needs a Python with deepbet and its dependencies
    (``MEDBENCH_DEEPBET_PYTHON``), kept out of medbench's environment, and a few CPU minutes."""
    python = os.environ.get("MEDBENCH_DEEPBET_PYTHON")
    if not python:
        pytest.skip("set MEDBENCH_DEEPBET_PYTHON to a Python with deepbet==1.0.2 installed (see bench/deepbet_reference.py)")
    subprocess.run([python, str(ROOT / "bench" / "deepbet_reference.py"), str(tmp_path),
                    *[f"{name}={image}" for name, image, _ in brain_scans]], check=True, capture_output=True)
    for name, image, mask in brain_scans:
        volume, reference = load_volume(image), load_volume(mask)
        ours = dice(reference.array, deepbet_model.predict(volume).label_map.array, volume.spacing)
        theirs = dice(reference.array, load_volume(tmp_path / f"{name}_mask.nii.gz").array, volume.spacing)
        assert abs(ours - theirs) <= 0.01, f"{name}: medbench {ours:.4f}, deepbet {theirs:.4f}"
