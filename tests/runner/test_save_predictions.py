"""``output.save_predictions``: every model's label map of every case as NIfTI, once per pair.

The files must hold exactly the label map the model predicts for the case, on the image's
grid and geometry, whichever executor ran the case and however the run was split.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.data.reader import load_volume
from medbench_fast.models import load_model

SAVE = "  save_predictions: true\n"


def _config(tmp_path, bench_assets, write_config):
    path = write_config(tmp_path, bench_assets, max_cases=4)
    path.write_text(path.read_text().replace("output:\n", "output:\n" + SAVE))
    return path


def _check_saved(out, bench_assets, cases):
    model = load_model(bench_assets / "models" / "baseline.onnx")
    rows = {r["case_id"]: r for r in pq.read_table(out / "cases.parquet").to_pylist()}
    assert sorted(rows) == sorted(cases)
    for case_id in cases:
        saved = out / "predictions" / "baseline" / f"{case_id}.nii.gz"
        assert rows[case_id]["pred_path"] == str(saved)
        image = load_volume(bench_assets / "data" / "images" / f"{case_id}.nii.gz")
        got = load_volume(saved)
        want = model.predict(image).label_map
        np.testing.assert_array_equal(got.array, want.array)
        assert got.spacing == pytest.approx(image.spacing)
        assert got.origin == pytest.approx(image.origin)
        assert got.direction == pytest.approx(image.direction)
    assert sorted(p.name for p in (out / "predictions" / "baseline").iterdir()) == sorted(f"{c}.nii.gz" for c in cases)


def test_local_run_saves_each_label_map(tmp_path, bench_assets, write_config):
    config = _config(tmp_path, bench_assets, write_config)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--config", str(config), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    cases = [r["case_id"] for r in pq.read_table(out / "cases.parquet").to_pylist()]
    assert len(cases) == 4
    _check_saved(out, bench_assets, cases)


@pytest.mark.slow
def test_shards_in_worker_processes_then_resume_write_each_file_once(tmp_path, bench_assets, write_config):
    config = _config(tmp_path, bench_assets, write_config)
    out = tmp_path / "run"
    runner = CliRunner()
    for shard, executor in (("1/2", "local"), ("2/2", "processes")):
        args = ["run", "--config", str(config), "--out", str(out), "--shard", shard, "--executor", executor, "--quiet"]
        if executor == "processes":
            args += ["--workers", "1"]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    written = {p: p.stat().st_mtime_ns for p in (out / "predictions").rglob("*.nii.gz")}
    assert len(written) == 4
    result = runner.invoke(cli, ["run", "--resume", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in (out / "predictions").rglob("*.nii.gz")} == written
    _check_saved(out, bench_assets, sorted(p.name[:-len(".nii.gz")] for p in written))
