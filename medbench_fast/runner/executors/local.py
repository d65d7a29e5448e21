"""The local executor: one process, overlapped stages (the default).

Case-major order: each case's image and reference are read once (in a bounded prefetch
pool, through the volume cache) and given to every model in turn on the main thread;
metric kernels run in their own thread as soon as a prediction exists, while the next
model or case runs. A case goes to the sink once all its models' metrics are done.
Ctrl-C stops after the cases in flight.

A worker without model inference (an evaluation's) whose cases prove tiny (reading and
scoring one takes less than :data:`INLINE_BELOW_S` of CPU, the median of the first
:data:`INLINE_SAMPLE` cases) goes on in the main thread alone: handing such a case between
threads costs more than the case itself. The rule measures each thread's CPU time, not the
wall time of the stages: threads that wait for one another's GIL (up to Python's 5 ms switch
interval each time) make a case of 1.5 ms of work take 5-7 ms of wall time, which would keep
exactly the cases that suffer from threads on them.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from medbench_fast.runner.executors.base import ExecStats, progress_bar
from medbench_fast.environment import GpuWatch
from medbench_fast.runner.sink import RunSink
from medbench_fast.runner.worker import (
    CaseResult,
    CaseWorker,
    ModelOutcome,
    worker_identity,
)


#: Cases below this many seconds of CPU (read + score) run inline (see the module's docstring).
INLINE_BELOW_S = 0.005
#: Cases measured before deciding.
INLINE_SAMPLE = 16


def _cpu_timed(cpu: dict, key: str, fn):
    """``fn`` that adds the CPU seconds of the thread running it to ``cpu[key]``."""
    def timed(*args):
        start = time.thread_time()
        try:
            return fn(*args)
        finally:
            cpu[key] = cpu.get(key, 0.0) + time.thread_time() - start
    return timed


def _done(fn, *args) -> Future:
    """``fn(*args)`` run now, as a finished future (its exception kept for ``result()``)."""
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as exc:  # noqa: BLE001 - re-raised by result(), as a pool's future would
        future.set_exception(exc)
    return future


class LocalExecutor:
    """Runs a :class:`CaseWorker` in this process with ``readers`` prefetch threads, ``prefetch``
    cases ahead, and ``scorers`` metric threads."""

    def __init__(self, worker: CaseWorker, *, readers: int, prefetch: int, scorers: int = 1):
        self.worker = worker
        self.readers = max(1, readers)
        self.prefetch = max(1, prefetch)
        self.scorers = max(1, scorers)
        self.inline = False  # cases run in the main thread (tiny cases of a worker without inference)
        self.timed: list[str] = []  # the first cases, whose CPU seconds decide (read + score) ...
        self.case_cpu: dict[str, float] = {}  # ... by case id

    def run(self, todo, sink: RunSink, *, progress: bool) -> ExecStats:
        worker = self.worker
        stats = ExecStats(model_info=worker.model_info)
        metric_pool = ThreadPoolExecutor(self.scorers, thread_name_prefix="medbench-metrics")
        load_pool = ThreadPoolExecutor(self.readers, thread_name_prefix="medbench-load")
        pending: deque[tuple[str, list[tuple[ModelOutcome, Future | None]]]] = deque()
        bar = progress_bar(len(todo), progress)
        undecided = [True] if worker.inline_when_tiny else []

        def harvest(block: bool) -> None:
            while pending and (block or all(f is None or f.done() for _, f in pending[0][1])):
                case_id, parts = pending.popleft()
                for outcome, future in parts:
                    if future is not None:
                        worker.attach_metrics(outcome, future.result)
                sink.add(CaseResult(case_id, [o for o, _ in parts]))
                bar.update(1)
                if undecided and len(self.timed) >= INLINE_SAMPLE and case_id == self.timed[INLINE_SAMPLE - 1]:
                    # cases are harvested in order: every timed case up to this one is done
                    cpu = [self.case_cpu.get(c, 0.0) for c in self.timed[:INLINE_SAMPLE]]
                    self.inline = statistics.median(cpu) < INLINE_BELOW_S
                    undecided.clear()

        def load(case, names) -> Future:
            if self.inline:
                return _done(worker.load, case, names)
            if undecided and len(self.timed) < INLINE_SAMPLE:
                self.timed.append(case.case_id)
                return load_pool.submit(_cpu_timed(self.case_cpu, case.case_id, worker.load), case, names)
            return load_pool.submit(worker.load, case, names)

        def score(case_id, ref, label_map) -> Future:
            if self.inline:
                return _done(worker.score, ref, label_map)
            if undecided and case_id in self.timed[:INLINE_SAMPLE]:
                return metric_pool.submit(_cpu_timed(self.case_cpu, case_id, worker.score), ref, label_map)
            return metric_pool.submit(worker.score, ref, label_map)

        watch = GpuWatch.of_process().start()
        loop_start = time.perf_counter_ns()
        ahead: deque[Future] = deque()
        try:
            queue = iter(todo)
            while True:
                while len(ahead) < self.prefetch:
                    nxt = next(queue, None)
                    if nxt is None:
                        break
                    case, names = nxt
                    ahead.append(load(case, names))
                if not ahead:
                    break
                item = ahead.popleft().result()
                parts = []
                for name in item.names:
                    worker.check_fits(name, item)
                    outcome, label_map = worker.run_model(name, item)
                    future = score(item.case.case_id, item.ref, label_map) if label_map is not None else None
                    parts.append((outcome, future))
                pending.append((item.case.case_id, parts))
                harvest(block=len(pending) > self.scorers + 1)
            harvest(block=True)
        except KeyboardInterrupt:
            stats.interrupted = True
            for f in ahead:
                f.cancel()
            harvest(block=True)
        finally:
            sink.flush()
            load_pool.shutdown(wait=True, cancel_futures=True)
            metric_pool.shutdown(wait=True)
            bar.close()
        stats.loop_s = (time.perf_counter_ns() - loop_start - worker.cold_ns) / 1e9
        stats.workers = [{**worker_identity(), "executor": "local", "cases_done": sink.cases_done,
                          "providers_in_use": {n: m.providers_in_use for n, m in worker.models.items()},
                          "cold_start_s": {n: i.get("cold_start_s") for n, i in worker.model_info.items()},
                          "gpus": watch.record(), "inline": self.inline}]
        return stats

