"""Convert a Keras-2 ``.h5`` model to ONNX with ``onnx.helper`` (no TensorFlow, no Keras).

Inputs keep Keras' channels-last layout and names, with a dynamic batch axis ``batch``;
inside the graph, tensors with spatial axes are channels-first (``N, C, *spatial``) as ONNX
operators expect, and are transposed back before ``Flatten`` and at outputs so that the
numbers equal Keras'. 'same' padding is TensorFlow's (extra pixel after), made explicit
as (possibly asymmetric) ``pads``; average pooling excludes padding from its count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medbench_fast.models.aiene.builder import same_padding, valid_size
from medbench_fast.models.aiene.keras_h5 import KerasFile, read_keras_h5
from medbench_fast.models.onnx_floor import save_onnx
from medbench_fast.models.spec import ModelError

OPSET = 17


@dataclass
class Tensor:
    """A graph value: ONNX name and Keras shape (channels-last, no batch axis)."""

    name: str
    shape: tuple[int, ...]

    @property
    def spatial(self) -> bool:
        return len(self.shape) >= 2


class _Graph:
    def __init__(self, source: KerasFile):
        self.source = source
        self.nodes: list = []
        self.initializers: list = []
        self._n = 0

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"{hint}__{self._n}"

    def node(self, op: str, inputs: list[str], hint: str, **attrs) -> str:
        from onnx import helper

        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, array: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name


def _tuple(value, rank: int) -> list[int]:
    return [int(value)] * rank if isinstance(value, (int, float)) else [int(v) for v in value]


def _activation(g: _Graph, x: Tensor, name: str, layer: str) -> Tensor:
    if name in ("linear", None):
        return x
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "elu": "Elu", "selu": "Selu",
              "softplus": "Softplus", "softsign": "Softsign"}
    if name in simple:
        return Tensor(g.node(simple[name], [x.name], layer), x.shape)
    if name == "softmax":
        return Tensor(g.node("Softmax", [x.name], layer, axis=1), x.shape)
    if name in ("swish", "silu"):
        s = g.node("Sigmoid", [x.name], layer)
        return Tensor(g.node("Mul", [x.name, s], layer), x.shape)
    raise ModelError(f"{g.source.path}: layer {layer!r}: activation {name!r} is not supported")


def _weights(g: _Graph, layer: str, count_ok) -> list[np.ndarray]:
    weights = g.source.weights.get(layer, [])
    if not count_ok(len(weights)):
        raise ModelError(f"{g.source.path}: layer {layer!r} has {len(weights)} weight arrays in model_weights, "
                         f"which does not fit its config")
    return weights


def _conv(g, layer, cfg, xs):
    (x,) = xs
    rank = len(x.shape) - 1
    kernel, strides = _tuple(cfg["kernel_size"], rank), _tuple(cfg.get("strides", 1), rank)
    dilation = _tuple(cfg.get("dilation_rate", 1), rank)
    if int(cfg.get("groups", 1)) != 1:
        raise ModelError(f"{g.source.path}: layer {layer!r}: grouped convolution is not supported")
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise ModelError(f"{g.source.path}: layer {layer!r}: only channels_last is supported")
    use_bias = cfg.get("use_bias", True)
    w = _weights(g, layer, lambda n: n == (2 if use_bias else 1))
    kernel_onnx = np.transpose(w[0], (rank + 1, rank, *range(rank)))  # (k..., in, out) -> (out, in, k...)
    inputs = [x.name, g.const(kernel_onnx, f"{layer}_W")]
    if use_bias:
        inputs.append(g.const(w[1], f"{layer}_B"))
    pads_before, pads_after, spatial = _pads(cfg.get("padding", "valid"), x.shape[:-1], kernel, strides, dilation,
                                             g, layer)
    out = g.node("Conv", inputs, layer, kernel_shape=kernel, strides=strides, dilations=dilation,
                 pads=pads_before + pads_after)
    return _activation(g, Tensor(out, (*spatial, kernel_onnx.shape[0])), cfg.get("activation", "linear"), layer)


def _pads(padding, sizes, kernel, strides, dilation, g, layer):
    if padding == "same":
        parts = [same_padding(n, k, s, d) for n, k, s, d in zip(sizes, kernel, strides, dilation)]
        return [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts]
    if padding == "valid":
        return [0] * len(sizes), [0] * len(sizes), [valid_size(n, k, s, d) for n, k, s, d in
                                                    zip(sizes, kernel, strides, dilation)]
    raise ModelError(f"{g.source.path}: layer {layer!r}: padding {padding!r} is not supported")


def _pool(kind):
    def convert(g, layer, cfg, xs):
        (x,) = xs
        rank = len(x.shape) - 1
        size = _tuple(cfg["pool_size"], rank)
        strides = _tuple(cfg.get("strides") or size, rank)
        before, after, spatial = _pads(cfg.get("padding", "valid"), x.shape[:-1], size, strides, [1] * rank, g, layer)
        attrs = dict(kernel_shape=size, strides=strides, pads=before + after)
        if kind == "AveragePool":
            attrs["count_include_pad"] = 0
        return Tensor(g.node(kind, [x.name], layer, **attrs), (*spatial, x.shape[-1]))
    return convert


def _global_pool(op):
    def convert(g, layer, cfg, xs):
        (x,) = xs
        axes = list(range(2, len(x.shape) + 1))
        return Tensor(g.node(op, [x.name], layer, axes=axes, keepdims=0), (x.shape[-1],))
    return convert


def _batch_norm(g, layer, cfg, xs):
    (x,) = xs
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) else axis
    if axis not in (-1, len(x.shape)):
        raise ModelError(f"{g.source.path}: layer {layer!r}: BatchNormalization over axis {axis} is not supported")
    center, scale = cfg.get("center", True), cfg.get("scale", True)
    w = list(_weights(g, layer, lambda n: n == 2 + int(center) + int(scale)))
    c = x.shape[-1]
    gamma = w.pop(0) if scale else np.ones(c, np.float32)
    beta = w.pop(0) if center else np.zeros(c, np.float32)
    mean, var = w
    names = [g.const(a, f"{layer}_{k}") for a, k in ((gamma, "scale"), (beta, "B"), (mean, "mean"), (var, "var"))]
    out = g.node("BatchNormalization", [x.name, *names], layer, epsilon=float(cfg.get("epsilon", 1e-3)))
    return Tensor(out, x.shape)


def _leaky_relu(g, layer, cfg, xs):
    (x,) = xs
    alpha = float(cfg.get("alpha", cfg.get("negative_slope", 0.3)))
    return Tensor(g.node("LeakyRelu", [x.name], layer, alpha=alpha), x.shape)


def _relu(g, layer, cfg, xs):
    (x,) = xs
    if cfg.get("max_value") is not None or float(cfg.get("threshold", 0.0)) != 0.0:
        raise ModelError(f"{g.source.path}: layer {layer!r}: ReLU with max_value/threshold is not supported")
    slope = float(cfg.get("negative_slope", 0.0))
    if slope:
        return Tensor(g.node("LeakyRelu", [x.name], layer, alpha=slope), x.shape)
    return Tensor(g.node("Relu", [x.name], layer), x.shape)


def _zero_padding(g, layer, cfg, xs):
    (x,) = xs
    rank = len(x.shape) - 1
    pad = cfg["padding"]
    if isinstance(pad, int):
        pairs = [(pad, pad)] * rank
    else:
        pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in pad]
    pads = [0, 0, *[a for a, _ in pairs], 0, 0, *[b for _, b in pairs]]
    out = g.node("Pad", [x.name, g.const(np.asarray(pads, np.int64), f"{layer}_pads")], layer, mode="constant")
    return Tensor(out, (*[n + a + b for n, (a, b) in zip(x.shape[:-1], pairs)], x.shape[-1]))


def _dense(g, layer, cfg, xs):
    (x,) = xs
    if len(x.shape) != 1:
        raise ModelError(f"{g.source.path}: layer {layer!r}: Dense on a rank-{len(x.shape) + 1} tensor is not "
                         f"supported (Flatten first)")
    use_bias = cfg.get("use_bias", True)
    w = _weights(g, layer, lambda n: n == (2 if use_bias else 1))
    bias = w[1] if use_bias else np.zeros(w[0].shape[1], np.float32)
    out = g.node("Gemm", [x.name, g.const(w[0], f"{layer}_W"), g.const(bias, f"{layer}_B")], layer)
    return _activation(g, Tensor(out, (w[0].shape[1],)), cfg.get("activation", "linear"), layer)


def _identity(g, layer, cfg, xs):
    return xs[0]


def _activation_layer(g, layer, cfg, xs):
    return _activation(g, xs[0], cfg["activation"], layer)


def _flatten(g, layer, cfg, xs):
    (x,) = xs
    name = x.name
    if x.spatial:
        rank = len(x.shape) + 1
        name = g.node("Transpose", [name], f"{layer}_cl", perm=[0, *range(2, rank), 1])
    return Tensor(g.node("Flatten", [name], layer, axis=1), (int(np.prod(x.shape)),))


def _concatenate(g, layer, cfg, xs):
    rank = len(xs[0].shape) + 1
    axis = int(cfg.get("axis", -1)) % rank
    if any(len(x.shape) + 1 != rank for x in xs):
        raise ModelError(f"{g.source.path}: layer {layer!r}: inputs of different ranks")
    onnx_axis = axis if rank == 2 else (1 if axis == rank - 1 else axis + 1)
    shape = list(xs[0].shape)
    shape[axis - 1] = sum(x.shape[axis - 1] for x in xs)
    return Tensor(g.node("Concat", [x.name for x in xs], layer, axis=onnx_axis), tuple(shape))


def _elementwise(op):
    def convert(g, layer, cfg, xs):
        out = xs[0].name
        for x in xs[1:]:
            out = g.node(op, [out, x.name], layer)
        return Tensor(out, xs[0].shape)
    return convert


def _average(g, layer, cfg, xs):
    total = _elementwise("Add")(g, layer, cfg, xs)
    scale = g.const(np.asarray(1.0 / len(xs), np.float32), f"{layer}_n")
    return Tensor(g.node("Mul", [total.name, scale], layer), total.shape)


CONVERTERS = {
    "Conv1D": _conv, "Conv2D": _conv, "Conv3D": _conv,
    "BatchNormalization": _batch_norm,
    "LeakyReLU": _leaky_relu, "ReLU": _relu, "Activation": _activation_layer,
    "MaxPooling1D": _pool("MaxPool"), "MaxPooling2D": _pool("MaxPool"), "MaxPooling3D": _pool("MaxPool"),
    "AveragePooling1D": _pool("AveragePool"), "AveragePooling2D": _pool("AveragePool"),
    "AveragePooling3D": _pool("AveragePool"),
    "GlobalAveragePooling2D": _global_pool("ReduceMean"), "GlobalAveragePooling3D": _global_pool("ReduceMean"),
    "GlobalMaxPooling2D": _global_pool("ReduceMax"), "GlobalMaxPooling3D": _global_pool("ReduceMax"),
    "ZeroPadding1D": _zero_padding, "ZeroPadding2D": _zero_padding, "ZeroPadding3D": _zero_padding,
    "Dense": _dense, "Flatten": _flatten, "Concatenate": _concatenate,
    "Dropout": _identity, "SpatialDropout3D": _identity, "SpatialDropout2D": _identity,
    "GaussianNoise": _identity, "GaussianDropout": _identity,
    "Add": _elementwise("Add"), "Multiply": _elementwise("Mul"), "Subtract": _elementwise("Sub"),
    "Maximum": _elementwise("Max"), "Minimum": _elementwise("Min"), "Average": _average,
}


def keras_to_onnx(source: KerasFile):
    """Build the ``onnx.ModelProto`` for a parsed Keras-2 model."""
    from onnx import TensorProto, helper

    g = _Graph(source)
    unknown = [(layer["name"], layer["class_name"]) for layer in source.layers
               if layer["class_name"] not in CONVERTERS and layer["class_name"] != "InputLayer"]
    if unknown:
        name, cls = unknown[0]
        raise ModelError(f"{source.path}: layer {name!r} has class {cls!r}, which the converter does not know "
                         f"(supported: {sorted(CONVERTERS)})")
    values: dict[tuple[str, int], Tensor] = {}
    graph_inputs = []
    for layer in source.layers:
        if layer["class_name"] == "InputLayer":
            cfg = layer["config"]
            shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
            if shape is None or any(d is None for d in shape[1:]):
                raise ModelError(f"{source.path}: input {layer['name']!r} needs a fixed shape, got {shape}")
            shape = tuple(int(d) for d in shape[1:])
            graph_inputs.append(helper.make_tensor_value_info(layer["name"], TensorProto.FLOAT, ["batch", *shape]))
            name = layer["name"]
            if len(shape) >= 2:
                name = g.node("Transpose", [name], f"{name}_cf", perm=[0, len(shape), *range(1, len(shape))])
            values[(layer["name"], 0)] = Tensor(name, shape)
    pending = [layer for layer in source.layers if layer["class_name"] != "InputLayer"]
    while pending:
        progressed = []
        for layer in pending:
            nodes = layer.get("inbound_nodes", [])
            done = sum(1 for i in range(len(nodes)) if (layer["name"], i) in values)
            for index in range(done, len(nodes)):
                refs = nodes[index]
                refs = refs.get("args", refs) if isinstance(refs, dict) else refs
                keys = [(ref[0], int(ref[1])) for ref in refs]
                if not all(k in values for k in keys):
                    break
                inputs = [values[k] for k in keys]
                values[(layer["name"], index)] = CONVERTERS[layer["class_name"]](g, layer["name"], layer["config"], inputs)
            if all((layer["name"], i) in values for i in range(len(nodes))):
                progressed.append(layer)
        if not progressed:
            names = [layer["name"] for layer in pending]
            raise ModelError(f"{source.path}: cannot resolve the inputs of layer(s) {names}")
        pending = [layer for layer in pending if layer not in progressed]

    graph_outputs = []
    for ref in source.outputs:
        t = values[(ref[0], int(ref[1]))]
        out = t.name
        if t.spatial:
            out = g.node("Transpose", [out], f"{ref[0]}_cl", perm=[0, *range(2, len(t.shape) + 1), 1])
        g.nodes.append(helper.make_node("Identity", [out], [ref[0]], name=f"{ref[0]}_out"))
        graph_outputs.append(helper.make_tensor_value_info(ref[0], TensorProto.FLOAT, ["batch", *t.shape]))
    graph = helper.make_graph(g.nodes, Path(source.path).stem, graph_inputs, graph_outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="medbench-fast", doc_string=f"converted from {Path(source.path).name} "
                              f"(Keras {source.keras_version})")
    return model


def convert_h5(h5_path: str | os.PathLike, onnx_path: str | os.PathLike) -> dict:
    """Convert ``h5_path`` (Keras-2 HDF5) to ``onnx_path``; returns ``{"inputs": {name: shape},
    "outputs": {name: shape}}`` (channels-last shapes without the batch axis)."""
    import onnx

    source = read_keras_h5(h5_path)
    model = keras_to_onnx(source)
    onnx.checker.check_model(model)
    save_onnx(model, onnx_path)

    def shapes(values):
        return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim][1:] for v in values}

    return {"inputs": shapes(model.graph.input), "outputs": shapes(model.graph.output)}
