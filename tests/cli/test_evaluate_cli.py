"""``medbench evaluate`` end to end through click, including every bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from reference import counts as ref_counts

from medbench_fast.cli.main import cli
from medbench_fast.data.cache import VolumeCache
from medbench_fast.data.reader import Volume, write_volume

SPACING = (2.0, 0.8, 0.8)
METRIC_COLUMNS = ["run_id", "model", "case_id", "label", "label_name", "tp", "fp", "fn", "tn", "dice", "iou",
                  "sensitivity", "specificity", "precision", "volume_similarity", "ref_volume_ml", "pred_volume_ml",
                  "hd", "hd95", "assd", "masd", "nsd", "nsd_tolerance_mm", "ref_empty", "pred_empty"]


def _pair(rng, shape=(6, 20, 24)):
    ref = np.zeros(shape, np.uint8)
    ref[1:5, 3:12, 4:14] = 1
    ref[2:4, 14:18, 15:20] = 2
    pred = ref.copy()
    pred[1:5, 3:5, 4:14] = 0
    pred[rng.random(shape) < 0.01] = 2
    return ref, pred


def _write(folder, name, array, spacing=SPACING, **geometry):
    folder.mkdir(parents=True, exist_ok=True)
    write_volume(Volume(array, spacing, **geometry), folder / name)


def _run(args, code=0):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def dataset(tmp_path, rng):
    refs, preds = tmp_path / "labels", tmp_path / "model_a"
    truth = {}
    for i, ext in enumerate([".nii.gz", ".nrrd", ".mha"]):
        ref, pred = _pair(rng)
        _write(refs, f"case{i}{ext}", ref)
        _write(preds, f"case{i}{ext}", pred)
        truth[f"case{i}"] = (ref, pred)
    ref, pred = _pair(rng)
    ref[ref == 2] = 0
    pred[pred == 2] = 0
    pred[0, 0, 0] = 7  # label 7 only in this prediction
    _write(refs, "only_one_label.nii.gz", ref)
    _write(preds, "only_one_label.nii.gz", pred)
    truth["only_one_label"] = (ref, pred)
    return refs, preds, truth


def test_good_cases_match_reference_and_fill_label_union(tmp_path, dataset):
    refs, preds, truth = dataset
    out = tmp_path / "out"
    result = _run(["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(out), "--quiet",
                   "--label-names", "1=organ,2=node"])
    assert "4 cases, 0 failed" in result.output
    table = pq.read_table(out / "metrics.parquet")
    assert table.column_names == METRIC_COLUMNS
    meta = table.schema.metadata
    assert meta[b"surface_mode"] == b"voxel" and meta[b"hd95_mode"] == b"max"
    rows = table.to_pylist()
    assert {(r["case_id"], r["label"]) for r in rows} == {(c, label) for c in truth for label in (1, 2, 7)}
    assert {r["model"] for r in rows} == {"model_a"}
    for r in rows:
        ref, pred = truth[r["case_id"]]
        expected = ref_counts.metrics(ref, pred, r["label"], SPACING)
        for key in ("tp", "fp", "fn", "tn", "dice", "iou", "ref_empty", "pred_empty"):
            assert r[key] == pytest.approx(expected[key]), (r["case_id"], r["label"], key)
        assert r["label_name"] == {1: "organ", 2: "node", 7: None}[r["label"]]
    both_empty = [r for r in rows if r["case_id"] == "case0" and r["label"] == 7][0]
    assert both_empty["dice"] == 1.0 and both_empty["hd95"] == 0.0 and both_empty["nsd"] == 1.0
    cases = pq.read_table(out / "cases.parquet").to_pylist()
    assert all(c["success"] for c in cases) and all(c["metrics_s"] > 0 for c in cases)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_label"]["model_a"]["1"]["dice"]["count"] == 4
    assert set(summary["nnunet"]["model_a"]) == {"metric_per_case", "mean", "foreground_mean"}
    assert summary["cases"]["model_a"]["success_rate"] == 1.0
    run = json.loads((out / "run.json").read_text())
    assert run["options"]["surface_mode"] == "voxel" and run["versions"]["numpy"]
    assert (out / "results.csv").read_text().count("\n") == len(rows) + 1


def test_labels_option_and_empty_nan(tmp_path, dataset):
    refs, preds, _ = dataset
    out = tmp_path / "out"
    _run(["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(out), "--quiet",
          "--labels", "2,5", "--empty", "nan", "--metrics", "counts", "--workers", "1"])
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    assert {r["label"] for r in rows} == {2, 5}
    assert all(math.isnan(r["dice"]) for r in rows if r["label"] == 5)
    assert all(r["hd95"] is None for r in rows)
    nan_dice = [r for r in rows if r["label"] == 2 and r["case_id"] == "only_one_label"]
    assert math.isnan(nan_dice[0]["dice"])


def _bad_cases(refs, preds, rng):
    ref, pred = _pair(rng)
    problems = {}
    _write(refs, "empty_file.nii.gz", ref)
    (preds / "empty_file.nii.gz").write_bytes(b"")
    problems["empty_file"] = "file is empty"
    _write(refs, "garbage.nii.gz", ref)
    (preds / "garbage.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    problems["garbage"] = "cannot be read"
    _write(refs, "truncated.nii.gz", ref)
    _write(preds, "truncated.nii.gz", pred)
    data = (preds / "truncated.nii.gz").read_bytes()
    (preds / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    problems["truncated"] = "truncated.nii.gz"
    _write(refs, "no_pred.nii.gz", ref)
    problems["no_pred"] = "no prediction for case"
    _write(preds, "no_ref.nii.gz", pred)
    problems["no_ref"] = "no reference for case"
    _write(refs, "shape.nii.gz", ref)
    _write(preds, "shape.nii.gz", pred[:, :-1])
    problems["shape"] = "shape"
    _write(refs, "spacing.nii.gz", ref)
    _write(preds, "spacing.nii.gz", pred, spacing=(2.0, 0.8, 0.9))
    problems["spacing"] = "spacing"
    _write(refs, "origin.nii.gz", ref)
    _write(preds, "origin.nii.gz", pred, origin=(0.0, 0.0, 5.0))
    problems["origin"] = "origin"
    _write(refs, "direction.nii.gz", ref)
    _write(preds, "direction.nii.gz", pred, direction=(1.0, 0, 0, 0, 0, 1.0, 0, 1.0, 0))
    problems["direction"] = "direction"
    _write(refs, "float.nii.gz", ref)
    _write(preds, "float.nii.gz", pred.astype(np.float32) + 0.25)
    problems["float"] = "non-integral"
    _write(refs, "negative.nii.gz", ref.astype(np.int16) - (ref == 2).astype(np.int16) * 5)
    _write(preds, "negative.nii.gz", pred.astype(np.int16))
    problems["negative"] = "negative label -3"
    return problems


def test_bad_inputs_become_failed_rows_and_the_run_goes_on(tmp_path, dataset, rng):
    refs, preds, truth = dataset
    problems = _bad_cases(refs, preds, rng)
    out = tmp_path / "out"
    result = _run(["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(out), "--quiet"], code=3)
    assert f"{len(truth) + len(problems)} cases, {len(problems)} failed" in result.output
    cases = {c["case_id"]: c for c in pq.read_table(out / "cases.parquet").to_pylist()}
    for case_id, fragment in problems.items():
        case = cases[case_id]
        assert not case["success"], case_id
        assert fragment in case["error"], (case_id, case["error"])
        assert case_id in case["error"], (case_id, case["error"])  # names the file
    for case_id in truth:
        assert cases[case_id]["success"]
    metric_cases = set(pq.read_table(out / "metrics.parquet").column("case_id").to_pylist())
    assert metric_cases == set(truth)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"]["model_a"]["failed"] == len(problems)


def test_geometry_tolerance_option(tmp_path, rng):
    refs, preds = tmp_path / "r", tmp_path / "p"
    ref, pred = _pair(rng)
    _write(refs, "a.nii.gz", ref)
    _write(preds, "a.nii.gz", pred, spacing=(2.0, 0.8, 0.8004))
    out = tmp_path / "out"
    assert "1 failed" in _run(["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(out), "-q"],
                              code=3).output
    assert "0 failed" in _run(["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(out), "-q", "--overwrite",
                               "--geometry-tolerance", "1e-3"]).output


def test_second_run_reads_from_cache(tmp_path, dataset, monkeypatch):
    refs, preds, _ = dataset
    cache = tmp_path / "cache"
    # these volumes are small, which the cache's default rule never stores: store every one here
    monkeypatch.setattr(VolumeCache, "worth_storing", lambda self, nbytes, decode_s: True)
    for _ in range(2):
        _run(["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(tmp_path / "o"), "-q", "--overwrite",
              "--cache-dir", str(cache), "--metrics", "counts"])
    assert len(list(cache.glob("*.npy"))) == 8
    result = _run(["cache", "info", "--cache-dir", str(cache)])
    assert "8 volumes" in result.output
    assert "removed 8" in _run(["cache", "clear", "--cache-dir", str(cache)]).output


def test_usage_errors_name_the_option(tmp_path, dataset):
    refs, preds, _ = dataset
    runner = CliRunner()
    bad = runner.invoke(cli, ["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(tmp_path), "--labels", "a,b"])
    assert bad.exit_code == 2 and "--labels" in bad.output
    bad = runner.invoke(cli, ["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(tmp_path), "--metrics", "dise"])
    assert bad.exit_code == 2 and "unknown metric 'dise'" in bad.output


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from click.testing import CliRunner; from medbench_fast.cli.main import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0 and 'evaluate' in r.output; "
            "heavy = [m for m in ('numba', 'SimpleITK', 'pyarrow', 'onnxruntime', 'torch') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_evaluate_imports_nothing_heavy_before_scoring(tmp_path, rng):
    """Up to the first scored case, ``medbench evaluate`` of NIfTI files imports neither
    scipy.stats, pandas, onnxruntime, torch, pydicom nor SimpleITK; a one-case run never
    imports scipy.stats or pandas at all."""
    ref, pred = _pair(rng)
    for folder, array in (("ref", ref), ("pred", pred)):
        (tmp_path / folder).mkdir()
        write_volume(Volume(array, SPACING), tmp_path / folder / "case1.nii.gz")
    heavy = ("scipy.stats", "pandas", "onnxruntime", "torch", "pydicom", "SimpleITK")
    code = f"""
