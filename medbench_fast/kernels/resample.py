"""Means of bootstrap resamples, equal to the last bit to numpy's ``np.mean(values[index], axis=-1)``.

numpy sums the contiguous rows of a float64 array by pairwise summation: a block of fewer
than 8 values is summed left to right from 0, one of at most 128 in 8 interleaved partial
sums (combined as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, the remainder
added after), and a larger one is split at half its size rounded down to a multiple of 8,
the two halves summed the same way and added. The mean divides that sum by ``n``.
:func:`resample_means` does the same additions in the same order on the values the index
rows pick, without building the ``(resamples, n)`` array of picked values, for several
samples of one size at once: ``values`` holds one sample per column, so each index is
read once for all of them and the columns are summed side by side (vector instructions:
the additions of one column are never reordered). The result is numpy's, tested bit for
bit on many sizes, and computed row by row, the same for any thread count.
"""

from __future__ import annotations

import numpy as np

from medbench_fast.kernels._jit import njit_serial

#: numpy's block size for pairwise summation (``PW_BLOCKSIZE``).
_BLOCK = 128
#: Entries of the work stacks of :func:`_pairwise_sums`: each split halves a block, so a
#: block of ``m`` values nests at most ``log2(m)`` splits, each holding three entries.
_STACK = 3 * 64


@njit_serial
def _block_sums(values, row, start, m, acc, res):
    """``res[c]`` = numpy's pairwise sum of ``values[row[start:start + m], c]`` for ``m <= 128``
    (``acc``: ``(8, columns)`` scratch)."""
    k = values.shape[1]
    if m < 8:
        for c in range(k):
            res[c] = 0.0
        for i in range(start, start + m):
            v = values[row[i]]
            for c in range(k):
                res[c] += v[c]
        return
    for j in range(8):
        v = values[row[start + j]]
        for c in range(k):
            acc[j, c] = v[c]
    end8 = start + m - m % 8
    i = start + 8
    while i < end8:
        for j in range(8):
            v = values[row[i + j]]
            a = acc[j]
            for c in range(k):
                a[c] += v[c]
        i += 8
    for c in range(k):
        res[c] = ((acc[0, c] + acc[1, c]) + (acc[2, c] + acc[3, c])) + ((acc[4, c] + acc[5, c]) + (acc[6, c] + acc[7, c]))
    for i in range(end8, start + m):
        v = values[row[i]]
        for c in range(k):
            res[c] += v[c]


@njit_serial
def _pairwise_sums(values, row, m, todo_start, todo_m, sums, acc):
    """``sums[0, c]`` = numpy's pairwise sum of ``values[row[:m], c]`` (any ``m``): its recursion
    run on the work stacks ``todo_start``/``todo_m`` (a block to sum, or ``m == -1``: add the
    last two sums) and ``sums`` (numba's cache cannot hold recursive functions)."""
    if m <= _BLOCK:
        _block_sums(values, row, 0, m, acc, sums[0])
        return
    k = values.shape[1]
    todo_start[0], todo_m[0] = 0, m
    top, n_sums = 1, 0
    while top:
        top -= 1
        s, n = todo_start[top], todo_m[top]
        if n < 0:  # both halves summed: left + right, as numpy adds them
            n_sums -= 1
            left, right = sums[n_sums - 1], sums[n_sums]
            for c in range(k):
                left[c] = left[c] + right[c]
        elif n <= _BLOCK:
            _block_sums(values, row, s, n, acc, sums[n_sums])
            n_sums += 1
        else:
            half = n // 2
            half -= half % 8
            todo_start[top], todo_m[top] = 0, -1
            todo_start[top + 1], todo_m[top + 1] = s + half, n - half
            todo_start[top + 2], todo_m[top + 2] = s, half  # popped first: the left half
            top += 3


@njit_serial
def resample_means(values, index, out):
    """Write into ``out[r, c]`` the mean of ``values[index[r], c]`` as
    ``np.mean(values[index, c], axis=-1)`` computes it. ``values``: float64 ``(n, samples)``,
    C-contiguous; ``index``: integer ``(resamples, n)``, C-contiguous, indices into ``values``'s
    rows; ``out``: float64 ``(resamples, samples)``."""
    n, k = values.shape
    todo_start = np.empty(_STACK, np.int64)
    todo_m = np.empty(_STACK, np.int64)
    sums = np.empty((_STACK, k), np.float64)
    acc = np.empty((8, k), np.float64)
    for r in range(index.shape[0]):
        _pairwise_sums(values, index[r], n, todo_start, todo_m, sums, acc)
        for c in range(k):
            out[r, c] = sums[0, c] / n
