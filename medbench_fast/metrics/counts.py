"""All-label confusion counts from one pass over a pair of label maps.

``label_counts`` validates and normalises the inputs (dtype, memory order, read-only
memmaps, no copies for C- or F-ordered integer arrays), runs
:func:`medbench_fast.kernels.counts.joint_histogram` and reduces its per-chunk partials
serially, so the result is deterministic for any thread count.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numba
import numpy as np

from medbench_fast.kernels._jit import PARALLEL_MIN_VOXELS, parallel_launch
from medbench_fast.kernels.counts import joint_histogram

#: Distinct label values per chunk tried first; grown x4 up to :data:`MAX_LABELS` on overflow.
_START_CAP = 64
#: Most distinct label values a pair may hold (semantic label maps, not instance maps).
MAX_LABELS = 1024
#: Largest label value (labels are counted as int64).
MAX_LABEL_VALUE = int(np.iinfo(np.int64).max)


@dataclass(frozen=True)
class LabelCounts:
    """Joint histogram of a (reference, prediction) pair of label maps.

    ``values`` are the sorted distinct label values present in either map (int64);
    ``hist[i, j]`` counts voxels with reference ``values[i]`` and prediction ``values[j]``;
    ``ref_boxes[i]`` / ``pred_boxes[i]`` are half-open ``(z0, z1, y0, y1, x0, x1)`` index
    boxes of ``values[i]`` in each map (all zero where absent), in the caller's axis order.
    """

    values: np.ndarray
    hist: np.ndarray
    ref_boxes: np.ndarray
    pred_boxes: np.ndarray
    n_voxels: int

    def index(self, label: int) -> int | None:
        """Compact index of ``label``, or None when it is absent from both maps."""
        i = int(np.searchsorted(self.values, label))
        return i if i < len(self.values) and self.values[i] == label else None

    def union_box(self, label: int | Iterable[int]) -> tuple[tuple[int, int], ...] | None:
        """Half-open box of ``label`` (or of every value of a label set) in reference | prediction,
        or None when absent from both."""
        boxes = []  # (z0, z1, y0, y1, x0, x1) lists of the maps that hold a value
        for value in ((label,) if isinstance(label, (int, np.integer)) else label):
            i = self.index(value)
            if i is not None:
                if self.hist[i].any():
                    boxes.append(self.ref_boxes[i].tolist())
                if self.hist[:, i].any():
                    boxes.append(self.pred_boxes[i].tolist())
        if not boxes:
            return None
        return tuple((min(b[lo] for b in boxes), max(b[lo + 1] for b in boxes)) for lo in (0, 2, 4))


def as_label_array(array: np.ndarray, name: str) -> np.ndarray:
    """Return ``array`` as a 3D integer array without copying integer input.

    Booleans are viewed as ``uint8``; floating-point arrays must hold integral values and
    are converted (a copy). Raises ``ValueError`` naming ``name`` otherwise.
    """
    arr = np.asarray(array)  # a memmap becomes a plain ndarray view, no copy
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected a 3D label map (Z, Y, X), got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    if arr.dtype == np.uint64:  # the kernels count in int64: larger values are refused, the rest viewed
        hi = int(arr.max()) if arr.size else 0
        if hi > MAX_LABEL_VALUE:
            raise ValueError(f"{name}: label {hi} is out of range; labels must be integers from 0 to {MAX_LABEL_VALUE}")
        return arr.view(np.int64)
    kind = arr.dtype.kind
    if kind in "iu":
        return arr
    if kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            raise ValueError(f"{name}: floating-point label map holds {arr.size - np.count_nonzero(finite)} "
                             "NaN or infinite value(s); expected integer labels")
        if not np.array_equal(arr, np.rint(arr)):
            raise ValueError(f"{name}: floating-point label map holds non-integral values; expected integer labels")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < 0:
            raise ValueError(f"{name}: negative label {lo:g}; labels must be >= 0")
        if hi > MAX_LABEL_VALUE:
            raise ValueError(f"{name}: label {hi:g} is out of range; labels must be integers from 0 to {MAX_LABEL_VALUE}")
        return arr.astype(np.min_scalar_type(int(hi)))
    raise ValueError(f"{name}: dtype {arr.dtype} is not a label map dtype (integer, bool or integral float)")


def _same_memory_order(ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """C-ordered views of both arrays; F-ordered pairs are transposed (``True`` returned)."""
    if ref.flags.c_contiguous and pred.flags.c_contiguous:
        return ref, pred, False
    if ref.flags.f_contiguous and pred.flags.f_contiguous:
        return ref.T, pred.T, True
    return np.ascontiguousarray(ref), np.ascontiguousarray(pred), False


def _words(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """A view of ``arr`` (C-ordered) as aligned 64-bit words along the last axis, or ``arr``
    itself if impossible."""
    itemsize = arr.dtype.itemsize
    if itemsize <= 8 and (arr.shape[2] * itemsize) % 8 == 0:
        words = arr.view(np.uint64)
        if words.flags.aligned:  # the buffer starts on a word boundary
            return words, 8 // itemsize
    return arr, 1


@functools.cache
def _splat(vpw: int) -> np.uint64:
    """The word that repeats a 1-valued voxel ``vpw`` times (0x0101...01 for bytes)."""
    bits = 64 // vpw
    return np.uint64(sum(1 << (bits * i) for i in range(vpw)))


def _read_only(arr: np.ndarray) -> np.ndarray:
    """``arr``, viewed read-only: the kernel is compiled (and its compiled code cached) for one
    combination of array flags, so decoded arrays and read-only memory maps of the volume cache
    share one specialisation instead of loading or compiling one per combination."""
    if not arr.flags.writeable:
        return arr
    view = arr.view()
    view.flags.writeable = False
    return view


def _pair_dtype(ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Views with one dtype per pair where possible, so numba compiles fewer variants."""
    if ref.dtype == pred.dtype:
        return ref, pred
    common = np.promote_types(ref.dtype, pred.dtype)
    return ref.astype(common, copy=False), pred.astype(common, copy=False)


