"""``medbench run``: config validation, the run folder, failures as rows, overrides."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from medbench_fast import evaluate_pair
from medbench_fast.cli.main import cli
from medbench_fast.config import ConfigError, example_config, validate
from medbench_fast.data.reader import load_volume
from medbench_fast.models import load_model


def _invoke(args, code=0):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_example_config_is_valid_and_documents_every_key():
    text = example_config()
    config = validate(yaml.safe_load(text))
    assert config.benchmark.providers == ("cpu",)
    for key in ("image_dir", "targets_csv", "providers", "formats", "hub_repo", "write_every"):
        assert f"{key}:" in text
    assert _invoke(["config", "init"]).output == text


@pytest.mark.parametrize("text, message", [
    ("datset: {}", "unknown key 'datset'; did you mean 'dataset'?"),
    ("benchmark: {warmpu: 2}", "benchmark: unknown key 'warmpu'; did you mean 'warmup'?"),
    ("benchmark: {warmup: two}", "benchmark.warmup: expected int, got 'two'"),
    ("benchmark: {providers: [gpu]}", "benchmark.providers: 'gpu' is not one of tensorrt, cuda, cpu"),
    ("models: [{kind: onnx}]", "models[0].name: required"),
    ("models: [{name: a, kind: tflite, path: x}]", "models[0].kind: 'tflite' is not one of"),
    ("models: [{name: a, kind: torchscript, path: m.pt}]", "models[0].input_shape: required"),
    ("models: [{name: a, path: x}, {name: a, path: y}]", "duplicate model names ['a']"),
    ("dataset: [1, 2]", "dataset: expected a mapping"),
    ("leaderboard: {publish: maybe}", "leaderboard.publish: expected bool"),
])
def test_invalid_configs_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = _invoke(["run", "--config", str(path)], code=2)
    assert message in result.output and str(path) in result.output
    with pytest.raises(ConfigError, match="bad.yaml"):
        _invoke(["config", "check", str(path)], code=2)
        raise ConfigError("bad.yaml")


def test_run_writes_the_run_folder(tmp_path, bench_assets, write_config):
    config = write_config(tmp_path, bench_assets, max_cases=4)
    out = tmp_path / "run1"
    result = _invoke(["run", "--config", str(config), "--out", str(out), "--quiet"])
    assert "4 (model, case) pairs, 0 failed" in result.output
    for name in ("run.json", "metrics.parquet", "cases.parquet", "latency.parquet", "results.csv", "summary.json"):
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["config"]["text"] == config.read_text()
    assert len(run["config"]["sha256"]) == 64
    info = run["models"]["baseline"]
    assert info["providers_in_use"] == ["CPUExecutionProvider"] and info["cold_start_s"] > info["session_s"] > 0
    cases = pq.read_table(out / "cases.parquet").to_pylist()
    assert [c["case_id"] for c in cases] == [f"case_{i:03d}" for i in range(4)]
    for c in cases:
        assert c["success"] and c["error"] is None
        for stage in ("load_s", "preprocess_s", "inference_s", "postprocess_s", "metrics_s", "total_s"):
            assert c[stage] > 0, stage
        assert c["total_s"] >= c["inference_s"] + c["metrics_s"]
    metrics = pq.read_table(out / "metrics.parquet")
    assert metrics.schema.metadata[b"hd95_mode"] == b"max"
    rows = metrics.to_pylist()
    assert {r["label"] for r in rows} == {1, 2, 3, 4, 5}
    assert all(r["hd"] is None and r["hd95"] is not None for r in rows)
    # the numbers equal evaluate_pair on the model's own prediction
    model = load_model(bench_assets / "models" / "baseline.onnx")
    image = load_volume(cases[1]["image_path"])
    ref = load_volume(cases[1]["ref_path"])
    expected = evaluate_pair(ref.array, model.predict(image).label_map.array, spacing=ref.spacing,
                             metrics=["counts", "hd95"])
    got = [r for r in rows if r["case_id"] == "case_001"]
    for e in expected:
        g = next(r for r in got if r["label"] == e["label"])
        for key in ("tp", "fp", "fn", "dice", "hd95"):
            assert g[key] == pytest.approx(e[key]), key
    body = [r["dice"] for r in rows if r["label"] == 1]
    assert min(body) > 0.95
    latency = pq.read_table(out / "latency.parquet").to_pylist()[0]
    assert latency["iters"] == 4 and len(latency["samples_ms"]) == 4 and latency["p50_ms"] > 0


def test_bad_cases_are_failed_rows_and_the_run_goes_on(tmp_path, bench_assets, write_config):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(bench_assets / "data", data)
    (data / "images" / "case_002.nii.gz").write_bytes(b"broken")
    (data / "labels" / "case_005.nii.gz").unlink()
    config = write_config(tmp_path, tmp_path, max_cases=6)
    shutil.copytree(bench_assets / "models", tmp_path / "models")
    out = tmp_path / "run"
    result = _invoke(["run", "--config", str(config), "--out", str(out), "-q"], code=3)
    assert "6 (model, case) pairs, 2 failed" in result.output and "2 failed (model, case) pair(s)" in result.output
    cases = {c["case_id"]: c for c in pq.read_table(out / "cases.parquet").to_pylist()}
    assert "case_002.nii.gz" in cases["case_002"]["error"] and not cases["case_002"]["success"]
    assert "no reference for case 'case_005'" in cases["case_005"]["error"]
    metric_cases = set(pq.read_table(out / "metrics.parquet").column("case_id").to_pylist())
    assert metric_cases == {"case_000", "case_001", "case_003", "case_004"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"]["baseline"]["failed"] == 2


def test_overrides_and_unknown_model(tmp_path, bench_assets, write_config):
    config = write_config(tmp_path, bench_assets)
    out = tmp_path / "r"
    result = _invoke(["run", "--config", str(config), "--out", str(out), "-q", "--max-cases", "2",
                      "--models", "baseline", "--provider", "cpu"])
    assert "2 (model, case) pairs" in result.output
    bad = _invoke(["run", "--config", str(config), "--out", str(tmp_path / "r2"), "--models", "nope"], code=2)
    assert "unknown model(s) ['nope']" in bad.output
    bad = _invoke(["run", "--config", str(config), "--provider", "gpu"], code=2)
    assert "'gpu' is not one of" in bad.output


def test_a_model_predicting_labels_outside_dataset_labels_is_named_as_in_the_config(tmp_path, bench_assets,
                                                                                    write_config):
    """The message names the model by its config name (the spec's own name is not in the config)."""
    config = write_config(tmp_path, bench_assets, max_cases=1)
    config.write_text(config.read_text().replace("  label_names:", "  labels: [1, 2]\n  label_names:"))
    result = _invoke(["run", "--config", str(config), "--out", str(tmp_path / "r"), "-q"], code=2)
    assert "model 'baseline': predicts label(s) [4, 5] that the dataset does not have" in result.output
    assert "dataset.labels" in result.output


def test_model_file_that_is_not_onnx_fails_before_any_case(tmp_path, bench_assets, write_config):
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"not a model")
    config = write_config(tmp_path, bench_assets)
    config.write_text(config.read_text().replace(str(bench_assets / "models" / "baseline.onnx"), str(fake)))
    result = _invoke(["run", "--config", str(config), "--out", str(tmp_path / "r")], code=2)
    assert "fake.onnx" in result.output and "baseline" in result.output
    assert not (tmp_path / "r" / "parts").exists()
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["status"] == "failed" and "fake.onnx" in run["error"]


