"""The one place that holds numba compilation presets for every kernel.

Kernels import :data:`PARALLEL` (multi-threaded ``prange`` kernels) or :data:`SERIAL`
(single-threaded helpers called from other kernels or on small crops). Both release the
GIL, so a thread pool can overlap kernels with I/O and inference, and cache compiled code
on disk. numba's cache does not notice edits in *other* files a kernel calls into; clear it
with ``medbench cache clear --jit`` (or delete the ``__pycache__`` folders) after such edits.
Callers launch parallel kernels inside :func:`parallel_launch`, which holds
:data:`PARALLEL_LOCK` while the kernel runs: numba's ``workqueue``
threading layer (the fallback where neither OpenMP nor TBB is available) aborts on concurrent
launches, and the kernels already use every core, so serialising them costs nothing while
reading and inference go on in other threads. ``fastmath`` stays off: metric values must be bit-reproducible and NaN-aware.
Values must not depend on the thread count either (a Ray worker runs with one thread, a local
run with every core): parallel kernels write per-element results or sum integers, and float
sums over their outputs run in a fixed order outside them (never a BLAS ``np.dot``).

Since no kernel calls BLAS, numba's BLAS probe is skipped (:func:`_skip_blas_probe`): on its
first dispatch numba imports ``numba.np.arraymath``, which imports ``scipy.linalg`` (0.15-0.3 s,
half of a small ``evaluate``'s fixed cost) only to decide whether ``np.convolve`` and
``np.correlate`` of floats go through BLAS ``dot``. Without the probe they use numba's own
loop; everything else numba compiles (``np.dot``, ``np.linalg``) still imports scipy when
compiled.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager

import numba

_BLAS_PROBE = "scipy.linalg.cython_blas"


def _skip_blas_probe() -> None:
    """Import ``numba.np.arraymath`` with its BLAS probe answered "absent" (see the module
    docstring), unless it or scipy.linalg is imported already (then there is nothing to save)."""
    if "numba.np.arraymath" in sys.modules or _BLAS_PROBE in sys.modules:
        return
    sys.modules[_BLAS_PROBE] = None  # type: ignore[assignment]  # an import of it raises ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if sys.modules.get(_BLAS_PROBE, 0) is None:
            del sys.modules[_BLAS_PROBE]


def apply_process_options() -> None:
    """Options of this process that the package sets (:func:`medbench_fast.kernels.skip_numba_extensions`)."""
    from medbench_fast import kernels

    if kernels._SKIP_EXTENSION_SCAN:
        from numba.core import entrypoints

        entrypoints._already_initialized = True  # numba then loads no ``numba_extensions`` entry point


_skip_blas_probe()
apply_process_options()

#: Options for parallel kernels (``prange`` over slabs, per-thread partials).
PARALLEL = dict(nogil=True, cache=True, parallel=True, fastmath=False)
#: Options for serial kernels and helpers.
SERIAL = dict(nogil=True, cache=True, parallel=False, fastmath=False)


def njit_parallel(fn):
    """Compile ``fn`` with :data:`PARALLEL`."""
    return numba.njit(**PARALLEL)(fn)


def njit_serial(fn):
    """Compile ``fn`` with :data:`SERIAL`."""
    return numba.njit(**SERIAL)(fn)


#: Held around every call of a :data:`PARALLEL` kernel (see the module docstring).
PARALLEL_LOCK = threading.RLock()

#: Arrays with fewer voxels run their parallel kernels on one thread: a parallel launch
#: costs milliseconds when the cores are busy (inference threads, I/O), more than it saves.
PARALLEL_MIN_VOXELS = 1 << 21


@contextmanager
def threads_for(voxels: int):
    """Run :data:`PARALLEL` kernels single-threaded below :data:`PARALLEL_MIN_VOXELS`."""
    before = numba.get_num_threads()
    if voxels < PARALLEL_MIN_VOXELS:
        numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


@contextmanager
def parallel_launch(voxels: int):
    """Hold :data:`PARALLEL_LOCK` and choose the thread count (:func:`threads_for`) around the
    launch of :data:`PARALLEL` kernels on ``voxels`` voxels; every public function that runs
    one does so inside this, so they are safe to call from many threads at once."""
    with PARALLEL_LOCK, threads_for(voxels):
        yield
