"""``medbench run``: strict providers, ``--precision fp32,fp16`` and the GPU options in run.json."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from medbench_fast.cli.main import cli


def _invoke(args, code=0):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_strict_cuda_stops_before_the_first_case(tmp_path, bench_assets, write_config):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    config = write_config(tmp_path, bench_assets, max_cases=2)
    out = tmp_path / "run"
    result = _invoke(["run", "--config", str(config), "--out", str(out), "--provider", "cuda", "--quiet"], code=2)
    assert "model 'baseline'" in result.output and "strict providers" in result.output
    assert "CUDAExecutionProvider is not in this onnxruntime build" in result.output
    assert "Traceback" not in result.output
    assert not list(out.rglob("*.parquet"))


def test_no_strict_providers_runs_on_the_cpu(tmp_path, bench_assets, write_config):
    config = write_config(tmp_path, bench_assets, max_cases=1)
    text = config.read_text().replace("benchmark:\n", "benchmark:\n  cudnn_search: heuristic\n  tf32: true\n")
    config.write_text(text)
    out = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="not in use"):
        _invoke(["run", "--config", str(config), "--out", str(out), "--provider", "cuda,cpu",
                 "--no-strict-providers", "--quiet"])
    info = json.loads((out / "run.json").read_text())["models"]["baseline"]
    assert info["providers_in_use"] == ["CPUExecutionProvider"] and info["precision"] == "fp32"
    assert info["provider_options"] == {"CPUExecutionProvider": {}} and info["postprocess"] in ("graph", "host")


def test_precision_fp32_fp16_side_by_side(tmp_path, bench_assets, write_config):
    config = write_config(tmp_path, bench_assets, max_cases=2)
    out = tmp_path / "run"
    result = _invoke(["run", "--config", str(config), "--out", str(out), "--precision", "fp32,fp16"])
    assert "speed-up" in result.output and "precision" in result.output
    models = json.loads((out / "run.json").read_text())["models"]
    assert {k: v["precision"] for k, v in models.items()} == {"baseline-fp32": "fp32", "baseline-fp16": "fp16"}
    report = json.loads((out / "precision.json").read_text())
    labels = {r["label"] for r in report["labels"]}
    assert labels == {1, 2, 3, 4, 5} and all(r["model"] == "baseline" and r["cases"] == 2 for r in report["labels"])
    for row in report["labels"]:
        assert abs(row["dice_fp16"] - row["dice_fp32"] - row["dice_delta_mean"]) < 1e-9
        assert row["dice_delta_max_abs"] < 0.05
    assert report["speed"][0]["speedup"] > 0
    assert (out / "precision.csv").read_text().startswith("model,label,cases,dice_fp32")
    cases = pq.read_table(out / "cases.parquet").to_pylist()
    assert sorted({c["model"] for c in cases}) == ["baseline-fp16", "baseline-fp32"]


@pytest.mark.parametrize("value, message", [("fp8", "--precision"), ("fp32,fp32", "distinct")])
def test_bad_precision(tmp_path, bench_assets, write_config, value, message):
    config = write_config(tmp_path, bench_assets, max_cases=1)
    result = _invoke(["run", "--config", str(config), "--precision", value], code=2)
    assert message in result.output and "Traceback" not in result.output
