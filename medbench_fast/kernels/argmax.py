"""Class index of the largest score along the channel axis of ``(N, C, S)`` logits."""

from __future__ import annotations

import numpy as np

from medbench_fast.kernels._jit import njit_serial


@njit_serial
def channel_argmax(scores, out):
    """Write into ``out`` ``(N, S)`` the index of the largest of ``scores[n, :, s]``.

    ``scores``: C-contiguous float array ``(N, C, S)``; ``out``: unsigned integer array
    ``(N, S)`` wide enough for ``C - 1``. Ties go to the lowest channel (as ``np.argmax``);
    NaN scores never win, in any channel (0 where every channel is NaN). Reads each channel
    plane contiguously, unlike ``np.argmax(axis=1)``.
    """
    n_batch, n_channels, size = scores.shape
    best = np.empty(size, scores.dtype)
    for n in range(n_batch):
        for s in range(size):
            best[s] = scores[n, 0, s]
            out[n, s] = 0
        for c in range(1, n_channels):
            for s in range(size):
                v = scores[n, c, s]
                if v > best[s] or (np.isnan(best[s]) and not np.isnan(v)):  # a NaN best loses to any number
                    best[s] = v
                    out[n, s] = c
