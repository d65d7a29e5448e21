"""Sliding-window blending on the device: weighted patches are summed where the model ran.

The model's graph already multiplies each patch's activations by the Gaussian blending
weight (:mod:`~medbench_fast.models.postgraph`, kind ``weighted``); its output stays on the
device (:meth:`~medbench_fast.models.iobinding.DeviceBinding.run_on_device`). Two small
ONNX graphs, run through IO binding on the same device, do what
:class:`~medbench_fast.models.strategies._Blender` does on the host:

- ``accumulate``: the slab (``C x depth x Y x X``, one patch deep, rolling along z) plus
  each patch of the batch padded into place (``Pad`` with the patch's offsets; items beyond
  the real patches of a last batch multiplied by 0);
- ``finalize``: the first ``k`` planes of the slab divided by the summed weights (kept on
  the host: one channel, updated as patches arrive) and turned into classes (argmax, or the
  0.5 / 0 threshold of one channel) as uint8, plus the slab moved on by ``k`` planes.

Only the class planes (uint8) come back to the host. The sums are added in the host path's
order, so the label maps equal it (tests compare both on the CPU device).
"""

from __future__ import annotations

import numpy as np

_CACHE: dict[tuple, bytes] = {}


def _accumulate_graph(channels: int, slab: tuple[int, int, int], patch: tuple[int, int, int], batch: int) -> bytes:
    from onnx import TensorProto, helper

    from medbench_fast.models.onnx_floor import lower

    nodes, inputs = [], [helper.make_tensor_value_info("slab", TensorProto.FLOAT, [channels, *slab]),
                         helper.make_tensor_value_info("patches", TensorProto.FLOAT, [batch, channels, *patch]),
                         helper.make_tensor_value_info("keep", TensorProto.FLOAT, [batch])]
    inits, terms = [], ["slab"]
    for i in range(batch):
        inputs.append(helper.make_tensor_value_info(f"pads{i}", TensorProto.INT64, [8]))
        inits.append(helper.make_tensor(f"i{i}", TensorProto.INT64, [], [i]))
        nodes += [helper.make_node("Gather", ["patches", f"i{i}"], [f"p{i}"], axis=0),
                  helper.make_node("Gather", ["keep", f"i{i}"], [f"k{i}"], axis=0),
                  helper.make_node("Mul", [f"p{i}", f"k{i}"], [f"m{i}"]),
                  helper.make_node("Pad", [f"m{i}", f"pads{i}"], [f"placed{i}"], mode="constant")]
        terms.append(f"placed{i}")
    nodes.append(helper.make_node("Sum", terms, ["slab_out"]))
    graph = helper.make_graph(nodes, "accumulate", inputs,
                              [helper.make_tensor_value_info("slab_out", TensorProto.FLOAT, [channels, *slab])], inits)
    return lower(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])).SerializeToString()


def _finalize_graph(channels: int, slab: tuple[int, int, int], threshold: float) -> bytes:
    from onnx import TensorProto, helper

    from medbench_fast.models.onnx_floor import lower

    depth = slab[0]
    classes = TensorProto.UINT8 if channels <= 256 else TensorProto.UINT16
    inits = [helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
             helper.make_tensor("depth", TensorProto.INT64, [1], [depth]),
             helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
             helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
             helper.make_tensor("thr", TensorProto.FLOAT, [], [threshold])]
    nodes = [helper.make_node("Slice", ["slab", "zero", "k", "axis1"], ["done"]),
             helper.make_node("Slice", ["norm", "zero", "k", "axis0"], ["done_norm"]),
             helper.make_node("Div", ["done", "done_norm"], ["scores"])]
    if channels == 1:
        nodes += [helper.make_node("Squeeze", ["scores", "axis0"], ["scores0"]),
                  helper.make_node("Greater", ["scores0", "thr"], ["above"]),
                  helper.make_node("Cast", ["above"], ["classes"], to=classes)]
    else:
        nodes += [helper.make_node("ArgMax", ["scores"], ["argmax"], axis=0, keepdims=0),
                  helper.make_node("Cast", ["argmax"], ["classes"], to=classes)]
    nodes += [helper.make_node("Slice", ["slab", "k", "depth", "axis1"], ["rest"]),
              helper.make_node("ConstantOfShape", ["zeros_shape"], ["zeros"],
                               value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
              helper.make_node("Concat", ["rest", "zeros"], ["slab_next"], axis=1)]
    graph = helper.make_graph(
        nodes, "finalize",
        [helper.make_tensor_value_info("slab", TensorProto.FLOAT, [channels, *slab]),
         helper.make_tensor_value_info("norm", TensorProto.FLOAT, list(slab)),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("zeros_shape", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("classes", classes, ["k", slab[1], slab[2]]),
         helper.make_tensor_value_info("slab_next", TensorProto.FLOAT, [channels, *slab])], inits)
    return lower(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])).SerializeToString()


