"""Task definitions: built-in defaults, ``leaderboard.tasks`` validation, ``medbench hub tasks``,
and ``medbench hub --help`` importing nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.config import ConfigError, load_config, validate
from medbench_fast.hub.tasks import DEFAULT_TASKS, Task, select, tasks_from_config


def test_defaults_cover_medical_imaging_tasks():
    names = {t.name for t in tasks_from_config(validate({}).leaderboard)}
    assert names == {t.name for t in DEFAULT_TASKS} and {"ct-organ-segmentation", "brain-mri-segmentation",
                                                          "chest-xray-classification", "head-neck-lymph-nodes",
                                                          "histopathology-classification"} <= names


def test_config_tasks_replace_defaults_and_legacy_keys_add_tasks():
    board = validate({"leaderboard": {"tasks": [{"name": "liver", "pipeline_tag": "image-segmentation",
                                                 "tags": ["medical"], "library": "monai", "sort": "likes",
                                                 "limit": 5}],
                                      "task": "image-segmentation", "search": "liver", "track": ["a/b"]}}).leaderboard
    tasks = tasks_from_config(board)
    assert [t.name for t in tasks] == ["liver", "config", "tracked"]
    assert tasks[0].list_kwargs() == {"sort": "likes", "limit": 5, "filter": ["medical", "monai"],
                                      "pipeline_tag": "image-segmentation"}
    assert tasks[1].list_kwargs()["search"] == "liver" and tasks[2].ids == ("a/b",)
    with pytest.raises(ValueError, match="unknown task; known: liver, config, tracked"):
        select(tasks, "nope")


@pytest.mark.parametrize("task, message", [
    ({"pipeline_tag": "x"}, r"leaderboard.tasks\[0\].name: required"),
    ({"name": "a", "sort": "stars"}, r"leaderboard.tasks\[0\].sort: 'stars' is not one of downloads"),
    ({"name": "a", "tags": "medical"}, r"leaderboard.tasks\[0\].tags: expected list\[str\]"),
    ({"name": "a", "serch": "x"}, r"leaderboard.tasks\[0\]: unknown key 'serch'; did you mean 'search'"),
])
def test_task_errors_name_the_file_and_key(tmp_path, task, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"leaderboard": {"tasks": [task]}}))
    with pytest.raises(ConfigError, match=f"{path}: {message}"):
        load_config(path)


def test_hub_tasks_lists_filters(tmp_path):
    out = CliRunner().invoke(cli, ["hub", "tasks"], catch_exceptions=False)
    assert out.exit_code == 0 and "ct-organ-segmentation" in out.output
    assert "pipeline_tag=image-segmentation, tags=medical, search=ct, sort=downloads, limit=50" in out.output
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"leaderboard": {"tasks": [{"name": "a", "tags": ["x", "y"]}]}}))
    out = CliRunner().invoke(cli, ["hub", "tasks", "--config", str(path)], catch_exceptions=False)
    assert out.output == "a\n  tags=x,y, sort=downloads, limit=50\n"


def test_task_filters_leave_unset_ones_out():
    assert Task("t", search="brain").filters() == {"search": "brain", "sort": "downloads", "limit": 50}


def test_hub_help_imports_nothing_heavy():
    code = ("import sys; from click.testing import CliRunner; from medbench_fast.cli.main import cli; "
            "r = CliRunner().invoke(cli, ['hub', '--help']); assert r.exit_code == 0 and 'publish' in r.output; "
            "r = CliRunner().invoke(cli, ['hub', 'track', '--help']); assert 'Examples' in r.output; "
            "heavy = [m for m in ('huggingface_hub', 'pyarrow', 'numba', 'onnxruntime', 'torch', 'requests') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
