"""``medbench demo`` end to end in a temporary folder, every model kind included."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.store.schema import CASES_SCHEMA, METRICS_SCHEMA

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--cases", "3", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_run_folder_and_schema(demo_run):
    out, output = demo_run
    run = out / "run"
    assert f"leaderboard: {run / 'leaderboard.html'}" in output
    metrics = pq.read_table(run / "metrics.parquet")
    assert metrics.schema.names == METRICS_SCHEMA.names
    assert pq.read_table(run / "cases.parquet").schema.names[: len(CASES_SCHEMA)] == CASES_SCHEMA.names
    for name in ("run.json", "latency.parquet", "scores.parquet", "summary.json", "results.csv", "leaderboard.html"):
        assert (run / name).exists(), name
    cases = pq.read_table(run / "cases.parquet").to_pylist()
    assert all(c["success"] for c in cases), [c["error"] for c in cases if not c["success"]]
    models = {c["model"] for c in cases}
    assert {"hu-threshold-baseline", "aiene-dualnet"} <= models


def test_baseline_segments_its_target_structures(demo_run):
    out, _ = demo_run
    rows = pq.read_table(out / "run" / "metrics.parquet").to_pylist()
    body = [r["dice"] for r in rows if r["model"] == "hu-threshold-baseline" and r["label"] == 1]
    vertebra = [r["dice"] for r in rows if r["model"] == "hu-threshold-baseline" and r["label"] == 2]
    assert len(body) == 3 and min(body) > 0.9 and min(vertebra) > 0.9
    assert not any(r["model"] == "aiene-dualnet" for r in rows)  # case-level model: no segmentation rows


def test_case_level_scores_joined_to_targets(demo_run):
    out, _ = demo_run
    scores = pq.read_table(out / "run" / "scores.parquet").to_pylist()
    assert {s["target_name"] for s in scores} == {"nodal_metastasis", "ene"}
    assert all(0.0 <= s["score"] <= 1.0 and s["target"] in (0.0, 1.0) for s in scores)
    targets = (out / "data" / "targets.csv").read_text().strip().splitlines()[1:]
    assert len(scores) == 2 * len(targets)


def test_untrained_models_are_flagged(demo_run):
    out, _ = demo_run
    run = json.loads((out / "run" / "run.json").read_text())
    assert "untrained" in run["models"]["aiene-dualnet"]["note"]
    assert "untrained" not in (run["models"]["hu-threshold-baseline"]["note"] or "")
    html = (out / "run" / "leaderboard.html").read_text()
    assert "untrained" in html
