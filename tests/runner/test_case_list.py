"""A run's case list is part of its identity, and a dataset with no case is an error.

Shards and resumes of a dataset whose cases changed since the run started are refused
(exit 2) naming the added and removed cases, so no case is ever silently left out; a
dataset in which nothing matches (an empty folder, a pattern or an nnU-Net ``file_ending``
matching no file) is refused with "no cases found" and what was searched, for ``run`` and
``evaluate``, with nothing written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from datasets import case_arrays, write_nnunet

from medbench_fast.cli.main import cli
from medbench_fast.runner.plan import shard_of


def _invoke(args, code=0):
    result = CliRunner().invoke(cli, [*args, "--quiet"], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def small_data(tmp_path, bench_assets):
    """Six of the twelve bench cases in folders of their own; the other six to add later."""
    data = tmp_path / "data"
    ids = sorted(p.name.split(".")[0] for p in (bench_assets / "data" / "images").iterdir())
    for sub in ("images", "labels"):
        (data / sub).mkdir(parents=True)
        for f in sorted((bench_assets / "data" / sub).iterdir())[:6]:
            shutil.copy(f, data / sub / f.name)

    def add(case_ids):
        for sub in ("images", "labels"):
            for f in (bench_assets / "data" / sub).iterdir():
                if f.name.split(".")[0] in case_ids:
                    shutil.copy(f, data / sub / f.name)

    return data, ids[6:], add


def _config(tmp_path, bench_assets, data, write_config):
    path = write_config(tmp_path, bench_assets, write_every=1)
    path.write_text(path.read_text().replace(f"{bench_assets}/data", str(data)))
    return path


def test_a_shard_of_a_dataset_that_gained_cases_is_refused(tmp_path, bench_assets, small_data, write_config):
    data, spare, add = small_data
    config = _config(tmp_path, bench_assets, data, write_config)
    out = tmp_path / "sharded"
    _invoke(["run", "--config", str(config), "--out", str(out), "--shard", "1/2"])
    added = [c for c in spare if shard_of(c, 2) == 1][:2]
    add(added)
    result = _invoke(["run", "--config", str(config), "--out", str(out), "--shard", "2/2"], code=2)
    assert "this shard cannot join the run: the dataset's cases changed since the run started" in result.output
    assert f"added: {len(added)} ({', '.join(sorted(added))})" in result.output and "removed: none" in result.output
    assert not (out / "shards" / "shard-2-of-2.json").exists()


def test_consolidating_shards_of_a_changed_dataset_is_refused(tmp_path, bench_assets, small_data, write_config):
    data, spare, add = small_data
    config = _config(tmp_path, bench_assets, data, write_config)
    out = tmp_path / "sharded"
    for k in ("1/2", "2/2"):
        _invoke(["run", "--config", str(config), "--out", str(out), "--shard", k])
    gone = sorted(p.name for p in (data / "images").iterdir())[0]
    (data / "images" / gone).unlink()
    add(spare[:1])
    result = _invoke(["run", "--resume", str(out)], code=2)
    assert f"added: 1 ({spare[0]})" in result.output and f"removed: 1 ({gone.split('.')[0]})" in result.output
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    (data / "images" / gone).write_bytes((bench_assets / "data" / "images" / gone).read_bytes())
    for f in (data / "images").glob(f"{spare[0]}.*"):
        f.unlink()
    _invoke(["run", "--resume", str(out)])
    assert pq.read_table(out / "cases.parquet").num_rows == 6


def test_a_resume_of_a_changed_dataset_is_refused(tmp_path, bench_assets, small_data, write_config):
    data, spare, add = small_data
    config = _config(tmp_path, bench_assets, data, write_config)
    out = tmp_path / "run"
    _invoke(["run", "--config", str(config), "--out", str(out)])
    assert json.loads((out / "run.json").read_text())["case_ids"] == sorted(
        p.name.split(".")[0] for p in (data / "images").iterdir())
    add(spare[:3])
    result = _invoke(["run", "--resume", str(out)], code=2)
    assert "cannot resume: the dataset's cases changed" in result.output
    assert f"added: 3 ({', '.join(sorted(spare[:3]))})" in result.output


# -- no cases ------------------------------------------------------------------------------------
def _nnunet(tmp_path, ending=".nii.gz"):
    rng = np.random.default_rng(3)
    root = write_nnunet(tmp_path / "Dataset009", {"A": case_arrays(rng, (6, 8, 8))}, ("T1w",), ending=ending)
    return root


@pytest.mark.parametrize("layout", ["empty_folder", "pattern", "nnunet_file_ending", "manifest"])
def test_run_on_a_dataset_without_cases_is_refused(tmp_path, bench_assets, write_config, layout):
    config = write_config(tmp_path, bench_assets)
    text = config.read_text()
    if layout == "empty_folder":
        empty = tmp_path / "empty"
        (empty / "images").mkdir(parents=True)
        (empty / "labels").mkdir()
        text = text.replace(f"{bench_assets}/data", str(empty))
        want = f"{empty}/images: no image file"
    elif layout == "pattern":
        text = text.replace("seg_dir:", "pattern: '*.mha'\n  seg_dir:")
        want = f"{bench_assets}/data/images: no image file (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd, or DICOM " \
               f"series folder) matches pattern '*.mha'"
    elif layout == "manifest":
        manifest = tmp_path / "cases.csv"
        manifest.write_text("case_id,image,reference\n")
        text = text.replace(f"image_dir: {bench_assets}/data/images", f"manifest: {manifest}")
        text = text.replace(f"  seg_dir: {bench_assets}/data/labels\n", "")
        want = f"{manifest} lists no case"
    else:
        root = _nnunet(tmp_path)
        meta = json.loads((root / "dataset.json").read_text())
        meta["file_ending"] = ".nrrd"
        (root / "dataset.json").write_text(json.dumps(meta))
        text = text.replace(f"image_dir: {bench_assets}/data/images", f"nnunet: {root}")
        text = text.replace(f"  seg_dir: {bench_assets}/data/labels\n", "").replace("  label_names:", "  #")
        want = f"{root}/imagesTs: no file ending in '.nrrd' (file_ending of {root}/dataset.json; dataset.split: test)"
    config.write_text(text)
    out = tmp_path / "out"
    result = _invoke(["run", "--config", str(config), "--out", str(out)], code=2)
    assert "no cases found: " in result.output and want in result.output
    assert not out.exists()


def test_evaluate_of_folders_without_cases_is_refused(tmp_path):
    preds, refs = tmp_path / "preds", tmp_path / "refs"
    preds.mkdir()
    refs.mkdir()
    (preds / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = _invoke(["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(out)], code=2)
    assert f"no cases found: no image file (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd), DICOM series or DICOM " \
           f"object in {preds} or {refs}" in result.output
    assert not out.exists()


@pytest.mark.parametrize("shard", ["1/7", "7/7", "1/99999999999999999999999"])
def test_more_shards_than_cases_is_refused(tmp_path, bench_assets, small_data, write_config, shard):
    """Six cases split in more than six shards leaves shards with nothing to do (and a huge N
    would list every one of them): refused before anything is written."""
    data, _, _ = small_data
    config = _config(tmp_path, bench_assets, data, write_config)
    out = tmp_path / "sharded"
    result = _invoke(["run", "--config", str(config), "--out", str(out), "--shard", shard], code=2)
    assert f"--shard {shard!r}: " in result.output and "more shards than the dataset's 6 cases" in result.output
    assert not out.exists()


def test_run_and_evaluate_tell_the_same_folder_problem_alike(tmp_path, bench_assets, write_config):
    """One folder given to ``run`` as ``image_dir`` and to ``evaluate`` as ``--pred``, against a
    reference folder lacking one case and holding another twice: the failed rows of both
    commands carry the same messages (one pairing module)."""
    left, refs = tmp_path / "left", tmp_path / "refs"
    left.mkdir()
    refs.mkdir()
    names = sorted(p.name for p in (bench_assets / "data" / "labels").iterdir())[:3]
    for name in names:  # label maps: images for the run's model, predictions for evaluate
        shutil.copy(bench_assets / "data" / "labels" / name, left / name)
    shutil.copy(bench_assets / "data" / "labels" / names[0], refs / names[0])
    shutil.copy(bench_assets / "data" / "labels" / names[1], refs / names[1])
    shutil.copy(bench_assets / "data" / "labels" / names[1], refs / names[1].replace(".nii.gz", ".nrrd"))
    config = write_config(tmp_path, bench_assets)
    config.write_text(config.read_text().replace(f"{bench_assets}/data/images", str(left))
                      .replace(f"{bench_assets}/data/labels", str(refs)))
    _invoke(["run", "--config", str(config), "--out", str(tmp_path / "run")], code=3)
    _invoke(["evaluate", "--pred", str(left), "--ref", str(refs), "--out", str(tmp_path / "ev")], code=3)
    errors = {}
    for command in ("run", "ev"):
        rows = pq.read_table(tmp_path / command / "cases.parquet").to_pylist()
        errors[command] = {r["case_id"]: r["error"] for r in rows if not r["success"]}
    lonely, twice = (n.split(".")[0] for n in (names[2], names[1]))
    assert errors["run"] == errors["ev"] == {
        lonely: f"{left / names[2]}: no reference for case {lonely!r} in {refs}",
        twice: f"case {twice!r} has several files: {refs / names[1]}, {refs / names[1].replace('.nii.gz', '.nrrd')}",
    }