import json, sys
import medbench_fast.runner.worker as ev
seen = []
score = ev.evaluate_pair
def spy(*args, **kwargs):
    seen.append([m for m in {heavy!r} if m in sys.modules])
    return score(*args, **kwargs)
ev.evaluate_pair = spy
from medbench_fast.cli.main import cli
try:
    cli(["evaluate", "--pred", sys.argv[1], "--ref", sys.argv[2], "--out", sys.argv[3], "--quiet", "--no-cache"])
except SystemExit as exc:
    assert exc.code == 0, exc.code
print(json.dumps({{"before": seen, "after": [m for m in ("scipy.stats", "pandas") if m in sys.modules]}}))
"""
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "pred"), str(tmp_path / "ref"), str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found == {"before": [[]], "after": []}, found


@pytest.mark.parametrize("command", ["evaluate", "demo", "cache"])
def test_every_command_has_help_with_examples(command):
    result = _run([command, "--help"])
    assert "Examples" in result.output


def test_infinite_distances_are_counted_or_replaced_by_the_diagonal(tmp_path, rng):
    refs, preds = tmp_path / "r", tmp_path / "p"
    ref, pred = _pair(rng)
    _write(refs, "a.nii.gz", ref)
    _write(preds, "a.nii.gz", pred)
    missed = pred.copy()
    missed[missed == 2] = 0  # label 2 missed entirely: distances +inf
    _write(refs, "b.nii.gz", ref)
    _write(preds, "b.nii.gz", missed)
    out = tmp_path / "inf"
    _run(["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(out), "-q", "--labels", "2"])
    rows = {r["case_id"]: r for r in pq.read_table(out / "metrics.parquet").to_pylist()}
    assert math.isinf(rows["b"]["hd95"]) and rows["b"]["nsd"] == 0.0
    stats = json.loads((out / "summary.json").read_text())["per_label"]["p"]["2"]["hd95"]
    assert stats["inf_count"] == 1 and stats["mean"] == pytest.approx(rows["a"]["hd95"])
    out = tmp_path / "diag"
    _run(["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(out), "-q", "--labels", "2",
          "--worst-distance", "diagonal"])
    stats = json.loads((out / "summary.json").read_text())["per_label"]["p"]["2"]["hd95"]
    diagonal = math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(ref.shape, SPACING)))
    assert stats["inf_count"] == 0
    assert stats["mean"] == pytest.approx((rows["a"]["hd95"] + diagonal) / 2, rel=1e-6)
    assert json.loads((out / "run.json").read_text())["options"]["worst_distance"] == "diagonal"


@pytest.mark.parametrize("executor", [[], ["--executor", "processes", "--workers", "1"]], ids=["local", "processes"])
def test_a_bug_in_the_metric_step_stops_with_exit_1_and_records_no_failed_row(tmp_path, executor):
    """A programming error inside a case is not the data's fault: exit 1, a message that says it
    is a bug and names the case, no failed row; the traceback only with --debug."""
    rng = np.random.default_rng(1)
    ref, pred = _pair(rng)
    for folder, array in (("ref", ref), ("pred", pred)):
        (tmp_path / folder).mkdir()
        write_volume(Volume(array, SPACING), tmp_path / folder / "case1.nii.gz")
    hook = tmp_path / "hook"  # every interpreter of the command (worker processes too) gets the broken step
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import medbench_fast.runner.worker as worker\n"
        "def broken(*args, **kwargs):\n"
        "    raise TypeError(\"unsupported operand type(s) for +: 'int' and 'NoneType'\")\n"
        "worker.evaluate_pair = broken\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}

    def medbench(*flags):
        return subprocess.run([sys.executable, "-m", "medbench_fast", *flags, "evaluate", "--pred", str(tmp_path / "pred"),
                               "--ref", str(tmp_path / "ref"), "--out", str(tmp_path / "out"), "--quiet", "--no-cache",
                               "--overwrite", *executor], capture_output=True, text=True, env=env)

    proc = medbench()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "internal error (a bug in medbench-fast, not a problem of the data) on case 'case1'" in proc.stderr
    assert "while computing the metrics: TypeError" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "cases.parquet").exists()
    assert not list((tmp_path / "out").glob("parts/cases/*.parquet"))
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status"] == "failed" and "bug in medbench-fast" in run["error"]
    if not executor:  # the driver's own traceback (a worker's stays in the worker)
        debug = medbench("--debug")
        assert debug.returncode == 1 and "Traceback" in debug.stderr and "TypeError" in debug.stderr


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_report_rebuilds_the_tables_of_a_regions_run_with_their_metadata(tmp_path, dataset, damage):
    """``medbench report`` rebuilds a lost ``metrics.parquet`` from the parts with the options
    recorded in run.json: the same rows and the same key-value metadata, regions included."""
    refs, preds, _ = dataset
    out = tmp_path / "out"
    _run(["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(out), "--quiet", "--labels", "1,2",
          "--label-names", "1=organ,2=node", "--regions", "both=1,2;node only=2", "--tolerance-mm", "1.5",
          "--surface", "surfel", "--empty", "nan"])
    path = out / "metrics.parquet"
    before, written = pq.read_table(path), path.read_bytes()
    assert before.schema.metadata[b"regions"] == b"-1:both=1,2;-2:node only=2"
    assert {r["label_name"] for r in before.to_pylist() if r["label"] < 0} == {"both", "node only"}
    if damage == "delete":
        path.unlink()
    else:
        path.write_bytes(b"not parquet")
    result = _run(["report", str(out)])
    assert "rebuilding" in result.output and f"rebuilt {path}" in result.output
    after = pq.read_table(path)
    assert after.schema.metadata == before.schema.metadata
    assert after.to_pandas().equals(before.to_pandas())  # the same rows (NaN where it was NaN)
    assert path.read_bytes() == written
