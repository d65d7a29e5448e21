"""Session factory, spec, and the segmentation strategies on graphs with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medbench_fast.data.reader import Volume
from medbench_fast.models import ModelError, ModelSpec, create_session, load_model
from medbench_fast.models.spec import spec_path_for
from medbench_fast.models.transforms import (
    orientation_transform,
    reorient,
    resize,
    unreorient,
)


def spec_dict(strategy: dict, **extra) -> dict:
    d = {"name": "thr", "inputs": ["image"], "strategy": strategy,
         "output": {"kind": "segmentation_logits", "labels": {"1": 7}},
         "intensity": [{"op": "window", "range": [-100.0, 100.0]}]}
    d.update(extra)
    return d


def expected(array: np.ndarray) -> np.ndarray:
    windowed = (np.clip(array, -100, 100) + 100) / 200
    return np.where(windowed > 0.5, 7, 0).astype(np.uint8)


def ct(rng, shape=(9, 20, 17), spacing=(2.0, 0.8, 0.7)) -> Volume:
    return Volume(array=rng.integers(-300, 300, size=shape).astype(np.int16), spacing=spacing)


# -- spec ------------------------------------------------------------------------------
def test_spec_json_round_trip(tmp_path):
    spec = ModelSpec.from_dict(spec_dict({"type": "sliding_window", "patch_size": [8, 8, 8]}, target_spacing=[1, 1, 1]))
    path = tmp_path / "m.spec.json"
    spec.to_json(path)
    assert ModelSpec.from_json(path) == spec
    assert json.loads(path.read_text())["output"]["labels"] == {"1": 7}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("inputs"), "missing key 'inputs'"),
    (lambda d: d.update(colour=1), "unknown key(s) ['colour']"),
    (lambda d: d["strategy"].update(type="cubes"), "strategy.type"),
    (lambda d: d["strategy"].update(bogus=1), "strategy.bogus"),
    (lambda d: d["output"].update(labels={}), "output.labels"),
    (lambda d: d["intensity"][0].update(range=[5, 1]), "intensity[0].range"),
    (lambda d: d["strategy"].update(type="sliding_window"), "strategy.patch_size"),
])
def test_spec_errors_name_the_key(mutate, message):
    d = spec_dict({"type": "slice2d"})
    mutate(d)
    with pytest.raises(ModelError, match=None) as info:
        ModelSpec.from_dict(d, where="x.spec.json")
    assert message in str(info.value) and "x.spec.json" in str(info.value)


def test_spec_labels_missing_from_dataset():
    spec = ModelSpec.from_dict(spec_dict({"type": "slice2d"}))
    spec.check_dataset_labels([0, 7])
    with pytest.raises(ModelError, match=r"label\(s\) \[7\]"):
        spec.check_dataset_labels([0, 1, 2])


# -- session factory -------------------------------------------------------------------
def test_session_records_providers_in_use(make_threshold_onnx):
    path = make_threshold_onnx(spatial_rank=2)
    session = create_session(path, providers=("cpu",), threads=1)
    assert session.providers_in_use == ["CPUExecutionProvider"]
    out = session.run({"image": np.full((1, 1, 4, 4), 0.75, np.float32)})[0]
    np.testing.assert_allclose(out[0, :, 0, 0], [-0.25, 0.25])


def test_session_warns_for_provider_not_in_use(make_threshold_onnx):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    from medbench_fast.models.providers import GpuSettings

    with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider"):
        session = create_session(make_threshold_onnx(spatial_rank=2), providers=("cuda", "cpu"),
                                 gpu=GpuSettings(strict=False))
    assert session.providers_in_use == ["CPUExecutionProvider"]


def test_session_fp16(make_threshold_onnx):
    session = create_session(make_threshold_onnx(spatial_rank=2), fp16=True)
    out = session.run({"image": np.full((1, 1, 2, 2), 0.75, np.float32)})[0]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0, 0], [-0.25, 0.25], atol=1e-3)


def test_session_without_onnxruntime(monkeypatch, make_threshold_onnx):
    import builtins

    real_import = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ModelError, match="neither onnxruntime nor onnxruntime-gpu"):
        create_session(make_threshold_onnx(spatial_rank=2))


@pytest.mark.parametrize("content, message", [
    (b"\x89HDF\r\n\x1a\n....", "HDF5"), (b"PK\x03\x04....", "zip archive"), (b"not a model at all", "cannot be loaded"),
    (b"", "empty")])
def test_non_onnx_files(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message) as info:
        create_session(path)
    assert str(path) in str(info.value)


def test_unknown_provider(make_threshold_onnx):
    with pytest.raises(ModelError, match="unknown provider"):
        create_session(make_threshold_onnx(spatial_rank=2), providers=("rocm",))


# -- load_model validation ---------------------------------------------------------------
def test_load_model_reads_spec_beside_file(make_threshold_onnx):
    path = make_threshold_onnx(spatial_rank=2)
    ModelSpec.from_dict(spec_dict({"type": "slice2d"})).to_json(spec_path_for(path))
    model = load_model(path)
    assert model.name == "thr" and model.output_kind == "label_map"
    assert model.providers_in_use == ["CPUExecutionProvider"]


def test_load_model_without_spec(make_threshold_onnx):
    with pytest.raises(ModelError, match="model.spec.json"):
        load_model(make_threshold_onnx(spatial_rank=2))


@pytest.mark.parametrize("strategy, graph, message", [
    ({"type": "slice2d"}, dict(spatial_rank=3), "has rank 5"),
    ({"type": "sliding_window", "patch_size": [8, 8, 8]}, dict(spatial_rank=3, fixed=[4, 8, 8]), "fixed spatial size"),
    ({"type": "slice2d", "input_size": [16, 16]}, dict(spatial_rank=2, fixed=[32, 32]), "fixed spatial size"),
    ({"type": "slice2d"}, dict(spatial_rank=2, channels=3), "takes 3 channel"),
])
def test_load_model_rejects_mismatched_inputs(make_threshold_onnx, strategy, graph, message):
    path = make_threshold_onnx(**graph)
    with pytest.raises(ModelError, match=message) as info:
        load_model(path, spec=spec_dict(strategy))
    assert str(path) in str(info.value)


def test_load_model_wrong_input_name(make_threshold_onnx):
    with pytest.raises(ModelError, match="spec input 'pixels'"):
        load_model(make_threshold_onnx(spatial_rank=2), spec=spec_dict({"type": "slice2d"}, inputs=["pixels"]))


# -- strategies -------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice2d_equals_threshold(make_threshold_onnx, rng, axis):
    model = load_model(make_threshold_onnx(spatial_rank=2), spec=spec_dict({"type": "slice2d", "axis": axis, "batch_size": 4}))
    volume = ct(rng)
    pred = model.predict(volume)
    assert pred.label_map.array.dtype == np.uint8
    assert pred.label_map.spacing == volume.spacing
    np.testing.assert_array_equal(pred.label_map.array, expected(volume.array))
    assert set(pred.timings) == {"preprocess_s", "inference_s", "postprocess_s"}
    assert pred.scores is None


def test_slice2d_three_channels_channels_last_fixed_size(make_threshold_onnx, rng):
    path = make_threshold_onnx(spatial_rank=2, channels=3, layout="channels_last", fixed=[20, 17])
    spec = spec_dict({"type": "slice2d", "input_size": [20, 17]}, channels=3, layout="channels_last")
    spec["intensity"].append({"op": "normalize", "mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0]})
    spec["intensity"].append({"op": "affine", "scale": 1.0, "shift": 0.0})
    model = load_model(path, spec=spec)
    volume = ct(rng)
    # normalize shifts by -0.5, so the model's threshold at 0.5 means windowed > 1.0: nothing.
    assert model.predict(volume).label_map.array.max() == 0


def test_slice2d_resizes_to_input_size_and_back(make_threshold_onnx, rng):
    model = load_model(make_threshold_onnx(spatial_rank=2, fixed=[40, 34], downsample=2),
                       spec=spec_dict({"type": "slice2d", "input_size": [40, 34]}))
    volume = Volume(array=np.full((3, 20, 17), -100, np.int16), spacing=(1.0, 1.0, 1.0))
    volume.array[:, 5:15, 4:12] = 100
    pred = model.predict(volume).label_map.array
    np.testing.assert_array_equal(pred, expected(volume.array))


def test_sliding_window_equals_threshold(make_threshold_onnx, rng):
    model = load_model(make_threshold_onnx(spatial_rank=3),
                       spec=spec_dict({"type": "sliding_window", "patch_size": [4, 8, 8], "overlap": 0.5, "batch_size": 3}))
    volume = ct(rng, shape=(9, 20, 17))
    np.testing.assert_array_equal(model.predict(volume).label_map.array, expected(volume.array))


def test_sliding_window_pads_small_volume_and_resamples(make_threshold_onnx, rng):
    model = load_model(make_threshold_onnx(spatial_rank=3, fixed=[8, 8, 8]),
                       spec=spec_dict({"type": "sliding_window", "patch_size": [8, 8, 8]}, target_spacing=[2.0, 0.8, 0.7],
                                     output={"kind": "segmentation_logits", "labels": {"1": 7}, "resample": "nearest"}))
    volume = ct(rng, shape=(3, 6, 5), spacing=(2.0, 0.8, 0.7))
    np.testing.assert_array_equal(model.predict(volume).label_map.array, expected(volume.array))
    blocky = Volume(array=np.repeat(np.repeat(volume.array, 2, axis=1), 2, axis=2), spacing=(2.0, 0.4, 0.35))
    out = model.predict(blocky).label_map.array  # resampled to 0.8 x 0.7 mm and back
    np.testing.assert_array_equal(out, expected(blocky.array))


def test_whole_volume_resamples_to_grid_and_back(make_threshold_onnx, rng):
    model = load_model(make_threshold_onnx(spatial_rank=3, fixed=[8, 8, 8]),
                       spec=spec_dict({"type": "whole_volume", "input_size": [8, 8, 8]}, output={
                           "kind": "segmentation_logits", "labels": {"1": 7}, "resample": "nearest"}))
    volume = ct(rng, shape=(8, 16, 24))
    small = resize(volume.array, (8, 8, 8), order=0)
    want = resize(expected(small), (8, 16, 24), order=0)
    np.testing.assert_array_equal(model.predict(volume).label_map.array, want)


def test_whole_volume_orientation(make_threshold_onnx, rng):
    spec = spec_dict({"type": "whole_volume", "input_size": [5, 6, 7], "orientation": "RAS"},
                     output={"kind": "segmentation_logits", "labels": {"1": 7}, "resample": "nearest"})
    model = load_model(make_threshold_onnx(spatial_rank=3, fixed=[5, 6, 7]), spec=spec)
    volume = ct(rng, shape=(7, 6, 5))  # identity direction: (Z, Y, X) = (S, P, L) -> RAS is (X, Y, Z) flipped in x, y
    np.testing.assert_array_equal(model.predict(volume).label_map.array, expected(volume.array))
    assert orientation_transform(volume.direction, "RAS") == ((2, 1, 0), (0, 1))


def test_orientation_round_trip(rng):
    direction = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=float).ravel()
    perm, flips = orientation_transform(direction, "RAS")
    a = rng.random((3, 4, 5))
    np.testing.assert_array_equal(unreorient(reorient(a, perm, flips), perm, flips), a)


@pytest.mark.parametrize("strategy, dims", [({"type": "slice2d"}, ["h", "w"]),
                                             ({"type": "sliding_window", "patch_size": [4, 8, 8]}, ["d", "h", "w"])])
def test_label_map_output_kind(rng, tmp_path, strategy, dims):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Greater", ["image", "half"], ["b"]), helper.make_node("Cast", ["b"], ["labels"], to=TensorProto.INT64)],
        "argmaxed", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, *dims])],
        [helper.make_tensor_value_info("labels", TensorProto.INT64, ["N", 1, *dims])],
        [helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "lm.onnx"))
    spec = spec_dict(strategy, output={"kind": "label_map", "labels": {"1": 300}})
    volume = ct(rng)
    pred = load_model(tmp_path / "lm.onnx", spec=spec).predict(volume)
    assert pred.label_map.array.dtype == np.uint16
    np.testing.assert_array_equal(pred.label_map.array, expected(volume.array).astype(np.uint16) // 7 * 300)


def test_wrong_volume_rank(make_threshold_onnx):
    model = load_model(make_threshold_onnx(spatial_rank=2), spec=spec_dict({"type": "slice2d"}))
    with pytest.raises(ModelError, match="needs a 3D volume"):
        model.predict(Volume(array=np.zeros((4, 4)), spacing=(1.0, 1.0, 1.0)))


def test_resize_matches_torch_interpolate(rng):
    torch = pytest.importorskip("torch")
    a = rng.random((5, 7, 9)).astype(np.float32)
    ours = resize(a, (8, 4, 13), order=1)
    ref = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None], (8, 4, 13), mode="trilinear",
                                          align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    near = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None], (8, 4, 13), mode="nearest-exact")[0, 0].numpy()
    np.testing.assert_array_equal(resize(a, (8, 4, 13), order=0), near)