def test_profile_command(tmp_path, bench_assets, write_config):
    out = tmp_path / "prof"
    result = _invoke(["profile", str(bench_assets / "models" / "baseline.onnx"), "--batch-sizes", "1,2",
                      "--input-shape", "1,32,32", "--warmup", "1", "--min-iters", "5", "--min-seconds", "0",
                      "--ort-profile", "--out", str(out)])
    assert "cold start" in result.output and "onnxruntime profile" in result.output
    assert json.loads(next(out.glob("ort_profile_*.json")).read_text(encoding="utf-8"))  # per-operator events
    rows = pq.read_table(out / "latency.parquet").to_pylist()
    assert [r["batch_size"] for r in rows] == [1, 2]
    for r in rows:
        assert r["iters"] >= 5 and len(r["samples_ms"]) == r["iters"]
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert np.isclose(r["mean_ms"], np.mean(r["samples_ms"]))
        assert r["throughput_items_per_s"] > 0 and r["peak_rss_mb"] > 0
    bad = CliRunner().invoke(cli, ["profile", str(bench_assets / "models" / "baseline.onnx"), "--min-iters", "1"])
    assert bad.exit_code == 1 and "--input-shape" in bad.output


def test_a_bug_in_a_case_stops_the_run_with_exit_1_not_a_failed_row(tmp_path, bench_assets, write_config):
    """A programming error while scoring a case is the project's, not the data's: ``medbench run``
    stops with exit 1 and says it is a bug, naming the case; no failed row blames the data."""
    import os
    import subprocess
    import sys

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import medbench_fast.runner.worker as worker\n"
        "def broken(*args, **kwargs):\n"
        "    raise AttributeError(\"'NoneType' object has no attribute 'spacing'\")\n"
        "worker.evaluate_pair = broken\n")
    config = write_config(tmp_path, bench_assets, max_cases=2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "medbench_fast", "run", "--config", str(config), "--out",
                           str(tmp_path / "run"), "--quiet"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "internal error (a bug in medbench-fast, not a problem of the data) on case 'case_000'" in proc.stderr
    assert "model 'baseline'" in proc.stderr and "AttributeError" in proc.stderr
    assert not list((tmp_path / "run").glob("parts/cases/*.parquet")) and not (tmp_path / "run" / "cases.parquet").exists()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"
