"""Shared pieces of the benchmarks: host facts, warm medians, the METRICS.md reference pair."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path

import numpy as np

#: Where benchmarks write their JSON (``MEDBENCH_BENCH_RESULTS`` redirects it, e.g. in tests).
RESULTS = Path(os.environ.get("MEDBENCH_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))


def host() -> dict:
    from medbench_fast.environment import cpu_model

    versions = {}
    for name in ("medbench-fast", "numpy", "numba", "SimpleITK", "pyarrow", "monai", "torch", "medpy",
                 "surface-distance", "scipy", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def timed(fn, *, repeat: int = 5, warmup: int = 1) -> dict:
    """Run ``fn`` ``warmup`` times untimed (the first call compiles), then ``repeat`` timed runs."""
    first = None
    for i in range(warmup):
        t = time.perf_counter()
        fn()
        if i == 0:
            first = time.perf_counter() - t
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "samples_s": samples, "first_s": first}


def reference_pair() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """The 300 x 512 x 512 uint8 pair of METRICS.md ("Reference values to reproduce")."""
    shape = (300, 512, 512)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    ref = (((z - 150) / 60) ** 2 + ((y - 256) / 125) ** 2 + ((x - 256) / 125) ** 2 <= 1).astype(np.uint8)
    pred = (((z - 153) / 58) ** 2 + ((y - 262) / 128) ** 2 + ((x - 251) / 121) ** 2 <= 1).astype(np.uint8)
    pred[20:24, 40:46, 440:446] = 1
    return ref, pred, (2.5, 0.8, 0.8)


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"host": host(), **payload}, indent=2, default=float) + "\n")
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
