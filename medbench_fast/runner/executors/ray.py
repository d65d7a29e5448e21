"""The Ray executor: Ray actors (one per GPU, fractions allowed, or CPU actors) on a cluster.

The driver connects to the cluster at ``ray.address`` / ``RAY_ADDRESS`` (checked to answer
within seconds) or starts a local Ray for the run. Actors read volumes from the same paths
as the driver (shared storage), run inference and metrics, and return each case as Arrow
record batches; the driver's sink writes them. A dead actor's case is retried once on
another actor (a replacement is started), and a case is written once: only the result of
the attempt in flight is accepted. Ray sets each actor's ``CUDA_VISIBLE_DEVICES`` from its
``num_gpus``; cluster start-up is timed apart from the case loop.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque

from medbench_fast.config import ConfigError
from medbench_fast.runner.executors.base import (
    ExecStats,
    WorkerFailed,
    WorkerSlot,
    loop_without_cold_starts,
    merge_model_info,
    progress_bar,
)
from medbench_fast.runner.executors.remote import (
    RetryOnce,
    WorkerInit,
    pack,
    unpack,
)
from medbench_fast.runner.sink import RunSink

#: Seconds to wait for a cluster address to answer before giving up.
CONNECT_TIMEOUT_S = 5.0
#: The Ray namespace of medbench's actors (they are named ``medbench-<run id>-<n>`` in it).
NAMESPACE = "medbench"


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'medbench-fast[ray]'") from None
    return ray


#: HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, and the Ray
#: Client server of ray:// addresses) answers them at once with its own SETTINGS frame.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def check_address(address: str | None, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout_s`` in all when ``address`` (``host:port``, ``ray://host:port`` or
    ``auto``) does not answer: the TCP connection, then an answer to the gRPC (HTTP/2) greeting.
    A port that accepts connections and never answers is refused as surely as a closed one."""
    if not address or address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray address {address!r}: expected host:port (or ray://host:port)")
    deadline = time.monotonic() + timeout_s
    fix = "start the cluster (ray start --head) or fix ray.address / RAY_ADDRESS"
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout_s)
    except OSError as exc:
        raise ConfigError(f"ray address {address!r} does not answer ({exc.strerror or exc}); {fix}") from None
    with sock:
        try:
            sock.sendall(_HTTP2_HELLO)
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.recv(64)  # data or an orderly close: something answers there
        except TimeoutError:
            raise ConfigError(f"ray address {address!r} accepted the connection but did not answer within "
                              f"{timeout_s:g} s (is a Ray cluster listening there?); {fix}") from None
        except OSError:
            pass  # reset after the greeting: something answers there; ray.init says what


def connect(address: str) -> float:
    """Connect this driver to the Ray cluster at ``address`` (checked by :func:`check_address`);
    return the seconds it took."""
    ray = import_ray()
    t0 = time.perf_counter()
    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, include_dashboard=False,
                 logging_level="WARNING")
    return time.perf_counter() - t0


class _Actor:
    """The actor body: a case worker opened in the actor's process."""

    def __init__(self, init: WorkerInit):
        from medbench_fast.runner.executors.remote import open_worker

        self.init = init
        self.worker, self.identity = open_worker(init)

    def ready(self) -> dict:
        return self.identity

    def process(self, case, names):
        from medbench_fast.environment import GpuWatch

        return pack(self.worker.process(case, names), self.init.metrics_schema, self.worker.model_info,
                    GpuWatch.of_process().record())


