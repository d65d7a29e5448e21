"""medbench-fast: benchmarking engine for medical-imaging AI.

Public API (imported lazily so ``import medbench_fast`` stays cheap)::

    evaluate_pair(ref, pred, *, spacing, labels=None, metrics=None, nsd_tolerance_mm=1.0)
    evaluate_folders(pred_dir, ref_dir, out_dir, ...)
    load_volume(path, *, cache=None)
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "evaluate_pair": "medbench_fast.metrics.evaluate:evaluate_pair",
    "evaluate_folders": "medbench_fast.runner.evaluate:evaluate_folders",
    "load_volume": "medbench_fast.data.reader:load_volume",
    "Volume": "medbench_fast.data.reader:Volume",
    "VolumeCache": "medbench_fast.data.cache:VolumeCache",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'medbench_fast' has no attribute {name!r}")