def label_counts(ref: np.ndarray, pred: np.ndarray) -> LabelCounts:
    """Count every (reference label, predicted label) voxel pair in one parallel pass.

    Parameters
    ----------
    ref, pred : 3D label maps of equal shape, axes ``(Z, Y, X)``: any integer or bool dtype,
        C- or F-ordered arrays or read-only ``np.memmap``; never written, not copied unless
        their dtypes or memory orders differ (then one is converted).

    Returns
    -------
    LabelCounts
    """
    ref = as_label_array(ref, "ref")
    pred = as_label_array(pred, "pred")
    if ref.shape != pred.shape:
        raise ValueError(f"ref and pred shapes differ: {ref.shape} vs {pred.shape}")
    ref, pred = _pair_dtype(ref, pred)
    c_ref, c_pred, transposed = _same_memory_order(ref, pred)
    if ref.size == 0:
        raise ValueError(f"ref: empty array of shape {ref.shape}")
    c_ref, c_pred = _read_only(c_ref), _read_only(c_pred)
    (ref_w, vpw), (pred_w, pred_vpw) = _words(c_ref), _words(c_pred)
    if vpw != pred_vpw:  # e.g. one buffer unaligned: count voxel by voxel
        ref_w, pred_w, vpw = c_ref, c_pred, 1
    rows = c_ref.shape[0] * c_ref.shape[1]
    # one chunk where the kernel runs on one thread anyway: fewer partials to reduce (the counts are equal)
    nchunks = 1 if c_ref.size < PARALLEL_MIN_VOXELS else max(1, min(rows, 4 * numba.get_num_threads()))
    cap = _START_CAP
    while True:
        with parallel_launch(c_ref.size):
            values, nvalues, hist, rbox, pbox = joint_histogram(c_ref, c_pred, ref_w, pred_w, vpw, _splat(vpw),
                                                                nchunks, cap)
        if nvalues.min() >= 0:
            break
        if cap >= MAX_LABELS:
            raise ValueError(f"ref/pred hold more than {MAX_LABELS} distinct label values; "
                             "medbench-fast evaluates semantic label maps, not instance maps")
        cap = min(cap * 4, MAX_LABELS)
    result = _reduce(values, nvalues, hist, rbox, pbox, transposed, int(ref.size))
    _check_non_negative(result)
    return _drop_unseen_zero(result)


