"""GPU code paths exercised on the CPU: fixed shapes, reused IO binding (a recording fake
session), strict providers with the CPU wheel, provider options, in-graph post-processing."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medbench_fast.data.reader import Volume
from medbench_fast.models import ModelError, create_session, load_model
from medbench_fast.models.iobinding import DeviceBinding
from medbench_fast.models.onnx import fixed_input_shapes, trt_profile_shapes
from medbench_fast.models.postgraph import LABELS_OUTPUT, WEIGHTED_OUTPUT
from medbench_fast.models.providers import (
    GpuSettings,
    provider_options,
    provider_order,
    trt_cache_folder,
)
from medbench_fast.models.session import OrtSession
from medbench_fast.models.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[2]
TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


def spec_dict(strategy: dict, **output) -> dict:
    return {"name": "thr", "inputs": ["image"], "strategy": strategy,
            "output": {"kind": "segmentation_logits", "labels": {"1": 7}, **output},
            "intensity": [{"op": "window", "range": [-100.0, 100.0]}]}


def ct(rng, shape=(7, 20, 17), spacing=(2.0, 0.8, 0.7)) -> Volume:
    return Volume(array=rng.integers(-300, 300, size=shape).astype(np.int16), spacing=spacing)


class Recorder:
    """Wraps a real ``InferenceSession`` and records the input shapes of every call."""

    def __init__(self, session):
        self.session = session
        self.shapes = []

    def run(self, names, feeds):
        self.shapes.append({k: v.shape for k, v in feeds.items()})
        return self.session.run(names, feeds)

    def __getattr__(self, name):
        return getattr(self.session, name)


# -- fixed shapes ------------------------------------------------------------------------
@pytest.mark.parametrize("postprocess", ["graph", "host"])
def test_seven_slices_batch_four_sends_only_batches_of_four(make_threshold_onnx, rng, postprocess):
    model = load_model(make_threshold_onnx(spatial_rank=2), spec=spec_dict({"type": "slice2d", "batch_size": 4}),
                       postprocess=postprocess)
    recorder = model.session.session = Recorder(model.session.session)
    volume = ct(rng)
    pred = model.predict(volume)
    assert [s["image"][0] for s in recorder.shapes] == [4, 4]
    windowed = (np.clip(volume.array, -100, 100) + 100) / 200
    np.testing.assert_array_equal(pred.label_map.array, np.where(windowed > 0.5, 7, 0))


def test_sliding_window_last_batch_is_padded(make_threshold_onnx, rng):
    model = load_model(make_threshold_onnx(spatial_rank=3),
                       spec=spec_dict({"type": "sliding_window", "patch_size": [4, 8, 8], "batch_size": 4}))
    recorder = model.session.session = Recorder(model.session.session)
    volume = ct(rng, shape=(9, 12, 12))
    model.predict(volume)
    assert recorder.shapes and all(s["image"] == (4, 1, 4, 8, 8) for s in recorder.shapes)


def test_new_shapes_run_once_untimed_before_the_timed_call(make_threshold_onnx, rng):
    model = load_model(make_threshold_onnx(spatial_rank=2), spec=spec_dict({"type": "slice2d", "batch_size": 4}))
    model.warm_new_shapes = True  # the GPU default
    recorder = model.session.session = Recorder(model.session.session)
    model.predict(ct(rng))
    assert len(recorder.shapes) == 3 and len(model.shape_warmups) == 1  # one untimed first run, two timed
    model.predict(ct(rng))
    assert len(recorder.shapes) == 5 and len(model.shape_warmups) == 1  # a seen shape is not rerun
    model.predict(ct(rng, shape=(7, 10, 9)))
    assert len(model.shape_warmups) == 2


# -- in-graph post-processing ------------------------------------------------------------
def _three_class_graph(path: Path, spatial_rank: int, downsample: int = 1) -> Path:
    """Logits ``[m - 0.3, 0.5 - |m - 0.5|, 0.7 - m]`` from the channel mean ``m`` (3 classes, softmax-friendly)."""
    import onnx
    from onnx import TensorProto, helper

    dims = [f"d{i}" for i in range(spatial_rank)]
    nodes = [helper.make_node("ReduceMean", ["image", "axes"], ["m0"], keepdims=1)]
    m = "m0"
    if downsample > 1:
        nodes.append(helper.make_node("AveragePool", ["m0"], ["m"], kernel_shape=[downsample] * spatial_rank,
                                      strides=[downsample] * spatial_rank))
        m = "m"
    nodes += [helper.make_node("Sub", [m, "c3"], ["a"]),
              helper.make_node("Sub", [m, "c5"], ["d"]), helper.make_node("Abs", ["d"], ["ad"]),
              helper.make_node("Sub", ["c5", "ad"], ["b"]),
              helper.make_node("Sub", ["c7", m], ["c"]),
              helper.make_node("Concat", ["a", "b", "c"], ["logits"], axis=1)]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    inits += [helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("c3", 0.3), ("c5", 0.5), ("c7", 0.7))]
    graph = helper.make_graph(nodes, "three", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, *dims])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, *[f"o{i}" for i in dims]])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


CASES = [
    ({"type": "slice2d", "batch_size": 3}, 2, 1, {}),
    ({"type": "slice2d", "batch_size": 3}, 2, 2, {"activation": "softmax"}),
    ({"type": "slice2d", "batch_size": 3}, 2, 2, {"resample": "nearest"}),
    ({"type": "whole_volume", "input_size": [8, 16, 16]}, 3, 1, {"activation": "softmax"}),
    ({"type": "whole_volume", "input_size": [8, 16, 16]}, 3, 1, {"resample": "nearest"}),
    ({"type": "sliding_window", "patch_size": [4, 8, 8], "batch_size": 3}, 3, 1, {"activation": "softmax"}),
    ({"type": "sliding_window", "patch_size": [4, 8, 8], "batch_size": 3}, 3, 1, {}),
]


@pytest.mark.parametrize("strategy, rank, downsample, output", CASES)
def test_graph_postprocessing_equals_host_path(tmp_path, rng, strategy, rank, downsample, output):
    path = _three_class_graph(tmp_path / "three.onnx", rank, downsample)
    spec = spec_dict(strategy, labels={"1": 3, "2": 5}, **output)
    spec["intensity"] = [{"op": "window", "range": [-300.0, 300.0]}]
    graph = load_model(path, spec=spec, threads=1, postprocess="graph")
    host = load_model(path, spec=spec, threads=1, postprocess="host")
    assert graph.post is not None and host.post is None
    assert graph.session.output_names == [graph.post.result]
    volume = Volume(array=rng.normal(0, 120, size=(11, 21, 18)).astype(np.float32), spacing=(2.0, 0.8, 0.7))
    np.testing.assert_array_equal(graph.predict(volume).label_map.array, host.predict(volume).label_map.array)


def test_graph_returns_label_bytes_only(make_threshold_onnx, rng):
    model = load_model(make_threshold_onnx(spatial_rank=2, downsample=2), spec=spec_dict({"type": "slice2d"}))
    out = model.session.run({"image": np.zeros((2, 1, 8, 6), np.float32), **model.post.size_feed(2, (8, 6))})
    assert model.session.output_names == [LABELS_OUTPUT] and out[0].dtype == np.uint8 and out[0].shape == (2, 8, 6)
    sliding = spec_dict({"type": "sliding_window", "patch_size": [4, 8, 8]})
    path3 = make_threshold_onnx(name="p.onnx", spatial_rank=3)
    assert load_model(path3, spec=sliding, postprocess="graph").session.output_names == [WEIGHTED_OUTPUT]
    assert load_model(path3, spec=sliding, postprocess="host").post is None


def test_sliding_window_blends_in_a_slab(make_threshold_onnx, rng, monkeypatch):
    """The blending buffer holds one patch depth of planes, not the whole volume."""
    from medbench_fast.models import strategies

    depths = []
    real = strategies._Blender.__init__

    def spy(self, channels, grid, depth, emit):
        depths.append((depth, grid))
        real(self, channels, grid, depth, emit)

    monkeypatch.setattr(strategies._Blender, "__init__", spy)
    model = load_model(make_threshold_onnx(spatial_rank=3),
                       spec=spec_dict({"type": "sliding_window", "patch_size": [4, 8, 8], "overlap": 0.5}))
    volume = ct(rng, shape=(23, 12, 12))
    pred = model.predict(volume)
    assert depths == [(4, (23, 12, 12))]
    windowed = (np.clip(volume.array, -100, 100) + 100) / 200
    np.testing.assert_array_equal(pred.label_map.array, np.where(windowed > 0.5, 7, 0))


@pytest.mark.parametrize("output, channels", [({"activation": "softmax"}, 3), ({}, 3), ({}, 1),
                                             ({"activation": "sigmoid"}, 1)])
def test_sliding_window_blend_on_the_device_equals_the_host_blend(tmp_path, make_threshold_onnx, rng, output,
                                                                  channels, monkeypatch):
    """Through the reused IO binding, patches stay on the device and are summed there (here
    onnxruntime's CPU device): only class planes come back, and they equal the host blend."""
    import onnxruntime

    from medbench_fast.models import device_blend, strategies

    if channels == 3:
        path = _three_class_graph(tmp_path / "three.onnx", 3)
        spec = spec_dict({"type": "sliding_window", "patch_size": [4, 8, 8], "batch_size": 3, "overlap": 0.5},
                         labels={"1": 3, "2": 5}, **output)
        spec["intensity"] = [{"op": "window", "range": [-300.0, 300.0]}]
    else:
        path = make_threshold_onnx(name="one.onnx", spatial_rank=3)
        spec = spec_dict({"type": "sliding_window", "patch_size": [4, 8, 8], "batch_size": 3, "overlap": 0.5},
                         **output)
    device = load_model(path, spec=spec, threads=1)
    host = load_model(path, spec=spec, threads=1)
    device.session.binding = DeviceBinding(device.session.session, onnxruntime.OrtValue, device="cpu")
    blenders = []
    real = device_blend.DeviceBlender.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        blenders.append(self)

    monkeypatch.setattr(device_blend.DeviceBlender, "__init__", spy)
    host_blend = strategies._Blender.add
    for shape in [(23, 12, 12), (9, 21, 18), (4, 8, 8)]:
        volume = Volume(array=rng.normal(0, 120, size=shape).astype(np.float32), spacing=(2.0, 0.8, 0.7))
        expected = host.predict(volume).label_map.array
        monkeypatch.setattr(strategies._Blender, "add", lambda *a, **k: pytest.fail("host blend used"))
        np.testing.assert_array_equal(device.predict(volume).label_map.array, expected)
        monkeypatch.setattr(strategies._Blender, "add", host_blend)
    assert len(blenders) == 3 and blenders[0].slab_shape == (4, 12, 12)


# -- IO binding ----------------------------------------------------------------------------
class FakeOrtValue:
    created = []

    def __init__(self, shape, dtype, device, device_id):
        self.shape, self.dtype, self.device, self.device_id = tuple(shape), dtype, device, device_id
        self.updates = 0
        self.value = np.zeros(shape, dtype)

    @classmethod
    def ortvalue_from_shape_and_type(cls, shape, dtype, device, device_id):
        value = cls(shape, dtype, device, device_id)
        cls.created.append(value)
        return value

    def update_inplace(self, array):
        assert array.shape == self.shape
        self.value[...] = array
        self.updates += 1

    def numpy(self):
        return self.value.copy()


class FakeBinding:
    def __init__(self, log):
        self.log = log
        self.outputs = {}

    def bind_ortvalue_input(self, name, value):
        self.log.append(("bind_input", name, value.shape, value.device))

    def bind_output(self, name, device, device_id):
        self.log.append(("bind_output_alloc", name, device))

    def bind_ortvalue_output(self, name, value):
        self.log.append(("bind_output_buffer", name))

    def get_outputs(self):
        return [FakeOrtValue((2, 2), np.float32, "cuda", 0)]


class FakeCudaSession:
    """Records what the session is asked to do, as the CUDA path would on a GPU."""

    def __init__(self):
        self.log = []

    def get_providers(self):
        return [CUDA, CPU]

    def get_inputs(self):
        return [SimpleNamespace(name="image", shape=["N", 1, 4, 4])]

    def get_outputs(self):
        return [SimpleNamespace(name="logits", shape=["N", 2, 4, 4])]

    def io_binding(self):
        self.log.append(("io_binding",))
        return FakeBinding(self.log)

    def run_with_iobinding(self, binding):
        self.log.append(("run",))

    def run(self, names, feeds):
        raise AssertionError("the CUDA path must go through IO binding")


def test_cuda_session_reuses_binding_and_device_buffers(tmp_path):
    fake = FakeCudaSession()
    session = OrtSession(fake, tmp_path / "m.onnx", [CUDA], ortvalue=FakeOrtValue)
    assert session.device == "cuda" and isinstance(session.binding, DeviceBinding)
    session.binding.split = True
    x = np.ones((1, 1, 4, 4), np.float32)
    for _ in range(3):
        session.run({"image": x})
    assert fake.log.count(("io_binding",)) == 1
    assert fake.log.count(("bind_input", "image", (1, 1, 4, 4), "cuda")) == 1
    assert fake.log.count(("bind_output_buffer", "logits")) == 1 and fake.log.count(("run",)) == 3
    inputs = [v for v in FakeOrtValue.created if v.shape == (1, 1, 4, 4)]
    assert len(inputs) == 1 and inputs[0].updates == 3
    assert session.binding.times["calls"] == 3 and all(session.binding.times[k] >= 0 for k in ("h2d_s", "device_s", "d2h_s"))
    session.run({"image": np.ones((2, 1, 4, 4), np.float32)})  # a new shape gets its own binding
    assert fake.log.count(("io_binding",)) == 2


def test_model_on_cuda_session_pads_and_binds(tmp_path, rng):
    """The strategy path on a (fake) CUDA session: one binding for the fixed batch shape."""
    from medbench_fast.models.strategies import SliceModel

    class Session(FakeCudaSession):
        def get_inputs(self):
            return [SimpleNamespace(name="image", shape=["N", 1, "h", "w"])]

    fake = Session()
    session = OrtSession(fake, tmp_path / "m.onnx", [CUDA], ortvalue=FakeOrtValue)
    spec = ModelSpec.from_dict(spec_dict({"type": "slice2d", "batch_size": 4}))

    class Outputs(FakeBinding):
        def get_outputs(self):
            return [FakeOrtValue((4, 2, 20, 17), np.float32, "cuda", 0)]

    fake.io_binding = lambda: (fake.log.append(("io_binding",)), Outputs(fake.log))[1]
    model = SliceModel(session, spec)
    assert model.warm_new_shapes
    model.predict(ct(rng))
    assert fake.log.count(("io_binding",)) == 1 and fake.log.count(("run",)) == 3  # 1 untimed + 2 timed


def test_bench_models_adapter_cost_on_a_cuda_session(tmp_path, rng):
    """bench_models' adapter stand-in used to lack ``io_binding`` and crashed on the first GPU batch."""
    from medbench_fast.models.strategies import SliceModel

    spec_ = importlib.util.spec_from_file_location("bench_models", ROOT / "bench" / "bench_models.py")
    bench = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(bench)
    session = OrtSession(FakeCudaSession(), tmp_path / "m.onnx", [CUDA], ortvalue=FakeOrtValue)
    model = SliceModel(session, ModelSpec.from_dict(spec_dict({"type": "slice2d", "batch_size": 4})))
    assert bench.adapter_own_cost(model, [np.zeros((4, 1, 4, 4), np.float32)], repeat=5) >= 0
    assert model.session is session


# -- strict providers ------------------------------------------------------------------------
def test_strict_cuda_on_the_cpu_wheel_stops_with_the_reason(make_threshold_onnx):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    with pytest.raises(ModelError, match="strict providers: CUDAExecutionProvider is not in this onnxruntime build"):
        create_session(make_threshold_onnx(spatial_rank=2), providers=("cuda", "cpu"))
    with pytest.raises(ModelError, match="--no-strict-providers"):
        load_model(make_threshold_onnx(spatial_rank=2), providers=("tensorrt",), spec=spec_dict({"type": "slice2d"}))


def test_strict_names_missing_libraries(monkeypatch):
    from medbench_fast.models import providers

    ort = SimpleNamespace(get_available_providers=lambda: [CUDA, CPU], __version__="1.0", cuda_version="12.8")
    monkeypatch.setattr(providers, "missing_libraries", lambda provider, cuda: ["libcudnn.so.9", "libcublasLt.so.12"])
    assert "libraries missing: CUDAExecutionProvider needs libcudnn.so.9, libcublasLt.so.12" in \
        providers.explain_unavailable(ort, CUDA)


def test_no_gpu_visible_and_model_refused_are_told_apart(monkeypatch, make_threshold_onnx):
    """Libraries found: no driver / no GPU / an ordinal beyond them is "no GPU visible"; with a
    GPU there, a session-creation error is "model refused by onnxruntime"."""
    import onnxruntime

    from medbench_fast.models import providers

    ort = SimpleNamespace(get_available_providers=lambda: [CUDA, CPU], __version__="1.0", cuda_version="13.0")
    monkeypatch.setattr(providers, "missing_libraries", lambda provider, cuda: [])
    monkeypatch.setattr(providers, "cuda_device_count", lambda: None)
    assert providers.explain_unavailable(ort, CUDA).startswith("no GPU visible: no NVIDIA driver")
    monkeypatch.setattr(providers, "cuda_device_count", lambda: 1)
    assert "device_id 1 asked for" in providers.explain_unavailable(ort, CUDA, device_id=1)
    assert providers.explain_unavailable(ort, CUDA) is None
    assert "did not start although its libraries and a GPU are visible" in providers.why_not_in_use(ort, CUDA)

    seen = {}

    class Refusing:
        def __init__(self, source, sess_options, providers, provider_options, **kwargs):
            seen.update(providers=providers, kwargs=kwargs)
            raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Unsupported model IR version: 14, max supported IR "
                               "version: 13")

        get_provider_graph_assignment_info = None

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(onnxruntime, "InferenceSession", Refusing)
    with pytest.raises(ModelError, match="model refused by onnxruntime on CUDAExecutionProvider: .*IR version: 14"):
        create_session(make_threshold_onnx(spatial_rank=2), providers=("cuda",))
    assert seen["providers"] == [CUDA, CPU] and seen["kwargs"] == {"enable_fallback": 0}
    monkeypatch.setattr(providers, "cuda_device_count", lambda: 0)
    with pytest.raises(ModelError, match="CUDAExecutionProvider: no GPU visible: the driver shows 0 GPU"):
        create_session(make_threshold_onnx(spatial_rank=2), providers=("cuda",))


