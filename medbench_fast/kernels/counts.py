"""One-pass joint label histogram with per-label bounding boxes.

The kernel reads each voxel of both label maps once. Voxels where both maps are 0 are
counted a machine word at a time (8 ``uint8`` voxels per 64-bit load); every other voxel
goes through a per-chunk open-addressing table that maps label values to compact indices,
so labels {0, 7, 300} cost a 3 x 3 histogram, not 301 x 301.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from medbench_fast.kernels._jit import njit_parallel, njit_serial

#: Slots in each chunk's hash table per label of capacity (load factor <= 1/2).
_SLOTS_PER_LABEL = 2


@njit_serial
def _lookup(value, c, keys, slots, values, nvalues, mask):
    """Compact index of ``value`` in chunk ``c``'s table, inserting it; -1 when full."""
    h = value & mask
    while True:
        i = slots[c, h]
        if i < 0:
            n = nvalues[c]
            if n >= values.shape[1]:
                return -1
            slots[c, h] = n
            keys[c, h] = value
            values[c, n] = value
            nvalues[c] = n + 1
            return n
        if keys[c, h] == value:
            return i
        h = (h + 1) & mask


@njit_serial
def _grow_box(boxes, c, i, z, y, x):
    if z < boxes[c, i, 0]:
        boxes[c, i, 0] = z
    if z > boxes[c, i, 1]:
        boxes[c, i, 1] = z
    if y < boxes[c, i, 2]:
        boxes[c, i, 2] = y
    if y > boxes[c, i, 3]:
        boxes[c, i, 3] = y
    if x < boxes[c, i, 4]:
        boxes[c, i, 4] = x
    if x > boxes[c, i, 5]:
        boxes[c, i, 5] = x


@njit_parallel
def joint_histogram(ref, pred, ref_words, pred_words, vpw, splat, nchunks, cap):
    """Joint histogram of ``(ref, pred)`` label values, per chunk of rows.

    Parameters
    ----------
    ref, pred : 3D C-contiguous integer arrays of equal shape ``(Z, Y, X)``; read only.
    ref_words, pred_words : the same memory viewed as ``(Z, Y, X // vpw)`` unsigned words
        (or the arrays themselves with ``vpw == 1``); used only to skip voxels where both are 0.
    vpw : voxels per word.
    splat : ``uint64`` that copies one voxel's bits to every voxel of a word (``0x0101...01``
        for 1-byte voxels); a word equal to ``(word & item_mask) * splat`` holds one value.
    nchunks : number of row chunks (partials); rows ``Z * Y`` are split evenly.
    cap : capacity of distinct label values per chunk.

    Returns
    -------
    values : (nchunks, cap) int64, label value of each compact index per chunk.
    nvalues : (nchunks,) int64, used entries of ``values``; -1 marks a chunk that overflowed.
    hist : (nchunks, cap, cap) int64, ``hist[c, i, j]`` voxels with ref = values[c, i], pred = values[c, j].
    ref_boxes, pred_boxes : (nchunks, cap, 6) int64 inclusive ``zmin, zmax, ymin, ymax, xmin, xmax``
        of each non-zero value (``zmin > zmax`` when absent).
    """
    nz, ny, nx = ref.shape
    nw = ref_words.shape[2]
    rows = nz * ny
    nslots = 1
    while nslots < _SLOTS_PER_LABEL * cap:
        nslots *= 2
    mask = nslots - 1
    bits = 64 // vpw
    item_mask = np.uint64(0xFFFFFFFFFFFFFFFF) if bits == 64 else (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    values = np.zeros((nchunks, cap), np.int64)
    nvalues = np.zeros(nchunks, np.int64)
    hist = np.zeros((nchunks, cap, cap), np.int64)
    keys = np.zeros((nchunks, nslots), np.int64)
    slots = np.full((nchunks, nslots), -1, np.int64)
    big = np.int64(1) << 62
    ref_boxes = np.empty((nchunks, cap, 6), np.int64)
    pred_boxes = np.empty((nchunks, cap, 6), np.int64)
    for c in range(nchunks):
        for i in range(cap):
            for a in range(3):
                ref_boxes[c, i, 2 * a] = big
                ref_boxes[c, i, 2 * a + 1] = -1
                pred_boxes[c, i, 2 * a] = big
                pred_boxes[c, i, 2 * a + 1] = -1
    for c in prange(nchunks):
        zero = _lookup(0, c, keys, slots, values, nvalues, mask)
        last_r = 0
        last_p = 0
        ri = zero
        pi = zero
        both_zero = 0
        row0 = rows * c // nchunks
        row1 = rows * (c + 1) // nchunks
        for row in range(row0, row1):
            if nvalues[c] < 0:
                break
            z = row // ny
            y = row - z * ny
            for w in range(nw):
                rw = np.uint64(ref_words[z, y, w])
                pw = np.uint64(pred_words[z, y, w])
                if rw == 0 and pw == 0:
                    both_zero += vpw
                    continue
                x0 = w * vpw
                if vpw > 1 and rw == pw and rw == (rw & item_mask) * splat:
                    # a run of one label, equal in both maps: count the word at once
                    r = np.int64(ref[z, y, x0])
                    if r != last_r:
                        ri = _lookup(r, c, keys, slots, values, nvalues, mask)
                        last_r = r
                    if ri < 0:
                        nvalues[c] = -1
                        break
                    hist[c, ri, ri] += vpw
                    _grow_box(ref_boxes, c, ri, z, y, x0)
                    _grow_box(ref_boxes, c, ri, z, y, x0 + vpw - 1)
                    _grow_box(pred_boxes, c, ri, z, y, x0)
                    _grow_box(pred_boxes, c, ri, z, y, x0 + vpw - 1)
                    continue
                for x in range(x0, x0 + vpw):
                    r = np.int64(ref[z, y, x])
                    p = np.int64(pred[z, y, x])
                    if r != last_r:
                        ri = _lookup(r, c, keys, slots, values, nvalues, mask)
                        last_r = r
                    if p != last_p:
                        pi = _lookup(p, c, keys, slots, values, nvalues, mask)
                        last_p = p
                    if ri < 0 or pi < 0:
                        nvalues[c] = -1
                        break
                    hist[c, ri, pi] += 1
                    if r != 0:
                        _grow_box(ref_boxes, c, ri, z, y, x)
                    if p != 0:
                        _grow_box(pred_boxes, c, pi, z, y, x)
                if nvalues[c] < 0:
                    break
        if nvalues[c] >= 0:
            hist[c, zero, zero] += both_zero
    return values, nvalues, hist, ref_boxes, pred_boxes
