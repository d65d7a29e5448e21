"""Means of bootstrap resamples, equal to the last bit to numpy's ``np.mean(values[index], axis=-1)``.

numpy sums the contiguous rows of a float64 array by pairwise summation: the first value
is the reduction's start and the other ``m = n - 1`` are added as one block, where a block
of fewer than 8 values is summed left to right, one of at most 128 in 8 interleaved
partial sums (combined as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, the
remainder added after), and a larger one is split at half its size rounded down to a
multiple of 8, the two halves summed the same way and added. The mean divides that sum by
``n``. :func:`resample_means` does the same additions in the same order on the values
the index rows pick, without building the ``(resamples, n)`` array of picked values, so
the result is numpy's (tested bit for bit on many sizes) and, computed row by row, the same
for any thread count.
"""

from __future__ import annotations

import numpy as np

from medbench_fast.kernels._jit import njit_serial

#: numpy's block size for pairwise summation (``PW_BLOCKSIZE``).
_BLOCK = 128


@njit_serial
def _block_sum(values, row, start, m):
    """numpy's pairwise sum of ``values[row[start:start + m]]`` for ``m <= 128``."""
    if m < 8:
        res = 0.0
        for i in range(start, start + m):
            res += values[row[i]]
        return res
    r0 = values[row[start]]
    r1 = values[row[start + 1]]
    r2 = values[row[start + 2]]
    r3 = values[row[start + 3]]
    r4 = values[row[start + 4]]
    r5 = values[row[start + 5]]
    r6 = values[row[start + 6]]
    r7 = values[row[start + 7]]
    end8 = start + m - m % 8
    i = start + 8
    while i < end8:
        r0 += values[row[i]]
        r1 += values[row[i + 1]]
        r2 += values[row[i + 2]]
        r3 += values[row[i + 3]]
        r4 += values[row[i + 4]]
        r5 += values[row[i + 5]]
        r6 += values[row[i + 6]]
        r7 += values[row[i + 7]]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for j in range(end8, start + m):
        res += values[row[j]]
    return res


#: Entries of the work stacks of :func:`_pairwise_sum`: each split halves a block, so a
#: block of ``m`` values nests at most ``log2(m)`` splits, each holding three entries.
_STACK = 3 * 64


@njit_serial
def _pairwise_sum(values, row, start, m, todo_start, todo_m, sums):
    """numpy's pairwise sum of ``values[row[start:start + m]]`` (any ``m``): its recursion run
    on the work stacks ``todo_start``/``todo_m`` (a block to sum, or ``m == -1``: add the
    last two sums) and ``sums`` (numba's cache cannot hold recursive functions)."""
    if m <= _BLOCK:
        return _block_sum(values, row, start, m)
    todo_start[0], todo_m[0] = start, m
    top, n_sums = 1, 0
    while top:
        top -= 1
        s, n = todo_start[top], todo_m[top]
        if n < 0:  # both halves summed: left + right, as numpy adds them
            n_sums -= 1
            sums[n_sums - 1] = sums[n_sums - 1] + sums[n_sums]
        elif n <= _BLOCK:
            sums[n_sums] = _block_sum(values, row, s, n)
            n_sums += 1
        else:
            half = n // 2
            half -= half % 8
            todo_start[top], todo_m[top] = 0, -1
            todo_start[top + 1], todo_m[top + 1] = s + half, n - half
            todo_start[top + 2], todo_m[top + 2] = s, half  # popped first: the left half
            top += 3
    return sums[0]


@njit_serial
def resample_means(values, index, out):
    """Write into ``out[k]`` the mean of ``values[index[k]]`` as ``np.mean(values[index], axis=-1)``
    computes it. ``values``: float64 ``(n,)``; ``index``: integer ``(resamples, n)`` with
    C-contiguous rows of indices into ``values``; ``out``: float64 ``(resamples,)``."""
    n = index.shape[1]
    todo_start = np.empty(_STACK, np.int64)
    todo_m = np.empty(_STACK, np.int64)
    sums = np.empty(_STACK, np.float64)
    for k in range(index.shape[0]):
        out[k] = _pairwise_sum(values, index[k], 0, n, todo_start, todo_m, sums) / n
