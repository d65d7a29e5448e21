"""Every ONNX file the project writes loads in the oldest onnxruntime it declares: IR version
and opsets within :mod:`medbench_fast.models.onnx_floor`'s limits, which match pyproject."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from medbench_fast.models.onnx_floor import MAX_IR_VERSION, MAX_OPSETS, MIN_ONNXRUNTIME, lower, problems, save_onnx
from medbench_fast.models.spec import ModelError, ModelSpec, spec_path_for

ROOT = Path(__file__).resolve().parents[2]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_declared_minimum_is_pyprojects():
    text = (ROOT / "pyproject.toml").read_text()
    cpu = re.search(r'"onnxruntime>=([\d.]+)', text).group(1)
    gpu = re.search(r'"onnxruntime-gpu(?:\[[\w,]+\])?>=([\d.]+)', text).group(1)
    assert min(_version(cpu), _version(gpu)) == _version(MIN_ONNXRUNTIME)


def _tiny_torchscript(path: Path) -> Path:
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))
    torch.jit.script(net.eval()).save(str(path))
    return path


@pytest.fixture(scope="module")
def written(demo_exports, tmp_path_factory) -> dict[str, Path]:
    """Every kind of ONNX file the project writes: demo models, exports and derived graphs."""
    import onnx

    from medbench_fast.demo.sliding import build_sliding_net
    from medbench_fast.models.derived import derived_model
    from medbench_fast.models.postgraph import plan_postprocessing
    from medbench_fast.models.providers import file_sha256
    from medbench_fast.models.torchscript import export_torchscript

    root = tmp_path_factory.mktemp("written")
    files = dict(demo_exports)
    files["sliding"] = build_sliding_net(root / "sliding.onnx", patch=(16, 16, 16), width=4)
    files["torchscript"], _, _ = export_torchscript(_tiny_torchscript(root / "net.pt"), root / "ts.onnx",
                                                    input_shape=[1, 1, 32, 32], cache_dir=root / "cache")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MEDBENCH_EXPORT_CACHE", str(root / "derived-cache"))
    try:
        for name in ("segformer", "aiene", "baseline", "sliding", "torchscript"):
            path = files[name]
            spec = ModelSpec.from_json(spec_path_for(path))
            post = plan_postprocessing(spec, onnx.load(str(path), load_external_data=False))
            sha = file_sha256(path)
            files[f"{name}-fp16"] = derived_model(path, sha, fp16=True, post=None)
            if post is not None:
                files[f"{name}-fp16-post"] = derived_model(path, sha, fp16=True, post=post)
                files[f"{name}-post"] = derived_model(path, sha, fp16=False, post=post)
    finally:
        monkeypatch.undo()
    return files


def test_every_written_file_is_within_the_floor(written):
    import onnx
    import onnxruntime as ort

    assert {"segformer-post", "baseline-post", "sliding-post", "torchscript-post"} <= set(written)
    for name, path in written.items():
        model = onnx.load(str(path))
        assert problems(model) == [], name
        assert model.ir_version <= MAX_IR_VERSION, name
        default = [op.version for op in model.opset_import if op.domain in ("", "ai.onnx")]
        assert default and default[0] <= MAX_OPSETS[""], name
        if "fp16" not in name:  # the fp16 converter appends its input casts at the end (onnxruntime sorts)
            onnx.checker.check_model(model)
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_make_model_stamp_is_lowered(tmp_path):
    """``onnx.helper.make_model`` stamps the installed onnx's newest IR version (14 with onnx
    1.23), which onnxruntime-gpu 1.31 refuses; opsets above the floor are converted down."""
    import onnx
    from onnx import TensorProto, helper

    def relu_model(opset):
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 14
        return model

    saved = onnx.load(str(save_onnx(relu_model(17), tmp_path / "r.onnx")))
    assert saved.ir_version == MAX_IR_VERSION and problems(saved) == []
    lowered = lower(relu_model(MAX_OPSETS[""] + 2))
    assert [op.version for op in lowered.opset_import if op.domain == ""] == [MAX_OPSETS[""]]
    assert lowered.ir_version <= MAX_IR_VERSION
    x = np.array([-1.0, 2.0], np.float32)
    import onnxruntime as ort

    out = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(out[0], [0.0, 2.0])
    strange = relu_model(17)
    strange.opset_import.append(helper.make_opsetid("ai.onnx.ml", 9))
    with pytest.raises(ModelError, match=f"does not load in onnxruntime {MIN_ONNXRUNTIME}: opset ai.onnx.ml 9 > 4"):
        lower(strange, "strange.onnx")