def _reduce(values, nvalues, hist, rbox, pbox, transposed: bool, n_voxels: int) -> LabelCounts:
    if len(nvalues) == 1:  # one chunk (every array below the parallel threshold): its table, sorted by value
        order = np.argsort(values[0, : nvalues[0]])
        all_values = values[0, order]
        total = hist[0].take(order, 0).take(order, 1)
        ref_box, pred_box = rbox[0, order], pbox[0, order]
    else:  # merge the chunks' tables, each in first-seen order
        all_values = np.unique(np.concatenate([values[c, : nvalues[c]] for c in range(len(nvalues))]))
        k = len(all_values)
        total = np.zeros((k, k), np.int64)
        ref_box = np.tile(np.array([np.iinfo(np.int64).max, -1], np.int64), (k, 3))
        pred_box = ref_box.copy()
        for c in range(len(nvalues)):
            n = int(nvalues[c])
            idx = np.searchsorted(all_values, values[c, :n])
            total[np.ix_(idx, idx)] += hist[c, :n, :n]
            for box, part in ((ref_box, rbox[c, :n]), (pred_box, pbox[c, :n])):
                lo, hi = box[:, 0::2], box[:, 1::2]  # views: the updates land in box
                np.minimum.at(lo, idx, part[:, 0::2])
                np.maximum.at(hi, idx, part[:, 1::2])
    return LabelCounts(all_values.astype(np.int64, copy=False), total, _half_open(ref_box, transposed),
                       _half_open(pred_box, transposed), n_voxels)


#: Added to the kernel's inclusive ``(zmin, zmax, ymin, ymax, xmin, xmax)`` to make boxes half-open.
_HALF_OPEN = np.array([0, 1, 0, 1, 0, 1], np.int64)
#: Columns of a box of an F-ordered pair (the kernel saw ``(X, Y, Z)``) in the caller's ``(Z, Y, X)``.
_TRANSPOSED = [4, 5, 2, 3, 0, 1]


def _half_open(box: np.ndarray, transposed: bool) -> np.ndarray:
    """Half-open ``(z0, z1, y0, y1, x0, x1)`` boxes from the kernel's inclusive ones (all zero
    for a value absent from that map: ``zmax < 0``), in the caller's axis order."""
    out = box + _HALF_OPEN
    out[box[:, 1] < 0] = 0
    return out[:, _TRANSPOSED] if transposed else out


def _check_non_negative(counts: LabelCounts) -> None:
    """Refuse negative labels (``counts.values`` is sorted: any negative one comes first)."""
    if not len(counts.values) or counts.values[0] >= 0:
        return
    for i in np.flatnonzero(counts.values < 0):
        side = "ref" if counts.hist[i].sum() else "pred"
        raise ValueError(f"{side}: negative label {int(counts.values[i])}; labels must be >= 0")


def _drop_unseen_zero(counts: LabelCounts) -> LabelCounts:
    """Remove the value 0 where no voxel holds it: the kernel seeds every chunk's table with 0,
    and enters every other value on its first voxel. ``counts.values`` is sorted and non-negative."""
    if counts.values[0] != 0 or counts.hist[0].any() or counts.hist[:, 0].any():
        return counts
    return LabelCounts(counts.values[1:], counts.hist[1:, 1:], counts.ref_boxes[1:], counts.pred_boxes[1:],
                       counts.n_voxels)
