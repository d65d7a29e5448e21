"""Array transforms shared by the inference strategies (numpy only).

Resizing uses the half-pixel convention (voxel centres at ``i + 0.5``), which is what
``torch.nn.functional.interpolate(..., align_corners=False)`` and ``mode="nearest-exact"``
use: ``linear`` samples at ``(i + 0.5) * n_in / n_out - 0.5`` (clamped to the edge),
``nearest`` takes ``floor((i + 0.5) * n_in / n_out)``.
"""

from __future__ import annotations

import numpy as np

from medbench_fast.data.reader import Volume
from medbench_fast.models.spec import IntensityStep, ModelError, ModelSpec

_LPS_OF = {"R": (-1, 0, 0), "L": (1, 0, 0), "A": (0, -1, 0), "P": (0, 1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


def resize(array: np.ndarray, shape, *, order: int, axes=None) -> np.ndarray:
    """Resize ``array`` along ``axes`` (default: the last ``len(shape)`` axes) to ``shape``.

    ``order`` 0 = nearest (any dtype, dtype kept), 1 = linear (returns float32).
    """
    axes = tuple(range(array.ndim - len(shape), array.ndim)) if axes is None else tuple(axes)
    out = array if order == 0 else array.astype(np.float32, copy=False)
    for axis, n_out in zip(axes, shape):
        n_in = out.shape[axis]
        if n_in == n_out:
            continue
        centres = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out)
        if order == 0:
            idx = np.minimum(np.floor(centres).astype(np.intp), n_in - 1)
            out = np.take(out, idx, axis=axis)
            continue
        pos = np.clip(centres - 0.5, 0.0, n_in - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n_in - 1)
        w = (pos - lo).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        a_lo, a_hi = np.take(out, lo, axis=axis), np.take(out, hi, axis=axis)
        out = a_lo + (a_hi - a_lo) * w
    return out


def orientation_transform(direction, code: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(perm, flips)`` that bring a ``(Z, Y, X)`` array with ``direction`` into ``code`` order.

    ``direction`` is :attr:`Volume.direction` (row-major 3x3, re-indexed to ``(Z, Y, X)``;
    column ``b`` is array axis ``b``'s direction in LPS with components ``(z, y, x)``).
    ``code`` is a nibabel-style code: ``"RAS"`` means output axis 0 increases towards Right,
    axis 1 towards Anterior, axis 2 towards Superior (``nib.as_closest_canonical``).
    The reoriented array is ``np.flip(array.transpose(perm), flips)``.
    """
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    axes_xyz = d[::-1, :].T  # row b: direction of array axis b in (x, y, z)
    perm: list[int] = []
    flips: list[int] = []
    for k, letter in enumerate(code.upper()):
        target = np.asarray(_LPS_OF[letter], dtype=np.float64)
        dots = axes_xyz @ target
        for b in perm:
            dots[b] = 0.0
        b = int(np.argmax(np.abs(dots)))
        perm.append(b)
        if dots[b] < 0:
            flips.append(k)
    return tuple(perm), tuple(flips)


def reorient(array: np.ndarray, perm, flips) -> np.ndarray:
    """Apply :func:`orientation_transform`'s result to the last three axes of ``array``."""
    lead = array.ndim - 3
    out = array.transpose(tuple(range(lead)) + tuple(lead + p for p in perm))
    return np.flip(out, tuple(lead + f for f in flips)) if flips else out


def unreorient(array: np.ndarray, perm, flips) -> np.ndarray:
    """Inverse of :func:`reorient` on the last three axes."""
    lead = array.ndim - 3
    out = np.flip(array, tuple(lead + f for f in flips)) if flips else array
    inverse = np.argsort(perm)
    return out.transpose(tuple(range(lead)) + tuple(lead + int(i) for i in inverse))


def apply_intensity(image: np.ndarray, steps: list[IntensityStep]) -> np.ndarray:
    """Apply the intensity steps that act on the single-channel image (all but ``normalize``)."""
    x = np.asarray(image, dtype=np.float32)
    if not np.issubdtype(np.asarray(image).dtype, np.integer):  # integer images hold no NaN or inf
        x = np.nan_to_num(x)
    for step in steps:
        if step.op == "window":
            lo, hi = step.range
            x = (np.clip(x, lo, hi) - lo) / np.float32(hi - lo)
        elif step.op == "clip":
            x = np.clip(x, np.float32(step.range[0]), np.float32(step.range[1]))
        elif step.op == "percentile_scale":
            lo, hi = np.percentile(x, step.percentiles)
            x = np.clip((x - lo) / np.float32(max(hi - lo, 1e-12)), 0.0, 1.0)
        elif step.op == "zscore":
            x = (x - x.mean(dtype=np.float64)) / np.float32(max(x.std(dtype=np.float64, ddof=1), 1e-12))
        elif step.op == "affine":
            x = x * np.float32(step.scale) + np.float32(step.shift)
    return x.astype(np.float32, copy=False)


def select_channels(volume: Volume, spec: ModelSpec) -> np.ndarray:
    """The image channels ``spec`` takes, in its order, as ``(C, Z, Y, X)`` (``C`` = 1 for a
    one-channel image, which :func:`to_channels` replicates).

    With ``spec.channel_names`` and a volume whose ``meta["channel_names"]`` names its channels,
    channels are picked by name (case-insensitive); otherwise the image must have
    ``spec.channels`` channels (or one), taken in order. Raises :class:`ModelError` naming the file.
    """
    array = volume.array if volume.array.ndim == 4 else volume.array[None]
    where = volume.path or "<volume>"
    have = [n.lower() for n in volume.meta.get("channel_names", ())]
    if spec.channel_names and have:
        missing = [n for n in spec.channel_names if n.lower() not in have]
        if missing:
            raise ModelError(f"{where}: model {spec.name!r} takes channel(s) {missing} that the case lacks "
                             f"(its channels: {list(volume.meta['channel_names'])})")
        order = [have.index(n.lower()) for n in spec.channel_names]
        return array if order == list(range(array.shape[0])) else array[order]
    if array.shape[0] not in (1, spec.channels):
        raise ModelError(f"{where}: image has {array.shape[0]} channel(s); model {spec.name!r} takes {spec.channels}")
    return array


def apply_channel_intensity(image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """:func:`apply_intensity` on each channel of ``(C, *spatial)``, with the steps that apply
    to that channel (``IntensityStep.channels``); returns float32 ``(C, *spatial)``."""
    chosen = [(step, spec.step_channels(step)) for step in spec.intensity if step.op != "normalize"]
    if image.shape[0] == 1:
        return apply_intensity(image[0], [step for step, on in chosen if on is None or 0 in on])[None]
    out = np.empty(image.shape, np.float32)
    for c in range(image.shape[0]):
        out[c] = apply_intensity(image[c], [step for step, on in chosen if on is None or c in on])
    return out


def to_channels(batch: np.ndarray, channels: int, steps: list[IntensityStep], layout: str) -> np.ndarray:
    """``(N, C, *spatial)`` -> model input with ``channels`` channels (a single channel is
    replicated), ``normalize`` applied, in ``layout``."""
    x = np.repeat(batch, channels, axis=1) if batch.shape[1] == 1 and channels > 1 else batch
    for step in steps:
        if step.op == "normalize":
            shape = (1, -1) + (1,) * (x.ndim - 2)
            mean = np.asarray(step.mean, dtype=np.float32).reshape(shape)
            std = np.asarray(step.std, dtype=np.float32).reshape(shape)
            x = (x - mean) / std
    if layout == "channels_last":
        x = np.moveaxis(x, 1, -1)
    return np.ascontiguousarray(x, dtype=np.float32)


def activate(scores: np.ndarray, activation: str, axis: int = 1) -> np.ndarray:
    """Softmax or sigmoid along ``axis`` (``none`` returns ``scores``)."""
    if activation == "softmax":
        e = np.exp(scores - scores.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-scores))
    return scores


def gaussian_importance(patch_size, sigma_scale: float) -> np.ndarray:
    """Separable Gaussian weight map (max 1, no zeros) for blending sliding-window patches."""
    weights = np.ones(tuple(patch_size), dtype=np.float32)
    for axis, n in enumerate(patch_size):
        sigma = max(n * sigma_scale, 1e-6)
        coord = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        g = np.exp(-0.5 * (coord / sigma) ** 2).astype(np.float32)
        weights = weights * g.reshape([-1 if a == axis else 1 for a in range(len(patch_size))])
    weights /= weights.max()
    return np.maximum(weights, weights[weights > 0].min())


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of patches covering ``[0, size)`` with at least ``overlap`` overlap."""
    if size <= patch:
        return [0]
    step = max(int(patch * (1.0 - overlap)), 1)
    n = int(np.ceil((size - patch) / step)) + 1
    return [int(round(v)) for v in np.linspace(0, size - patch, n)]


def map_labels(classes: np.ndarray, labels: dict[int, int]) -> np.ndarray:
    """Class indices -> dataset label values (unlisted classes -> 0), uint8 or uint16."""
    top = max(labels.values(), default=0)
    dtype = np.uint8 if top < 256 else np.uint16
    lut = np.zeros(max(int(classes.max(initial=0)), max(labels, default=0)) + 1, dtype=dtype)
    for k, v in labels.items():
        lut[k] = v
    return lut[classes]
