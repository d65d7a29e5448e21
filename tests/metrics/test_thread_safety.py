"""Public metric functions that launch parallel kernels are safe to call from many threads at once,
even under numba's ``workqueue`` threading layer, which aborts the process on concurrent launches."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import threading
    import numpy as np
    import medbench_fast.kernels._jit as jit
    from medbench_fast.metrics.counts import label_counts
    from medbench_fast.metrics.evaluate import evaluate_pair
    from medbench_fast.metrics.surface import label_surface_metrics, surface_distances

    jit.PARALLEL_MIN_VOXELS = 0  # every launch multi-threaded, as on CT-sized volumes
    rng = np.random.default_rng(0)
    ref = np.zeros((24, 40, 40), np.uint8)
    ref[4:20, 5:35, 5:35] = 1
    ref[8:12, 10:20, 10:20] = 2
    pred = ref.copy()
    pred[rng.random(ref.shape) < 0.02] = 1
    box = ((0, 24), (0, 40), (0, 40))
    calls = {
        "evaluate_pair": lambda: evaluate_pair(ref, pred, spacing=(2.0, 0.8, 0.8)),
        "evaluate_pair_surfel": lambda: evaluate_pair(ref, pred, spacing=(2.0, 0.8, 0.8), surface="surfel"),
        "label_surface_metrics": lambda: label_surface_metrics(ref, pred, 1, box=box, spacing=(2.0, 0.8, 0.8)),
        "surface_distances": lambda: surface_distances(ref, pred, 1, box=box, spacing=(2.0, 0.8, 0.8)).ref_to_pred,
        "label_counts": lambda: label_counts(ref, pred).hist,
    }
    expected = {name: repr(call()) for name, call in calls.items()}
    errors, results = [], []

    def worker(name):
        try:
            for _ in range(3):
                results.append(repr(calls[name]()) == expected[name])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(name,)) for name in calls for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 3 * 8 * len(calls) and all(results)
    print("ok")
""")


@pytest.mark.slow  # a fresh process loads every kernel under another threading layer
def test_many_threads_under_the_workqueue_layer():
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
