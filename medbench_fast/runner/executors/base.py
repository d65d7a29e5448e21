"""What every executor returns, and the settings they share."""

from __future__ import annotations

from dataclasses import dataclass, field

EXECUTORS = ("local", "processes", "ray")


class WorkerFailed(RuntimeError):
    """A worker could not start, or hit an error that is not about one case (the run stops)."""


@dataclass
class ExecStats:
    """``loop_s``: wall seconds of the case loop without cold starts (local) or from the first
    worker ready to the last result (remote); ``workers``: one record per worker (host, pid,
    GPU, providers, cases done, cold start); ``model_info``: per model, updated cold starts."""

    interrupted: bool = False
    loop_s: float = 0.0
    workers: list[dict] = field(default_factory=list)
    model_info: dict = field(default_factory=dict)
    startup_s: float | None = None  # cluster start-up (Ray), reported apart


@dataclass(frozen=True)
class WorkerSlot:
    """One worker to start: the GPU it is pinned to (``CUDA_VISIBLE_DEVICES``), intra-op threads,
    and a fraction of a GPU for Ray actors."""

    index: int
    gpu: str | None = None
    threads: int | None = None
    num_gpus: float = 0.0


def loop_without_cold_starts(wall_s: float, model_infos: list[dict]) -> float:
    """A remote loop's wall seconds less the workers' mean cold start (session creation excluded:
    workers pay their first run and warm-up in parallel, inside their first case)."""
    colds = [sum((i.get("first_run_s") or 0.0) + sum((i.get("warmup_s") or [0.0])[1:]) for i in info.values())
             for info in model_infos if info]
    return max(0.0, wall_s - (sum(colds) / len(colds) if colds else 0.0))


def merge_model_info(infos: list[dict]) -> dict:
    """Per model: the first worker's session/providers/spec, and the slowest cold start of all workers."""
    out: dict = {}
    for info in infos:
        for name, rec in info.items():
            cur = out.setdefault(name, dict(rec))
            if (rec.get("cold_start_s") or 0) > (cur.get("cold_start_s") or 0):
                cur.update({k: rec[k] for k in ("cold_start_s", "first_run_s", "warmup_s", "session_s") if k in rec})
    return out


class _NoBar:
    """The progress bar when none is shown (tqdm is not even imported)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, show: bool):
    if not show:
        return _NoBar()
    import sys

    from tqdm import tqdm

    return tqdm(total=total, unit="case", desc="run", dynamic_ncols=True, file=sys.stderr)
