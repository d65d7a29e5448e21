"""``bench/gpu_check.py``: stops at once without the CUDA provider; its measurement runs end to
end (CPU dry run), also with only the minimal GPU container's packages importable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"
#: Importable in the minimal GPU container: numpy, numba, onnx, pyarrow, pyyaml, click, onnxruntime-gpu.
NOT_IN_MINIMAL = ("SimpleITK", "torch", "scipy", "h5py", "transformers", "optimum", "tqdm", "pydicom", "highdicom",
                  "surface_distance", "pynvml", "pandas", "keras", "monai", "ray", "huggingface_hub", "PIL")
_MINIMAL = ("import runpy, sys\n"
            f"for name in {NOT_IN_MINIMAL!r}:\n"
            "    sys.modules[name] = None  # import fails, importlib.util.find_spec gives None\n"
            f"sys.argv = [{str(SCRIPT)!r}, *sys.argv[1:]]\n"
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")


def _run(args, tmp_path, *, minimal=False):
    env = {**os.environ, "MEDBENCH_BENCH_RESULTS": str(tmp_path / "results"),
           "MEDBENCH_EXPORT_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-c", _MINIMAL, *args] if minimal else [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_exits_at_once_without_cuda(tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    proc = _run([], tmp_path)
    assert proc.returncode == 1 and "no CUDAExecutionProvider" in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_cpu_dry_run_writes_results(tmp_path):
    proc = _run(["--providers", "cpu", "--models", "hu-threshold-baseline", "--cases", "2", "--samples", "3",
                 "--seconds", "5", "--pipeline-cases", "2"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "results" / "gpu_check_cpu.json").read_text())
    model = result["models"]["hu-threshold-baseline"]
    for precision in ("fp32", "fp16"):
        entry = model[precision]
        assert entry["precision"] == precision and entry["model_call"]["inference"]["n"] == 3
        assert entry["pipeline"]["cases"] == 2 and entry["pipeline"]["cases_per_s"] > 0
        assert set(entry["pipeline"]["seconds_per_case"]) == {"read_s", "prepare_s", "infer_s", "score_s"}
        assert entry["cold_start_s"] > entry["session_s"] > 0
        assert entry["gpu_memory_source"] == "not measured" and entry["gpu_process_peak_mib"] is None
    agreement = model["fp16_vs_fp32"]
    assert agreement["dice_mean"] and all(0.9 <= d <= 1.0 for d in agreement["dice_mean"].values())
    assert set(agreement["hd95_max_mm"]) <= set(agreement["dice_mean"]) and agreement["max_abs_score_diff"] >= 0
    assert model["fp16_speedup_p50"] > 0 and result["errors"] == {}
    assert "not measured" in proc.stdout and "| pipeline cases/s |" in proc.stdout


@pytest.mark.slow
def test_minimal_container_skips_extras_and_records_failures(tmp_path):
    """Without SimpleITK, torch, h5py, scipy, NVML: SegFormer and AI-ENE are reported as
    skipped, cases are read from .npy files, and the baseline is measured."""
    proc = _run(["--providers", "cpu", "--models", "hu-threshold-baseline,segformer-tiny,aiene-dualnet,torchscript-3d",
                 "--cases", "1", "--samples", "2", "--seconds", "5", "--pipeline-cases", "1"], tmp_path, minimal=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "results" / "gpu_check_cpu.json").read_text())
    assert "torch" in result["skipped"]["segformer-tiny"] and "SimpleITK" in result["skipped"]["aiene-dualnet"]
    assert "torch" in result["skipped"]["torchscript-3d"]
    assert result["cases_from"] == "npy" and result["models"]["hu-threshold-baseline"]["fp32"]["pipeline"]["cases_per_s"]
    assert "skipped segformer-tiny" in proc.stdout


def test_an_exception_of_one_model_is_recorded_and_the_check_goes_on(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    monkeypatch.setattr(sys.modules["common"], "RESULTS", tmp_path / "results")
    calls = []

    def measure(entry, cases, precision, args, export_dir):
        calls.append((entry["name"], precision))
        raise MemoryError("CUDA out of memory") if entry["name"] == "hu-threshold-baseline" else RuntimeError("boom")

    monkeypatch.setattr(check, "measure", measure)
    monkeypatch.setattr(check, "build_models", lambda root, wanted: (
        [{"name": "hu-threshold-baseline"}, {"name": "sliding-3d"}], {}))
    monkeypatch.setattr(check, "Cases", lambda root, n: type("C", (), {"nifti": False, "files": []})())
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--providers", "cpu"])
    check.main()
    assert calls == [("hu-threshold-baseline", "fp32"), ("hu-threshold-baseline", "fp16"),
                     ("sliding-3d", "fp32"), ("sliding-3d", "fp16")]
    errors = json.loads((tmp_path / "results" / "gpu_check_cpu.json").read_text())["errors"]
    assert errors["hu-threshold-baseline/fp16"].startswith("MemoryError: CUDA out of memory")
    assert errors["sliding-3d/fp32"].startswith("RuntimeError: boom")
