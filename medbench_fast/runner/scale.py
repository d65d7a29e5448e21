"""How a run scales out: which executor, how many workers, on which GPUs.

Resolved and checked before the run folder is touched, so a bad option (``--gpus 5`` on a
2-GPU machine, ``--executor ray`` without Ray or with an address nobody answers) is a
clear error with nothing written. Executor settings never change a number, so they are
recorded in ``run.json`` but are not part of the run's fingerprint.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from medbench_fast.config import ConfigError
from medbench_fast.runner.executors.base import EXECUTORS, WorkerSlot


@dataclass(frozen=True)
class ScaleOptions:
    """``executor``: local, processes or ray; ``workers``: CPU workers (processes, ray);
    ``gpus``: GPU ids (processes) or a count source (ray: ``all`` or ids); ``workers_per_gpu``;
    ``ray_address``: cluster address (None: a local Ray started for the run)."""

    executor: str = "local"
    workers: int | None = None
    gpus: str | None = None
    workers_per_gpu: int = 1
    ray_address: str | None = None

    def check(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor {self.executor!r} is not one of {', '.join(EXECUTORS)}")
        if self.workers_per_gpu < 1:
            raise ConfigError(f"--workers-per-gpu: expected an integer >= 1, got {self.workers_per_gpu}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers: expected an integer >= 1, got {self.workers}")
        if self.executor == "local" and (self.workers is not None or self.gpus is not None):
            raise ConfigError("--workers and --gpus apply to the processes and ray executors "
                              "(--executor processes|ray)")
        if self.gpus is not None and self.workers is not None:
            raise ConfigError("give --gpus (workers pinned to GPUs) or --workers (CPU workers), not both")


def local_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi -L``'s indices."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def _chosen_gpus(spec: str, available: list[str], where: str) -> list[str]:
    if spec == "all":
        if not available:
            raise ConfigError(f"--gpus all: no GPU found on {where} (nvidia-smi lists none)")
        return available
    chosen = [g.strip() for g in spec.split(",") if g.strip()]
    if not chosen:
        raise ConfigError(f"--gpus {spec!r}: expected GPU ids such as 0,1 or 'all'")
    missing = [g for g in chosen if g not in available]
    if missing:
        have = ", ".join(available) if available else "none"
        raise ConfigError(f"--gpus {spec}: GPU(s) {', '.join(missing)} not found on {where} (available: {have})")
    return chosen


def _capped(n: int, cases: int | None) -> int:
    """``n`` workers, but never more than the run has cases (at least one)."""
    return n if cases is None else max(1, min(n, cases))


def process_slots(scale: ScaleOptions, *, threads: int | None, cases: int | None = None) -> list[WorkerSlot]:
    """Worker processes: ``workers_per_gpu`` per chosen GPU, or ``workers`` CPU workers that split
    the intra-op threads (``threads`` or all cores) between them; never more than ``cases``."""
    if scale.gpus is not None:
        gpus = _chosen_gpus(scale.gpus, local_gpus(), "this machine")
        pinned = [g for g in gpus for _ in range(scale.workers_per_gpu)]
        return [WorkerSlot(i, gpu=g, threads=threads) for i, g in enumerate(pinned[:_capped(len(pinned), cases)])]
    n = _capped(scale.workers or 2, cases)
    total = threads or os.cpu_count() or 1
    return [WorkerSlot(i, gpu=None, threads=max(1, total // n)) for i in range(n)]


def ray_slots(scale: ScaleOptions, *, threads: int | None, cluster_gpus: float | None = None,
              cases: int | None = None) -> list[WorkerSlot]:
    """Ray actors: ``workers_per_gpu`` per GPU (``num_gpus`` = 1 / workers_per_gpu each), or
    ``workers`` CPU actors; never more than ``cases``. ``--gpus all`` counts the cluster's GPUs
    (``cluster_gpus``)."""
    if scale.gpus is not None:
        if scale.gpus == "all":
            count = int(cluster_gpus or 0)
            if count < 1:
                raise ConfigError("--gpus all: the Ray cluster has no GPU")
        else:
            count = len([g for g in scale.gpus.split(",") if g.strip()])
        k = scale.workers_per_gpu
        return [WorkerSlot(i, threads=threads, num_gpus=1.0 / k) for i in range(_capped(count * k, cases))]
    n = _capped(scale.workers or 2, cases)
    total = threads or os.cpu_count() or 1
    return [WorkerSlot(i, threads=max(1, total // n)) for i in range(n)]
