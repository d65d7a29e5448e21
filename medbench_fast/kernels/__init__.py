"""numba kernels (presets and the one place that configures numba: :mod:`medbench_fast.kernels._jit`)."""

from __future__ import annotations

import sys

_SKIP_EXTENSION_SCAN = False


def skip_numba_extensions() -> None:
    """Skip numba's scan for third-party numba extensions in this process.

    On its first dispatch numba reads the entry points of every installed distribution to load
    ``numba_extensions`` (30 ms in an environment of a few hundred packages). The ``medbench``
    command calls this before any kernel loads: no code but the project's kernels compiles in
    it, and they use no extension. Library users keep numba's default. Importing this module
    does not import numba.
    """
    global _SKIP_EXTENSION_SCAN
    _SKIP_EXTENSION_SCAN = True
    jit = sys.modules.get("medbench_fast.kernels._jit")
    if jit is not None:
        jit.apply_process_options()
