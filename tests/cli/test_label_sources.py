"""Labels and regions are checked by one rule whatever their source: a ``dataset.json``,
the config, or the ``--labels`` / ``--regions`` flags. A region naming a label the dataset
does not define is refused (never scored as a phantom label), label 0 is the background,
and label values past int64 are refused with a message, not an internal error."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from datasets import case_arrays, write_image, write_nnunet

from medbench_fast.cli.main import cli


def _invoke(args, code):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def folders(tmp_path):
    """Dataset002 (labels 1-3, no regions) with references in labelsTs and perfect predictions."""
    rng = np.random.default_rng(7)
    cases = {f"C{i}": case_arrays(rng, (8, 12, 12)) for i in range(2)}
    root = write_nnunet(tmp_path / "Dataset002", cases, ("T1w",))
    preds = tmp_path / "preds"
    for case_id, (label, _) in cases.items():
        write_image(preds / f"{case_id}.nii.gz", label)
    return root, preds


def _add_region(root, values):
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"]["both"] = values
    (root / "dataset.json").write_text(json.dumps(meta))
    return root / "dataset.json"


def test_dataset_json_region_naming_an_undefined_label_is_refused_by_evaluate(tmp_path, folders):
    root, preds = folders
    path = _add_region(root, [1, 2, 9])
    out = tmp_path / "e"
    result = _invoke(["evaluate", "--pred", str(preds), "--ref", str(root / "labelsTs"), "--out", str(out),
                      "--metrics", "counts", "--quiet"], 2)
    assert f"{path}: labels.both: label(s) [9] are not among the dataset's labels [1, 2, 3]" in result.output
    assert not out.exists()


def test_dataset_json_region_naming_an_undefined_label_is_refused_by_run(tmp_path, folders):
    root, _ = folders
    path = _add_region(root, [1, 2, 9])
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"nnunet": str(root)},
                                      "models": [{"name": "m", "path": str(tmp_path / "m.onnx")}]}))
    result = _invoke(["config", "check", str(config)], 2)
    assert f"{path}: labels.both: label(s) [9] are not among the dataset's labels [1, 2, 3]" in result.output
    result = _invoke(["run", "--config", str(config), "--out", str(tmp_path / "r")], 2)
    assert "labels.both: label(s) [9]" in result.output and str(path) in result.output
    assert not (tmp_path / "r").exists()


def test_dataset_json_region_of_defined_labels_scores_no_phantom_label(tmp_path, folders):
    root, preds = folders
    _add_region(root, [1, 2])
    out = tmp_path / "e"
    _invoke(["evaluate", "--pred", str(preds), "--ref", str(root / "labelsTs"), "--out", str(out),
             "--metrics", "counts", "--quiet"], 0)
    labels = set(pq.read_table(out / "metrics.parquet").column("label").to_pylist())
    assert labels == {1, 2, 3, -1}


def test_region_based_dataset_json_needs_its_labels_defined(tmp_path, folders):
    root, preds = folders
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "whole": [1, 2, 3], "core": [1, 3], "enhancing": 3}
    (root / "dataset.json").write_text(json.dumps(meta))
    args = ["evaluate", "--pred", str(preds), "--ref", str(root / "labelsTs"), "--out", str(tmp_path / "e"),
            "--metrics", "counts", "--quiet"]
    result = _invoke(args, 2)
    assert "labels.whole: label(s) [1, 2] are not among the dataset's labels [3]" in result.output
    assert "regions_class_order" in result.output
    meta["regions_class_order"] = [2, 1, 3]
    (root / "dataset.json").write_text(json.dumps(meta))
    _invoke(args, 0)


def test_duplicate_region_name_in_regions_flag_is_refused(tmp_path, folders):
    root, preds = folders
    result = _invoke(["evaluate", "--pred", str(preds), "--ref", str(root / "labelsTs"), "--out",
                      str(tmp_path / "e"), "--regions", "X=1,2;X=1"], 2)
    assert "regions.X: the region is given twice" in result.output


def test_a_label_named_twice_in_label_names_flag_is_refused(tmp_path, folders):
    root, preds = folders
    result = _invoke(["evaluate", "--pred", str(preds), "--ref", str(root / "labelsTs"), "--out",
                      str(tmp_path / "e"), "--label-names", "1=a,2=b,1=c"], 2)
    assert "--label-names" in result.output and "label 1 is named twice" in result.output
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("labels, message", [
    ("0", "0 is not a foreground label value"),
    ("1,0", "0 is not a foreground label value"),
    ("18446744073709551615", "is not a foreground label value (an integer from 1 to 9223372036854775807"),
])
def test_labels_flag_refuses_background_and_overflow(tmp_path, folders, labels, message):
    root, preds = folders
    result = _invoke(["evaluate", "--pred", str(preds), "--ref", str(root / "labelsTs"), "--out",
                      str(tmp_path / "e"), "--labels", labels], 2)
    assert message in result.output and "--labels" in result.output
    assert "Traceback" not in result.output and "OverflowError" not in result.output
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("labels, message", [
    ([0], "dataset.labels: expected a number >= 1, got 0"),
    ([18446744073709551615], "dataset.labels: 184467440737... is not a foreground label value"),
])
def test_config_labels_follow_the_same_rule(tmp_path, folders, labels, message):
    root, _ = folders
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"nnunet": str(root), "labels": labels},
                                      "models": [{"name": "m", "path": str(tmp_path / "m.onnx")}]}))
    result = _invoke(["config", "check", str(config)], 2)
    assert message in result.output


def test_dataset_json_label_past_int64_names_the_file(tmp_path, folders):
    root, preds = folders
    path = _add_region(root, 18446744073709551615)
    result = _invoke(["evaluate", "--pred", str(preds), "--ref", str(root / "labelsTs"), "--out",
                      str(tmp_path / "e"), "--metrics", "counts", "--quiet"], 2)
    assert f"{path}: labels.both: 184467440737... is not a foreground label value" in result.output
    assert not (tmp_path / "e").exists()


def test_a_dataset_json_that_is_not_json_is_refused_not_ignored(tmp_path, folders):
    """Ignoring it would silently drop its label names and regions."""
    root, preds = folders
    path = root / "dataset.json"
    path.write_text('{"labels": ')
    result = _invoke(["evaluate", "--pred", str(preds), "--ref", str(root / "labelsTs"), "--out",
                      str(tmp_path / "e"), "--metrics", "counts", "--quiet"], 2)
    assert f"{path}: not valid JSON" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "e").exists()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"image_dir": str(root / "imagesTs")},
                                      "models": [{"name": "m", "path": str(tmp_path / "m.onnx")}]}))
    result = _invoke(["config", "check", str(config)], 2)
    assert f"{path}: not valid JSON" in result.output
