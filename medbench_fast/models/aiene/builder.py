"""Build Keras-2 functional models as config + weights (no Keras needed) and save them as ``.h5``.

Used for the DualNet-ENE architecture with random weights (benchmarks, demo) and for the
small test models. Shapes are channels-last without the batch axis, as in Keras.
"""

from __future__ import annotations

import math
import os

import numpy as np

from medbench_fast.models.aiene.keras_h5 import write_keras2_h5


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int, int]:
    """TensorFlow 'same' padding: ``(before, after, output size)``; the odd pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2, out


def valid_size(size: int, kernel: int, stride: int, dilation: int = 1) -> int:
    return (size - ((kernel - 1) * dilation + 1)) // stride + 1


def _initializer(name: str) -> dict:
    return {"class_name": name, "config": {}}


class Keras2Builder:
    """Append layers with Keras-2 configs; every method returns the new tensor's layer name.

    Weights are drawn from ``rng`` (He-uniform kernels, small random biases and batch-norm
    statistics so that every weight matters in a comparison).
    """

    def __init__(self, name: str = "model", seed: int = 0):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.layers: list[dict] = []
        self.weights: dict[str, list[tuple[str, np.ndarray]]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.inputs: list[str] = []
        self._count: dict[str, int] = {}

    def _name(self, prefix: str) -> str:
        self._count[prefix] = self._count.get(prefix, 0) + 1
        return f"{prefix}_{self._count[prefix]}"

    def _add(self, class_name: str, prefix: str, inbound: list[str], config: dict, shape, weights=()) -> str:
        name = self._name(prefix)
        config = {"name": name, "trainable": True, **config}
        nodes = [[[src, 0, 0, {}] for src in inbound]] if inbound else []
        self.layers.append({"name": name, "class_name": class_name, "config": config, "inbound_nodes": nodes})
        self.shapes[name] = tuple(shape)
        if weights:
            self.weights[name] = list(weights)
        return name

    def _uniform(self, shape, fan_in: int) -> np.ndarray:
        limit = math.sqrt(6.0 / max(fan_in, 1))
        return self.rng.uniform(-limit, limit, size=shape).astype(np.float32)

    # -- layers ---------------------------------------------------------------------------
    def input(self, shape) -> str:
        name = self._add("InputLayer", "input", [], {"batch_input_shape": [None, *shape], "dtype": "float32",
                                                     "sparse": False}, shape)
        self.inputs.append(name)
        return name

    def conv(self, x: str, filters: int, kernel, *, strides=None, padding="same", dilation=None,
             activation="linear", use_bias=True) -> str:
        shape = self.shapes[x]
        rank = len(shape) - 1
        kernel = [kernel] * rank if isinstance(kernel, int) else list(kernel)
        strides = [1] * rank if strides is None else ([strides] * rank if isinstance(strides, int) else list(strides))
        dilation = [1] * rank if dilation is None else list(dilation)
        if padding == "same":
            spatial = [same_padding(n, k, s, d)[2] for n, k, s, d in zip(shape[:-1], kernel, strides, dilation)]
        else:
            spatial = [valid_size(n, k, s, d) for n, k, s, d in zip(shape[:-1], kernel, strides, dilation)]
        fan_in = int(np.prod(kernel)) * shape[-1]
        weights = [("kernel", self._uniform((*kernel, shape[-1], filters), fan_in))]
        if use_bias:
            weights.append(("bias", self.rng.normal(0, 0.05, filters).astype(np.float32)))
        config = {"filters": filters, "kernel_size": kernel, "strides": strides, "padding": padding,
                  "data_format": "channels_last", "dilation_rate": dilation, "activation": activation,
                  "use_bias": use_bias, "kernel_initializer": _initializer("GlorotUniform"),
                  "bias_initializer": _initializer("Zeros"), "kernel_regularizer": None, "bias_regularizer": None,
                  "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None}
        return self._add(f"Conv{rank}D", f"conv{rank}d", [x], config, (*spatial, filters), weights)

    def batch_norm(self, x: str, epsilon: float = 1e-3) -> str:
        c = self.shapes[x][-1]
        weights = [("gamma", self.rng.uniform(0.5, 1.5, c).astype(np.float32)),
                   ("beta", self.rng.normal(0, 0.1, c).astype(np.float32)),
                   ("moving_mean", self.rng.normal(0, 0.1, c).astype(np.float32)),
                   ("moving_variance", self.rng.uniform(0.5, 1.5, c).astype(np.float32))]
        config = {"axis": -1, "momentum": 0.99, "epsilon": epsilon, "center": True, "scale": True,
                  "beta_initializer": _initializer("Zeros"), "gamma_initializer": _initializer("Ones"),
                  "moving_mean_initializer": _initializer("Zeros"), "moving_variance_initializer": _initializer("Ones"),
                  "beta_regularizer": None, "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None}
        return self._add("BatchNormalization", "batch_normalization", [x], config, self.shapes[x], weights)

    def leaky_relu(self, x: str, alpha: float = 0.03) -> str:
        return self._add("LeakyReLU", "leaky_re_lu", [x], {"alpha": alpha}, self.shapes[x])

    def activation(self, x: str, activation: str) -> str:
        return self._add("Activation", "activation", [x], {"activation": activation}, self.shapes[x])

    def pool(self, x: str, kind: str, size=2, *, strides=None, padding="valid") -> str:
        shape = self.shapes[x]
        rank = len(shape) - 1
        size = [size] * rank if isinstance(size, int) else list(size)
        strides = list(size) if strides is None else ([strides] * rank if isinstance(strides, int) else list(strides))
        if padding == "same":
            spatial = [same_padding(n, k, s)[2] for n, k, s in zip(shape[:-1], size, strides)]
        else:
            spatial = [valid_size(n, k, s) for n, k, s in zip(shape[:-1], size, strides)]
        class_name = {"max": f"MaxPooling{rank}D", "average": f"AveragePooling{rank}D"}[kind]
        config = {"pool_size": size, "padding": padding, "strides": strides, "data_format": "channels_last"}
        return self._add(class_name, f"{kind}_pooling{rank}d", [x], config, (*spatial, shape[-1]))

    def zero_padding(self, x: str, padding) -> str:
        shape = self.shapes[x]
        spatial = [n + a + b for n, (a, b) in zip(shape[:-1], padding)]
        rank = len(shape) - 1
        config = {"padding": [list(p) for p in padding], "data_format": "channels_last"}
        return self._add(f"ZeroPadding{rank}D", f"zero_padding{rank}d", [x], config, (*spatial, shape[-1]))

    def global_pool(self, x: str, kind: str) -> str:
        rank = len(self.shapes[x]) - 1
        class_name = {"max": f"GlobalMaxPooling{rank}D", "average": f"GlobalAveragePooling{rank}D"}[kind]
        return self._add(class_name, f"global_{kind}_pooling{rank}d", [x], {"data_format": "channels_last"},
                         (self.shapes[x][-1],))

    def flatten(self, x: str) -> str:
        return self._add("Flatten", "flatten", [x], {"data_format": "channels_last"}, (int(np.prod(self.shapes[x])),))

    def dense(self, x: str, units: int, activation: str = "linear") -> str:
        n = self.shapes[x][-1]
        weights = [("kernel", self._uniform((n, units), n)), ("bias", self.rng.normal(0, 0.05, units).astype(np.float32))]
        config = {"units": units, "activation": activation, "use_bias": True,
                  "kernel_initializer": _initializer("GlorotUniform"), "bias_initializer": _initializer("Zeros"),
                  "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
                  "kernel_constraint": None, "bias_constraint": None}
        return self._add("Dense", "dense", [x], config, (units,), weights)

    def dropout(self, x: str, rate: float = 0.5) -> str:
        return self._add("Dropout", "dropout", [x], {"rate": rate, "noise_shape": None, "seed": None}, self.shapes[x])

    def concatenate(self, xs: list[str]) -> str:
        shapes = [self.shapes[x] for x in xs]
        shape = (*shapes[0][:-1], sum(s[-1] for s in shapes))
        return self._add("Concatenate", "concatenate", list(xs), {"axis": -1}, shape)

    # -- output -----------------------------------------------------------------------------
    def ordered_layers(self, outputs: list[str]) -> list[dict]:
        """Layers in Keras' ``model.layers`` order: by decreasing depth from the outputs, ties
        by first visit in a depth-first walk from the outputs. Keras loads weights by this
        order (not by name), so the file must list layers in it."""
        by_name = {layer["name"]: layer for layer in self.layers}
        depth: dict[str, int] = {}
        visit: dict[str, int] = {}

        def walk(name: str, d: int) -> None:
            visit.setdefault(name, len(visit))
            depth[name] = max(depth.get(name, 0), d)
            for node in by_name[name]["inbound_nodes"]:
                for ref in node:
                    walk(ref[0], d + 1)

        for name in outputs:
            walk(name, 0)
        return sorted((by_name[n] for n in depth), key=lambda layer: (-depth[layer["name"]], visit[layer["name"]]))

    def model_config(self, outputs: list[str]) -> dict:
        return {"class_name": "Model", "config": {
            "name": self.name, "layers": self.ordered_layers(outputs),
            "input_layers": [[name, 0, 0] for name in self.inputs],
            "output_layers": [[name, 0, 0] for name in outputs]}}

    def save(self, path: str | os.PathLike, outputs: list[str]) -> None:
        write_keras2_h5(path, self.model_config(outputs), self.weights)

    def parameter_count(self) -> int:
        return int(sum(a.size for entries in self.weights.values() for _, a in entries))
