"""The processes executor: worker processes on this machine, one GPU each or CPU threads split.

Workers are spawned (never forked from a process whose onnxruntime or numba threads have
started), set ``CUDA_VISIBLE_DEVICES`` before onnxruntime loads, open their own sessions
and take cases one at a time from the driver, so a slow case never idles the others. The
driver is the only writer. Each worker talks to the driver over its own pipe: no queue, so
no named semaphore that multiprocessing's resource tracker would have to follow (a killed
tracker then costs nothing, where queues made its replacement print a traceback for each).
A worker that dies (segfault, OOM kill) is replaced; its case is retried once on another
worker, then recorded as a failed row naming the cause.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import signal
import time
import warnings
from collections import deque
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait

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

#: How often the driver checks its workers while waiting for results (seconds).
POLL_S = 0.2


def _worker_main(slot: WorkerSlot, init: WorkerInit, conn: Connection) -> None:
    """A worker process: open the models, then score the cases received on ``conn`` until None,
    sending each result back on it. The process ends when this returns, without the last
    cyclic collection over numba's objects (frozen instead, as the ``medbench`` command does:
    the driver waits for its workers to end)."""
    try:
        _serve(slot, init, conn)
    finally:
        gc.freeze()


def _serve(slot: WorkerSlot, init: WorkerInit, conn: Connection) -> None:
    from medbench_fast.runner.executors.remote import (
        ignore_sigint,
        open_worker,
        pin_gpu,
    )

    from medbench_fast.environment import GpuWatch

    ignore_sigint()
    pin_gpu(slot.gpu)
    parent = os.getppid()
    try:
        worker, identity = open_worker(init)
    except BaseException as exc:  # reported to the driver, which stops the run with the message
        conn.send(("fatal", slot.index, f"worker {slot.index} could not start: {type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", slot.index, identity))
    while True:
        try:
            if not conn.poll(1.0):
                if os.getppid() != parent:  # the driver is gone (killed): do not linger
                    return
                continue
            task = conn.recv()
        except (EOFError, OSError):  # the driver closed its end
            return
        if task is None:
            return
        case, names = task
        try:
            result = worker.process(case, names)
        except BaseException as exc:  # a model-wide error (ModelError) or a bug: stop the run with it
            conn.send(("fatal", slot.index, f"{type(exc).__name__}: {exc}"))
            return
        conn.send(("done", slot.index, pack(result, init.metrics_schema, worker.model_info,
                                            GpuWatch.of_process().record())))


@contextmanager
def _visible_gpu(gpu: str | None):
    """``CUDA_VISIBLE_DEVICES`` set to ``gpu`` in this process while a worker is spawned."""
    if gpu is None:
        yield
        return
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        yield
    finally:
        if before is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def _cause(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class ProcessExecutor:
    """Runs cases on worker processes, one per :class:`WorkerSlot`."""

    def __init__(self, init: WorkerInit, slots: list[WorkerSlot]):
        self.init = init
        self.slots = slots
        self.ctx = mp.get_context("spawn")

    def _start(self, slot: WorkerSlot):
        from dataclasses import replace

        here, there = self.ctx.Pipe()
        init = replace(self.init, threads=slot.threads if slot.threads is not None else self.init.threads)
        proc = self.ctx.Process(target=_worker_main, args=(slot, init, there), daemon=True,
                                name=f"medbench-worker-{slot.index}")
        with _visible_gpu(slot.gpu), warnings.catch_warnings():  # the child starts with it, before any import
            # a resource tracker killed from outside is relaunched for the child; nothing of ours leaks
            warnings.filterwarnings("ignore", "resource_tracker: process died unexpectedly")
            proc.start()
        there.close()  # the worker holds it now: its death is an end of file on ``here``
        return {"slot": slot, "proc": proc, "conn": here, "open": True, "ready": False, "task": None,
                "identity": None, "cases_done": 0, "model_info": {}}

    def run(self, todo, sink: RunSink, *, progress: bool) -> ExecStats:
        stats = ExecStats()
        workers = {s.index: self._start(s) for s in self.slots}
        retired: list[dict] = []
        retired_info: list[dict] = []
        waiting = deque(todo)
        bar = progress_bar(len(todo), progress)
        retry = RetryOnce(waiting, sink, bar)
        first_ready = None

        def handle(kind, index, payload) -> None:
            nonlocal first_ready
            w = workers[index]
            if kind == "fatal":
                raise WorkerFailed(payload)
            if kind == "ready":
                w.update(ready=True, identity=payload)
                first_ready = first_ready or time.perf_counter_ns()
            elif kind == "done" and w["task"] is not None and w["task"][0].case_id == payload.case_id:
                w.update(task=None, model_info=payload.model_info)
                if payload.gpus:
                    w["identity"]["gpus"] = payload.gpus
                w["cases_done"] += 1
                sink.add(unpack(payload))
                bar.update(1)

        def drain(timeout: float) -> None:
            """Handle every message waiting on the workers' pipes (waiting up to ``timeout`` for one)."""
            conns = {w["conn"]: w for w in workers.values() if w["open"]}
            for conn in wait(list(conns), timeout=timeout):
                try:
                    while conn.poll():
                        handle(*conn.recv())
                except (EOFError, OSError):  # the worker died; what it sent before was handled
                    conns[conn]["open"] = False

        try:
            while waiting or any(w["task"] is not None for w in workers.values()):
                for w in workers.values():  # hand out one case per idle worker
                    if w["ready"] and w["task"] is None and waiting:
                        w["task"] = waiting.popleft()
                        try:
                            w["conn"].send(w["task"])
                        except OSError:  # it died: its case is retried below like any dead worker's
                            pass
                drain(POLL_S)
                dead = [i for i, w in workers.items() if not w["proc"].is_alive()]
                if dead:
                    drain(0)  # results a worker sent before it died are kept, never redone
                for index in dead:  # replace dead workers; retry their case once on another
                    w = workers[index]
                    cause = _cause(w["proc"].exitcode)
                    if not w["ready"]:
                        raise WorkerFailed(f"worker {index} {cause} while opening its models")
                    retired.append(_record(w, cause))
                    retired_info.append(w["model_info"])
                    retry.worker_died(w["task"], f"worker process {cause}")
                    w["conn"].close()
                    workers[index] = self._start(w["slot"])
        except KeyboardInterrupt:
            stats.interrupted = True
        finally:
            sink.flush()
            self._stop(workers)
            bar.close()
        wall = (time.perf_counter_ns() - first_ready) / 1e9 if first_ready else 0.0
        stats.workers = retired + [_record(w, None if w["proc"].exitcode in (None, 0) else _cause(w["proc"].exitcode))
                                   for w in workers.values() if w["identity"]]
        infos = [w["model_info"] for w in workers.values()] + retired_info
        stats.model_info = merge_model_info(infos)
        stats.loop_s = loop_without_cold_starts(wall, infos)
        return stats

    @staticmethod
    def _stop(workers: dict) -> None:
        for w in workers.values():
            if w["proc"].is_alive():
                try:
                    w["conn"].send(None)
                except OSError:  # it is dying: joined below
                    pass
        deadline = time.monotonic() + 10
        for w in workers.values():
            w["proc"].join(timeout=max(0.1, deadline - time.monotonic()))
            if w["proc"].is_alive():
                w["proc"].kill()
                w["proc"].join()
            w["conn"].close()


def _record(w: dict, cause: str | None) -> dict:
    """run.json's record of a worker: host, pid, GPU, providers, cases done, cold start."""
    identity = w["identity"] or {"pid": w["proc"].pid}
    rec = {**identity, "executor": "processes", "cases_done": w["cases_done"],
           "cold_start_s": {n: i.get("cold_start_s") for n, i in w["model_info"].items()}}
    if cause:
        rec["ended"] = cause
    return rec