def test_strict_session_keeps_cpu_last_and_records_placement(monkeypatch, make_threshold_onnx):
    """Strict GPU sessions keep CPU last (for shape arithmetic), ask onnxruntime to record the
    placement and no longer set its no-fallback entry."""
    import onnxruntime

    seen = {}

    class Refusing:
        def __init__(self, source, sess_options, providers, provider_options, **kwargs):
            seen.update(providers=providers, options=provider_options, session_options=sess_options)
            raise RuntimeError("stop here")

        get_provider_graph_assignment_info = None

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(onnxruntime, "InferenceSession", Refusing)
    with pytest.raises(ModelError):
        create_session(make_threshold_onnx(spatial_rank=2), providers=("tensorrt",),
                       gpu=GpuSettings(cudnn_search="heuristic", trt_cache_dir=None))
    assert seen["providers"] == [TRT, CUDA, CPU]
    assert seen["session_options"].get_session_config_entry("session.record_ep_graph_assignment_info") == "1"
    assert seen["options"][1] == {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "0"}
    assert seen["options"][0]["trt_engine_cache_enable"] == "True"


# -- provider options ------------------------------------------------------------------------
def test_provider_order():
    assert provider_order([TRT], strict=False) == [TRT, CUDA, CPU]
    assert provider_order([TRT, CPU], strict=True) == [TRT, CUDA, CPU]
    assert provider_order([CUDA, TRT], strict=False) == [CUDA, TRT, CPU]
    assert provider_order([CPU], strict=True) == [CPU]


