"""``medbench run`` on nnU-Net raw datasets and Decathlon tasks: multi-channel cases end to end.

The model (``tests/datasets.py``) is linear in the channels it takes, so the expected label
map of each case is known exactly; metrics are checked against a brute-force computation on
that expected prediction, regions on the union masks.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from datasets import (
    BRATS_NAMES, BRATS_REGIONS, case_arrays, expected_prediction, linear_label_model, linear_label_spec,
    write_4d, write_decathlon, write_image, write_nnunet,
)
from reference import counts as ref_counts

from medbench_fast.cli.main import cli

SHAPE = (10, 18, 20)
# The model takes t1gd then T1w: m = t1gd - T1w = label + noise.
MODEL_CHANNELS = ("t1gd", "T1w")
WEIGHTS = (1.0, -1.0)


def _invoke(args, code=0):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def _cases(seed: int, n: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    return {f"BRATS_{i:03d}": case_arrays(rng, SHAPE, empty=(i == n - 1)) for i in range(n)}


def _config(tmp_path, dataset: dict, spec: dict, metrics=("counts", "hd95")) -> str:
    model = linear_label_model(tmp_path / "models" / "linear.onnx", WEIGHTS[: spec["channels"]])
    text = yaml.safe_dump({
        "dataset": dataset,
        "models": [{"name": "linear", "path": str(model), "spec": spec}],
        "benchmark": {"metrics": list(metrics), "write_every": 2, "warmup": 0},
        "output": {"dir": str(tmp_path / "runs"), "formats": ["csv", "json", "html"]},
    }, sort_keys=False)
    path = tmp_path / "benchmark_config.yaml"
    path.write_text(text)
    return str(path)


def _rows(run_dir, name: str) -> list[dict]:
    return pq.read_table(run_dir / f"{name}.parquet").to_pylist()


def _check_rows(run_dir, cases, regions: dict) -> None:
    failed = [r["error"] for r in _rows(run_dir, "cases") if not r["success"]]
    assert not failed, failed
    metrics = {(r["case_id"], r["label"]): r for r in _rows(run_dir, "metrics")}
    for case_id, (label, channels) in cases.items():
        pred = expected_prediction(channels, MODEL_CHANNELS, WEIGHTS)
        for value in (1, 2, 3):
            want = ref_counts.confusion(label, pred, value)
            assert {k: metrics[(case_id, value)][k] for k in want} == want, (case_id, value)
        for i, (name, members) in enumerate(regions.items()):
            row = metrics[(case_id, -1 - i)]
            assert row["label_name"] == name
            want = ref_counts.confusion(np.isin(label, members), np.isin(pred, members), True)
            assert {k: row[k] for k in want} == want, (case_id, name)
        labels = {label for cid, label in metrics if cid == case_id}
        assert labels == {1, 2, 3, *(-1 - i for i in range(len(regions)))}


@pytest.mark.parametrize("n_channels", [2, 4])
def test_nnunet_raw_dataset_end_to_end(tmp_path, n_channels):
    cases = _cases(seed=n_channels)
    names = ("T1w", "t1gd") if n_channels == 2 else BRATS_NAMES
    root = write_nnunet(tmp_path / "Dataset001_BraTS", cases, names, regions=True, scale={"t1gd": 10.0})
    # t1gd is stored x10; the spec undoes it on that channel only.
    spec = linear_label_spec("linear", MODEL_CHANNELS, SHAPE,
                             intensity=[{"op": "affine", "scale": 0.1, "channels": ["t1gd"]}])
    config = _config(tmp_path, {"nnunet": str(root)}, spec)
    out = tmp_path / "run"
    result = _invoke(["run", "--config", config, "--out", str(out), "--quiet"])
    assert "3 (model, case) pairs, 0 failed" in result.output
    # dataset.json: "whole tumor": [1, 2, 3] and "tumor core": [1, 3] are regions; "enhancing tumor": 3 a label.
    _check_rows(out, cases, {k: v for k, v in BRATS_REGIONS.items() if len(v) > 1})
    metrics = pq.read_table(out / "metrics.parquet")
    assert metrics.column_names[:5] == ["run_id", "model", "case_id", "label", "label_name"]
    names_by_label = dict(zip(metrics.column("label").to_pylist(), metrics.column("label_name").to_pylist()))
    assert names_by_label[3] == "enhancing tumor" and names_by_label[-1] == "whole tumor"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_label"]["linear"]["-1"]["label_name"] == "whole tumor"
    assert "whole tumor" in (out / "leaderboard.html").read_text()
    image_paths = pq.read_table(out / "cases.parquet").column("image_path").to_pylist()
    assert all(p.endswith("_0000.nii.gz") for p in image_paths)


@pytest.mark.parametrize("n_channels", [2, 4])
def test_decathlon_task_end_to_end(tmp_path, n_channels):
    cases = _cases(seed=10 + n_channels)
    if n_channels == 4:
        modality, spec = BRATS_NAMES, linear_label_spec("linear", MODEL_CHANNELS, SHAPE)
    else:  # no T1w on disk: the model takes FLAIR = 0.5 T1w + 1, mapped back per channel
        modality = ("FLAIR", "t1gd")
        spec = linear_label_spec("linear", ("t1gd", "FLAIR"), SHAPE,
                                 intensity=[{"op": "affine", "scale": 2.0, "shift": -2.0, "channels": ["FLAIR"]}])
        cases = {k: (label, {**ch, "T1w": ch["FLAIR"] * np.float32(2.0) + np.float32(-2.0)})
                 for k, (label, ch) in cases.items()}
    root = write_decathlon(tmp_path / "Task01_BrainTumour", cases, modality)
    regions = {"WT": [1, 2, 3], "TC": [1, 3]}
    config = _config(tmp_path, {"decathlon": str(root), "split": "train", "regions": regions}, spec)
    out = tmp_path / "run"
    _invoke(["run", "--config", config, "--out", str(out), "--quiet"])
    _check_rows(out, cases, regions)
    metrics = {(r["case_id"], r["label"]): r for r in _rows(out, "metrics")}
    assert metrics[("BRATS_000", 1)]["label_name"] == "necrosis"
    empty_case = metrics[("BRATS_002", -1)]
    assert empty_case["ref_empty"] and empty_case["hd95"] == (0.0 if empty_case["pred_empty"] else np.inf)


def test_plain_folders_with_nnunet_channel_files_pair_by_case(tmp_path):
    """``image_dir: imagesTs`` + ``seg_dir: labelsTs``: every channel file used to be a case of its
    own, failing with "no reference for case 'BRATS_000_0000'"."""
    cases = _cases(seed=7, n=2)
    root = write_nnunet(tmp_path / "Dataset002_Plain", cases, ("T1w", "t1gd"))
    (root / "dataset.json").unlink()  # channel order by file index only
    spec = linear_label_spec("linear", ("T1w", "t1gd"), SHAPE)
    model = linear_label_model(tmp_path / "m.onnx", (-1.0, 1.0))
    config = {"dataset": {"image_dir": str(root / "imagesTs"), "seg_dir": str(root / "labelsTs")},
              "models": [{"name": "linear", "path": str(model), "spec": {**spec, "channel_names": None}}],
              "benchmark": {"metrics": ["counts"], "warmup": 0}, "output": {"formats": ["json"]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    result = _invoke(["run", "--config", str(path), "--out", str(out), "--quiet"])
    assert "2 (model, case) pairs, 0 failed" in result.output
    assert sorted(r["case_id"] for r in _rows(out, "cases")) == ["BRATS_000", "BRATS_001"]
    assert all(r["dice"] > 0.5 for r in _rows(out, "metrics") if r["label"] == 3)


def test_plain_folders_take_labels_and_regions_from_the_parent_dataset_json(tmp_path):
    cases = _cases(seed=9, n=2)
    root = write_nnunet(tmp_path / "Dataset008", cases, ("T1w", "t1gd"), regions=True)
    spec = linear_label_spec("linear", MODEL_CHANNELS, SHAPE)
    config = _config(tmp_path, {"image_dir": str(root / "imagesTs"), "seg_dir": str(root / "labelsTs")}, spec,
                     metrics=("counts",))
    out = tmp_path / "run"
    _invoke(["run", "--config", config, "--out", str(out), "--quiet"])
    _check_rows(out, cases, {k: v for k, v in BRATS_REGIONS.items() if len(v) > 1})


def test_plain_case_ids_ending_in_digits_stay_single_channel(tmp_path):
    from medbench_fast.config import DatasetConfig
    from medbench_fast.runner.cases import discover_cases

    rng = np.random.default_rng(0)
    for folder in ("images", "labels"):
        for cid in ("case_0000", "case_0001"):
            write_image(tmp_path / folder / f"{cid}.nii.gz", case_arrays(rng, (4, 6, 6))[0])
    cases = discover_cases(DatasetConfig(image_dir=str(tmp_path / "images"), seg_dir=str(tmp_path / "labels")))
    assert [(c.case_id, c.channel_paths, c.problem) for c in cases] == [("case_0000", (), None), ("case_0001", (), None)]


def test_manifest_channels_and_plain_4d_folders(tmp_path):
    """Multi-channel cases everywhere: a manifest lists channel files with ';', and a plain
    image folder of 4D files (Decathlon's imagesTr) gives 4D channels in axis order."""
    cases = _cases(seed=8, n=2)
    task = write_decathlon(tmp_path / "Task01", cases, ("t1gd", "T1w"))
    nn = write_nnunet(tmp_path / "Dataset007", cases, ("t1gd", "T1w"))
    lines = ["case_id,image,reference"] + [
        f"{cid},{nn}/imagesTs/{cid}_0000.nii.gz;{nn}/imagesTs/{cid}_0001.nii.gz,{nn}/labelsTs/{cid}.nii.gz"
        for cid in cases]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    spec = {**linear_label_spec("linear", MODEL_CHANNELS, SHAPE), "channel_names": None}
    for name, dataset in (("manifest", {"manifest": str(tmp_path / "manifest.csv")}),
                          ("folders", {"image_dir": str(task / "imagesTr"), "seg_dir": str(task / "labelsTr")})):
        out = tmp_path / name
        _invoke(["run", "--config", _config(tmp_path, dataset, spec, metrics=("counts",)), "--out", str(out),
                 "--quiet"])
        _check_rows(out, cases, {})


# -- bad input: clear errors naming the file and the key -------------------------------------

def _layout_config(tmp_path, dataset: dict) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": dataset, "models": [{"name": "m", "path": str(tmp_path / "m.onnx")}]}))
    return str(path)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"labels": {"background": 0}, "file_ending": ".nii.gz"}), "channel_names: expected a mapping"),
    (json.dumps({"channel_names": {"0": "T1", "2": "T2"}, "labels": {"background": 0}, "file_ending": ".nii.gz"}),
     "channel_names: expected names for channels 0..1"),
    (json.dumps({"channel_names": {"0": "T1"}, "labels": {"background": 0, "tumour": "one"},
                 "file_ending": ".nii.gz"}), "labels.tumour: expected a non-negative integer label value"),
    (json.dumps({"channel_names": {"0": "T1"}, "labels": {"background": 0}, "file_ending": "nii"}),
     "file_ending: expected a file ending"),
])
def test_malformed_dataset_json_names_file_and_key(tmp_path, content, message):
    root = tmp_path / "Dataset003_Bad"
    root.mkdir()
    (root / "dataset.json").write_text(content)
    result = _invoke(["run", "--config", _layout_config(tmp_path, {"nnunet": str(root)})], code=2)
    assert message in result.output and str(root / "dataset.json") in result.output
    assert "dataset.nnunet" in result.output


