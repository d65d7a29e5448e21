"""The nnU-Net adapter: nnU-Net v2's own preprocessing and export around an ONNX Runtime window loop.

What nnunetv2 defines is called, not re-implemented: ``DefaultPreprocessor.run_case_npy``
(or the configuration's preprocessor: transpose, crop to non-zero, per-channel
normalisation with the plans' intensity properties, resampling to the target spacing),
``compute_steps_for_sliding_window`` and ``compute_gaussian`` (tile positions and importance
map), ``pad_nd_image``, and ``convert_predicted_logits_to_segmentation_with_correct_shape``
(logits resampled back with the configuration's probability resampling, softmax/argmax or
sigmoid > 0.5 with ``regions_class_order`` by the label manager, cropping and transpose
reverted). The network forward (every fold, mirrored copies averaged: see
:mod:`.export`) runs in ONNX Runtime; the window loop accumulates as ``nnUNetPredictor``
2.5.2 does, in float16 torch tensors: each tile's float32 logits times the float16
Gaussian, added to a float16 sum per fold, divided by the float16 sum of weights, and the
folds' float16 results averaged. ``timings``: ``preprocess_s`` is nnU-Net's preprocessing,
``inference_s`` the network, ``postprocess_s`` the blending and the export;
``Prediction.patches`` counts the tiles.
"""

from __future__ import annotations

import numpy as np

from medbench_fast.data.reader import Volume
from medbench_fast.models.base import Model, Prediction
from medbench_fast.models.nnunet.export import import_nnunet
from medbench_fast.models.spec import ModelError
from medbench_fast.models.transforms import select_channels


class NnUNetModel(Model):
    """An exported nnU-Net v2 model: input ``(batch, C, *patch)``, output ``(batch, folds, heads, *patch)``."""

    def __init__(self, session, spec):
        self.spatial_rank = len(spec.strategy.patch_size)
        super().__init__(session, spec)
        import torch

        import_nnunet()
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        source = spec.source
        self.plans = PlansManager(source["plans"])
        self.configuration = self.plans.get_configuration(source["configuration"])
        self.dataset_json = source["dataset_json"]
        self.label_manager = self.plans.get_label_manager(self.dataset_json)
        self.preprocessor = self.configuration.preprocessor_class(verbose=False)
        self.patch = tuple(int(p) for p in spec.strategy.patch_size)
        if list(self.patch) != [int(p) for p in self.configuration.patch_size]:
            raise ModelError(f"{session.path}: spec patch size {list(self.patch)} is not the configuration's "
                             f"{list(self.configuration.patch_size)}")
        self.step_size = float(source["tile_step_size"])
        self.gaussian = compute_gaussian(self.patch, sigma_scale=1. / 8, value_scaling_factor=10,
                                         device=torch.device("cpu")).clone()

    def expected_input_sizes(self):
        return [list(self.spec.strategy.patch_size)]

    def _prepare(self, volume: Volume, mask):
        image = select_channels(volume, self.spec)
        if image.shape[0] != self.spec.channels:
            raise ModelError(f"{volume.path or '<volume>'}: image has {image.shape[0]} channel(s); nnU-Net model "
                             f"{self.name!r} takes {self.spec.channels}")
        data = np.array(image, dtype=np.float32)  # as nnU-Net's image readers return it
        properties = {"spacing": [float(s) for s in volume.spacing]}
        data, _ = self.preprocessor.run_case_npy(data, None, properties, self.plans, self.configuration,
                                                 self.dataset_json)  # fills properties (crop box, shapes)
        return np.ascontiguousarray(data, dtype=np.float32), properties

    def slicers(self, shape) -> list[tuple]:
        """Tile positions over a padded ``(*spatial)`` shape, in ``nnUNetPredictor``'s order."""
        from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

        patch = self.patch
        if len(patch) < len(shape):  # 2D network over the slices of a 3D image
            steps = compute_steps_for_sliding_window(shape[1:], patch, self.step_size)
            return [(slice(None), d, slice(sx, sx + patch[0]), slice(sy, sy + patch[1]))
                    for d in range(shape[0]) for sx in steps[0] for sy in steps[1]]
        steps = compute_steps_for_sliding_window(shape, patch, self.step_size)
        return [(slice(None), slice(sx, sx + patch[0]), slice(sy, sy + patch[1]), slice(sz, sz + patch[2]))
                for sx in steps[0] for sy in steps[1] for sz in steps[2]]

    def _execute(self, state, volume: Volume, clock) -> Prediction:
        logits, patches = self.predict_logits(state[0], clock)
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        segmentation = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, self.plans, self.configuration, self.label_manager, state[1], return_probabilities=False)
        label_map = Volume(array=np.ascontiguousarray(segmentation), spacing=volume.spacing, origin=volume.origin,
                           direction=volume.direction)
        return Prediction(label_map=label_map, scores=None, patches=patches)

    def predict_logits(self, data: np.ndarray, clock):
        """Preprocessed ``(C, *spatial)`` -> the folds' averaged float16 logits ``(heads, *spatial)`` (a torch
        tensor, as ``nnUNetPredictor.predict_logits_from_preprocessed_data`` returns them) and the tile count."""
        import torch
        from acvl_utils.cropping_and_padding.padding import pad_nd_image

        padded, revert = pad_nd_image(data, self.patch, "constant", {"value": 0}, True, None)
        shape = padded.shape[1:]
        slicers = self.slicers(shape)
        folds = len(self.spec.source.get("folds") or [0])
        heads = self.label_manager.num_segmentation_heads
        sums = torch.zeros((folds, heads, *shape), dtype=torch.half)
        weights = torch.zeros(shape, dtype=torch.half)
        gaussian = self.gaussian
        size = self.spec.strategy.batch_size
        for start in range(0, len(slicers), size):
            group = slicers[start:start + size]
            out = self._run_batch([np.stack([padded[sl] for sl in group])], clock)
            if out.shape[1:3] != (folds, heads):
                raise ModelError(f"{self.session.path}: output {list(out.shape)} does not hold {folds} fold(s) of "
                                 f"{heads} head(s)")
            for sl, tile in zip(group, torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))):
                for f in range(folds):
                    sums[f][sl] += tile[f] * gaussian
                weights[sl[1:]] += gaussian
        total = None
        for f in range(folds):
            fold = sums[f]
            fold /= weights
            if torch.any(torch.isinf(fold)):
                raise ModelError(f"model {self.name!r}: infinite logits in float16 (nnU-Net stops here too)")
            total = fold if total is None else total.add_(fold)
        if folds > 1:
            total /= folds
        return total[(slice(None), *revert[1:])], len(slicers)
