"""One run per folder: fingerprints, refusal, --overwrite, --resume with the recorded settings,
the writer lock, exit codes, and errors as messages."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.store.fingerprint import FINGERPRINT_KEY
from medbench_fast.store.lock import RunLock, RunLockedError

TIMING = {"load_s", "preprocess_s", "inference_s", "postprocess_s", "metrics_s", "total_s", "run_id"}


def _invoke(args, code=0, **kwargs):
    result = CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)
    assert result.exit_code == code, result.output
    return result


def _evaluate(data, out, *extra, code=0):
    return _invoke(["evaluate", "--pred", str(data / "preds"), "--ref", str(data / "labels"), "--out", str(out),
                    "-q", "--no-cache", "--metrics", "counts,nsd", *extra], code=code)


def _rows(path, table="metrics.parquet"):
    """Rows without timings and run ids; NaN made comparable."""
    return [{k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items() if k not in TIMING}
            for r in pq.read_table(path / table).to_pylist()]


# -- evaluate ------------------------------------------------------------------------------
def test_evaluate_refuses_a_folder_holding_another_run(tmp_path, bench_assets):
    data, out = bench_assets / "data", tmp_path / "out"
    _evaluate(data, out, "--labels", "1,2")
    before = (out / "metrics.parquet").read_bytes(), (out / "run.json").read_bytes()
    bad = _evaluate(data, out, "--labels", "1", code=2)
    assert str(out) in bad.output and "options.labels: [1,2] -> [1]" in bad.output and "--overwrite" in bad.output
    bad = _evaluate(data, out, "--labels", "1,2", "--tolerance-mm", "2", code=2)
    assert "options.tolerance_mm: 1.0 -> 2.0" in bad.output
    assert ((out / "metrics.parquet").read_bytes(), (out / "run.json").read_bytes()) == before  # untouched

    _evaluate(data, out, "--labels", "1", "--overwrite")
    labels = {r["label"] for r in _rows(out)}
    run = json.loads((out / "run.json").read_text())
    assert labels == {1} and run["options"]["labels"] == [1]
    assert {r["label"] for r in pq.read_table(out / "metrics.parquet").to_pylist()} == {1}
    assert "label" in (out / "results.csv").read_text() and ",2," not in (out / "results.csv").read_text()
    assert len({r["run_id"] for r in pq.read_table(out / "metrics.parquet").to_pylist()}) == 1
    assert not list(out.glob(".medbench-replaced-*")) and not (out / ".lock").exists()


def test_fingerprint_is_in_run_json_every_part_and_every_table(tmp_path, bench_assets):
    out = tmp_path / "out"
    _evaluate(bench_assets / "data", out)
    digest = json.loads((out / "run.json").read_text())["fingerprint"]["sha256"]
    parts = list((out / "parts").rglob("part-*.parquet"))
    assert parts
    for path in parts + [out / "metrics.parquet", out / "cases.parquet"]:
        assert pq.read_schema(path).metadata[FINGERPRINT_KEY.encode()].decode() == digest, path


def test_an_interrupted_overwrite_leaves_no_mix(tmp_path, bench_assets, monkeypatch):
    """A crash while the old run is moved aside leaves either the old run or no run, never both."""
    from medbench_fast.runner import identity

    data, out = bench_assets / "data", tmp_path / "out"
    _evaluate(data, out, "--labels", "1,2")
    real = os.replace
    calls = []

    def crash_after_run_json(src, dst):
        calls.append(src)
        real(src, dst)
        if str(src).endswith("run.json"):
            raise KeyboardInterrupt  # killed right after the commit point

    monkeypatch.setattr(identity.os, "replace", crash_after_run_json)
    _invoke(["evaluate", "--pred", str(data / "preds"), "--ref", str(data / "labels"), "--out", str(out), "-q",
             "--labels", "1", "--overwrite"], code=130)
    monkeypatch.undo()
    assert not (out / "run.json").exists()  # no run described
    bad = _evaluate(data, out, "--labels", "1", code=2)  # leftover parts are never merged into a new run
    assert "the parts of an unfinished run" in bad.output
    _evaluate(data, out, "--labels", "1", "--overwrite")
    assert {r["label"] for r in _rows(out)} == {1}


# -- run -----------------------------------------------------------------------------------
@pytest.fixture
def config_in(write_config):
    """``config_in(folder, assets, ...)``: a benchmark config written into ``folder`` (created)."""
    def make(folder, assets, **kwargs):
        folder.mkdir(parents=True, exist_ok=True)
        return write_config(folder, assets, **kwargs)

    return make


def test_run_into_a_folder_of_another_run_is_refused_then_overwritten(tmp_path, bench_assets, config_in):
    first = config_in(tmp_path / "a", bench_assets, max_cases=3)
    out = tmp_path / "run"
    _invoke(["run", "--config", str(first), "--out", str(out), "-q"])
    shutil.copy(bench_assets / "models" / "baseline.onnx", tmp_path / "other.onnx")
    shutil.copy(bench_assets / "models" / "baseline.spec.json", tmp_path / "other.spec.json")
    second = tmp_path / "b" / "benchmark_config.yaml"
    second.parent.mkdir()
    second.write_text(first.read_text().replace("name: baseline", "name: other").replace(
        str(bench_assets / "models" / "baseline.onnx"), str(tmp_path / "other.onnx")))
    bad = _invoke(["run", "--config", str(second), "--out", str(out), "-q"], code=2)
    assert "already holds run" in bad.output and "models.baseline.kind" in bad.output and "--resume" in bad.output
    _invoke(["run", "--config", str(second), "--out", str(out), "-q", "--overwrite"])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["cases"]) == {"other"}
    assert set(pq.read_table(out / "metrics.parquet").column("model").to_pylist()) == {"other"}
    assert set(json.loads((out / "run.json").read_text())["models"]) == {"other"}


def test_resume_with_a_config_that_changes_the_fingerprint_is_refused(tmp_path, bench_assets, config_in):
    config = config_in(tmp_path, bench_assets, max_cases=2)
    out = tmp_path / "run"
    _invoke(["run", "--config", str(config), "--out", str(out), "-q"])
    run_json = (out / "run.json").read_bytes()
    for change, key in (("  tolerance_mm: 2.0\n", "options.tolerance_mm: 1.0 -> 2.0"),
                        ("  surface: surfel\n", "options.surface: \"voxel\" -> \"surfel\"")):
        other = tmp_path / "other.yaml"
        other.write_text(config.read_text().replace("benchmark:\n", "benchmark:\n" + change))
        bad = _invoke(["run", "--resume", str(out), "--config", str(other)], code=2)
        assert key in bad.output and "fingerprint" in bad.output
    assert (out / "run.json").read_bytes() == run_json
    _invoke(["run", "--resume", str(out), "--config", str(config)])  # the same settings: accepted


def _drop_case_parts(out, keep: int) -> None:
    """Simulate a run killed after ``keep`` committed cases: later case parts and the tables vanish."""
    parts = sorted((out / "parts" / "cases").glob("part-*.parquet"))
    for p in parts[keep:]:
        p.unlink()
    for name in ("metrics.parquet", "cases.parquet", "summary.json", "results.csv", "latency.parquet"):
        (out / name).unlink(missing_ok=True)
    info = json.loads((out / "run.json").read_text())
    info["status"] = "running"
    (out / "run.json").write_text(json.dumps(info))


def test_resume_uses_the_paths_recorded_at_the_start(tmp_path, bench_assets, monkeypatch):
    first_cwd, other_cwd = tmp_path / "here", tmp_path / "elsewhere"
    shutil.copytree(bench_assets / "data", first_cwd / "data")
    shutil.copytree(bench_assets / "models", first_cwd / "models")
    (first_cwd / "cfg.yaml").write_text(textwrap.dedent("""\
        dataset: {image_dir: data/images, seg_dir: data/labels, max_cases: 4}
        models: [{name: baseline, path: models/baseline.onnx}]
        benchmark: {write_every: 1, metrics: [counts]}
        output: {formats: [csv]}
        """))
    # another folder with the same relative layout, holding other labels
    shutil.copytree(bench_assets / "data", other_cwd / "data")
    for label in (other_cwd / "data" / "labels").iterdir():
        shutil.copy(other_cwd / "data" / "preds" / label.name, label)
    out = tmp_path / "run"
    monkeypatch.chdir(first_cwd)
    _invoke(["run", "--config", "cfg.yaml", "--out", str(out), "-q"])
    want = sorted(_rows(out), key=lambda r: (r["case_id"], r["label"]))
    _drop_case_parts(out, keep=2)
    monkeypatch.chdir(other_cwd)
    _invoke(["run", "--resume", str(out), "-q"])
    assert sorted(_rows(out), key=lambda r: (r["case_id"], r["label"])) == want


def test_a_part_of_another_fingerprint_is_refused(tmp_path, bench_assets, config_in):
    config = config_in(tmp_path, bench_assets, max_cases=2)
    out = tmp_path / "run"
    _invoke(["run", "--config", str(config), "--out", str(out), "-q"])
    part = sorted((out / "parts" / "metrics").glob("part-*.parquet"))[0]
    table = pq.read_table(part)
    meta = {**table.schema.metadata, FINGERPRINT_KEY.encode(): b"0" * 64}
    stranger = out / "parts" / "metrics" / "part-main-999999-stranger.parquet"
    pq.write_table(table.replace_schema_metadata(meta), stranger)
    _drop_case_parts(out, keep=1)
    bad = _invoke(["run", "--resume", str(out), "-q"], code=1)
    assert "part-main-999999-stranger.parquet" in bad.output and "another run" in bad.output
    assert "Traceback" not in bad.output


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path, bench_assets, config_in):
    config = config_in(tmp_path, bench_assets, max_cases=2)
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import sys, time
        from medbench_fast.store.lock import RunLock
        RunLock({str(out)!r}, command="medbench run").acquire()
        print("locked", flush=True)
        time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        bad = _invoke(["run", "--config", str(config), "--out", str(out), "-q"], code=2)
        assert f"pid {holder.pid}" in bad.output and "being written by medbench run" in bad.output
        assert not (out / "run.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed: its lock is stale and the next writer takes it over
    assert (out / ".lock").exists()
    _invoke(["run", "--config", str(config), "--out", str(out), "-q"])
    assert not (out / ".lock").exists()


def test_two_concurrent_runs_into_one_folder(tmp_path, bench_assets, config_in):
    config = config_in(tmp_path, bench_assets, max_cases=4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "medbench_fast", "run", "--config", str(config), "--out", str(out), "--quiet"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / ".lock").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, out1 + err1
    assert second.returncode == 2, second.stdout + second.stderr
    assert "being written by" in second.stderr or "already holds run" in second.stderr
    cases = pq.read_table(out / "cases.parquet").to_pylist()
    assert len(cases) == 4 and len({c["run_id"] for c in cases}) == 1


def test_lock_of_a_live_process_on_this_host_is_held():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with RunLock(d, command="a"):
            with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
                RunLock(d, command="b").acquire()


# -- exit codes and validation ---------------------------------------------------------------
def test_exit_codes_for_failed_pairs(tmp_path, bench_assets, config_in):
    data = tmp_path / "data"
    shutil.copytree(bench_assets / "data", data)
    for f in (data / "images").iterdir():
        f.write_bytes(b"broken")
    config = config_in(tmp_path, tmp_path, max_cases=3)
    shutil.copytree(bench_assets / "models", tmp_path / "models")
    result = _invoke(["run", "--config", str(config), "--out", str(tmp_path / "r1"), "-q"], code=3)
    assert "3 failed" in result.output
    _invoke(["run", "--config", str(config), "--out", str(tmp_path / "r2"), "-q", "--allow-failures"])
    assert json.loads((tmp_path / "r2" / "run.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("change, message", [
    ("benchmark: {tolerance_mm: -1}", "benchmark.tolerance_mm: expected a number >= 0, got -1"),
    ("benchmark: {tolerance_mm: .nan}", "benchmark.tolerance_mm: expected a finite number"),
    ("benchmark: {threshold: 1.5}", "benchmark.threshold: expected a number between 0 and 1, got 1.5"),
    ("dataset: {labels: [-1]}", "dataset.labels: expected a number >= 1, got -1"),
    ("dataset: {label_names: {body: 1}}", "dataset.label_names: key 'body' is not a label"),
    ("dataset: {image_dir: nowhere}", "dataset.image_dir:"),
    ("models: [{name: m, path: missing.onnx}]", "models[0].path:"),
])
def test_config_check_rejects_every_value_run_would_reject(tmp_path, bench_assets, change, message):
    base = {"dataset": {"image_dir": str(bench_assets / "data" / "images"),
                        "seg_dir": str(bench_assets / "data" / "labels")},
            "models": [{"name": "baseline", "path": str(bench_assets / "models" / "baseline.onnx")}]}
    import yaml

    patch = yaml.safe_load(change)
    for section, value in patch.items():
        base[section] = {**base.get(section, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base))
    for args in (["config", "check", str(path)], ["run", "--config", str(path), "--out", str(tmp_path / "r")]):
        result = _invoke(args, code=2)
        assert message in result.output and str(path) in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_out_under_a_regular_file_is_a_message(tmp_path, bench_assets, config_in):
    config = config_in(tmp_path, bench_assets, max_cases=1)
    (tmp_path / "file").write_text("x")
    result = _invoke(["run", "--config", str(config), "--out", str(tmp_path / "file" / "run")], code=2)
    assert "is a file" in result.output and "Traceback" not in result.output
    data = bench_assets / "data"
    result = _invoke(["evaluate", "--pred", str(data / "preds"), "--ref", str(data / "labels"),
                      "--out", str(tmp_path / "file" / "o")], code=2)
    assert "is a file" in result.output


def test_disk_full_during_run_is_a_message_and_a_failed_run(tmp_path, bench_assets, monkeypatch, config_in):
    from medbench_fast.store import parts

    config = config_in(tmp_path, bench_assets, max_cases=3, write_every=1)

    def full(table, target):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(parts, "_atomic_write_table", full)
    out = tmp_path / "run"
    result = _invoke(["run", "--config", str(config), "--out", str(out), "-q"], code=1)
    assert "no space left on the device" in result.output and "Traceback" not in result.output
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and "No space left" in run["error"]
    assert not (out / ".lock").exists()


def test_internal_errors_are_one_line_unless_debug(tmp_path, bench_assets, monkeypatch):
    from medbench_fast.runner import finalize

    def broken(*args, **kwargs):
        raise TypeError("boom")

    monkeypatch.setattr(finalize, "consolidate", broken)
    data = bench_assets / "data"
    args = ["evaluate", "--pred", str(data / "preds"), "--ref", str(data / "labels"), "-q", "--no-cache"]
    result = _invoke([*args, "--out", str(tmp_path / "a")], code=1)
    assert "internal error: TypeError: boom (run with --debug" in result.output
    with pytest.raises(TypeError, match="boom"):
        CliRunner().invoke(cli, ["--debug", *args, "--out", str(tmp_path / "b")], catch_exceptions=False)


def test_corrupt_tables_are_named_and_rebuilt_from_parts(tmp_path, bench_assets):
    out = tmp_path / "out"
    _evaluate(bench_assets / "data", out)
    want = pq.read_table(out / "metrics.parquet")
    (out / "metrics.parquet").write_bytes(b"")
    result = _invoke(["report", str(out)])
    assert "metrics.parquet: not a readable Parquet file" in result.output and "rebuilding" in result.output
    assert pq.read_table(out / "metrics.parquet").equals(want)
    shutil.rmtree(out / "parts")
    (out / "cases.parquet").write_bytes(b"PAR1garbage")
    result = _invoke(["report", str(out)], code=2)
    assert "cases.parquet: not a readable Parquet file" in result.output and "Traceback" not in result.output


# -- compare ---------------------------------------------------------------------------------
def test_compare_tests_only_comparable_numbers(tmp_path, bench_assets):
    data = bench_assets / "data"
    runs = {}
    for name, extra in (("default", []), ("surfel", ["--surface", "surfel", "--hd95-mode", "pooled"]),
                        ("tol5", ["--tolerance-mm", "5"]), ("labels12", ["--labels", "1,2"])):
        runs[name] = tmp_path / name
        _invoke(["evaluate", "--pred", str(data / "preds"), "--ref", str(data / "labels"), "--out", str(runs[name]),
                 "-q", "--no-cache", *extra])
    result = _invoke(["compare", str(runs["default"]), str(runs["surfel"]), "--out", str(tmp_path / "cmp")])
    assert "nsd: preds (default) vs preds (surfel) not tested: conventions differ: surface_mode: voxel vs surfel" \
        in result.output
    assert "hd95: preds (default) vs preds (surfel) not tested" in result.output and "hd95_mode: max vs pooled" \
        in result.output
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    tested = {c["metric"] for c in summary["comparisons"] if c["tested"]}
    assert tested == {"dice"}  # Dice does not depend on the surface conventions
    html = (tmp_path / "cmp" / "leaderboard.html").read_text()
    assert "not tested: conventions differ: surface_mode: voxel vs surfel" in html

    result = _invoke(["compare", str(runs["default"]), str(runs["tol5"])])
    assert "nsd_tolerance_mm: 1.0 vs 5.0" in result.output
    forced = _invoke(["compare", str(runs["default"]), str(runs["tol5"]), "--allow-different-conventions",
                      "--out", str(tmp_path / "forced")])
    assert "not tested" not in forced.output
    nsd = [c for c in json.loads((tmp_path / "forced" / "summary.json").read_text())["comparisons"]
           if c["metric"] == "nsd"]
    assert nsd and nsd[0]["tested"] and nsd[0]["conventions_differ"] == "nsd_tolerance_mm: 1.0 vs 5.0"

    result = _invoke(["compare", str(runs["default"]), str(runs["labels12"]), "--out", str(tmp_path / "lab")])
    assert "labels compared: 1, 2; left out: default: 3, 4, 5" in result.output
    scope = json.loads((tmp_path / "lab" / "summary.json").read_text())["comparison_scope"]
    assert scope["labels"] == {"compared": [1, 2], "dropped": {"default": [3, 4, 5]}}
    dice = [c for c in json.loads((tmp_path / "lab" / "summary.json").read_text())["comparisons"]
            if c["metric"] == "dice"][0]
    # the same predictions on the same labels: every paired difference is zero
    assert dice["tested"] and dice["mean_diff"] == 0.0


def test_compare_reports_cases_used_and_dropped(tmp_path, bench_assets):
    data = tmp_path / "data"
    shutil.copytree(bench_assets / "data", data)
    full, part = tmp_path / "full", tmp_path / "part"
    _evaluate(data, full)
    subset = tmp_path / "subset"
    subset.mkdir()
    for f in sorted((data / "preds").iterdir())[:5]:
        shutil.copy(f, subset / f.name)
    _invoke(["evaluate", "--pred", str(subset), "--ref", str(data / "labels"), "--out", str(part), "-q",
             "--no-cache", "--metrics", "counts,nsd"], code=3)  # references without a prediction fail
    result = _invoke(["compare", str(full), str(part)])
    assert "dice: preds vs subset: 5 paired cases used, 7 dropped (in one model only)" in result.output


def test_a_fixed_size_input_that_does_not_fit_the_data_stops_the_run_before_its_first_case(
        tmp_path, bench_assets, config_in):
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Sub", ["image", "image"], ["zero"]),
             helper.make_node("Concat", ["zero", "image"], ["logits"], axis=1)]
    graph = helper.make_graph(nodes, "fixed", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2, 32, 32])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    spec = {"name": "fixed", "inputs": ["image"], "strategy": {"type": "slice2d", "axis": 0},
            "output": {"kind": "segmentation_logits", "labels": {"1": 1}}}
    (tmp_path / "fixed.spec.json").write_text(json.dumps(spec))
    config = config_in(tmp_path / "c", bench_assets, max_cases=3)
    config.write_text(config.read_text().replace(str(bench_assets / "models" / "baseline.onnx"),
                                                 str(tmp_path / "fixed.onnx")))
    out = tmp_path / "run"
    result = _invoke(["run", "--config", str(config), "--out", str(out), "-q"], code=2)
    assert "has fixed spatial size [32, 32]" in result.output and "case_000" in result.output
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and "fixed spatial size" in run["error"]
    assert not list((out / "parts" / "cases").glob("part-*.parquet"))