def test_region_naming_an_unknown_label_is_a_config_error(tmp_path):
    root = write_nnunet(tmp_path / "Dataset004", _cases(1, n=1), ("T1w",))
    config = _layout_config(tmp_path, {"nnunet": str(root), "regions": {"WT": [1, 2, 7]}})
    result = _invoke(["run", "--config", config], code=2)
    assert "dataset.regions.WT: label(s) [7] are not among the dataset's labels [1, 2, 3]" in result.output
    assert config in result.output


def test_missing_channel_wrong_4d_and_off_grid_channel_are_failed_rows(tmp_path):
    cases = _cases(seed=3, n=3)
    root = write_nnunet(tmp_path / "Dataset005", cases, ("T1w", "t1gd"))
    (root / "imagesTs" / "BRATS_000_0001.nii.gz").unlink()
    label, channels = cases["BRATS_001"]
    write_image(root / "imagesTs" / "BRATS_001_0001.nii.gz", channels["t1gd"], spacing=(2.0, 1.0, 1.0))
    spec = linear_label_spec("linear", ("t1gd", "T1w"), SHAPE)
    config = _config(tmp_path, {"nnunet": str(root)}, spec)
    out = tmp_path / "run"
    _invoke(["run", "--config", config, "--out", str(out), "--quiet"], code=3)
    rows = {r["case_id"]: r for r in _rows(out, "cases")}
    assert not rows["BRATS_000"]["success"]
    assert rows["BRATS_000"]["error"].startswith(str(root / "imagesTs" / "BRATS_000_0001.nii.gz"))
    assert "channel 1 (t1gd) of case 'BRATS_000' is missing" in rows["BRATS_000"]["error"]
    assert not rows["BRATS_001"]["success"]
    assert rows["BRATS_001"]["error"].startswith(str(root / "imagesTs" / "BRATS_001_0001.nii.gz"))
    assert "spacing" in rows["BRATS_001"]["error"]
    assert rows["BRATS_002"]["success"]

    task = write_decathlon(tmp_path / "Task01", _cases(seed=4, n=1), BRATS_NAMES)
    write_4d(task / "imagesTr" / "BRATS_000.nii.gz", np.zeros((3, *SHAPE), np.float32))
    config = _config(tmp_path, {"decathlon": str(task), "split": "train"},
                     linear_label_spec("linear", MODEL_CHANNELS, SHAPE))
    _invoke(["run", "--config", config, "--out", str(tmp_path / "run4d"), "--quiet"], code=3)
    row = pq.read_table(tmp_path / "run4d" / "cases.parquet").to_pylist()[0]
    assert not row["success"]
    assert row["error"] == (f"{task / 'imagesTr' / 'BRATS_000.nii.gz'}: holds 3 channel(s); the dataset's modality "
                            "lists 4 (FLAIR, T1w, t1gd, T2w)")


def test_model_channel_missing_from_the_dataset_is_a_failed_row(tmp_path):
    cases = _cases(seed=5, n=1)
    root = write_nnunet(tmp_path / "Dataset006", cases, ("T1w", "FLAIR"))
    config = _config(tmp_path, {"nnunet": str(root)}, linear_label_spec("linear", MODEL_CHANNELS, SHAPE))
    _invoke(["run", "--config", config, "--out", str(tmp_path / "run"), "--quiet"], code=3)
    row = pq.read_table(tmp_path / "run" / "cases.parquet").to_pylist()[0]
    assert not row["success"] and "takes channel(s) ['t1gd'] that the case lacks" in row["error"]
    assert str(root / "imagesTs" / "BRATS_000_0000.nii.gz") in row["error"]
