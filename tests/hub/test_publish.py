"""``medbench hub publish`` against the local Hub: one commit, the dataset card, relative
paths, no new commit on republishing, dry run, refusals and permission errors."""

from __future__ import annotations

import json
import os
import re
import shutil

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from hub.conftest import TOKEN
from medbench_fast.cli.main import cli
from medbench_fast.hub.client import HubError
from medbench_fast.hub.publish import prepare


@pytest.fixture(scope="module")
def built_run(tmp_path_factory):
    from report.run_builder import build_run

    root = tmp_path_factory.mktemp("published")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDBENCH_CACHE_DIR", str(root / "volume-cache"))
        return build_run(root, n_cases=3)


@pytest.fixture
def run_dir(built_run, tmp_path):
    return shutil.copytree(built_run, tmp_path / "run")


def _publish(*args):
    return CliRunner().invoke(cli, ["hub", "publish", *map(str, args)])


def _front(card: str) -> dict:
    return yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", card, re.DOTALL).group(1))


def test_publish_is_one_commit_and_republishing_makes_none(local_hub, run_dir):
    out = _publish(run_dir, "--repo", "alice/results", "--private", "--license", "cc-by-4.0")
    assert out.exit_code == 0 and "published 8 files to dataset alice/results" in out.output, out.output
    commits = local_hub.requests_to("POST", r"^/api/datasets/alice/results/commit/main$")
    assert len(commits) == 1
    kinds = {line["value"]["path"]: line["key"] for line in commits[0]["ndjson"][1:]}
    assert kinds == {"metrics.parquet": "lfsFile", "cases.parquet": "lfsFile", "scores.parquet": "lfsFile",
                     "latency.parquet": "lfsFile", "summary.json": "file", "leaderboard.html": "file",
                     "run.json": "file", "README.md": "file"}
    created = local_hub.requests_to("POST", r"^/api/repos/create$")[0]["json"]
    private = created.pop("private", None) or created.pop("visibility", None) == "private"  # 0.x, then 1.x on
    assert private and created == {"name": "results", "organization": "alice", "type": "dataset"}
    head = local_hub.head("alice/results", "dataset")
    out = _publish(run_dir, "--repo", "alice/results", "--license", "cc-by-4.0")
    assert out.exit_code == 0 and f"no new commit (head {head})" in out.output
    assert len(local_hub.requests_to("POST", r"/commit/")) == 1 and local_hub.commits("alice/results", "dataset") == 2


def test_card_configs_point_at_the_tables_and_paths_are_relative(run_dir):
    files, card = prepare(run_dir, license_="cc-by-4.0")
    front = _front(card)
    assert front["license"] == "cc-by-4.0" and {"medical-imaging", "medbench-fast"} <= set(front["tags"])
    assert [c["data_files"] for c in front["configs"]] == [f"{t}.parquet" for t in ("metrics", "cases", "scores",
                                                                                   "latency")]
    assert "| rank | model | source | license |" in card and "## Environment" in card
    assert files["metrics.parquet"] == (run_dir / "metrics.parquet").read_bytes()
    for name in ("run.json", "summary.json", "leaderboard.html"):
        assert str(run_dir) not in files[name].decode()
    import io

    cases = pq.read_table(io.BytesIO(files["cases.parquet"]))
    original = pq.read_table(run_dir / "cases.parquet")
    assert cases.drop(["image_path", "ref_path", "pred_path"]).equals(
        original.drop(["image_path", "ref_path", "pred_path"]))
    paths = [p for p in cases.column("ref_path").to_pylist() if p]
    assert paths and all(not os.path.isabs(p) and p.startswith("..") for p in paths)
    assert prepare(run_dir, license_="cc-by-4.0") == (files, card)  # same run, same bytes


def test_dry_run_prints_files_and_card_and_sends_nothing(local_hub, run_dir):
    out = _publish(run_dir, "--repo", "alice/results", "--dry-run")
    assert out.exit_code == 0 and "would publish to dataset alice/results" in out.output
    assert "metrics.parquet" in out.output and "configs:" in out.output and not local_hub.requests


def test_a_file_holding_the_token_is_refused(local_hub, run_dir):
    info = json.loads((run_dir / "run.json").read_text())
    info["note"] = f"token={TOKEN}"
    (run_dir / "run.json").write_text(json.dumps(info))
    with pytest.raises(HubError, match="the Hub token appears in run.json") as err:
        prepare(run_dir)
    assert TOKEN not in str(err.value)
    out = _publish(run_dir, "--repo", "alice/results")
    assert out.exit_code == 1 and TOKEN not in out.output and not local_hub.requests


def test_permission_and_credential_errors(local_hub, run_dir, monkeypatch):
    out = _publish(run_dir, "--repo", "bob/results")
    assert out.exit_code == 1 and "no permission for this (HTTP 403)" in out.output
    monkeypatch.delenv("HF_TOKEN")
    out = _publish(run_dir, "--repo", "alice/results")
    assert out.exit_code == 1 and "(HTTP 401); set HF_TOKEN or run `hf auth login`" in out.output


def test_not_a_run_folder(tmp_path):
    out = _publish(tmp_path, "--repo", "alice/results")
    assert out.exit_code == 1 and "not a finished run folder" in out.output
    out = _publish(tmp_path, "--repo", "results")
    assert out.exit_code == 2 and "owner/name" in out.output
