"""Keras-2 HDF5 model files (``model.save("x.h5")`` in Keras 2.x), read and written with h5py.

Layout: root attributes ``model_config`` (JSON: ``{"class_name": "Model"|"Functional"|
"Sequential", "config": {...}}``), ``keras_version``, ``backend``; group ``model_weights``
with attribute ``layer_names`` and, per layer, a group whose ``weight_names`` attribute
lists the datasets (``<layer>/kernel:0``, ...) in the layer's weight order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medbench_fast.models.spec import ModelError


@dataclass
class KerasFile:
    """A parsed Keras-2 model: functional ``layers``, ``inputs``/``outputs`` and weights per layer."""

    path: Path
    layers: list[dict]
    inputs: list[list]
    outputs: list[list]
    weights: dict[str, list[np.ndarray]]
    keras_version: str
    backend: str


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _sequential_to_functional(config: dict) -> dict:
    layers = config["layers"] if isinstance(config, dict) else config
    out, previous = [], None
    for layer in layers:
        layer = dict(layer)
        layer_config = dict(layer["config"])
        if previous is None and layer["class_name"] != "InputLayer":
            shape = layer_config.get("batch_input_shape")
            if shape is None:
                raise ModelError("Sequential model without an input shape")
            out.append({"class_name": "InputLayer", "name": "input", "inbound_nodes": [],
                        "config": {"batch_input_shape": shape, "name": "input"}})
            previous = "input"
        name = layer_config["name"]
        layer["name"] = name
        layer["inbound_nodes"] = [] if previous is None else [[[previous, 0, 0, {}]]]
        out.append(layer)
        previous = name
    return {"layers": out, "input_layers": [[out[0]["name"], 0, 0]], "output_layers": [[previous, 0, 0]]}


def read_keras_h5(path: str | os.PathLike) -> KerasFile:
    """Read a Keras-2 ``.h5`` model; errors name the file and what is missing."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: file not found")
    try:
        fh = h5py.File(p, "r")
    except OSError:
        raise ModelError(f"{p}: not an HDF5 file") from None
    with fh:
        if "model_config" not in fh.attrs:
            raise ModelError(f"{p}: HDF5 file without 'model_config' (weights-only file? save the whole model)")
        config = json.loads(_text(fh.attrs["model_config"]))
        if config.get("class_name") == "Sequential":
            functional = _sequential_to_functional(config["config"])
        elif config.get("class_name") in ("Model", "Functional"):
            functional = config["config"]
        else:
            raise ModelError(f"{p}: model class {config.get('class_name')!r} is not supported (Model or Sequential)")
        group = fh["model_weights"] if "model_weights" in fh else fh
        weights: dict[str, list[np.ndarray]] = {}
        for layer_name in group.attrs.get("layer_names", []):
            layer_name = _text(layer_name)
            layer_group = group[layer_name]
            weights[layer_name] = [np.asarray(layer_group[_text(w)], dtype=np.float32)
                                   for w in layer_group.attrs.get("weight_names", [])]
        return KerasFile(path=p, layers=functional["layers"], inputs=functional["input_layers"],
                         outputs=functional["output_layers"], weights=weights,
                         keras_version=_text(fh.attrs.get("keras_version", "")),
                         backend=_text(fh.attrs.get("backend", "")))


def write_keras2_h5(path: str | os.PathLike, model_config: dict, weights: dict[str, list[tuple[str, np.ndarray]]],
                    *, keras_version: str = "2.2.4", backend: str = "tensorflow") -> None:
    """Write a Keras-2 ``.h5`` file: ``model_config`` (the full ``{"class_name", "config"}``
    dict) and ``weights`` = ``{layer name: [(weight name, array), ...]}`` in layer order."""
    import h5py

    layers = model_config["config"]["layers"]
    layer_names = [layer.get("name") or layer["config"]["name"] for layer in layers]
    with h5py.File(path, "w") as fh:
        fh.attrs["keras_version"] = keras_version.encode()
        fh.attrs["backend"] = backend.encode()
        fh.attrs["model_config"] = json.dumps(model_config).encode()
        group = fh.create_group("model_weights")
        group.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
        group.attrs["backend"] = backend.encode()
        group.attrs["keras_version"] = keras_version.encode()
        for name in layer_names:
            layer_group = group.create_group(name)
            entries = weights.get(name, [])
            layer_group.attrs["weight_names"] = np.array([f"{name}/{w}:0".encode() for w, _ in entries], dtype="S")
            for w, array in entries:
                layer_group.create_dataset(f"{name}/{w}:0", data=np.asarray(array, dtype=np.float32))
