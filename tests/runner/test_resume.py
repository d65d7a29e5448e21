"""Killed and interrupted runs resume to exactly the rows of an uninterrupted run."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow
TIMING = {"load_s", "preprocess_s", "inference_s", "postprocess_s", "metrics_s", "total_s", "run_id"}


def _medbench(*args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "medbench_fast", *args, "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(run_dir):
    """Rows of both tables without timings and run ids; NaN made comparable."""
    def clean(table):
        return [{k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items() if k not in TIMING}
                for r in pq.read_table(run_dir / table).to_pylist()]

    return clean("metrics.parquet"), clean("cases.parquet")


def _finish(config, out):
    """Resume ``out`` until it completes (start afresh when the kill came before run.json)."""
    args = ["run", "--resume", str(out)] if (out / "run.json").exists() else ["run", "--config", str(config), "--out", str(out)]
    proc = _medbench(*args)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout + stderr


@pytest.fixture
def reference_run(tmp_path, bench_assets, write_config):
    config = write_config(tmp_path, bench_assets, write_every=1)
    out = tmp_path / "uninterrupted"
    proc = _medbench("run", "--config", str(config), "--out", str(out))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout + stderr
    return config, _rows(out)


def test_kill_9_at_random_points_then_resume(tmp_path, reference_run):
    config, (want_metrics, want_cases) = reference_run
    rng = random.Random(2024)
    for trial in range(3):
        out = tmp_path / f"killed{trial}"
        proc = _medbench("run", "--config", str(config), "--out", str(out))
        for _kill in range(2):  # kill, resume, kill again
            time.sleep(rng.uniform(1.0, 4.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.communicate()
            if not (out / "run.json").exists():
                break
            proc = _medbench("run", "--resume", str(out))
        proc.kill()
        proc.communicate()
        _finish(config, out)
        got_metrics, got_cases = _rows(out)
        assert got_cases == want_cases, trial
        assert got_metrics == want_metrics, trial
        assert len({(r["model"], r["case_id"], r["label"]) for r in got_metrics}) == len(got_metrics)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, reference_run):
    config, (want_metrics, want_cases) = reference_run
    out = tmp_path / "interrupted"
    proc = _medbench("run", "--config", str(config), "--out", str(out))
    deadline = time.time() + 60
    while time.time() < deadline and not list((out / "parts" / "cases").glob("part-*.parquet")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert proc.returncode == 130, stdout + stderr
    assert f"medbench run --resume {out}" in stderr
    _finish(config, out)
    assert _rows(out) == (want_metrics, want_cases)
