"""Every architecture of transformers' semantic-segmentation and image-classification auto
mappings: exported (optimum where installed, else torch.onnx), run through onnxruntime and
compared with PyTorch, or refused with its reason; the spec's intensity steps equal the
image processor's. Tiny random-weight models built from config classes, nothing downloaded.

The default suite exports one architecture per export path; ``pytest -m hfcoverage``
exports all of them (CI runs it).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxscript")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import hf_tiny  # noqa: E402  (tests/ is on sys.path)
from transformers.models.auto import modeling_auto  # noqa: E402

from medbench_fast.models import ModelError, load_model  # noqa: E402
from medbench_fast.models.hf_export import EXPORTERS, NOT_POSSIBLE, pixels_to_logits  # noqa: E402
from medbench_fast.models.huggingface import export_hf, hf_spec  # noqa: E402
from medbench_fast.models.transforms import apply_intensity, to_channels  # noqa: E402

MAPPINGS = {hf_tiny.SEG: modeling_auto.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES,
            hf_tiny.CLS: modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES}
ALL = [(task, model_type) for task, mapping in MAPPINGS.items() for model_type in mapping]
EXPORTABLE = [(t, m) for t, m in ALL if m not in NOT_POSSIBLE]
#: One architecture per path: optimum (both task names, where installed), torch.onnx (plain and with an
#: input adapter).
DEFAULT = {(hf_tiny.SEG, "segformer"), (hf_tiny.SEG, "mobilevit"), (hf_tiny.SEG, "upernet"),
           (hf_tiny.CLS, "vit"), (hf_tiny.CLS, "dinov2_with_registers"), (hf_tiny.CLS, "siglip2")}
ID2LABEL = {0: "background", 1: "liver", 2: "tumour"}
pytestmark = pytest.mark.filterwarnings("ignore:The following named arguments are not valid")


def _param(task, model_type):
    marks = () if (task, model_type) in DEFAULT else pytest.mark.hfcoverage
    return pytest.param(task, model_type, id=f"{task.split('-')[0]}-{model_type}", marks=marks)


def test_every_mapped_architecture_is_covered():
    """A transformers upgrade that adds an architecture fails here until it has a tiny config or a reason."""
    missing = [key for key in ALL if key not in hf_tiny.TINY]
    assert not missing
    assert all(hf_tiny.TINY[key] is None for key in ALL if key[1] in NOT_POSSIBLE)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``(task, model_type) -> folder`` with the tiny model and its image processor, built once."""
    folders = {}

    def get(task, model_type):
        if (task, model_type) not in folders:
            folder = tmp_path_factory.mktemp(model_type)
            folders[task, model_type] = hf_tiny.save_tiny(folder, task, model_type, id2label=ID2LABEL)
        return folders[task, model_type]

    return get


def _check_export(folder, task, model_type, id2label, tmp_path):
    """Export through ``export_hf``, then compare onnxruntime with the PyTorch model as transformers
    loads it by default (its own attention implementation) on a batch of 4."""
    path, spec, _ = export_hf(folder, tmp_path / "out", task=task, cache_dir=tmp_path / "cache")
    assert spec.source["export"] in EXPORTERS and spec.source["exporter_versions"]["transformers"]
    assert spec.source["parity_max_abs_diff"] <= 1e-4
    model = load_model(path, postprocess="host")  # the runtime's own checks of inputs, channels and sizes
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    net = getattr(transformers, hf_tiny.model_class_name(task, model_type))
    net = net.from_pretrained(folder, num_labels=len(id2label)).eval()  # PVT 4.57 would reset id2label
    reference = pixels_to_logits(net, model_type, processor)
    x = np.random.default_rng(7).standard_normal((4, spec.channels, *spec.strategy.input_size)).astype(np.float32)
    ours = model.session.run({"pixel_values": x}, ["logits"])[0]
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()
    assert ours.shape == want.shape and ours.shape[:2] == (4, len(id2label))
    np.testing.assert_allclose(ours, want, rtol=0, atol=1e-4)
    return spec


@pytest.mark.parametrize("task, model_type", [_param(t, m) for t, m in EXPORTABLE])
def test_export_matches_pytorch(task, model_type, saved, tmp_path):
    _check_export(saved(task, model_type), task, model_type, ID2LABEL, tmp_path)


#: Five labels: an odd count, not the three of :data:`ID2LABEL`.
ODD_LABELS = {i: f"label{i}" for i in range(5)}
#: Non-default configurations: ``(task, model_type, config overrides)``, at twice the side (ViT-like
#: models: twice the patch size too) with :data:`ODD_LABELS`; every exportable architecture with no
#: overrides, plus the options their configs offer (relative position bias, shared bias, windows).
VARIANTS = [(t, m, {}) for t, m in EXPORTABLE] + [
    (task, model_type, flags) for model_type in ("beit", "data2vec-vision") for task in (hf_tiny.SEG, hf_tiny.CLS)
    for flags in ({"use_relative_position_bias": True}, {"use_shared_relative_position_bias": True},
                  {"use_absolute_position_embeddings": True, "layer_scale_init_value": 0.5})
    if (task, model_type) in EXPORTABLE] + [
    (hf_tiny.CLS, model_type, {"window_size": 4}) for model_type in ("swin", "swinv2", "donut-swin")
    if (hf_tiny.CLS, model_type) in EXPORTABLE] + [
    (hf_tiny.CLS, "vit", {"qkv_bias": False, "encoder_stride": 4}), (hf_tiny.CLS, "deit", {"hidden_act": "relu"}),
    (hf_tiny.CLS, "dinov2", {"use_swiglu_ffn": True}), (hf_tiny.SEG, "segformer", {"sr_ratios": [1, 1]})]


