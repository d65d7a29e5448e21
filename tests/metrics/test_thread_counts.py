"""Metric values do not depend on the thread counts of the machine: numba's, or the BLAS library's
(Ray workers run with ``OMP_NUM_THREADS=1``, a local run with every core). Every value is compared
bit for bit, in this process and in fresh processes started with other thread counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import pytest
from threadpoolctl import threadpool_limits

SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    from medbench_fast.metrics.evaluate import evaluate_pair

    def case():
        # a 132^3 crop (above the multi-threading threshold) with about 50 000 border voxels
        z, y, x = np.ogrid[:132, :132, :132]
        ref = ((z - 66) ** 2 + (y - 66) ** 2 + (x - 66) ** 2 < 60 ** 2).astype(np.uint8)
        pred = ((z - 64) ** 2 + (y - 67) ** 2 + ((x - 65) * 1.1) ** 2 < 58 ** 2).astype(np.uint8)
        pred[(z + 2 * y + 3 * x) % 97 == 0] = 1
        ref[20:40, 20:40, 20:40] = 2
        pred[22:41, 19:40, 21:38] = 2
        return ref, pred

    def rows(surface):
        ref, pred = case()
        return [{k: float(v).hex() if isinstance(v, float) else v for k, v in row.items()}
                for row in evaluate_pair(ref, pred, spacing=(1.5, 0.7, 0.8), surface=surface,
                                         metrics=("dice", "hd", "hd95", "assd", "masd", "nsd"))]

    if __name__ == "__main__":
        print(json.dumps({s: rows(s) for s in ("voxel", "surfel")}))
""")


def _namespace():
    ns: dict = {}
    exec(compile(SCRIPT, "thread_counts_case", "exec"), ns)
    return ns


@pytest.mark.parametrize("surface", ["voxel", "surfel"])
def test_values_are_bit_identical_for_any_thread_count_in_process(surface):
    rows = _namespace()["rows"]
    before = numba.get_num_threads()
    try:
        with threadpool_limits(limits=1):
            numba.set_num_threads(1)
            one = rows(surface)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        with threadpool_limits(limits=max(2, os.cpu_count() or 2)):
            many = rows(surface)
    finally:
        numba.set_num_threads(before)
    assert one == many


@pytest.mark.slow  # fresh processes compile (or load) every kernel
def test_values_are_bit_identical_across_processes_with_other_thread_counts():
    results = []
    for threads in ("1", "2", "3"):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "NUMBA_NUM_THREADS": threads,
               "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout))
    assert results[0] == results[1] == results[2]
    assert {row["label"] for row in results[0]["voxel"]} == {1, 2}
