"""Segmentation strategies: 2D slice-wise, 3D sliding window, whole volume on a fixed grid.

All three take a :class:`Volume` in ``(Z, Y, X)`` and return a label map in the same grid
and geometry. Model outputs are ``(N, C, *spatial)`` scores (``segmentation_logits``,
channel-first whatever the input layout) or ``(N, *spatial)`` / ``(N, 1, *spatial)`` class
indices (``label_map``). Scores are resampled to the input grid with ``output.resample``
(``linear`` on scores, or ``nearest`` on classes) before the class mapping.
"""

from __future__ import annotations

import numpy as np

from medbench_fast.data.reader import Volume
from medbench_fast.models.base import Model, Prediction
from medbench_fast.models.transforms import (
    activate,
    apply_intensity,
    gaussian_importance,
    orientation_transform,
    reorient,
    resize,
    to_channels,
    unreorient,
    window_starts,
)


def _grid_shape(volume: Volume, target_spacing) -> tuple[int, ...]:
    if target_spacing is None:
        return volume.shape
    return tuple(max(int(round(n * s / t)), 1) for n, s, t in zip(volume.shape, volume.spacing, target_spacing))


class _Segmenter(Model):
    """Shared output handling for segmentation strategies."""

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

    def _prepare(self, volume, mask):
        shape = _grid_shape(volume, self.spec.target_spacing)
        image = resize(volume.array, shape, order=1) if shape != volume.shape else volume.array
        image = apply_intensity(image, self.spec.intensity)
        return np.moveaxis(image, self.spec.strategy.axis, 0), shape

    def _execute(self, state, volume, clock):
        if self.spec.output.kind == "case_scores":
            return self._classify(state, clock)
        slices, shape = state
        s = self.spec.strategy
        hw = slices.shape[1:]
        parts = []
        for start in range(0, slices.shape[0], s.batch_size):
            batch = slices[start:start + s.batch_size]
            if s.input_size is not None and tuple(s.input_size) != hw:
                batch = resize(batch, s.input_size, order=1)
            x = to_channels(batch, self.spec.channels, self.spec.intensity, self.spec.layout)
            out = self._run([x], clock)
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
            if s.input_size is not None and tuple(s.input_size) != batch.shape[1:]:
                batch = resize(batch, s.input_size, order=1)
            x = to_channels(batch, self.spec.channels, self.spec.intensity, self.spec.layout)
            probs = activate(self._run([x], clock).astype(np.float32), self.spec.output.activation, axis=1)
            part = probs.sum(axis=0, dtype=np.float64)
            total = part if total is None else total + part
        mean = total / slices.shape[0]
        if self.spec.output.score_classes:
            mean = mean[self.spec.output.score_classes]
        entry = {"object_id": 0}
        entry.update({f"score_{name}": float(v) for name, v in zip(self.spec.output.score_names, mean)})
        entry.update({"voxels": int(np.prod(slices.shape)), "slices": int(slices.shape[0])})
        return Prediction(label_map=None, scores=[entry])


class SlidingWindowModel(_Segmenter):
    """3D model on overlapping patches, blended with a Gaussian importance map."""

    def expected_input_sizes(self):
        return [list(self.spec.strategy.patch_size)]

    def _prepare(self, volume, mask):
        shape = _grid_shape(volume, self.spec.target_spacing)
        image = resize(volume.array, shape, order=1) if shape != volume.shape else volume.array
        image = apply_intensity(image, self.spec.intensity)
        patch = self.spec.strategy.patch_size
        pad = [(0, max(p - n, 0)) for n, p in zip(image.shape, patch)]
        return np.pad(image, pad) if any(after for _, after in pad) else image, shape

    def _execute(self, state, volume, clock):
        image, shape = state
        s = self.spec.strategy
        patch = tuple(s.patch_size)
        weight = gaussian_importance(patch, s.sigma_scale)
        corners = [(z, y, x) for z in window_starts(image.shape[0], patch[0], s.overlap)
                   for y in window_starts(image.shape[1], patch[1], s.overlap)
                   for x in window_starts(image.shape[2], patch[2], s.overlap)]
        accumulator = None
        norm = np.zeros(image.shape, dtype=np.float32)
        for start in range(0, len(corners), s.batch_size):
            group = corners[start:start + s.batch_size]
            batch = np.stack([image[z:z + patch[0], y:y + patch[1], x:x + patch[2]] for z, y, x in group])
            out = self._run([to_channels(batch, self.spec.channels, self.spec.intensity, self.spec.layout)], clock)
            scores = self._scores(out)
            if self.spec.output.kind == "label_map":  # one-hot, so that patches vote; unmapped classes -> 0
                n_classes = int(max(self.spec.output.labels)) + 1
                scores = np.where((scores >= 0) & (scores < n_classes), scores, 0)
                scores = np.eye(n_classes, dtype=np.float32)[scores].transpose(0, 4, 1, 2, 3)
            if accumulator is None:
                accumulator = np.zeros((scores.shape[1],) + image.shape, dtype=np.float32)
            for (z, y, x), sc in zip(group, scores):
                region = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
                accumulator[(slice(None),) + region] += sc * weight
                norm[region] += weight
        accumulator /= norm
        accumulator = accumulator[(slice(None),) + tuple(slice(0, n) for n in shape)]
        if self.spec.output.kind == "label_map":
            classes = resize(np.argmax(accumulator, axis=0), volume.shape, order=0)
        else:
            classes = self._classes(accumulator, volume.shape)
        return Prediction(label_map=self._label_volume(classes, volume), scores=None)


class WholeVolumeModel(_Segmenter):
    """The whole volume, reoriented (optional) and resampled to ``strategy.input_size``."""

    def expected_input_sizes(self):
        return [list(self.spec.strategy.input_size)]

    def _prepare(self, volume, mask):
        s = self.spec.strategy
        image = volume.array
        transform = None
        if s.orientation is not None:
            transform = orientation_transform(volume.direction, s.orientation)
            image = reorient(image, *transform)
        oriented_shape = image.shape
        image = resize(image, s.input_size, order=0 if s.interpolation == "nearest" else 1)
        image = apply_intensity(image, self.spec.intensity)
        x = to_channels(image[None], self.spec.channels, self.spec.intensity, self.spec.layout)
        return x, transform, oriented_shape

    def _execute(self, state, volume, clock):
        x, transform, oriented_shape = state
        scores = self._scores(self._run([x], clock))[0]
        classes = self._classes(scores, oriented_shape)
        if transform is not None:
            classes = np.ascontiguousarray(unreorient(classes, *transform))
        return Prediction(label_map=self._label_volume(classes, volume), scores=None)
