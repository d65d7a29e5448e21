"""Post-processing appended to a model's ONNX graph, so it runs where the model runs.

Two kinds, chosen by the strategy (:func:`plan_postprocessing`):

- ``labels`` (``slice2d``, ``whole_volume``): activation, resize of the scores to the grid
  given at run time (linear, on scores), then argmax (or the 0.5 / 0 threshold of a
  single channel); or argmax first and nearest resize of the classes
  (``output.resample: nearest``). The one resize takes its full output shape
  (``N, C, *spatial``, or ``N, 1, *spatial`` for classes: :meth:`PostOps.size_feed`) from
  the extra int64 input :data:`SIZE_INPUT`, so the graph holds no shape arithmetic, which
  the CUDA provider would place on the CPU (and strict providers refuse). The graph returns class indices
  ``(N, *spatial)`` as uint8 (uint16 above 256 classes) in :data:`LABELS_OUTPUT`: 1/C of
  the float bytes, and no host pass over the scores.
- ``weighted`` (``sliding_window``): activation times the Gaussian blending weight of the
  patch, in :data:`WEIGHTED_OUTPUT`; the host only adds patches up.

The resizes follow :func:`medbench_fast.models.transforms.resize`: ``half_pixel``
coordinates, edge clamping, and nearest as ``floor((i + 0.5) * n_in / n_out)``
(``round_prefer_ceil``). Graphs whose default-domain opset is below 13 (single-axis
Softmax, Squeeze axes as input) or whose score output has an unknown channel count (taken
from the spec's ``source.id2label`` for Hugging Face exports) keep the host path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medbench_fast.models.spec import ModelSpec

SIZE_INPUT = "medbench_size"
LABELS_OUTPUT = "medbench_labels"
WEIGHTED_OUTPUT = "medbench_weighted"
MIN_OPSET = 13
#: Bumped whenever the appended nodes change, so derived files in the cache are rebuilt.
GRAPH_VERSION = 3


@dataclass(frozen=True)
class PostOps:
    """What to append after ``output`` (a ``(N, C, *spatial)`` float score tensor)."""

    kind: str  # "labels" or "weighted"
    output: str
    activation: str
    channels: int
    spatial_rank: int
    resample: str = "linear"
    weight: tuple[int, ...] | None = None  # patch size of the Gaussian weight (kind "weighted")
    sigma_scale: float = 0.125

    @property
    def result(self) -> str:
        return LABELS_OUTPUT if self.kind == "labels" else WEIGHTED_OUTPUT

    def size_feed(self, batch: int, spatial) -> dict:
        """The :data:`SIZE_INPUT` feed for ``batch`` items resized to ``spatial``."""
        channels = self.channels if self.resample == "linear" else 1
        return {SIZE_INPUT: np.asarray([batch, channels, *spatial], np.int64)}

    def describe(self) -> dict:
        return {"version": GRAPH_VERSION, "kind": self.kind, "output": self.output, "activation": self.activation, "channels": self.channels,
                "resample": self.resample, "weight": list(self.weight) if self.weight else None,
                "sigma_scale": self.sigma_scale}


def plan_postprocessing(spec: ModelSpec, graph) -> PostOps | None:
    """The :class:`PostOps` ``spec`` allows on ``graph`` (an ``onnx.ModelProto`` read without
    external data), or None where the host path must stay."""
    s, o = spec.strategy, spec.output
    if o.kind != "segmentation_logits" or s.type not in ("slice2d", "whole_volume", "sliding_window"):
        return None
    opset = next((op.version for op in graph.opset_import if op.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        return None
    outputs = {v.name: v for v in graph.graph.output}
    name = o.name or graph.graph.output[0].name
    value = outputs.get(name)
    if value is None or value.type.tensor_type.elem_type != 1:  # float32 scores only
        return None
    dims = value.type.tensor_type.shape.dim
    rank = 2 if s.type == "slice2d" else 3
    if len(dims) != rank + 2:
        return None
    if dims[1].HasField("dim_value"):
        channels = int(dims[1].dim_value)
    elif isinstance(spec.source.get("id2label"), dict) and spec.source["id2label"]:  # Hugging Face exports
        channels = len(spec.source["id2label"])
    else:
        return None
    if s.type == "sliding_window":
        inputs = {v.name: v.type.tensor_type.shape.dim for v in graph.graph.input}
        in_dims = list(inputs.get(spec.inputs[0], []))
        in_spatial = in_dims[2:] if spec.layout == "channels_first" else in_dims[1:-1]
        for axis_dims in (list(dims[2:]), in_spatial):
            fixed = [d.dim_value if d.HasField("dim_value") else None for d in axis_dims]
            if len(fixed) != 3 or any(f is not None and f != p for f, p in zip(fixed, s.patch_size)):
                return None  # not patch-sized: the host path reports the mismatch
        return PostOps("weighted", name, o.activation, channels, rank, weight=tuple(s.patch_size),
                       sigma_scale=s.sigma_scale)
    return PostOps("labels", name, o.activation, channels, rank, resample=o.resample)


def append_postprocessing(model, ops: PostOps):
    """Return ``model`` (``onnx.ModelProto``, changed in place) with ``ops`` appended; the
    score output is replaced by :attr:`PostOps.result`."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    nodes, inits = [], []
    x = ops.output
    if ops.activation == "softmax":  # spelled out: onnxruntime's Softmax transposes for a non-last axis (5x slower)
        opset = next((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 0)
        inits.append(helper.make_tensor("mb_axes", TensorProto.INT64, [1], [1]))
        nodes += [helper.make_node("ReduceMax", [x, "mb_axes"], ["mb_max"], keepdims=1) if opset >= 18 else
                  helper.make_node("ReduceMax", [x], ["mb_max"], axes=[1], keepdims=1),
                  helper.make_node("Sub", [x, "mb_max"], ["mb_shifted"]),
                  helper.make_node("Exp", ["mb_shifted"], ["mb_exp"]),
                  helper.make_node("ReduceSum", ["mb_exp", "mb_axes"], ["mb_sum"], keepdims=1),
                  helper.make_node("Div", ["mb_exp", "mb_sum"], ["mb_act"])]
        x = "mb_act"
    elif ops.activation == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", [x], ["mb_act"]))
        x = "mb_act"
    if ops.kind == "weighted":
        from medbench_fast.models.transforms import gaussian_importance

        weight = gaussian_importance(ops.weight, ops.sigma_scale)[None, None]
        inits.append(numpy_helper.from_array(np.ascontiguousarray(weight, np.float32), "mb_weight"))
        nodes.append(helper.make_node("Mul", [x, "mb_weight"], [WEIGHTED_OUTPUT]))
        out_type = helper.make_tensor_value_info(WEIGHTED_OUTPUT, TensorProto.FLOAT,
                                                 ["N", ops.channels, *ops.weight])
    else:
        class_type = TensorProto.UINT8 if ops.channels <= 256 else TensorProto.INT32
        final_type = TensorProto.UINT8 if ops.channels <= 256 else TensorProto.UINT16
        inits += [helper.make_tensor("mb_axis1", TensorProto.INT64, [1], [1]),
                  helper.make_tensor("mb_thr", TensorProto.FLOAT, [],
                                     [0.5 if ops.activation != "none" else 0.0])]
        if ops.resample == "linear":
            nodes.append(helper.make_node("Resize", [x, "", "", SIZE_INPUT], ["mb_resized"], mode="linear",
                                          coordinate_transformation_mode="half_pixel"))
            x = "mb_resized"
        if ops.channels == 1:
            nodes += [helper.make_node("Greater", [x, "mb_thr"], ["mb_bool"]),
                      helper.make_node("Cast", ["mb_bool"], ["mb_cls"], to=class_type)]
        else:
            nodes += [helper.make_node("ArgMax", [x], ["mb_argmax"], axis=1, keepdims=1),
                      helper.make_node("Cast", ["mb_argmax"], ["mb_cls"], to=class_type)]
        cls = "mb_cls"
        if ops.resample != "linear":
            nodes.append(helper.make_node("Resize", [cls, "", "", SIZE_INPUT], ["mb_cls_resized"],
                                          mode="nearest", coordinate_transformation_mode="half_pixel",
                                          nearest_mode="round_prefer_ceil"))
            cls = "mb_cls_resized"
        nodes.append(helper.make_node("Squeeze", [cls, "mb_axis1"], ["mb_squeezed"]))
        nodes.append(helper.make_node("Cast", ["mb_squeezed"], [LABELS_OUTPUT], to=final_type))
        g.input.append(helper.make_tensor_value_info(SIZE_INPUT, TensorProto.INT64, [ops.spatial_rank + 2]))
        out_type = helper.make_tensor_value_info(LABELS_OUTPUT, final_type, ["N", *[f"s{i}" for i in range(ops.spatial_rank)]])
    g.node.extend(nodes)
    g.initializer.extend(inits)
    kept = [v for v in g.output if v.name != ops.output]
    del g.output[:]
    g.output.extend([*kept, out_type])
    return model
