"""Strict providers decide on onnxruntime's node placement: shape arithmetic on the CPU is
accepted (SegFormer, AI-ENE), tensor compute on the CPU is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medbench_fast.models.placement import (
    CPU,
    RECORD_ENTRY,
    Placement,
    expected_cuda_placement,
    parse_placement_log,
    read_assignment,
    refused,
    shape_nodes,
)
from medbench_fast.models.session import OrtSession, check_placement
from medbench_fast.models.spec import ModelError

CUDA = "CUDAExecutionProvider"


def optimized(path: Path, tmp_path: Path):
    """``path`` after onnxruntime's basic (provider-independent) optimisations: the graph the
    CUDA provider partitions."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.basic.onnx")
    ort.InferenceSession(str(path), options, providers=[CPU])
    return onnx.load(options.optimized_model_filepath)


def test_segformer_shape_nodes_on_the_cpu_pass(demo_exports, tmp_path):
    graph = optimized(demo_exports["segformer"], tmp_path)
    placement = expected_cuda_placement(graph)
    on_cpu = placement.summary()[CPU]
    assert on_cpu["nodes"] > 0 and set(on_cpu["op_types"]) <= {"Gather", "Concat", "Unsqueeze", "Slice", "Cast"}
    assert not any(op in ("MatMul", "Conv", "Softmax", "Resize") for _, op in placement.on(CPU))
    assert refused(placement, graph, CUDA) == []
    assert {"MatMul", "Conv", "Resize"} <= set(placement.summary()[CUDA]["op_types"])


def test_aiene_and_baseline_pass(demo_exports, tmp_path):
    for name in ("aiene", "baseline"):
        graph = optimized(demo_exports[name], tmp_path)
        placement = expected_cuda_placement(graph)
        assert refused(placement, graph, CUDA) == []


def test_conv_forced_onto_the_cpu_is_refused_by_name(demo_exports, tmp_path):
    graph = optimized(demo_exports["segformer"], tmp_path)
    conv = next(n.name for n in graph.graph.node if n.op_type == "Conv")
    matmul = next(n.name for n in graph.graph.node if n.op_type == "MatMul")
    placement = expected_cuda_placement(graph, cpu_only={conv, matmul})
    assert sorted(refused(placement, graph, CUDA)) == sorted([(conv, "Conv"), (matmul, "MatMul")])


