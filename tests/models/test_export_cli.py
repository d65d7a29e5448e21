"""``medbench export`` through click's CliRunner; the export cache; TorchScript export."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.models import ModelError, ModelSpec, load_model
from medbench_fast.models.aiene.builder import Keras2Builder
from medbench_fast.models.exports import cache_key
from medbench_fast.models.torchscript import export_torchscript


def tiny_h5(path):
    b = Keras2Builder("tiny")
    box, node = b.input((4, 12, 12, 1)), b.input((4, 4, 4, 1))
    z = b.concatenate([b.flatten(b.pool(box, "max", 4)), b.flatten(b.pool(node, "max", 4))])
    b.save(path, [b.activation(b.dense(z, 2), "sigmoid")])
    return path


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_help_has_examples():
    result = invoke("export", "--help")
    assert result.exit_code == 0
    assert "medbench export --aiene" in result.output and "--torchscript" in result.output


def test_export_aiene_and_cache(tmp_path):
    h5 = tiny_h5(tmp_path / "ene.h5")
    cache = str(tmp_path / "cache")
    first = invoke("export", "--aiene", str(h5), "--out", str(tmp_path / "a.onnx"), "--cache-dir", cache)
    assert first.exit_code == 0, first.output
    assert "(converted)" in first.output
    assert (tmp_path / "a.spec.json").is_file()
    second = invoke("export", "--aiene", str(h5), "--out", str(tmp_path / "b.onnx"), "--cache-dir", cache)
    assert "(cache)" in second.output
    third = invoke("export", "--aiene", str(h5), "--out", str(tmp_path / "c.onnx"), "--cache-dir", cache,
                   "--node-label", "3")
    assert "(converted)" in third.output
    assert ModelSpec.from_json(tmp_path / "c.spec.json").strategy.object_label == 3


def test_cache_key_follows_content(tmp_path):
    f = tmp_path / "m.h5"
    f.write_bytes(b"one")
    k1 = cache_key("aiene", [f], {"a": 1})
    assert cache_key("aiene", [f], {"a": 1}) == k1 and cache_key("aiene", [f], {"a": 2}) != k1
    f.write_bytes(b"two")
    assert cache_key("aiene", [f], {"a": 1}) != k1


def test_export_usage_errors(tmp_path):
    result = CliRunner().invoke(cli, ["export", "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code != 0 and "exactly one of" in result.output
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    result = CliRunner().invoke(cli, ["export", "--aiene", str(bad), "--out", str(tmp_path / "x.onnx"),
                                      "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 1 and f"{bad}: not an HDF5 file" in result.output
    result = CliRunner().invoke(cli, ["export", "--torchscript", str(bad), "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code != 0 and "--input-shape" in result.output


@pytest.fixture
def scripted_unet(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(1, 3, 3, padding=1)

        def forward(self, x):
            return torch.softmax(self.conv(x), dim=1)

    torch.manual_seed(0)
    path = tmp_path / "net.pt"
    torch.jit.script(Net().eval()).save(str(path))
    return path


def test_export_torchscript_matches_torch(tmp_path, scripted_unet, rng):
    import torch

    result = invoke("export", "--torchscript", str(scripted_unet), "--input-shape", "1,1,8,8,8",
                    "--out", str(tmp_path / "net.onnx"), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    model = load_model(tmp_path / "net.onnx", postprocess="host")  # the raw scores are compared
    assert model.spec.kind == "torchscript" and model.spec.output.labels == {1: 1, 2: 2}
    x = rng.random((2, 1, 8, 8, 8), dtype=np.float32)
    ours = model.session.run({"image": x})[0]
    with torch.no_grad():
        ref = torch.jit.load(str(scripted_unet))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_export_torchscript_rejects_other_files(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"\x00not a zip")
    with pytest.raises(ModelError, match="not a TorchScript file"):
        export_torchscript(bad, tmp_path / "x.onnx", input_shape=[1, 1, 4, 4, 4], cache_dir=tmp_path / "c")
