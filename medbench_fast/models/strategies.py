"""Segmentation strategies: 2D slice-wise, 3D sliding window, whole volume on a fixed grid.

All three take a :class:`Volume` in ``(Z, Y, X)`` or ``(C, Z, Y, X)`` (several channels on one
grid) and return a label map in the same grid and geometry. Internally the image is always
``(C, *spatial)``: the channels the spec takes, each with its own intensity steps. Model
outputs are ``(N, C, *spatial)`` scores (``segmentation_logits``, channel-first whatever the
input layout) or ``(N, *spatial)`` / ``(N, 1, *spatial)`` class indices (``label_map``).
Scores are resampled to the input grid with ``output.resample`` (``linear`` on scores, or
``nearest`` on classes) before the class mapping.

Where the spec allows, that post-processing runs inside the graph
(:mod:`~medbench_fast.models.postgraph`, ``Model.post``): ``slice2d`` and ``whole_volume``
then receive class indices at the target grid, ``sliding_window`` receives activated
patches already multiplied by the blending weight; on a GPU (IO binding) those patches
stay on the device and are blended there (:mod:`~medbench_fast.models.device_blend`), so
only class planes come back. Batches are padded to the batch size (:meth:`Model._run_batch`).
"""

from __future__ import annotations

import numpy as np

from medbench_fast.data.reader import Volume
from medbench_fast.models.base import CASE_OBJECT, Model, Prediction
from medbench_fast.models.transforms import (
    activate,
    apply_channel_intensity,
    gaussian_importance,
    orientation_transform,
    reorient,
    resize,
    select_channels,
    to_channels,
    unreorient,
    window_starts,
)


def _grid_shape(volume: Volume, target_spacing) -> tuple[int, ...]:
    return _grid_for(volume.shape, volume.spacing, target_spacing)


def _grid_for(shape, spacing, target_spacing) -> tuple[int, ...]:
    """Voxel counts of a volume of ``shape`` at ``spacing`` (mm) resampled to ``target_spacing``."""
    if target_spacing is None:
        return tuple(shape)
    return tuple(max(int(round(n * s / t)), 1) for n, s, t in zip(shape, spacing, target_spacing))


class _Segmenter(Model):
    """Shared input channels and output handling for segmentation strategies."""

    def _image(self, volume: Volume, shape) -> np.ndarray:
        """The spec's channels of ``volume``, resampled (linear) to ``shape`` and intensity-
        transformed per channel: float32 ``(C, *shape)``."""
        image = select_channels(volume, self.spec)
        image = resize(image, shape, order=1) if tuple(shape) != volume.shape else image
        return apply_channel_intensity(image, self.spec)

    def _scores(self, out: np.ndarray) -> np.ndarray:
        """Model output -> float scores ``(N, C, *spatial)`` or int classes ``(N, *spatial)``."""
        if self.spec.output.kind == "label_map":
            return out.reshape((out.shape[0],) + out.shape[-self.spatial_rank:]).astype(np.int64)
        return activate(out.astype(np.float32, copy=False), self.spec.output.activation, axis=1)

    def _argmax_directly(self, out: np.ndarray, shape) -> bool:
        """True when classes follow from the raw logits at once: no resampling, and the
        activation cannot change the winner (softmax is monotonic; one sigmoid channel
        exceeds 0.5 exactly where its logit exceeds 0)."""
        if self.spec.output.kind != "segmentation_logits" or tuple(out.shape[2:]) != tuple(shape):
            return False
        return out.shape[1] > 1 or self.spec.output.activation in ("none", "sigmoid")

    @staticmethod
    def _argmax(out: np.ndarray) -> np.ndarray:
        """``(N, C, *spatial)`` logits -> ``(N, *spatial)`` class indices (uint8 up to 256 classes)."""
        from medbench_fast.kernels.argmax import channel_argmax

        dtype = np.uint8 if out.shape[1] <= 256 else np.uint16
        if out.shape[1] == 1:
            return (out[:, 0] > 0).astype(dtype)
        classes = np.empty((out.shape[0], int(np.prod(out.shape[2:]))), dtype)
        channel_argmax(np.ascontiguousarray(out).reshape(out.shape[0], out.shape[1], -1), classes)
        return classes.reshape((out.shape[0],) + out.shape[2:])

    def _classes(self, scores: np.ndarray, shape) -> np.ndarray:
        """``(C, *spatial)`` scores or ``(*spatial)`` classes -> classes at ``shape``."""
        if self.spec.output.kind == "label_map":
            return resize(scores, shape, order=0)
        if self.spec.output.resample == "linear":
            scores = resize(scores, shape, order=1)
        if scores.shape[0] == 1:
            classes = (scores[0] > (0.5 if self.spec.output.activation != "none" else 0.0)).astype(np.int64)
        else:
            classes = np.argmax(scores, axis=0)
        return resize(classes, shape, order=0)