def _variant(task, model_type, flags):
    name = ",".join(f"{k}={v}" for k, v in flags.items()) or "x2"
    return pytest.param(task, model_type, flags, id=f"{task.split('-')[0]}-{model_type}-{name}",
                        marks=pytest.mark.hfcoverage)


@pytest.mark.parametrize("task, model_type, flags", [_variant(*v) for v in VARIANTS])
def test_non_default_configuration_matches_pytorch(task, model_type, flags, tmp_path):
    folder = hf_tiny.save_tiny(tmp_path / "model", task, model_type, id2label=ODD_LABELS, side=2 * hf_tiny.SIDE,
                               overrides=flags)
    _check_export(folder, task, model_type, ODD_LABELS, tmp_path)


def test_relative_position_bias_at_64_pixels_exports(tmp_path):
    """BEiT segmentation with relative position bias at 64 x 64: the configuration the dynamo exporter
    once failed to decompose (attention exported in its eager form)."""
    folder = hf_tiny.save_tiny(tmp_path / "model", hf_tiny.SEG, "beit", id2label=ODD_LABELS, side=64,
                               overrides={"use_relative_position_bias": True})
    assert _check_export(folder, hf_tiny.SEG, "beit", ODD_LABELS, tmp_path).source["export"] in EXPORTERS


@pytest.mark.parametrize("task, model_type", [(t, m) for t, m in EXPORTABLE if m not in hf_tiny.PROCESSOR_DEFAULTS])
def test_spec_intensity_equals_image_processor(task, model_type, saved):
    """The spec's steps on a windowed slice give the processor's pixel values for the same 8-bit image."""
    from transformers import AutoImageProcessor

    folder = saved(task, model_type)
    spec = hf_spec(folder, task, name="m", hu_window=(0, 255))
    processor = AutoImageProcessor.from_pretrained(folder, use_fast=False)
    h, w = spec.strategy.input_size
    gray = np.random.default_rng(3).integers(0, 256, (h, w)).astype(np.uint8)
    options = dict(do_resize=False, do_center_crop=False, return_tensors="np")
    if model_type == "imagegpt":
        options["do_color_quantize"] = False
    got = processor(np.stack([gray] * 3, axis=-1), **options)["pixel_values"]
    ours = to_channels(apply_intensity(gray[None].astype(np.int16), spec.intensity)[:, None], spec.channels,
                       spec.intensity, spec.layout)  # (N, C, H, W)
    if model_type == "siglip2":  # patches of p x p x C, row-major over the grid
        p = processor.patch_size
        ours = ours.reshape(1, 3, h // p, p, w // p, p).transpose(0, 2, 4, 3, 5, 1).reshape(1, -1, p * p * 3)
    np.testing.assert_allclose(ours, got.astype(np.float32), rtol=0, atol=2e-5)


def test_imagegpt_quantisation_equals_processor(saved):
    """The ImageGPT wrapper's colour quantisation gives the processor's token ids."""
    from transformers import AutoImageProcessor

    from medbench_fast.models.hf_export import INPUT_ADAPTERS

    folder = saved(hf_tiny.CLS, "imagegpt")
    processor = AutoImageProcessor.from_pretrained(folder, use_fast=False)
    image = np.random.default_rng(5).integers(0, 256, (hf_tiny.SIDE, hf_tiny.SIDE, 3)).astype(np.uint8)
    ids = processor(image, return_tensors="pt")["input_ids"]
    pixels = processor(image, do_color_quantize=False, return_tensors="pt")["pixel_values"]
    seen = {}

    class Spy:
        def __call__(self, input_ids):
            seen["ids"] = input_ids
            return type("Out", (), {"logits": None})()

    INPUT_ADAPTERS["imagegpt"](Spy(), pixels, json.loads((folder / "preprocessor_config.json").read_text()))
    assert torch.equal(seen["ids"], ids)


@pytest.mark.parametrize("model_type", sorted(m for m in NOT_POSSIBLE if (hf_tiny.CLS, m) in ALL))
def test_not_possible_names_the_reason(model_type, tmp_path):
    task = hf_tiny.CLS
    config = {"model_type": model_type, "architectures": [hf_tiny.model_class_name(task, model_type)],
              "id2label": {str(k): v for k, v in ID2LABEL.items()}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    transformers.ViTImageProcessor().save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=rf"architecture '{model_type}' cannot be exported.*: "
                                         rf"{NOT_POSSIBLE[model_type][:20]}"):
        export_hf(tmp_path, tmp_path / "out", task=task, cache_dir=tmp_path / "cache")