class DeviceBlender:
    """Blends the weighted patches of one case on the device of ``binding`` (the model's
    :class:`~medbench_fast.models.iobinding.DeviceBinding`); :meth:`finish` returns the
    classes of the whole (padded) ``grid`` as a host array."""

    def __init__(self, ort, binding, providers: list, *, channels: int, grid: tuple[int, int, int],
                 patch: tuple[int, int, int], batch: int, threshold: float):
        self.binding, self.grid, self.patch, self.batch = binding, tuple(grid), tuple(patch), batch
        self.slab_shape = (patch[0], grid[1], grid[2])
        self.channels = channels
        key = (channels, self.slab_shape, self.patch, batch, threshold)
        if key not in _CACHE:
            _CACHE[key] = (_accumulate_graph(channels, self.slab_shape, self.patch, batch),
                           _finalize_graph(channels, self.slab_shape, threshold))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.accumulate = ort.InferenceSession(_CACHE[key][0], options, providers=providers)
        self.finalize = ort.InferenceSession(_CACHE[key][1], options, providers=providers)
        device, device_id = binding.device, binding.device_id
        self.slab = binding.ortvalue.ortvalue_from_numpy(np.zeros((channels, *self.slab_shape), np.float32),
                                                         device, device_id)
        self.norm = np.zeros(self.slab_shape, np.float32)
        self.out = np.zeros(self.grid, np.uint8 if channels <= 256 else np.uint16)
        self.base = 0

    def add(self, corners: list[tuple[int, int, int]], patches, weight: np.ndarray) -> None:
        """Add the weighted patches (a device ``OrtValue``, ``batch`` items; the first
        ``len(corners)`` real) at ``corners`` (non-decreasing z)."""
        pending = []
        for index, (z, y, x) in enumerate(corners):
            if z + self.patch[0] > self.base + self.slab_shape[0]:
                self._accumulate(pending, patches)
                pending = []
                self._flush(z)
            r = z - self.base
            self.norm[r:r + self.patch[0], y:y + self.patch[1], x:x + self.patch[2]] += weight
            pending.append((index, (r, y, x)))
        self._accumulate(pending, patches)

    def _accumulate(self, pending, patches) -> None:
        if not pending:
            return
        binding = self.accumulate.io_binding()
        keep = np.zeros(self.batch, np.float32)
        pads = {f"pads{i}": np.array([0, 0, 0, 0, 0, *(s - p for s, p in zip(self.slab_shape, self.patch))], np.int64)
                for i in range(self.batch)}
        for index, (r, y, x) in pending:
            keep[index] = 1.0
            pads[f"pads{index}"] = np.array([0, r, y, x, 0, self.slab_shape[0] - r - self.patch[0],
                                             self.slab_shape[1] - y - self.patch[1],
                                             self.slab_shape[2] - x - self.patch[2]], np.int64)
        binding.bind_ortvalue_input("slab", self.slab)
        binding.bind_ortvalue_input("patches", patches)
        binding.bind_cpu_input("keep", keep)
        for name, value in pads.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output("slab_out", self.binding.device, self.binding.device_id)
        self.accumulate.run_with_iobinding(binding)
        self.slab = binding.get_outputs()[0]

    def _run_finalize(self, k: int) -> np.ndarray:
        binding = self.finalize.io_binding()
        binding.bind_ortvalue_input("slab", self.slab)
        binding.bind_cpu_input("norm", self.norm)
        binding.bind_cpu_input("k", np.array([k], np.int64))
        binding.bind_cpu_input("zeros_shape", np.array([self.channels, k, *self.slab_shape[1:]], np.int64))
        binding.bind_output("classes", "cpu")
        binding.bind_output("slab_next", self.binding.device, self.binding.device_id)
        self.finalize.run_with_iobinding(binding)
        classes, self.slab = binding.get_outputs()
        return classes.numpy()

    def _flush(self, upto: int) -> None:
        k = upto - self.base
        self.out[self.base:upto] = self._run_finalize(k)
        keep = self.slab_shape[0] - k
        self.norm[:keep] = self.norm[k:]
        self.norm[keep:] = 0
        self.base = upto

    def finish(self) -> np.ndarray:
        k = min(self.slab_shape[0], self.grid[0] - self.base)
        self.out[self.base:self.base + k] = self._run_finalize(k)
        return self.out
