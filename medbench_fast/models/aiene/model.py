"""The AI-ENE model: one (box, node) input pair per lymph node, case-level scores out.

The spec's ``strategy`` (``object_crops``) names the node label in the mask, the minimum
component size and the connectivity; ``target_spacing`` and the ``window`` intensity step
give the resampling and HU window. Box and node crop sizes are read from the ONNX inputs,
which must have fixed spatial sizes.
"""

from __future__ import annotations

import numpy as np

from medbench_fast.models.aiene.preprocess import label_components, node_inputs
from medbench_fast.models.base import Model, Prediction
from medbench_fast.models.spec import (
    IntensityStep,
    ModelError,
    ModelSpec,
    OutputSpec,
    StrategySpec,
)

SCORE_NAMES = ["nodal_metastasis", "ene"]


def aiene_spec(name: str, inputs: dict[str, list[int]], *, node_label: int = 1, min_voxels: int = 1,
               source: dict | None = None) -> ModelSpec:
    """The spec of a converted AI-ENE model; ``inputs`` maps input name -> channels-last shape
    without batch. The input with the larger spatial size is the box crop."""
    if len(inputs) != 2:
        raise ModelError(f"AI-ENE model {name!r} must have 2 inputs (box crop, node crop), has {len(inputs)}")
    ordered = sorted(inputs, key=lambda k: -int(np.prod(inputs[k][:-1])))
    return ModelSpec(
        name=name, kind="aiene", inputs=ordered, layout="channels_last", channels=1,
        strategy=StrategySpec(type="object_crops", batch_size=4, object_label=node_label, min_voxels=min_voxels,
                              connectivity=26),
        intensity=[IntensityStep(op="window", range=[-175.0, 275.0])],
        target_spacing=[3.0, 1.0, 1.0],
        output=OutputSpec(kind="case_scores", activation="none", score_names=list(SCORE_NAMES)),
        source=dict(source or {}))


class ObjectCropModel(Model):
    """Per-object crop model (AI-ENE): ``predict(ct, mask)`` scores every node in ``mask``."""

    def __init__(self, session, spec):
        super().__init__(session, spec)
        if len(spec.inputs) != 2:
            raise ModelError(f"{session.path}: object_crops needs 2 inputs (box crop, node crop); spec lists {spec.inputs}")
        self.crop_sizes = []
        for name in spec.inputs:
            shape = list(session.inputs[name].shape)
            dims = shape[1:-1] if spec.layout == "channels_last" else shape[2:]
            if not all(isinstance(d, int) for d in dims):
                raise ModelError(f"{session.path}: input {name!r} must have a fixed spatial size, has {shape}")
            self.crop_sizes.append(tuple(dims))
        windows = [s.range for s in spec.intensity if s.op == "window"]
        self.window = tuple(windows[0]) if windows else (-175.0, 275.0)

    def _check_case(self, volume, mask):
        super()._check_case(volume, mask)
        if mask is None:
            raise ModelError(f"{volume.path or '<volume>'}: model {self.name!r} needs the node mask as `mask`")

    def _prepare(self, volume, mask):
        s = self.spec.strategy
        labels, ids = label_components(mask.array, s.object_label, connectivity=s.connectivity, min_voxels=s.min_voxels)
        return node_inputs(volume.array, labels, ids, volume.spacing,
                           target_spacing=tuple(self.spec.target_spacing or (3.0, 1.0, 1.0)),
                           box_size=self.crop_sizes[0], node_size=self.crop_sizes[1], window=self.window)

    def _execute(self, nodes, volume, clock):
        names = self.spec.output.score_names
        scores: list[dict] = []
        bs = self.spec.strategy.batch_size
        for start in range(0, len(nodes), bs):
            group = nodes[start:start + bs]
            arrays = [np.stack([n.box for n in group]), np.stack([n.node for n in group])]
            if self.spec.layout == "channels_last":
                arrays = [a[..., None] for a in arrays]
            else:
                arrays = [a[:, None] for a in arrays]
            out = self._run_batch(arrays, clock)
            for node, row in zip(group, out):
                entry = {"object_id": node.object_id}
                entry.update({f"score_{name}": float(v) for name, v in zip(names, row)})
                entry.update({"voxels": node.voxels, "centroid_zyx": list(node.centroid_zyx)})
                scores.append(entry)
        return Prediction(label_map=None, scores=scores)