def test_tensorrt_options_caches_and_profile_shapes(tmp_path):
    cache = trt_cache_folder(tmp_path, "ab" * 32, "NVIDIA H100 80GB HBM3")
    assert cache.parent == tmp_path and cache.name.startswith("abababababababab-nvidia-h100-80gb-hbm3-trt")
    opts = provider_options([TRT, CUDA], GpuSettings(device_id=1, tf32=True), fp16=True, trt_cache=cache,
                            trt_shapes={"image": [8, 1, 512, 512], "node": [8, 32, 32, 32, 1]})
    assert opts[0] == {
        "device_id": "1", "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache),
        "trt_profile_min_shapes": "image:8x1x512x512,node:8x32x32x32x1",
        "trt_profile_opt_shapes": "image:8x1x512x512,node:8x32x32x32x1",
        "trt_profile_max_shapes": "image:8x1x512x512,node:8x32x32x32x1"}
    assert opts[1] == {"device_id": "1", "cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "1"}
    with pytest.raises(ModelError, match="cudnn_search"):
        GpuSettings(cudnn_search="fast").validate()


def test_profile_shapes_come_from_the_spec(make_threshold_onnx):
    import onnx

    graph = onnx.load(str(make_threshold_onnx(spatial_rank=2)))
    slices = ModelSpec.from_dict(spec_dict({"type": "slice2d", "batch_size": 8, "input_size": [64, 48]}))
    assert fixed_input_shapes(slices, graph) == {"image": [8, 1, 64, 48]}
    free = ModelSpec.from_dict(spec_dict({"type": "slice2d"}))
    assert fixed_input_shapes(free, graph) is None  # slice size known only per case
    graph3 = onnx.load(str(make_threshold_onnx(name="p.onnx", spatial_rank=3)))
    patches = ModelSpec.from_dict(spec_dict({"type": "sliding_window", "patch_size": [16, 32, 32], "batch_size": 2}))
    assert fixed_input_shapes(patches, graph3) == {"image": [2, 1, 16, 32, 32]}
    whole = ModelSpec.from_dict(spec_dict({"type": "whole_volume", "input_size": [8, 16, 16]}))
    assert fixed_input_shapes(whole, graph3) == {"image": [1, 1, 8, 16, 16]}


def test_tensorrt_profiles_cover_the_post_processing_input(make_threshold_onnx):
    """The in-graph post-processing adds the int64 output-size input: TensorRT refuses a
    profile that leaves a dynamic input out ("User needs to provide all the dynamic shape
    inputs"), so it gets a range of values; a dynamic input nothing sizes drops the profile."""
    import onnx
    from onnx import TensorProto, helper

    from medbench_fast.models.postgraph import SIZE_INPUT, append_postprocessing, plan_postprocessing

    graph3 = onnx.load(str(make_threshold_onnx(name="w.onnx", spatial_rank=3)))
    whole = ModelSpec.from_dict(spec_dict({"type": "whole_volume", "input_size": [8, 16, 16]}))
    post = plan_postprocessing(whole, graph3)
    assert post is not None and post.kind == "labels"
    profiles = trt_profile_shapes(whole, graph3, post)
    assert profiles["image"] == ([1, 1, 8, 16, 16],) * 3
    assert profiles[SIZE_INPUT] == ([1, 2, 1, 1, 1], [1, 2, 8, 16, 16], [1, 2, 1024, 1024, 1024])
    options = provider_options([TRT, CUDA], GpuSettings(), fp16=False, trt_shapes=profiles)[0]
    assert options["trt_profile_min_shapes"] == f"image:1x1x8x16x16,{SIZE_INPUT}:1x2x1x1x1"
    assert options["trt_profile_max_shapes"] == f"image:1x1x8x16x16,{SIZE_INPUT}:1x2x1024x1024x1024"
    derived = append_postprocessing(onnx.load(str(make_threshold_onnx(name="d.onnx", spatial_rank=3))), post)
    assert {v.name for v in derived.graph.input} == set(profiles)  # every input of the graph that runs
    graph3.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["n", 3]))
    assert trt_profile_shapes(whole, graph3, post) is None


