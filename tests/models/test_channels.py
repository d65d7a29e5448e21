"""Multi-channel model inputs: channel count, order by name, per-channel intensity steps."""

from __future__ import annotations

import re

import numpy as np
import pytest
from datasets import linear_label_model, linear_label_spec

from medbench_fast.data.reader import Volume
from medbench_fast.models import load_model
from medbench_fast.models.spec import ModelError, ModelSpec
from medbench_fast.models.transforms import apply_channel_intensity, select_channels

SHAPE = (4, 6, 5)


def _spec(names=("T1", "T2"), intensity=None, **extra):
    data = linear_label_spec("m", names, SHAPE, intensity=intensity)
    data.update(extra)
    return ModelSpec.from_dict(data)


def _volume(names=("T1", "T1c", "T2", "FLAIR"), path="case_0000.nii.gz"):
    array = np.stack([np.full(SHAPE, i, np.float32) for i in range(len(names))])
    return Volume(array, (1.0, 1.0, 1.0), path=path, meta={"channel_names": tuple(names)})


def test_channels_are_picked_by_name_in_the_spec_order():
    image = select_channels(_volume(), _spec(("t2", "T1")))  # names compare case-insensitively
    assert image.shape == (2, *SHAPE) and image[:, 0, 0, 0].tolist() == [2.0, 0.0]


def test_channels_without_names_are_taken_in_order_and_counted():
    unnamed = Volume(np.zeros((2, *SHAPE), np.float32), (1.0, 1.0, 1.0), path="x.nii.gz")
    assert select_channels(unnamed, _spec()).shape == (2, *SHAPE)
    with pytest.raises(ModelError, match=r"x.nii.gz: image has 4 channel\(s\); model 'm' takes 2"):
        select_channels(Volume(np.zeros((4, *SHAPE)), (1.0, 1.0, 1.0), path="x.nii.gz"), _spec())
    one = Volume(np.zeros(SHAPE, np.float32), (1.0, 1.0, 1.0))
    assert select_channels(one, _spec()).shape == (1, *SHAPE)  # replicated later by to_channels


def test_a_channel_the_case_lacks_is_named():
    with pytest.raises(ModelError, match=r"case_0000.nii.gz: model 'm' takes channel\(s\) \['ADC'\] that the case lacks"):
        select_channels(_volume(), _spec(("T1", "ADC")))


def test_intensity_steps_apply_per_channel():
    rng = np.random.default_rng(0)
    mri = rng.normal(300.0, 40.0, SHAPE).astype(np.float32)
    ct = rng.uniform(-2000.0, 3000.0, SHAPE).astype(np.float32)
    spec = _spec(("MRI", "CT"), intensity=[
        {"op": "zscore", "channels": ["MRI"]},
        {"op": "clip", "range": [-1000.0, 1500.0], "channels": ["CT"]},
        {"op": "affine", "scale": 0.001, "channels": [1]},
    ])
    out = apply_channel_intensity(np.stack([mri, ct]), spec)
    np.testing.assert_allclose(out[0], (mri - mri.mean()) / mri.std(ddof=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1], np.clip(ct, -1000.0, 1500.0) * 0.001, rtol=1e-6)


@pytest.mark.parametrize("change, message", [
    ({"channel_names": ["T1"]}, "channel_names: names 1 channel(s); channels is 2"),
    ({"channel_names": ["T1", "t1"]}, "channel_names: names repeat"),
    ({"intensity": [{"op": "zscore", "channels": ["FLAIR"]}]}, "intensity[0].channels: 'FLAIR' is not among"),
    ({"intensity": [{"op": "zscore", "channels": [2]}]}, "intensity[0].channels: index 2 is outside 0..1"),
    ({"intensity": [{"op": "clip", "range": [5, 1]}]}, "intensity[0].range: clip needs [lo, hi] with lo < hi"),
    ({"intensity": [{"op": "normalize", "mean": [0], "std": [1], "channels": ["T1"]}]},
     "intensity[0].channels: normalize acts on every channel"),
])
def test_bad_channel_specs_name_the_key(change, message):
    data = linear_label_spec("m", ("T1", "T2"), SHAPE)
    data.update(change)
    with pytest.raises(ModelError, match=re.escape(message)):
        ModelSpec.from_dict(data)


@pytest.mark.parametrize("strategy", [
    {"type": "sliding_window", "patch_size": [4, 4, 4], "overlap": 0.5, "batch_size": 2},
    {"type": "whole_volume", "input_size": list(SHAPE)},
])
def test_strategies_feed_every_channel(tmp_path, strategy):
    rng = np.random.default_rng(1)
    label = rng.integers(0, 4, SHAPE).astype(np.float32)
    base = rng.random(SHAPE).astype(np.float32)
    volume = Volume(np.stack([base, base + label]), (1.0, 1.0, 1.0), meta={"channel_names": ("T1", "T1c")})
    spec = linear_label_spec("m", ("T1c", "T1"), SHAPE)
    spec["strategy"] = strategy
    model = load_model(linear_label_model(tmp_path / "m.onnx", (1.0, -1.0)), spec=spec)
    prediction = model.predict(volume)
    np.testing.assert_array_equal(prediction.label_map.array, np.clip(np.rint(label), 0, 3))


def test_slice_model_takes_channels_per_slice(tmp_path):
    """A 2D model (1x1 conv) on slices of a two-channel volume."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Conv", ["image", "w"], ["logits"], kernel_shape=[1, 1])]
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2, 1, 1], [1.0, 0.0, 0.0, 1.0])  # logits = channels
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 2, "h", "w"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2, "h", "w"])], [w])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "s.onnx"))
    rng = np.random.default_rng(2)
    a, b = rng.random(SHAPE).astype(np.float32), rng.random(SHAPE).astype(np.float32)
    spec = {"name": "s", "inputs": ["image"], "channels": 2, "channel_names": ["B", "A"],
            "strategy": {"type": "slice2d", "axis": 1, "batch_size": 3},
            "output": {"kind": "segmentation_logits", "labels": {"0": 0, "1": 1}}}
    model = load_model(tmp_path / "s.onnx", spec=spec)
    volume = Volume(np.stack([a, b]), (1.0, 1.0, 1.0), meta={"channel_names": ("A", "B")})
    np.testing.assert_array_equal(model.predict(volume).label_map.array, (a > b).astype(np.uint8))
