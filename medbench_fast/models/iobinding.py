"""IO binding reused across calls: pre-allocated device buffers per input-shape signature.

The first call of a signature (output names, input names, shapes and dtypes, and the values
of small integer inputs, which may set output sizes) creates one
binding, allocates each input on the device (small integer inputs in host memory, where
onnxruntime reads shape inputs) and binds it, and lets onnxruntime allocate
the outputs; those output buffers are then bound for every later call. A call copies the
inputs into their buffers (host to device), runs, and copies the outputs back (device to
host), each step timed when :attr:`DeviceBinding.split` is set. At most
:data:`MAX_SIGNATURES` signatures are kept (least recently used dropped), which bounds the
device memory held for shapes that come and go.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np

MAX_SIGNATURES = 8


def _is_shape_feed(value: np.ndarray) -> bool:
    """Small integer inputs (output sizes): kept in host memory, their values part of the signature."""
    return value.dtype.kind in "iu" and value.size <= 8


class DeviceBinding:
    """Runs ``session`` (an ``onnxruntime.InferenceSession``) through reused IO bindings.

    ``ortvalue``: the ``onnxruntime.OrtValue`` class (a stand-in in tests). ``times``:
    accumulated seconds ``h2d_s``, ``device_s``, ``d2h_s`` and ``calls`` while ``split``.
    """

    def __init__(self, session, ortvalue, device_id: int = 0, device: str = "cuda"):
        self.session = session
        self.ortvalue = ortvalue
        self.device_id = device_id
        self.device = device
        self.split = False
        self.times = {"h2d_s": 0.0, "device_s": 0.0, "d2h_s": 0.0, "calls": 0}
        self._entries: OrderedDict[tuple, list] = OrderedDict()

    def _entry(self, feeds: dict[str, np.ndarray], names: list[str]) -> list:
        key = (tuple(names), tuple((n, v.shape, v.dtype.str, v.tobytes() if _is_shape_feed(v) else None)
                                   for n, v in feeds.items()))
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        binding = self.session.io_binding()
        buffers = {}
        for name, value in feeds.items():
            device = "cpu" if _is_shape_feed(value) else self.device  # read on the host (Resize sizes)
            buffers[name] = self.ortvalue.ortvalue_from_shape_and_type(list(value.shape), value.dtype, device,
                                                                      self.device_id)
            binding.bind_ortvalue_input(name, buffers[name])
        for name in names:
            binding.bind_output(name, self.device, self.device_id)
        entry = [binding, buffers, None]
        self._entries[key] = entry
        if len(self._entries) > MAX_SIGNATURES:
            self._entries.popitem(last=False)
        return entry

    def run(self, feeds: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
        return self._run(feeds, names, copy_back=True)

    def run_on_device(self, feeds: dict[str, np.ndarray], names: list[str]) -> list:
        """:meth:`run` with the outputs left where they are: the reused output ``OrtValue``
        buffers on the device, valid until the next call of the same signature."""
        return self._run(feeds, names, copy_back=False)

    def _run(self, feeds: dict[str, np.ndarray], names: list[str], *, copy_back: bool) -> list:
        entry = self._entry(feeds, names)
        binding, buffers, outputs = entry
        t0 = time.perf_counter_ns()
        for name, value in feeds.items():
            buffers[name].update_inplace(np.ascontiguousarray(value))
        t1 = time.perf_counter_ns()
        self.session.run_with_iobinding(binding)
        t2 = time.perf_counter_ns()
        if outputs is None:  # fixed input shapes give fixed output shapes: keep these buffers
            outputs = binding.get_outputs()
            for name, value in zip(names, outputs):
                binding.bind_ortvalue_output(name, value)
            entry[2] = outputs
        if not copy_back:
            result = list(outputs)
        else:
            result = [value.numpy() for value in outputs]
            if self.device == "cpu":  # host buffers come back as views of the reused output buffers
                result = [array.copy() for array in result]
        t3 = time.perf_counter_ns()
        if self.split:
            self.times["h2d_s"] += (t1 - t0) / 1e9
            self.times["device_s"] += (t2 - t1) / 1e9
            self.times["d2h_s"] += (t3 - t2) / 1e9
            self.times["calls"] += 1
        return result