# -- fp16 ------------------------------------------------------------------------------------------
def test_fp16_converts_whatever_the_providers(make_threshold_onnx):
    import onnx

    with pytest.warns(RuntimeWarning, match="TensorrtExecutionProvider"):
        session = create_session(make_threshold_onnx(spatial_rank=2), providers=("tensorrt", "cpu"), fp16=True,
                                 gpu=GpuSettings(strict=False))
    assert session.precision == "fp16" and session.providers_in_use == [CPU]
    loaded = onnx.load(session.session._model_path)  # the derived file the session runs
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in loaded.graph.initializer)


def test_fp16_conversion_failure_is_a_model_error(make_threshold_onnx, monkeypatch):
    import onnxruntime.transformers.float16 as f16

    def fail(*args, **kwargs):
        raise ValueError("Message onnx.ModelProto exceeds maximum protobuf size of 2GB: 2400000000")

    monkeypatch.setattr(f16, "convert_float_to_float16", fail)
    with pytest.raises(ModelError, match="cannot be converted to fp16 .*2GB"):
        create_session(make_threshold_onnx(spatial_rank=2), fp16=True)


def test_device_binding_against_the_real_onnxruntime_api(make_threshold_onnx, rng):
    """The same reused binding on onnxruntime's own IOBinding and OrtValue (device "cpu" here)."""
    import onnxruntime

    session = create_session(make_threshold_onnx(spatial_rank=2, downsample=2), threads=1).session
    binding = DeviceBinding(session, onnxruntime.OrtValue, device="cpu")
    binding.split = True
    for _ in range(2):
        for shape in [(4, 1, 8, 6), (2, 1, 4, 4)]:
            x = rng.random(shape, dtype=np.float32)
            ours = binding.run({"image": x}, ["logits"])[0]
            np.testing.assert_array_equal(ours, session.run(["logits"], {"image": x})[0])
    assert len(binding._entries) == 2 and binding.times["calls"] == 4


