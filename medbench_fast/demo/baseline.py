"""A classical baseline segmenter written as an ONNX graph: HU thresholds plus morphology.

It segments the synthetic head-and-neck CT of :mod:`medbench_fast.data.synthetic` slice by
slice (input ``image``: ``N, 1, H, W`` float32 HU; output ``logits``: ``N, 6, H, W``
one-hot class scores for background, body, vertebra, spinal cord (never predicted),
airway and lymph node), using only standard operators, so any ONNX runtime runs it:

- body: HU > -500, closed with a 15 x 15 max/min pool pair (fills the airway);
- vertebra: HU > 300;
- airway: inside the closed body but below -500 HU;
- lymph node: 5 x 5 mean HU in [50, 200] away from bone (nodes are brighter than soft
  tissue and fat).
"""

from __future__ import annotations

import os
from pathlib import Path

LABELS = {1: 1, 2: 2, 4: 4, 5: 5}  # class index -> dataset label (class 3, the cord, is never predicted)
CLOSING = 15
MEAN_WINDOW = 5


def build_baseline(path: str | os.PathLike, *, name: str = "hu-threshold-baseline") -> Path:
    """Write the ONNX graph to ``path`` and its spec beside it; return ``path``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from medbench_fast.models.onnx_floor import save_onnx
    from medbench_fast.models.spec import ModelSpec, OutputSpec, StrategySpec, spec_path_for

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)

    half = CLOSING // 2
    nodes = [
        helper.make_node("Greater", ["image", "c_body"], ["body_b"]),
        helper.make_node("Cast", ["body_b"], ["body"], to=TensorProto.FLOAT),
        helper.make_node("MaxPool", ["body"], ["dilated"], kernel_shape=[CLOSING, CLOSING], pads=[half] * 4),
        helper.make_node("Neg", ["dilated"], ["neg_dilated"]),
        helper.make_node("MaxPool", ["neg_dilated"], ["neg_closed"], kernel_shape=[CLOSING, CLOSING], pads=[half] * 4),
        helper.make_node("Neg", ["neg_closed"], ["closed"]),
        helper.make_node("Greater", ["image", "c_bone"], ["bone_b"]),
        helper.make_node("Cast", ["bone_b"], ["bone"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["closed", "body"], ["airway_raw"]),
        helper.make_node("Relu", ["airway_raw"], ["airway"]),
        helper.make_node("AveragePool", ["image"], ["mean"], kernel_shape=[MEAN_WINDOW, MEAN_WINDOW],
                         pads=[MEAN_WINDOW // 2] * 4, count_include_pad=0),
        helper.make_node("Greater", ["mean", "c_node_lo"], ["node_lo"]),
        helper.make_node("Less", ["mean", "c_node_hi"], ["node_hi"]),
        helper.make_node("MaxPool", ["image"], ["local_max"], kernel_shape=[MEAN_WINDOW, MEAN_WINDOW],
                         pads=[MEAN_WINDOW // 2] * 4),
        helper.make_node("Less", ["local_max", "c_bone"], ["far_from_bone"]),
        helper.make_node("And", ["node_lo", "node_hi"], ["node_soft"]),
        helper.make_node("And", ["node_soft", "far_from_bone"], ["node_b"]),
        helper.make_node("Cast", ["node_b"], ["node_any"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["node_any", "body"], ["node"]),
        helper.make_node("Sub", ["c_one", "closed"], ["background"]),
        helper.make_node("Mul", ["body", "c_zero"], ["cord"]),
        # body wins only where no more specific class does: scores 1 (body) < 2 (others)
        helper.make_node("Mul", ["bone", "c_two"], ["bone2"]),
        helper.make_node("Mul", ["airway", "c_two"], ["airway2"]),
        helper.make_node("Mul", ["node", "c_two"], ["node2"]),
        helper.make_node("Concat", ["background", "body", "bone2", "cord", "airway2", "node2"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 6, "height", "width"])],
        initializer=[const("c_body", -500.0), const("c_bone", 300.0), const("c_node_lo", 50.0),
                     const("c_node_hi", 200.0), const("c_one", 1.0), const("c_zero", 0.0), const("c_two", 2.0)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="medbench-fast")
    onnx.checker.check_model(model)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_onnx(model, out)
    spec = ModelSpec(name=name, inputs=["image"], channels=1,
                     strategy=StrategySpec(type="slice2d", axis=0, batch_size=16),
                     output=OutputSpec(kind="segmentation_logits", labels=dict(LABELS)),
                     source={"format": "onnx.helper", "description": "HU thresholds + morphology baseline"})
    spec.to_json(spec_path_for(out))
    return out
