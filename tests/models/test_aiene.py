"""AI-ENE: Keras-2 .h5 writing/reading, conversion to ONNX checked against Keras 3, preprocessing."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from medbench_fast.data.reader import Volume
from medbench_fast.models import ModelError, load_model
from medbench_fast.models.aiene.builder import Keras2Builder, same_padding
from medbench_fast.models.aiene.convert import convert_h5
from medbench_fast.models.aiene.dualnet import BOX_SHAPE, NODE_SHAPE, dualnet_builder
from medbench_fast.models.aiene.export import export_aiene
from medbench_fast.models.aiene.keras_h5 import read_keras_h5
from medbench_fast.models.aiene.preprocess import (
    bbox,
    crop_around,
    dilate,
    label_components,
    node_inputs,
    window_minmax,
)

BOX = (6, 13, 13, 1)
NODE = (5, 5, 5, 1)


def small_dualnet(path, seed=0):
    """Every layer type of DualNet-ENE at toy size; odd sizes and strides force asymmetric 'same' pads."""
    b = Keras2Builder("small", seed=seed)
    box, node = b.input(BOX), b.input(NODE)
    x = b.conv(box, 4, (3, 4, 4), strides=(1, 2, 2))
    x = b.batch_norm(x, epsilon=1.1e-3)
    x = b.leaky_relu(x, 0.03)
    x = b.zero_padding(x, [(0, 1), (1, 0), (2, 1)])
    x = b.pool(x, "max", 2, padding="same")
    feature = b.pool(x, "average", 3, strides=1, padding="same")  # symmetric pads (see below)
    x = b.dropout(feature, 0.3)
    x = b.flatten(x)
    y = b.conv(node, 3, 2, padding="valid", activation="relu")
    y = b.batch_norm(y, epsilon=1e-3)
    y = b.global_pool(y, "average")
    z = b.concatenate([x, y])
    z = b.dense(z, 6)
    z = b.leaky_relu(z, 0.03)
    z = b.dense(z, 2)
    out = b.activation(z, "sigmoid")
    b.save(path, [out, feature])
    return out, feature


@pytest.fixture(scope="module")
def small_h5(tmp_path_factory):
    path = tmp_path_factory.mktemp("aiene") / "small.h5"
    small_dualnet(path)
    return path


def keras_outputs(h5, inputs):
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("needs KERAS_BACKEND=torch")
    model = keras.models.load_model(str(h5), compile=False)
    outputs = model(inputs, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [keras.ops.convert_to_numpy(o) for o in outputs]


def test_file_is_keras2_layout(small_h5):
    with h5py.File(small_h5) as fh:
        version = fh.attrs["keras_version"]
        assert (version.decode() if isinstance(version, bytes) else version).startswith("2.")
        assert json.loads(fh.attrs["model_config"])["class_name"] == "Model"
        conv = fh["model_weights"]["conv3d_1"]
        assert [n.decode() if isinstance(n, bytes) else n for n in conv.attrs["weight_names"]] == ["conv3d_1/kernel:0", "conv3d_1/bias:0"]
    parsed = read_keras_h5(small_h5)
    assert [layer["class_name"] for layer in parsed.layers].count("InputLayer") == 2
    with h5py.File(small_h5) as fh:  # Keras loads weights by layer order, so both orders must agree
        names = [n.decode() if isinstance(n, bytes) else n for n in fh["model_weights"].attrs["layer_names"]]
    assert names == [layer["name"] for layer in parsed.layers]


def test_same_padding_is_tensorflows():
    assert same_padding(13, 4, 2) == (1, 2, 7)  # total 3: one before, two after
    assert same_padding(6, 3, 1) == (1, 1, 6)
    assert same_padding(7, 2, 2) == (0, 1, 4)


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_equals_keras(small_h5, tmp_path, rng, batch):
    import onnxruntime as ort

    shapes = convert_h5(small_h5, tmp_path / "small.onnx")
    assert shapes["inputs"] == {"input_1": list(BOX), "input_2": list(NODE)}
    session = ort.InferenceSession(str(tmp_path / "small.onnx"))
    assert session.get_inputs()[0].shape[0] == "batch"
    box = rng.random((batch, *BOX), dtype=np.float32)
    node = rng.random((batch, *NODE), dtype=np.float32)
    ours = session.run(None, {"input_1": box, "input_2": node})
    theirs = keras_outputs(small_h5, [box, node])
    assert ours[0].shape == (batch, 2) and ours[1].shape == theirs[1].shape
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_asymmetric_average_pool_excludes_padding(tmp_path, rng):
    """TensorFlow's 'same' average pooling divides by the number of real voxels in the window.

    Keras 3's torch backend pads asymmetric cases by replicating edge voxels and counts
    them, which differs from the TensorFlow the weights were trained with, so this case is
    checked against a direct numpy reference instead of Keras.
    """
    import onnxruntime as ort

    b = Keras2Builder("pool")
    x = b.input((5, 7, 6, 2))
    out = b.pool(x, "average", (2, 3, 2), strides=(2, 2, 2), padding="same")
    b.save(tmp_path / "pool.h5", [out])
    convert_h5(tmp_path / "pool.h5", tmp_path / "pool.onnx")
    a = rng.random((1, 5, 7, 6, 2), dtype=np.float32)
    ours = ort.InferenceSession(str(tmp_path / "pool.onnx")).run(None, {"input_1": a})[0]
    want = np.zeros((1, 3, 4, 3, 2), np.float32)
    pads = [same_padding(n, k, 2) for n, k in zip((5, 7, 6), (2, 3, 2))]
    for i in range(3):
        for j in range(4):
            for k in range(3):
                lo = [o * 2 - p[0] for o, p in zip((i, j, k), pads)]
                region = a[0, max(lo[0], 0):lo[0] + 2, max(lo[1], 0):lo[1] + 3, max(lo[2], 0):lo[2] + 2]
                want[0, i, j, k] = region.reshape(-1, 2).mean(axis=0)
    np.testing.assert_allclose(ours, want, atol=1e-6)


def test_unknown_layer_is_named(small_h5, tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(small_h5) as src, h5py.File(bad, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        src.copy("model_weights", dst)
        config = json.loads(src.attrs["model_config"])
        config["config"]["layers"][5]["class_name"] = "Cropping3D"
        dst.attrs["model_config"] = json.dumps(config).encode()
    name = config["config"]["layers"][5]["name"]
    with pytest.raises(ModelError, match=f"layer '{name}' has class 'Cropping3D'") as info:
        convert_h5(bad, tmp_path / "bad.onnx")
    assert str(bad) in str(info.value)


def test_not_hdf5_and_weights_only(tmp_path):
    text = tmp_path / "model.h5"
    text.write_text("hello")
    with pytest.raises(ModelError, match="not an HDF5 file"):
        read_keras_h5(text)
    weights_only = tmp_path / "weights.h5"
    with h5py.File(weights_only, "w") as fh:
        fh.create_group("conv")
    with pytest.raises(ModelError, match="without 'model_config'"):
        read_keras_h5(weights_only)


def test_dualnet_architecture():
    b, out = dualnet_builder()
    assert b.shapes[b.inputs[0]] == BOX_SHAPE and b.shapes[b.inputs[1]] == NODE_SHAPE
    assert b.shapes[out] == (2,)
    assert abs(b.parameter_count() - 48.3e6) < 0.1e6
    classes = {layer["class_name"] for layer in b.layers}
    assert {"Conv3D", "BatchNormalization", "LeakyReLU", "MaxPooling3D", "AveragePooling3D", "ZeroPadding3D",
            "Dense", "Dropout", "Concatenate"} <= classes


# -- preprocessing, step by step ----------------------------------------------------------
def test_dilate_matches_scipy(rng):
    ndimage = pytest.importorskip("scipy.ndimage")
    mask = rng.random((6, 15, 17)) > 0.97
    want = ndimage.binary_dilation(mask, structure=np.ones((1, 5, 5), bool), iterations=2)
    np.testing.assert_array_equal(dilate(mask, (1, 5, 5), 2), want)


def test_crop_around_centres_and_pads():
    a = np.arange(5 * 6 * 7).reshape(5, 6, 7)
    crop = crop_around(a, (2, 3, 3), (3, 4, 5), -1)
    np.testing.assert_array_equal(crop, a[1:4, 1:5, 1:6])
    edge = crop_around(a, (0, 0, 0), (4, 4, 4), -1)
    assert (edge[:2] == -1).all() and (edge[:, :2] == -1).all()
    np.testing.assert_array_equal(edge[2:, 2:, 2:], a[:2, :2, :2])


def test_window_minmax():
    x = np.array([-1000.0, -175.0, 50.0, 275.0, 900.0])
    np.testing.assert_allclose(window_minmax(x, (-175, 275)), [0, 0, 0.5, 1, 1])
    assert (window_minmax(np.full(4, 30.0), (-175, 275)) == 0).all()


def synthetic_ct(shape=(20, 90, 100), spacing=(2.5, 0.8, 0.8)):
    """Soft tissue (40 HU) with two spherical nodes of label 1 (and a tiny speck) and a label-2 structure."""
    z, y, x = np.indices(shape)
    ct = np.full(shape, 40, np.int16)
    mask = np.zeros(shape, np.uint8)
    nodes = [((8, 30, 30), 6.0), ((12, 60, 70), 9.0)]
    for (cz, cy, cx), r in nodes:
        inside = ((z - cz) * spacing[0]) ** 2 + ((y - cy) * spacing[1]) ** 2 + ((x - cx) * spacing[2]) ** 2 <= r * r
        ct[inside] = 120
        mask[inside] = 1
    mask[2, 5, 5] = 1          # a one-voxel speck, dropped by min_voxels
    mask[15:18, 5:10, 80:90] = 2  # another label: not a node
    ct[0, 0, 0] = -1000
    return Volume(array=ct, spacing=spacing), Volume(array=mask, spacing=spacing), nodes


def test_components_by_label_and_size():
    _, mask, nodes = synthetic_ct()
    labels, ids = label_components(mask.array, 1, min_voxels=2)
    assert ids == [1, 2]
    big = labels == 1  # largest first
    assert np.allclose([c.mean() for c in np.nonzero(big)], nodes[1][0], atol=0.5)
    assert label_components(mask.array, 1)[1] == [1, 2, 3]


def test_node_inputs_step_by_step():
    ct, mask, nodes = synthetic_ct()
    labels, ids = label_components(mask.array, 1, min_voxels=2)
    objects = node_inputs(ct.array, labels, ids, ct.spacing)
    assert [o.object_id for o in objects] == [1, 2]
    for obj in objects:
        assert obj.box.shape == (32, 118, 118) and obj.node.shape == (32, 32, 32)
        assert obj.voxels == int((labels == obj.object_id).sum())
        assert obj.box.min() >= 0.001 - 1e-7 and obj.box.max() <= 1.0
        # the node (120 HU) is brightest in a crop holding 40 HU and -1024 padding: it maps near 1
        assert obj.node.max() == pytest.approx(1.0, abs=1e-6)
    # box input: centred on the node, zero (+0.001) outside the dilated node mask
    obj = objects[0]
    centre = np.array([c.mean() for c in np.nonzero(obj.box > 0.5)])
    np.testing.assert_allclose(centre, [16, 59, 59], atol=1.5)
    grid_mask = obj.box > 0.001 + 1e-6
    lo, hi = bbox(grid_mask)
    radius_vox = np.array([nodes[1][1] / 3.0, nodes[1][1], nodes[1][1]])
    extent = (hi - lo + 1) / 2
    assert (extent <= radius_vox + np.array([1, 5, 5])).all()  # dilation grows Y and X by 4 voxels, Z by none


def test_aiene_end_to_end(tmp_path, rng):
    b = Keras2Builder("tiny", seed=3)
    box, node = b.input((8, 24, 24, 1)), b.input((8, 8, 8, 1))
    x = b.flatten(b.pool(b.leaky_relu(b.batch_norm(b.conv(box, 2, 3)), 0.03), "max", 4))
    y = b.flatten(b.pool(b.conv(node, 2, 3), "average", 4))
    out = b.activation(b.dense(b.concatenate([x, y]), 2), "sigmoid")
    h5 = tmp_path / "tiny.h5"
    b.save(h5, [out])
    onnx_path, spec, hit = export_aiene(h5, tmp_path / "out" / "tiny.onnx", cache_dir=tmp_path / "cache", min_voxels=2)
    assert not hit and spec.inputs == ["input_1", "input_2"] and spec.strategy.type == "object_crops"
    model = load_model(onnx_path)
    assert model.output_kind == "case_scores"
    ct, mask, _ = synthetic_ct()
    pred = model.predict(ct, mask)
    assert pred.label_map is None and [s["object_id"] for s in pred.scores] == [1, 2]
    assert set(pred.scores[0]) == {"object_id", "score_nodal_metastasis", "score_ene", "voxels", "centroid_zyx"}
    labels, ids = label_components(mask.array, 1, min_voxels=2)
    objects = node_inputs(ct.array, labels, ids, ct.spacing, box_size=(8, 24, 24), node_size=(8, 8, 8))
    direct = model.session.run({"input_1": np.stack([o.box for o in objects])[..., None],
                                "input_2": np.stack([o.node for o in objects])[..., None]})[0]
    np.testing.assert_allclose([[s["score_nodal_metastasis"], s["score_ene"]] for s in pred.scores], direct, atol=1e-6)
    assert export_aiene(h5, tmp_path / "again.onnx", cache_dir=tmp_path / "cache", min_voxels=2)[2] is True
    with pytest.raises(ModelError, match="needs the node mask"):
        model.predict(ct)
    empty = Volume(array=np.zeros_like(mask.array), spacing=mask.spacing)
    assert model.predict(ct, empty).scores == []


@pytest.mark.parametrize("with_input_layer", [True, False])
def test_sequential_model(tmp_path, rng, with_input_layer):
    """Keras-2 ``Sequential`` files: tf.keras 2.x lists an InputLayer first; Keras 2.2 puts
    ``batch_input_shape`` on the first layer. Checked against Keras on the same network
    saved as a functional model (Keras 3 misreads the second form)."""
    import onnxruntime as ort

    from medbench_fast.models.aiene.keras_h5 import write_keras2_h5

    b = Keras2Builder("seq", seed=5)
    x = b.input((4, 6, 6, 1))
    out = b.dense(b.flatten(b.conv(x, 2, 3, activation="relu")), 3, activation="softmax")
    b.save(tmp_path / "functional.h5", [out])
    layers = [{"class_name": layer["class_name"], "config": dict(layer["config"])} for layer in b.layers]
    if with_input_layer:
        layers[0]["config"]["name"] = "input"
    else:
        layers = layers[1:]
        layers[0]["config"]["batch_input_shape"] = [None, 4, 6, 6, 1]
    write_keras2_h5(tmp_path / "seq.h5", {"class_name": "Sequential", "config": {"name": "seq", "layers": layers}},
                    b.weights)
    convert_h5(tmp_path / "seq.h5", tmp_path / "seq.onnx")
    a = rng.random((2, 4, 6, 6, 1), dtype=np.float32)
    ours = ort.InferenceSession(str(tmp_path / "seq.onnx")).run(None, {"input": a})[0]
    np.testing.assert_allclose(ours, keras_outputs(tmp_path / "functional.h5", a)[0], atol=1e-5)