class RayExecutor:
    """Runs cases on Ray actors, one per :class:`WorkerSlot` (``num_gpus`` each)."""

    def __init__(self, init: WorkerInit, slots: list[WorkerSlot], *, address: str | None, run_id: str,
                 local_cpus: int | None = None, local_gpus: float | None = None, connected_s: float = 0.0):
        self.connected_s = connected_s  # seconds spent connecting before the run folder was opened
        self.init = init
        self.slots = slots
        self.address = address
        self.run_id = run_id
        self.local_cpus = local_cpus
        self.local_gpus = local_gpus

    def _connect(self):
        ray = import_ray()
        t0 = time.perf_counter()
        if not ray.is_initialized():
            kwargs = {"namespace": NAMESPACE, "log_to_driver": False, "include_dashboard": False,
                      "logging_level": "WARNING"}
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.local_cpus, num_gpus=self.local_gpus, **kwargs)
        return ray, time.perf_counter() - t0 + self.connected_s

    def _start(self, ray, slot: WorkerSlot, generation: int):
        cls = ray.remote(num_cpus=1, num_gpus=slot.num_gpus or 0, max_restarts=0)(_Actor)
        name = f"medbench-{self.run_id}-{slot.index}-{generation}"
        actor = cls.options(name=name, namespace=NAMESPACE, lifetime=None).remote(self.init)
        return {"slot": slot, "actor": actor, "name": name, "ready_ref": actor.ready.remote(), "identity": None,
                "task": None, "ref": None, "cases_done": 0, "model_info": {}}

    def run(self, todo, sink: RunSink, *, progress: bool) -> ExecStats:
        ray, startup = self._connect()
        stats = ExecStats(startup_s=startup)
        generation = 0
        actors = {s.index: self._start(ray, s, generation) for s in self.slots}
        retired: list[dict] = []
        retired_info: list[dict] = []
        waiting = deque(todo)
        bar = progress_bar(len(todo), progress)
        retry = RetryOnce(waiting, sink, bar)
        first_ready = None
        try:
            while waiting or any(a["task"] is not None for a in actors.values()):
                for a in actors.values():
                    if a["identity"] is not None and a["task"] is None and waiting:
                        a["task"] = waiting.popleft()
                        a["ref"] = a["actor"].process.remote(*a["task"])
                refs = {r: (i, kind) for i, a in actors.items()
                        for kind, r in (("ready", a["ready_ref"]), ("done", a["ref"])) if r is not None}
                finished, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                for ref in finished:
                    index, kind = refs[ref]
                    a = actors[index]
                    try:
                        value = ray.get(ref)
                    except ray.exceptions.RayActorError as exc:
                        if a["identity"] is None:
                            raise WorkerFailed(f"Ray actor {a['name']} died while opening its models: {exc}") \
                                from None
                        generation += 1
                        retired.append(_record(a, f"actor died: {type(exc).__name__}"))
                        retired_info.append(a["model_info"])
                        retry.worker_died(a["task"], "Ray actor died")
                        actors[index] = self._start(ray, a["slot"], generation)
                        continue
                    except ray.exceptions.RayTaskError as exc:  # a model-wide error or a bug in the worker
                        raise WorkerFailed(str(exc.cause if exc.cause is not None else exc)) from None
                    if kind == "ready":
                        a.update(identity=value, ready_ref=None)
                        first_ready = first_ready or time.perf_counter_ns()
                    else:
                        a.update(task=None, ref=None, model_info=value.model_info)
                        if value.gpus:
                            a["identity"]["gpus"] = value.gpus
                        a["cases_done"] += 1
                        sink.add(unpack(value))
                        bar.update(1)
        except KeyboardInterrupt:
            stats.interrupted = True
        finally:
            sink.flush()
            for a in actors.values():
                ray.kill(a["actor"], no_restart=True)
            bar.close()
        wall = (time.perf_counter_ns() - first_ready) / 1e9 if first_ready else 0.0
        stats.workers = retired + [_record(a, None) for a in actors.values() if a["identity"]]
        infos = [a["model_info"] for a in actors.values()] + retired_info
        stats.model_info = merge_model_info(infos)
        stats.loop_s = loop_without_cold_starts(wall, infos)
        return stats


def _record(a: dict, cause: str | None) -> dict:
    identity = a["identity"] or {}
    rec = {**identity, "executor": "ray", "actor": a["name"], "num_gpus": a["slot"].num_gpus,
           "cases_done": a["cases_done"], "cold_start_s": {n: i.get("cold_start_s") for n, i in a["model_info"].items()}}
    if cause:
        rec["ended"] = cause
    return rec


def ray_address(configured: str | None) -> str | None:
    """``ray.address`` from the config, else ``RAY_ADDRESS``, else None (a local Ray for the run)."""
    return configured or os.environ.get("RAY_ADDRESS") or None
