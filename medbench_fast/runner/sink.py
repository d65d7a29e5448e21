"""The sink: the one writer of a run's parts (in one namespace).

Every executor hands finished cases to the sink in the driver process; it buffers their
rows and appends them as Parquet parts every ``write_every`` cases, or sooner once the oldest
buffered case is ``max_age_s`` old (when set): metrics and scores first, the case rows last, so a (model, case) counts as done only once all its rows are on
disk. A worker never writes, so a worker that dies leaves no half-written row.
"""

from __future__ import annotations

import time
from pathlib import Path

from medbench_fast.runner.worker import CaseResult
from medbench_fast.store.parts import PartWriter
from medbench_fast.store.schema import CASES_SCHEMA, SCORES_SCHEMA


class RunSink:
    """Buffers finished cases' rows and writes them as parts of ``namespace``.

    ``samples``/``busy`` collect each model's inference seconds per case and its busy
    seconds (preprocess + execute), for the latency rows.
    """

    def __init__(self, run_dir: Path, schema, write_every: int, *, fingerprint: str, run_id: str,
                 namespace: str = "main", max_age_s: float | None = None):
        stamp = {"fingerprint": fingerprint, "run_id": run_id, "namespace": namespace}
        self.writers = {"metrics": PartWriter(run_dir, "metrics", schema, **stamp),
                        "scores": PartWriter(run_dir, "scores", SCORES_SCHEMA, **stamp),
                        "cases": PartWriter(run_dir, "cases", CASES_SCHEMA, **stamp)}
        self.run_id = run_id
        self.write_every = write_every
        self.buffers: dict[str, list[dict]] = {"metrics": [], "scores": [], "cases": []}
        self.cases_buffered = 0
        self.write_s: list[float] = []
        self.samples: dict[str, list[float]] = {}
        self.busy: dict[str, float] = {}
        self.cases_done = 0
        self.max_age_s = max_age_s  # also write once the oldest buffered case is this old
        self.oldest: float | None = None

    def add(self, result: CaseResult) -> None:
        stamp = {"run_id": self.run_id}
        for outcome in result.outcomes:
            model = outcome.case_row["model"]
            self.buffers["metrics"].extend({**stamp, **r} for r in outcome.metric_rows)
            self.buffers["scores"].extend({**stamp, "model": model, **r} for r in outcome.score_rows)
            self.buffers["cases"].append({**stamp, **outcome.case_row})
            if outcome.inference_s is not None:
                self.samples.setdefault(model, []).append(outcome.inference_s)
                self.busy[model] = self.busy.get(model, 0.0) + outcome.busy_s
        self.cases_buffered += 1
        self.cases_done += 1
        now = time.monotonic()
        self.oldest = self.oldest if self.oldest is not None else now
        if self.cases_buffered >= self.write_every or (self.max_age_s is not None
                                                       and now - self.oldest >= self.max_age_s):
            self.flush()

    def flush(self) -> None:
        if not self.buffers["cases"]:
            return
        t0 = time.perf_counter_ns()
        for table in ("metrics", "scores", "cases"):  # the case rows are the commit marker of the batch
            self.writers[table].write(self.buffers[table])
        self.write_s.append((time.perf_counter_ns() - t0) / 1e9)
        for rows in self.buffers.values():
            rows.clear()
        self.cases_buffered = 0
        self.oldest = None