class SliceModel(_Segmenter):
    """2D model applied to slices along ``strategy.axis`` in batches of ``strategy.batch_size``."""

    spatial_rank = 2

    def expected_input_sizes(self):
        size = self.spec.strategy.input_size
        return [list(size) if size is not None else None]

    def input_sizes_for(self, shape, spacing):
        if self.spec.strategy.input_size is not None:
            return self.expected_input_sizes()
        grid = _grid_for(shape, spacing, self.spec.target_spacing)
        return [[n for i, n in enumerate(grid) if i != self.spec.strategy.axis]]

    def _prepare(self, volume, mask):
        shape = _grid_shape(volume, self.spec.target_spacing)
        image = self._image(volume, shape)
        return np.moveaxis(image, self.spec.strategy.axis + 1, 0), shape  # (slices, C, H, W)

    def _execute(self, state, volume, clock):
        if self.spec.output.kind == "case_scores":
            return self._classify(state, clock)
        slices, shape = state
        s = self.spec.strategy
        hw = slices.shape[2:]
        parts = []
        for start in range(0, slices.shape[0], s.batch_size):
            batch = slices[start:start + s.batch_size]
            if s.input_size is not None and tuple(s.input_size) != hw:
                batch = resize(batch, s.input_size, order=1)
            x = to_channels(batch, self.spec.channels, self.spec.intensity, self.spec.layout)
            if self.post is not None:  # class indices at the slice grid, from the graph
                parts.append(self._run_batch([x], clock, self.post.size_feed(s.batch_size, hw)))
                continue
            out = self._run_batch([x], clock)
            if self._argmax_directly(out, hw):
                parts.append(self._argmax(out))
                continue
            if self.spec.output.kind == "label_map" and tuple(out.shape[-2:]) == tuple(hw):
                classes = out.reshape((out.shape[0],) + tuple(hw))  # class indices as given
                parts.append(classes if classes.dtype.kind == "u" else classes.astype(np.int64))
                continue
            scores = self._scores(out)
            if self.spec.output.kind == "label_map":
                parts.append(resize(scores, hw, order=0))
            else:
                parts.append(np.stack([self._classes(sc, hw) for sc in scores]))
        classes = np.moveaxis(np.concatenate(parts), 0, s.axis)
        if classes.shape != volume.shape:
            classes = resize(classes, volume.shape, order=0)
        return Prediction(label_map=self._label_volume(classes, volume), scores=None)

    def _classify(self, state, clock) -> Prediction:
        """Image classifier on every slice: class probabilities averaged over slices (object 0 = the volume)."""
        slices, _ = state
        s = self.spec.strategy
        total = None
        for start in range(0, slices.shape[0], s.batch_size):
            batch = slices[start:start + s.batch_size]
            if s.input_size is not None and tuple(s.input_size) != batch.shape[2:]:
                batch = resize(batch, s.input_size, order=1)
            x = to_channels(batch, self.spec.channels, self.spec.intensity, self.spec.layout)
            probs = activate(self._run_batch([x], clock).astype(np.float32), self.spec.output.activation, axis=1)
            part = probs.sum(axis=0, dtype=np.float64)
            total = part if total is None else total + part
        mean = total / slices.shape[0]
        if self.spec.output.score_classes:
            mean = mean[self.spec.output.score_classes]
        entry = {"object_id": CASE_OBJECT}
        entry.update({f"score_{name}": float(v) for name, v in zip(self.spec.output.score_names, mean)})
        entry.update({"voxels": int(slices.shape[0] * np.prod(slices.shape[2:])), "slices": int(slices.shape[0])})
        return Prediction(label_map=None, scores=[entry])


