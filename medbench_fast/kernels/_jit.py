"""The one place that holds numba compilation presets for every kernel.

Kernels import :data:`PARALLEL` (multi-threaded ``prange`` kernels) or :data:`SERIAL`
(single-threaded helpers called from other kernels or on small crops). Both release the
GIL, so a thread pool can overlap kernels with I/O and inference, and cache compiled code
on disk. numba's cache does not notice edits in *other* files a kernel calls into; clear it
with ``medbench cache clear --jit`` (or delete the ``__pycache__`` folders) after such edits.
``fastmath`` stays off: metric values must be bit-reproducible and NaN-aware.
"""

from __future__ import annotations

import numba

#: Options for parallel kernels (``prange`` over slabs, per-thread partials).
PARALLEL = dict(nopython=True, nogil=True, cache=True, parallel=True, fastmath=False)
#: Options for serial kernels and helpers.
SERIAL = dict(nopython=True, nogil=True, cache=True, parallel=False, fastmath=False)


def njit_parallel(fn):
    """Compile ``fn`` with :data:`PARALLEL`."""
    return numba.njit(**PARALLEL)(fn)


def njit_serial(fn):
    """Compile ``fn`` with :data:`SERIAL`."""
    return numba.njit(**SERIAL)(fn)
