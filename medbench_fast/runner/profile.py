"""Latency profiling of one ONNX model per batch size, on the configured providers.

For each batch size: untimed warm-up runs, then timed runs until both ``min_iters`` runs
and ``min_seconds`` have passed. Each run is timed with ``perf_counter_ns`` around
``session.run``, whose outputs are copied to host memory (so GPU work has finished when
the clock stops). GPU memory is this process's own peak on the device the session
uses (:class:`GpuMemory`). Throughput is items over the wall-clock time of the timed loop, not
derived from mean latency. Outliers are never dropped: a coefficient of variation above
``cv_threshold`` flags the measurement as unstable instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from medbench_fast.environment import GpuMemory

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
           "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")
    except OSError:
        pass


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MiB since the last reset (Linux), else lifetime."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except ImportError:
        return None


def make_inputs(session, batch_size: int, input_shape: list[int] | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for every model input: the batch axis set to ``batch_size``, other
    dynamic axes from ``input_shape`` (sizes of the non-batch axes, in order)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for meta in session.session.get_inputs():
        dims = list(meta.shape)
        shape = [batch_size]
        rest = dims[1:]
        for i, d in enumerate(rest):
            if isinstance(d, int) and d > 0:
                shape.append(d)
            elif input_shape is not None and i < len(input_shape):
                shape.append(int(input_shape[i]))
            else:
                raise ValueError(f"{session.path}: input {meta.name!r} has dynamic axes {dims}; give their sizes "
                                 f"with --input-shape (the sizes after the batch axis)")
        dtype = _DTYPES.get(meta.type)
        if dtype is None:
            raise ValueError(f"{session.path}: input {meta.name!r} has unsupported type {meta.type}")
        feeds[meta.name] = (rng.random(shape) if np.issubdtype(dtype, np.floating) else rng.integers(0, 2, shape)).astype(dtype)
    return feeds


def summarize(samples_s: list[float], wall_s: float, batch_size: int, cv_threshold: float) -> dict:
    """Percentiles (ms), mean, std, CV and wall-clock throughput of one batch size."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    cv = std / float(ms.mean()) if ms.mean() > 0 else 0.0
    return {"iters": int(ms.size), "p50_ms": float(p50), "p90_ms": float(p90), "p95_ms": float(p95),
            "p99_ms": float(p99), "mean_ms": float(ms.mean()), "std_ms": std, "cv": cv,
            "throughput_items_per_s": batch_size * ms.size / wall_s, "unstable": bool(cv > cv_threshold),
            "samples_ms": ms.tolist()}


def profile_model(path: str | os.PathLike, *, providers=("cpu",), batch_sizes=(1,), warmup: int = 5,
                  min_iters: int = 20, min_seconds: float = 2.0, input_shape: list[int] | None = None,
                  threads: int | None = None, cv_threshold: float = 0.1,
                  ort_profile: str | os.PathLike | None = None) -> list[dict]:
    """Profile ``path``; one dict per batch size with the ``latency.parquet`` fields.

    ``ort_profile``: a path prefix for onnxruntime's per-operator profiling JSON (its file
    is added to the first row as ``ort_profile``).
    """
    from medbench_fast.models.session import create_session

    gpu_memory = GpuMemory() if any(p in ("cuda", "tensorrt") for p in providers) else None
    t0 = time.perf_counter_ns()
    session = create_session(path, providers=providers, threads=threads, profile_prefix=ort_profile)
    first_feeds = make_inputs(session, batch_sizes[0], input_shape)
    session.run(first_feeds)
    cold = (time.perf_counter_ns() - t0) / 1e9
    rows = []
    for batch in batch_sizes:
        feeds = make_inputs(session, batch, input_shape)
        for _ in range(warmup):
            session.run(feeds)
        _reset_peak_rss()
        samples: list[float] = []
        start = time.perf_counter_ns()
        while len(samples) < min_iters or (time.perf_counter_ns() - start) / 1e9 < min_seconds:
            t = time.perf_counter_ns()
            session.run(feeds)
            samples.append((time.perf_counter_ns() - t) / 1e9)
        wall = (time.perf_counter_ns() - start) / 1e9
        if gpu_memory is not None:
            gpu_memory.sample()
        rows.append({"model": Path(path).stem, "provider": session.providers_in_use[0], "batch_size": int(batch),
                     "warmup": int(warmup), "cold_start_s": cold, **summarize(samples, wall, batch, cv_threshold),
                     "peak_rss_mb": peak_rss_mb(),
                     "gpu_process_peak_mb": gpu_memory.peak_mib if gpu_memory is not None else None})
    profile_file = session.end_profiling()
    if profile_file:
        rows[0]["ort_profile"] = profile_file
    return rows