class SlidingWindowModel(_Segmenter):
    """3D model on overlapping patches, blended with a Gaussian importance map."""

    def expected_input_sizes(self):
        return [list(self.spec.strategy.patch_size)]

    def _prepare(self, volume, mask):
        shape = _grid_shape(volume, self.spec.target_spacing)
        image = self._image(volume, shape)
        patch = self.spec.strategy.patch_size
        pad = [(0, 0)] + [(0, max(p - n, 0)) for n, p in zip(image.shape[1:], patch)]
        return np.pad(image, pad) if any(after for _, after in pad) else image, shape

    def _execute(self, state, volume, clock):
        image, shape = state
        s, o = self.spec.strategy, self.spec.output
        patch = tuple(s.patch_size)
        weight = gaussian_importance(patch, s.sigma_scale)
        spatial = image.shape[1:]
        corners = [(z, y, x) for z in window_starts(spatial[0], patch[0], s.overlap)
                   for y in window_starts(spatial[1], patch[1], s.overlap)
                   for x in window_starts(spatial[2], patch[2], s.overlap)]
        # Scores must be kept whole only to resample them linearly back; otherwise planes
        # are turned into classes as soon as no later patch touches them.
        keep_scores = o.kind == "segmentation_logits" and o.resample == "linear" and tuple(shape) != volume.shape
        kept: list[np.ndarray] = []
        out_classes: list[np.ndarray] = []

        def emit(z0: int, scores: np.ndarray) -> None:
            scores = scores[:, :max(min(shape[0] - z0, scores.shape[1]), 0), :shape[1], :shape[2]]
            if keep_scores:
                kept.append(scores)
                return
            if not out_classes:
                out_classes.append(np.zeros(shape, np.uint8 if scores.shape[0] <= 256 else np.uint16))
            if scores.shape[1]:
                out_classes[0][z0:z0 + scores.shape[1]] = self._plane_classes(scores)

        if self._blends_on_device(keep_scores):
            classes = self._blend_on_device(image, corners, weight, clock)
            classes = classes[:shape[0], :shape[1], :shape[2]]
            return Prediction(label_map=self._label_volume(resize(classes, volume.shape, order=0), volume),
                              scores=None)
        blender = None
        for start in range(0, len(corners), s.batch_size):
            group = corners[start:start + s.batch_size]
            batch = np.stack([image[:, z:z + patch[0], y:y + patch[1], x:x + patch[2]] for z, y, x in group])
            out = self._run_batch([to_channels(batch, self.spec.channels, self.spec.intensity, self.spec.layout)], clock)
            weighted = self.post is not None  # activation and weight applied in the graph
            scores = out if weighted else self._scores(out)
            if o.kind == "label_map":  # one-hot, so that patches vote; unmapped classes -> 0
                n_classes = int(max(o.labels)) + 1
                scores = np.where((scores >= 0) & (scores < n_classes), scores, 0)
                scores = np.eye(n_classes, dtype=np.float32)[scores].transpose(0, 4, 1, 2, 3)
            if blender is None:
                blender = _Blender(scores.shape[1], spatial, patch[0], emit)
            for corner, sc in zip(group, scores):
                blender.add(corner, sc, weight, weighted=weighted)
        blender.finish()
        if keep_scores:
            return Prediction(label_map=self._label_volume(self._classes(np.concatenate(kept, axis=1), volume.shape),
                                                           volume), scores=None)
        return Prediction(label_map=self._label_volume(resize(out_classes[0], volume.shape, order=0), volume),
                          scores=None)

    def _blends_on_device(self, keep_scores: bool) -> bool:
        """The blend stays on the device when the model runs there through IO binding with the
        blending weight in its graph and only classes are needed (no linear resample of scores)."""
        binding = getattr(self.session, "binding", None)
        return (binding is not None and hasattr(binding, "run_on_device") and self.post is not None
                and self.post.kind == "weighted" and not keep_scores)

    def _blend_on_device(self, image: np.ndarray, corners, weight: np.ndarray, clock) -> np.ndarray:
        """:class:`~medbench_fast.models.device_blend.DeviceBlender` over every patch batch;
        the classes of the padded grid (only they come back to the host)."""
        import onnxruntime

        from medbench_fast.models.device_blend import DeviceBlender

        s, binding = self.spec.strategy, self.session.binding
        patch = tuple(s.patch_size)
        providers = (["CPUExecutionProvider"] if binding.device == "cpu" else
                     [("CUDAExecutionProvider", {"device_id": str(binding.device_id)}), "CPUExecutionProvider"])
        threshold = 0.5 if self.spec.output.activation != "none" else 0.0
        blender = DeviceBlender(onnxruntime, binding, providers, channels=self.post.channels, grid=image.shape[1:],
                                patch=patch, batch=s.batch_size, threshold=threshold)
        for start in range(0, len(corners), s.batch_size):
            group = corners[start:start + s.batch_size]
            batch = np.stack([image[:, z:z + patch[0], y:y + patch[1], x:x + patch[2]] for z, y, x in group])
            arrays = self._padded([to_channels(batch, self.spec.channels, self.spec.intensity, self.spec.layout)])
            blender.add(group, self._run(arrays, clock, call=binding.run_on_device), weight)
        return blender.finish()

    def _plane_classes(self, scores: np.ndarray) -> np.ndarray:
        """Blended ``(C, *spatial)`` scores -> classes (argmax; one channel: above 0.5, or 0 for raw logits)."""
        if scores.shape[0] == 1 and self.spec.output.kind == "segmentation_logits":
            return scores[0] > (0.5 if self.spec.output.activation != "none" else 0.0)
        return np.argmax(scores, axis=0)


