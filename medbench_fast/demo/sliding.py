"""A 3D sliding-window segmenter with random weights: two 3x3x3 convolutions with ReLU and a
1x1x1 head over ``patch``-sized patches (input ``image``: ``N, 1, *patch``; output
``logits``: ``N, classes, *patch``), written with its spec. It stands in for a 3D U-Net in
GPU measurements; its scores mean nothing."""

from __future__ import annotations

import os
from pathlib import Path


def build_sliding_net(path: str | os.PathLike, *, classes: int = 14, width: int = 16,
                      patch: tuple[int, int, int] = (96, 96, 96), batch_size: int = 2,
                      name: str = "sliding-3d") -> Path:
    """Write the ONNX graph to ``path`` and its spec beside it; return ``path``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from medbench_fast.models.onnx_floor import save_onnx
    from medbench_fast.models.spec import IntensityStep, ModelSpec, OutputSpec, StrategySpec, spec_path_for

    rng = np.random.default_rng(0)
    shapes = [(width, 1, 3, 3, 3), (width, width, 3, 3, 3), (classes, width, 1, 1, 1)]
    nodes, inits, prev = [], [], "image"
    for i, shape in enumerate(shapes):
        w = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(shape[0], np.float32), f"b{i}")]
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[shape[2] // 2] * 6,
                                      name=f"conv{i}"))
        prev = f"c{i}"
        if i < len(shapes) - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["logits"], name="logits"))
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, *patch])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", classes, *patch])],
                              inits)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="medbench-fast"), out)
    ModelSpec(name=name, inputs=["image"], intensity=[IntensityStep(op="window", range=[-1000.0, 1000.0])],
              strategy=StrategySpec(type="sliding_window", patch_size=list(patch), overlap=0.5, batch_size=batch_size),
              output=OutputSpec(kind="segmentation_logits", activation="softmax",
                                labels={c: c for c in range(1, min(classes, 6))}),
              source={"format": "onnx.helper", "description": "random-weight 3D conv net"}).to_json(spec_path_for(out))
    return out