def test_model_through_the_reused_binding_equals_plain_run(make_threshold_onnx, rng):
    """Label-map graphs (with the int64 output-size input) through the binding, cases of two grids."""
    import onnxruntime

    path = make_threshold_onnx(spatial_rank=2, downsample=2)
    spec = spec_dict({"type": "slice2d", "batch_size": 4})
    bound, plain = load_model(path, spec=spec, threads=1), load_model(path, spec=spec, threads=1)
    bound.session.binding = DeviceBinding(bound.session.session, onnxruntime.OrtValue, device="cpu")
    for shape in [(7, 20, 16), (5, 12, 10), (7, 20, 16)]:
        volume = ct(rng, shape=shape)
        np.testing.assert_array_equal(bound.predict(volume).label_map.array, plain.predict(volume).label_map.array)
    assert len(bound.session.binding._entries) == 2


@pytest.mark.parametrize("output", [{}, {"activation": "softmax"}, {"resample": "nearest"}, {"activation": "sigmoid"}])
def test_appended_nodes_hold_no_shape_arithmetic(tmp_path, output):
    """The CUDA provider leaves shape subgraphs (Shape -> Slice -> Concat ...) to the CPU,
    which strict providers refuse: the appended nodes must not need one."""
    import onnx

    from medbench_fast.models.postgraph import append_postprocessing, plan_postprocessing

    path = _three_class_graph(tmp_path / "three.onnx", 2, downsample=2)
    spec = ModelSpec.from_dict(spec_dict({"type": "slice2d"}, labels={"1": 3}, **output))
    model = onnx.load(str(path))
    before = len(model.graph.node)
    append_postprocessing(model, plan_postprocessing(spec, model))
    onnx.checker.check_model(model)
    added = {n.op_type for n in model.graph.node[before:]}
    assert not added & {"Shape", "Size", "Slice", "Concat", "Gather", "Unsqueeze", "ConstantOfShape"}
    assert added <= {"ReduceMax", "Sub", "Exp", "ReduceSum", "Div", "Sigmoid", "Resize", "ArgMax", "Greater", "Cast",
                     "Squeeze"}


def test_tensorrt_version_from_the_loaded_library(monkeypatch):
    """A system TensorRT (no pip metadata) keys its caches by libnvinfer's own version."""
    from importlib import metadata

    from medbench_fast import environment
    from medbench_fast.models import providers

    assert environment.decode_trt_version(100300) == "10.3.0"
    assert environment.decode_trt_version(8601) == "8.6.1"

    def no_dist(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(environment.metadata, "version", no_dist)

    class Lib:
        @staticmethod
        def getInferLibVersion():
            return 101300

    monkeypatch.setattr(environment.ctypes, "CDLL", lambda name: Lib() if name == "libnvinfer.so.10" else
                        (_ for _ in ()).throw(OSError(name)))
    assert providers.tensorrt_version() == "10.13.0"
    monkeypatch.setattr(environment.ctypes, "CDLL", lambda name: (_ for _ in ()).throw(OSError(name)))
    assert providers.tensorrt_version() == "unknown"