class _Blender:
    """Weighted sum of overlapping patches in a z-slab of ``depth`` planes that rolls forward.

    Patches must arrive in non-decreasing z. When a patch would reach past the slab, the
    planes before it are final: they are normalised by the summed weights and handed to
    ``emit(z0, scores)``, and the slab moves on. The float32 sums are those of a whole-volume
    accumulator, added in the same order, in ``depth / Z`` of its memory.
    """

    def __init__(self, channels: int, grid: tuple[int, ...], depth: int, emit):
        self.acc = np.zeros((channels, depth) + tuple(grid[1:]), np.float32)
        self.norm = np.zeros((depth,) + tuple(grid[1:]), np.float32)
        self.grid, self.depth, self.base, self.emit = tuple(grid), depth, 0, emit

    def add(self, corner, scores: np.ndarray, weight: np.ndarray, *, weighted: bool) -> None:
        z, y, x = corner
        if z + scores.shape[1] > self.base + self.depth:
            self._flush(z)
        r = z - self.base
        region = (slice(r, r + scores.shape[1]), slice(y, y + scores.shape[2]), slice(x, x + scores.shape[3]))
        self.acc[(slice(None),) + region] += scores if weighted else scores * weight
        self.norm[region] += weight

    def _flush(self, upto: int) -> None:
        k = upto - self.base
        self.emit(self.base, self.acc[:, :k] / self.norm[:k])
        keep = self.depth - k
        self.acc[:, :keep] = self.acc[:, k:]
        self.acc[:, keep:] = 0
        self.norm[:keep] = self.norm[k:]
        self.norm[keep:] = 0
        self.base = upto

    def finish(self) -> None:
        k = min(self.depth, self.grid[0] - self.base)
        self.emit(self.base, self.acc[:, :k] / self.norm[:k])


class WholeVolumeModel(_Segmenter):
    """The whole volume, reoriented (optional) and resampled to ``strategy.input_size``."""

    def expected_input_sizes(self):
        return [list(self.spec.strategy.input_size)]

    def _prepare(self, volume, mask):
        s = self.spec.strategy
        image = select_channels(volume, self.spec)
        transform = None
        if s.orientation is not None:
            transform = orientation_transform(volume.direction, s.orientation)
            image = reorient(image, *transform)
        oriented_shape = image.shape[1:]
        image = resize(image, s.input_size, order=0 if s.interpolation == "nearest" else 1)
        image = apply_channel_intensity(image, self.spec)
        x = to_channels(image[None], self.spec.channels, self.spec.intensity, self.spec.layout)
        return x, transform, oriented_shape

    def _execute(self, state, volume, clock):
        x, transform, oriented_shape = state
        if self.post is not None:
            classes = self._run([x], clock, self.post.size_feed(1, oriented_shape))[0]
        else:
            classes = self._classes(self._scores(self._run([x], clock))[0], oriented_shape)
        if transform is not None:
            classes = np.ascontiguousarray(unreorient(classes, *transform))
        return Prediction(label_map=self._label_volume(classes, volume), scores=None)
