"""``bench/gpu_check.py``: stops at once without the CUDA provider; its measurement runs end to end (CPU dry run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def _run(args, tmp_path):
    env = {**os.environ, "MEDBENCH_BENCH_RESULTS": str(tmp_path / "results"),
           "MEDBENCH_EXPORT_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def test_exits_at_once_without_cuda(tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    proc = _run([], tmp_path)
    assert proc.returncode == 1 and "no CUDAExecutionProvider" in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_cpu_dry_run_writes_results(tmp_path):
    proc = _run(["--providers", "cpu", "--models", "hu-threshold-baseline", "--cases", "1", "--samples", "3",
                 "--seconds", "5"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "results" / "gpu_check_cpu.json").read_text())
    model = result["models"]["hu-threshold-baseline"]
    for precision in ("fp32", "fp16"):
        entry = model[precision]
        assert entry["precision"] == precision and entry["inference"]["n"] == 3 and entry["cases_per_s"] > 0
        assert entry["cold_start_s"] > entry["session_s"] > 0 and entry["dice_vs_reference"]
    assert model["fp16_speedup_p50"] > 0 and result["errors"] == {}
