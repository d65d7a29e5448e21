"""When the sink writes parts: every ``write_every`` cases, or once its oldest buffered case is
``max_age_s`` old, whichever comes first; and the evaluate CLI's default is the engine's."""

from __future__ import annotations

import pytest

from medbench_fast.runner import sink as sink_module
from medbench_fast.runner.sink import RunSink
from medbench_fast.runner.worker import CaseResult, ModelOutcome
from medbench_fast.store.parts import read_parts
from medbench_fast.store.schema import CASES_SCHEMA, metrics_schema


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _result(i: int) -> CaseResult:
    case_id = f"case_{i:03d}"
    row = {"model": "preds", "case_id": case_id, "success": True, "total_s": 0.0}
    metric = {"model": "preds", "case_id": case_id, "label": 1, "tp": i, "fp": 0, "fn": 0, "tn": 1}
    return CaseResult(case_id, [ModelOutcome(row, [metric], [])])


def _parts(run_dir, table: str) -> int:
    return len(list((run_dir / "parts" / table).glob("part-*.parquet")))


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(sink_module.time, "monotonic", fake)
    return fake


def test_parts_are_written_by_age_before_the_count_is_reached(tmp_path, clock):
    sink = RunSink(tmp_path, metrics_schema(), 1024, fingerprint="f", run_id="r", max_age_s=5.0)
    for i in range(300):  # 300 fast cases within 5 s: nothing written yet
        sink.add(_result(i))
        clock.now += 0.01
    assert _parts(tmp_path, "cases") == 0 and sink.cases_buffered == 300
    clock.now += 2.0  # the oldest case is now 5 s old: the next case writes the part
    sink.add(_result(300))
    assert _parts(tmp_path, "cases") == 1 and sink.cases_buffered == 0
    sink.add(_result(301))
    sink.flush()
    assert _parts(tmp_path, "cases") == 2
    cases = read_parts(tmp_path, "cases", CASES_SCHEMA, fingerprint="f")
    assert cases.column("case_id").to_pylist() == [f"case_{i:03d}" for i in range(302)]
    assert read_parts(tmp_path, "metrics", metrics_schema()).column("tp").to_pylist() == list(range(302))


def test_parts_are_written_by_count_when_cases_come_faster_than_the_age(tmp_path, clock):
    sink = RunSink(tmp_path, metrics_schema(), 4, fingerprint="f", run_id="r", max_age_s=5.0)
    for i in range(10):
        sink.add(_result(i))
    assert _parts(tmp_path, "cases") == 2 and sink.cases_buffered == 2


def test_without_an_age_only_the_count_writes(tmp_path, clock):
    sink = RunSink(tmp_path, metrics_schema(), 3, fingerprint="f", run_id="r")
    sink.add(_result(0))
    clock.now += 3600.0
    sink.add(_result(1))
    assert _parts(tmp_path, "cases") == 0
    sink.add(_result(2))
    assert _parts(tmp_path, "cases") == 1


def test_the_evaluate_cli_default_is_the_engine_default():
    from medbench_fast.cli.evaluate import evaluate
    from medbench_fast.runner.evaluate import WRITE_EVERY

    option = next(p for p in evaluate.params if p.name == "write_every")
    assert option.default == WRITE_EVERY
