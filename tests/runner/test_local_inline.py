"""The local executor runs an evaluation's tiny cases in the main thread (handing them between
threads costs more than they do), with exactly the rows of the threaded run."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from medbench_fast.data.reader import Volume, write_volume
from medbench_fast.runner.evaluate import evaluate_folders
from medbench_fast.runner.executors import local

TIMING = {"load_s", "metrics_s", "total_s", "run_id"}


def _folders(root, n: int, shape) -> tuple:
    rng = np.random.default_rng(7)
    for side in ("ref", "pred"):
        (root / side).mkdir(parents=True)
    for i in range(n):
        ref = rng.integers(0, 3, shape, dtype=np.uint8)
        pred = ref.copy()
        pred[rng.random(shape) < 0.1] = 1
        write_volume(Volume(ref, (1.0, 1.0, 2.0)), root / "ref" / f"c{i:03d}.nii.gz")
        write_volume(Volume(pred, (1.0, 1.0, 2.0)), root / "pred" / f"c{i:03d}.nii.gz")
    return root / "pred", root / "ref"


def _rows(run_dir):
    return [{k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items() if k not in TIMING}
            for name in ("metrics.parquet", "cases.parquet") for r in pq.read_table(run_dir / name).to_pylist()]


def _inline(run_dir) -> bool:
    (worker,) = json.loads((run_dir / "run.json").read_text())["workers"]
    return worker["inline"]


@pytest.mark.parametrize("threshold_s, inline", [(10.0, True), (0.0, False)], ids=["tiny", "not tiny"])
def test_tiny_cases_run_inline_with_the_rows_of_threads(tmp_path, monkeypatch, threshold_s, inline):
    n = 2 * local.INLINE_SAMPLE + 3
    pred, ref = _folders(tmp_path / "data", n, (4, 8, 8))
    monkeypatch.setattr(local, "INLINE_BELOW_S", threshold_s)
    decided = evaluate_folders(pred, ref, tmp_path / "decided", progress=False, workers=2, batch_size=5)
    monkeypatch.setattr(local, "INLINE_SAMPLE", 10 ** 9)  # never decides: threads throughout
    threads = evaluate_folders(pred, ref, tmp_path / "threads", progress=False, workers=2, batch_size=5)
    assert _inline(decided.run_dir) is inline and _inline(threads.run_dir) is False
    assert _rows(decided.run_dir) == _rows(threads.run_dir)
    assert decided.n_cases == n and decided.n_failed == 0


def test_a_run_with_models_never_goes_inline():
    from medbench_fast.runner.worker import CaseWorker, PredictionWorker

    assert not CaseWorker({}, {}, None, {}, None, 0).inline_when_tiny
    assert PredictionWorker(None, None).inline_when_tiny


def test_the_decision_counts_cpu_time_not_waiting(tmp_path, monkeypatch):
    """A case that waits (for the GIL, the disk) but computes little is still tiny: 20 ms of
    waiting in every read leaves the CPU time, and the decision, to the work itself."""
    import time

    from medbench_fast.runner import worker

    pred, ref = _folders(tmp_path / "data", local.INLINE_SAMPLE + 4, (4, 8, 8))
    original = worker.load_volume

    def waiting(*args, **kwargs):
        time.sleep(0.01)
        return original(*args, **kwargs)

    monkeypatch.setattr(worker, "load_volume", waiting)
    result = evaluate_folders(pred, ref, tmp_path / "out", progress=False, workers=2)
    assert _inline(result.run_dir) is True
    cases = pq.read_table(result.run_dir / "cases.parquet").to_pydict()
    assert min(cases["load_s"]) >= 0.02  # the wall time the old rule went by
