"""Hugging Face export (optimum where installed, else torch.onnx): tiny random models built from
configs, offline."""

from __future__ import annotations

import numpy as np
import pytest

from medbench_fast.data.reader import Volume
from medbench_fast.models import ModelError, ModelSpec, load_model
from medbench_fast.models.hf_export import DYNAMO, TORCHSCRIPT, optimum_installed
from medbench_fast.models.huggingface import export_hf, hf_spec
from medbench_fast.models.transforms import resize

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
#: The exporter a ViT or SegFormer goes through: optimum in its environment, else the dynamo exporter.
FIRST = "optimum" if optimum_installed() else DYNAMO


@pytest.fixture(scope="module")
def segformer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("segformer")
    config = transformers.SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        num_attention_heads=[1, 2], decoder_hidden_size=16, patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2],
        id2label={0: "background", 1: "liver", 2: "tumor"}, label2id={"background": 0, "liver": 1, "tumor": 2})
    torch.manual_seed(0)
    transformers.SegformerForSemanticSegmentation(config).eval().save_pretrained(folder)
    transformers.SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    config = transformers.ViTConfig(image_size=16, patch_size=8, num_channels=1, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32,
                                    id2label={0: "normal", 1: "Abnormal finding"},
                                    label2id={"normal": 0, "Abnormal finding": 1})
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).eval().save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5], image_std=[0.25]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def segformer_onnx(segformer_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg_out")
    return export_hf(segformer_dir, out, task="semantic-segmentation", hu_window=(-200, 300),
                     cache_dir=out / "cache")


def test_segformer_spec_from_json(segformer_dir):
    spec = hf_spec(segformer_dir, "semantic-segmentation", name="seg", hu_window=(-200, 300))
    assert spec.strategy.type == "slice2d" and spec.strategy.input_size == [32, 32]
    assert spec.channels == 3 and spec.output.labels == {1: 1, 2: 2}
    assert spec.intensity[0].range == [-200.0, 300.0]
    assert spec.intensity[1].mean == pytest.approx([0.485, 0.456, 0.406])
    assert spec.source["id2label"] == {"0": "background", "1": "liver", "2": "tumor"}


def test_segformer_onnx_equals_pytorch(segformer_dir, segformer_onnx, rng):
    path, spec, _ = segformer_onnx
    model = load_model(path, postprocess="host")  # the raw logits are compared
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    ours = model.session.run({"pixel_values": x}, ["logits"])[0]
    net = transformers.SegformerForSemanticSegmentation.from_pretrained(segformer_dir).eval()
    with torch.no_grad():
        ref = net(pixel_values=torch.from_numpy(x)).logits.numpy()
    assert ours.shape == (2, 3, 8, 8)  # 1/4 resolution
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_segformer_slicewise_on_volume(segformer_dir, segformer_onnx, rng):
    path, spec, _ = segformer_onnx
    model = load_model(path)
    volume = Volume(array=rng.integers(-300, 400, size=(5, 40, 24)).astype(np.int16), spacing=(3.0, 0.7, 0.7))
    pred = model.predict(volume)
    assert pred.label_map.array.shape == volume.shape and pred.label_map.array.dtype == np.uint8
    # reference: the same slices through PyTorch, logits resized bilinearly to the slice size
    net = transformers.SegformerForSemanticSegmentation.from_pretrained(segformer_dir).eval()
    x = (np.clip(volume.array.astype(np.float32), -200, 300) + 200) / 500
    x = resize(x, (32, 32), order=1)
    mean = np.array([0.485, 0.456, 0.406], np.float32)[None, :, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[None, :, None, None]
    x = (np.repeat(x[:, None], 3, axis=1) - mean) / std
    with torch.no_grad():
        logits = net(pixel_values=torch.from_numpy(x)).logits
        up = torch.nn.functional.interpolate(logits, size=(40, 24), mode="bilinear", align_corners=False)
    want = up.argmax(1).numpy()
    assert (pred.label_map.array == want).mean() > 0.999
    assert model.post is not None  # resize and argmax ran inside the graph: the host path gives the same map
    np.testing.assert_array_equal(pred.label_map.array, load_model(path, postprocess="host").predict(volume).label_map.array)


def test_vit_classifier(vit_dir, tmp_path, rng):
    path, spec, hit = export_hf(vit_dir, tmp_path / "vit", task="image-classification", cache_dir=tmp_path / "cache")
    # 2 classes: one case score, P(class 1), named by the config
    assert spec.output.kind == "case_scores" and spec.output.score_names == ["abnormal_finding"]
    assert spec.output.score_classes == [1] and spec.source["export"] == FIRST
    assert spec.channels == 1 and spec.strategy.input_size == [16, 16]
    model = load_model(path)
    assert model.output_kind == "case_scores"
    x = rng.standard_normal((3, 1, 16, 16)).astype(np.float32)
    net = transformers.ViTForImageClassification.from_pretrained(vit_dir).eval()
    with torch.no_grad():
        ref = net(pixel_values=torch.from_numpy(x)).logits.numpy()
    np.testing.assert_allclose(model.session.run({"pixel_values": x})[0], ref, atol=1e-5)
    volume = Volume(array=rng.integers(-1000, 1000, size=(4, 16, 16)).astype(np.int16), spacing=(1.0, 1.0, 1.0))
    scores = model.predict(volume).scores
    assert len(scores) == 1 and scores[0]["slices"] == 4 and "score_normal" not in scores[0]
    x = (np.clip(volume.array.astype(np.float32), -1000, 1000) + 1000) / 2000
    x = (x[:, None] - 0.5) / 0.25
    with torch.no_grad():
        want = torch.softmax(net(pixel_values=torch.from_numpy(x)).logits, dim=1)[:, 1].mean().item()
    assert scores[0]["score_abnormal_finding"] == pytest.approx(want, abs=1e-5)
    assert export_hf(vit_dir, tmp_path / "vit2", task="image-classification", cache_dir=tmp_path / "cache")[2]
    assert spec.source["fixed_input_size"] == [16, 16]
    wrong = spec.to_dict()
    wrong["strategy"]["input_size"] = [32, 32]
    # optimum's file has dynamic spatial axes (the spec's fixed size refuses it), torch.onnx's a fixed size
    with pytest.raises(ModelError, match=r"(only accepts spatial size|has fixed spatial size) \[16, 16\]"):
        load_model(path, spec=wrong)


def test_positive_class(vit_dir):
    spec = hf_spec(vit_dir, "image-classification", name="v", positive_class="normal")
    assert spec.output.score_names == ["normal"] and spec.output.score_classes == [0]
    assert hf_spec(vit_dir, "image-classification", name="v", positive_class="0").output.score_classes == [0]
    by_label = hf_spec(vit_dir, "image-classification", name="v", positive_class="Abnormal finding")
    assert by_label.output.score_names == ["abnormal_finding"] and by_label.output.score_classes == [1]
    with pytest.raises(ModelError, match=r"positive class 'tumour' is not among .*\['normal', 'Abnormal finding'\]"):
        hf_spec(vit_dir, "image-classification", name="v", positive_class="tumour")


def test_hf_errors(tmp_path, vit_dir, segformer_dir):
    with pytest.raises(ModelError, match="no config.json"):
        hf_spec(tmp_path, "semantic-segmentation", name="x")
    with pytest.raises(ModelError, match="task 'detection'"):
        export_hf(tmp_path, tmp_path / "o", task="detection")
    no_processor = tmp_path / "no-processor"
    no_processor.mkdir()
    (no_processor / "config.json").write_bytes((vit_dir / "config.json").read_bytes())
    with pytest.raises(ModelError, match="no preprocessor_config.json: the image processor"):
        hf_spec(no_processor, "image-classification", name="x")
    # a 3-value mean/std for a 1-channel model: the processor does not fit the config
    (no_processor / "preprocessor_config.json").write_text('{"size": {"height": 16, "width": 16}, '
                                                           '"image_mean": [0.5, 0.5, 0.5], "image_std": [1, 1, 1]}')
    with pytest.raises(ModelError, match="image_mean has 3 values but config.json says the model takes 1 channel"):
        hf_spec(no_processor, "image-classification", name="x")
    with pytest.raises(ModelError, match="positive class applies to image-classification"):
        hf_spec(segformer_dir, "semantic-segmentation", name="x", positive_class="liver")


def test_parity_failure_names_architecture_and_difference(vit_dir, tmp_path, monkeypatch):
    from medbench_fast.models import hf_export

    monkeypatch.setattr(hf_export, "PARITY_ATOL", -1.0)  # no export can pass: every exporter's file is refused
    tried = ["optimum \\(image-classification\\)"] if optimum_installed() else []
    said = "; ".join(f"{name}: differs from PyTorch by \\d\\.\\d\\de[-+]\\d+" for name in tried + [DYNAMO, TORCHSCRIPT])
    with pytest.raises(ModelError, match=r"architecture 'vit' could not be exported to ONNX for image-classification: "
                                         r"no exporter made a file that matches PyTorch .*: " + said):
        export_hf(vit_dir, tmp_path / "o", task="image-classification", cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*/model.onnx"))  # nothing cached


def test_task_alias_and_unknown_architecture(segformer_dir, tmp_path):
    """optimum's task name is accepted; a model type transformers lacks is an error naming it."""
    spec = export_hf(segformer_dir, tmp_path / "o", task="image-segmentation", cache_dir=tmp_path / "cache")[1]
    assert spec.source["task"] == "semantic-segmentation"
    assert spec.source["optimum_task"] == ("semantic-segmentation" if optimum_installed() else None)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text('{"model_type": "no-such-net", "id2label": {"0": "a", "1": "b"}}')
    (odd / "preprocessor_config.json").write_text('{"size": {"height": 8, "width": 8}}')
    with pytest.raises(ModelError, match="transformers cannot load it for image-classification: .*no-such-net"):
        export_hf(odd, tmp_path / "o2", task="image-classification", cache_dir=tmp_path / "cache")


def test_export_hf_cli(vit_dir, tmp_path):
    from click.testing import CliRunner

    from medbench_fast.cli.main import cli

    args = ["export", "--hf", str(vit_dir), "--task", "image-classification", "--out", str(tmp_path / "vit"),
            "--hu-window", "-500,500", "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "vit" / "model.onnx").is_file() and (tmp_path / "vit" / "model.spec.json").is_file()
    assert load_model(tmp_path / "vit" / "model.onnx").spec.intensity[0].range == [-500.0, 500.0]
    assert f"with {FIRST}, max |ONNX - PyTorch|" in result.output
    missing = CliRunner().invoke(cli, ["export", "--hf", str(vit_dir), "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0 and "--task" in missing.output
    chosen = CliRunner().invoke(cli, args + ["--positive-class", "normal", "--out", str(tmp_path / "neg")],
                                catch_exceptions=False)
    assert chosen.exit_code == 0, chosen.output
    assert load_model(tmp_path / "neg" / "model.onnx").spec.output.score_names == ["normal"]
    unknown = CliRunner().invoke(cli, args + ["--positive-class", "tumour"])
    assert unknown.exit_code != 0 and "positive class 'tumour' is not among" in unknown.output


def test_score_classes_validated(vit_dir):
    spec = hf_spec(vit_dir, "image-classification", name="v").to_dict()
    spec["output"]["score_classes"] = [0, 1]  # two columns, one name
    with pytest.raises(ModelError, match="output.score_classes: needs one output column index"):
        ModelSpec.from_dict(spec)


def test_a_failing_exporter_hands_over_to_the_next(vit_dir, tmp_path, monkeypatch):
    """optimum where installed, then the dynamo exporter (made to fail here), then the TorchScript
    exporter, whose real file passes the parity check; the notes keep what the others said."""
    from medbench_fast.models import hf_export

    real = hf_export._torch_export
    monkeypatch.setattr(hf_export, "optimum_task", lambda model_type, task: None)

    def dynamo_fails(wrapper, model_type, onnx_path, example, opset, *, dynamo):
        if dynamo:
            raise RuntimeError("Failed to decompose the FX graph for ONNX compatibility")
        real(wrapper, model_type, onnx_path, example, opset, dynamo=dynamo)

    monkeypatch.setattr(hf_export, "_torch_export", dynamo_fails)
    path, spec, _ = export_hf(vit_dir, tmp_path / "o", task="image-classification", cache_dir=tmp_path / "cache")
    assert spec.source["export"] == TORCHSCRIPT and spec.source["parity_max_abs_diff"] <= 1e-4
    assert spec.source["export_notes"][-1] == (f"{DYNAMO}: RuntimeError: Failed to decompose the FX graph for ONNX "
                                               f"compatibility")
    assert "onnxscript" not in spec.source["exporter_versions"] and spec.source["exporter_versions"]["torch"]
    x = np.random.default_rng(1).standard_normal((3, 1, 16, 16)).astype(np.float32)
    net = transformers.ViTForImageClassification.from_pretrained(vit_dir).eval()
    with torch.no_grad():
        ref = net(pixel_values=torch.from_numpy(x)).logits.numpy()
    np.testing.assert_allclose(load_model(path).session.run({"pixel_values": x})[0], ref, atol=1e-5)
    assert sorted(p.name for p in path.parent.iterdir() if p.suffix == ".onnx") == [path.name]  # no candidates left


def test_every_exporter_failing_lists_each_message(vit_dir, tmp_path, monkeypatch):
    from medbench_fast.models import hf_export

    def fails(wrapper, model_type, onnx_path, example, opset, *, dynamo):
        raise RuntimeError(f"{'dynamo' if dynamo else 'torchscript'} said no")

    monkeypatch.setattr(hf_export, "optimum_task", lambda model_type, task: None)
    monkeypatch.setattr(hf_export, "_torch_export", fails)
    with pytest.raises(ModelError, match=f"architecture 'vit' could not be exported to ONNX for image-classification: "
                                         f"every exporter failed .*{DYNAMO}: RuntimeError: dynamo said no; "
                                         f"{TORCHSCRIPT}: RuntimeError: torchscript said no"):
        export_hf(vit_dir, tmp_path / "o", task="image-classification", cache_dir=tmp_path / "cache")