def test_float_scale_arithmetic_on_shapes_is_shape_arithmetic():
    """interpolate(scale_factor=...) exports: Shape -> Cast(float) -> Mul -> Floor -> Cast ->
    Concat; floats computed from shapes are still shape arithmetic, a Mul of the image is not."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT, name="to_float"),
             helper.make_node("Mul", ["sf", "two"], ["sf2"], name="scale"),
             helper.make_node("Floor", ["sf2"], ["fl"], name="floor"),
             helper.make_node("Cast", ["fl"], ["size"], to=TensorProto.INT64, name="to_int"),
             helper.make_node("Mul", ["x", "two"], ["x2"], name="image_mul"),
             helper.make_node("Resize", ["x2", "", "", "size"], ["y"], name="resize")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, None, None])],
                              [numpy_helper.from_array(np.float32(2.0), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    assert shape_nodes(model) == {"shape", "to_float", "scale", "floor", "to_int"}
    placement = expected_cuda_placement(model)
    assert {name for name, _ in placement.on(CPU)} == {"to_float", "scale", "floor", "to_int"}
    assert refused(placement, model, CUDA) == []
    everything = Placement({CPU: [(n.name, n.op_type) for n in nodes]})
    assert refused(everything, model, CUDA) == [("image_mul", "Mul"), ("resize", "Resize")]


def test_placement_log_of_older_onnxruntime_is_read():
    """onnxruntime versions without the assignment report write it to the verbose session log."""
    log = (
        "2026-12-06 10:00:00.1 [V:onnxruntime:, session_state_utils.cc:1 f] Node placements\n"
        "2026-12-06 10:00:00.1 [V:onnxruntime:, session_state_utils.cc:1 f]  Node(s) placed on "
        "[CUDAExecutionProvider]. Number of nodes: 2\n"
        "2026-12-06 10:00:00.1 [V:onnxruntime:, session_state_utils.cc:1 f]   Conv (/conv/Conv)\n"
        "2026-12-06 10:00:00.1 [V:onnxruntime:, session_state_utils.cc:1 f]   Shape (/Shape)\n"
        "2026-12-06 10:00:00.1 [V:onnxruntime:, session_state_utils.cc:1 f]  Node(s) placed on "
        "[CPUExecutionProvider]. Number of nodes: 1\n"
        "2026-12-06 10:00:00.1 [V:onnxruntime:, session_state_utils.cc:1 f]   Gather (/Gather_1)\n"
        "2026-12-06 10:00:00.2 [V:onnxruntime:, session.cc:2 g] Saving initialized tensors.\n")
    placement = parse_placement_log(log)
    assert placement.nodes == {CUDA: [("/conv/Conv", "Conv"), ("/Shape", "Shape")], CPU: [("/Gather_1", "Gather")]}
    assert placement.summary()[CPU] == {"nodes": 1, "op_types": {"Gather": 1}}
    single = parse_placement_log("[V:onnxruntime:, x.cc:1 f] All nodes placed on [CUDAExecutionProvider]. "
                                 "Number of nodes: 7\n")
    assert single.summary() == {CUDA: {"nodes": 7, "op_types": None}} and single.on(CPU) == []
    assert parse_placement_log("nothing here\n") is None


def test_real_assignment_report_and_strict_refusal(demo_exports):
    """onnxruntime's own report on a real session; read as if CUDA had been asked for, every
    Conv on the CPU is refused and the message names them."""
    import onnxruntime as ort

    path = demo_exports["segformer"]
    options = ort.SessionOptions()
    options.add_session_config_entry(RECORD_ENTRY, "1")
    session = ort.InferenceSession(str(path), options, providers=[CPU])
    placement = read_assignment(session)
    assert placement is not None and placement.summary()[CPU]["nodes"] > 50

    class Reported(OrtSession):
        def __init__(self):
            self.path, self.providers_in_use, self.placement = path, [CUDA, CPU], placement

    with pytest.raises(ModelError, match=r"segformer.onnx: strict providers: \d+ node\(s\) that compute on tensors "
                                         r"would run on the CPU: .*Conv '.*--no-strict-providers"):
        check_placement(Reported(), path, ort, CUDA)
    import onnx

    shape = shape_nodes(onnx.load(str(path)))
    shape_only = Placement({CUDA: [], CPU: [(n, op) for n, op in placement.on(CPU) if n in shape]})
    assert len(shape_only.on(CPU)) > 0  # how many depends on the exporter (fewer with transformers 5)
    reported = Reported()
    reported.placement = shape_only
    check_placement(reported, path, ort, CUDA)  # shape arithmetic only: accepted
    reported.placement = None
    with pytest.raises(ModelError, match="did not report where it placed the nodes"):
        check_placement(reported, path, ort, CUDA)
    reported.placement, reported.providers_in_use = shape_only, [CPU]
    with pytest.raises(ModelError, match="CUDAExecutionProvider requested, CPUExecutionProvider in use"):
        check_placement(reported, path, ort, CUDA)


def test_older_onnxruntime_log_is_captured_from_file_descriptor_2():
    """Versions without the assignment report write the placement through their C++ logger
    (file descriptor 2): it is captured around session creation and parsed."""
    import os

    from medbench_fast.models.session import _stderr_captured

    line = (b"2026-12-06 10:00:00.1 [V:onnxruntime:, session_state_utils.cc:1 f]  Node(s) placed on "
            b"[CPUExecutionProvider]. Number of nodes: 1\n"
            b"2026-12-06 10:00:00.1 [V:onnxruntime:, session_state_utils.cc:1 f]   Conv (conv0)\n")
    with _stderr_captured(True) as captured:
        os.write(2, line)
    placement = parse_placement_log(captured.text)
    assert placement.on(CPU) == [("conv0", "Conv")]
    with _stderr_captured(False) as captured:
        pass
    assert captured.text == ""


def test_create_session_refuses_a_reported_conv_on_the_cpu(tmp_path, monkeypatch):
    """The whole strict path of ``create_session`` on a GPU session's report: shape
    arithmetic on the CPU passes and is recorded; a Conv placed there stops it, named."""
    from types import SimpleNamespace

    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    from medbench_fast.models.onnx_floor import save_onnx
    from medbench_fast.models.session import create_session

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Shape", ["c"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "i"], ["g"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["g", "a"], ["u"], name="unsqueeze"),
             helper.make_node("Concat", ["u", "minus1"], ["target"], name="concat", axis=0),
             helper.make_node("Reshape", ["c", "target"], ["y"], name="reshape")]
    inits = [numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w"),
             numpy_helper.from_array(np.array(0, np.int64), "i"), numpy_helper.from_array(np.array([0], np.int64), "a"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m"])], inits)
    path = save_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    replay = expected_cuda_placement(onnx.load(str(path)))
    assert {name for name, _ in replay.on(CPU)} == {"gather", "unsqueeze", "concat"}

    class Reporting:
        cpu: list = []

        def __init__(self, source, sess_options, providers, provider_options, **kwargs):
            self.options = sess_options

        def get_providers(self):
            return [CUDA, CPU]

        def get_inputs(self):
            return [SimpleNamespace(name="x", shape=["n", 1, 8, 8])]

        def get_outputs(self):
            return [SimpleNamespace(name="y", shape=None)]

        def get_provider_options(self):
            return {CUDA: {"device_id": "0"}, CPU: {}}

        def get_provider_graph_assignment_info(self):
            node = lambda name, op: SimpleNamespace(name=name, op_type=op, domain="")  # noqa: E731
            on_cpu = [node(n, op) for n, op in self.cpu]
            on_gpu = [node(n.name, n.op_type) for n in nodes if n.name not in {c for c, _ in self.cpu}]
            return [SimpleNamespace(ep_name=CUDA, get_nodes=lambda: on_gpu),
                    SimpleNamespace(ep_name=CPU, get_nodes=lambda: on_cpu)]

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(onnxruntime, "InferenceSession", Reporting)
    Reporting.cpu = [("gather", "Gather"), ("unsqueeze", "Unsqueeze"), ("concat", "Concat")]
    session = create_session(path, providers=("cuda",))
    assert session.placement.summary() == {
        CUDA: {"nodes": 3, "op_types": {"Conv": 1, "Reshape": 1, "Shape": 1}},
        CPU: {"nodes": 3, "op_types": {"Concat": 1, "Gather": 1, "Unsqueeze": 1}}}
    Reporting.cpu = [*Reporting.cpu, ("conv", "Conv")]
    with pytest.raises(ModelError, match=r"m.onnx: strict providers: 1 node\(s\) that compute on tensors would run "
                                         r"on the CPU: Conv 'conv' \(only shape arithmetic"):
        create_session(path, providers=("cuda",))
