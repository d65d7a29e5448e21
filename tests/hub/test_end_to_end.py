"""End to end on the local Hub: the demo's tiny SegFormer uploaded as a model repo, found by
``hub track``, benchmarked by ``medbench run`` at a pinned revision (online, then offline from
the local Hub cache), the run published as a dataset repo and downloaded back; the token
appears in no file written and in no log."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from huggingface_hub import HfApi, snapshot_download

from hub.conftest import TOKEN, model_card
from medbench_fast.cli.main import cli
from medbench_fast.data.reader import Volume, write_volume
from medbench_fast.data.synthetic import LABEL_NAMES, make_case

pytest.importorskip("onnxscript")  # the export extra

REPO = "alice/tiny-segformer"


def _dataset(root: Path, n_cases: int = 2) -> dict:
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for i in range(n_cases):
        case = make_case(i, shape=(12, 64, 64), spacing=(3.0, 1.5, 1.5), n_nodes=1)
        write_volume(Volume(case.image, case.spacing), root / "images" / f"{case.case_id}.nii.gz")
        write_volume(Volume(case.labels, case.spacing), root / "labels" / f"{case.case_id}.nii.gz")
    return {"image_dir": str(root / "images"), "seg_dir": str(root / "labels"), "label_names": dict(LABEL_NAMES)}


@pytest.mark.slow
def test_track_run_at_pinned_revision_publish_and_download(local_hub, tmp_path, monkeypatch, caplog, capfd):
    from medbench_fast.demo import _segformer

    hf_logger = logging.getLogger("huggingface_hub")
    hf_logger.addHandler(caplog.handler)
    for name in ("huggingface_hub", "medbench_fast", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.setenv("MEDBENCH_EXPORT_CACHE", str(tmp_path / "exports"))
    outputs = []

    def medbench(*args, code=0):
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        outputs.append(result.output)
        assert result.exit_code == code, result.output
        return result.output

    model_dir = _segformer(tmp_path / "segformer")
    card = {"license": "apache-2.0", "tags": ["medical", "ct"], "pipeline_tag": "image-segmentation",
            "library_name": "transformers"}
    (model_dir / "README.md").write_text(model_card(**card))
    api = HfApi(endpoint=local_hub.url)
    api.create_repo(REPO)
    pinned = api.upload_folder(folder_path=model_dir, repo_id=REPO).oid

    config = tmp_path / "benchmark_config.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": _dataset(tmp_path / "data"),
        "models": [{"name": "segformer", "kind": "huggingface", "hub": REPO, "revision": pinned,
                    "task": "semantic-segmentation", "note": "untrained"}],
        "benchmark": {"warmup": 1},
        "output": {"dir": str(tmp_path / "runs")},
        "leaderboard": {"hub_repo": "alice/ct-results", "cache_dir": str(tmp_path / "hubcache"),
                        "tasks": [{"name": "ct-seg", "pipeline_tag": "image-segmentation", "tags": ["medical"]}]}}))
    assert "ct-seg: 1 model(s); 1 new" in medbench("hub", "track", "--config", str(config), "-q")

    (model_dir / "README.md").write_text(model_card(**card) + "\nSecond revision of the card.\n")
    head = api.upload_folder(folder_path=model_dir, repo_id=REPO).oid
    assert head != pinned

    run_dir = tmp_path / "runs" / "pinned"
    local_hub.requests.clear()
    medbench("run", "--config", str(config), "--out", str(run_dir), "-q")
    fetched = {r["path"].rsplit("/", 1)[1] for r in local_hub.requests_to("GET", r"/resolve/")}
    assert fetched == {"config.json", "preprocessor_config.json", "model.safetensors", "README.md"}
    assert all(f"/resolve/{pinned}/" in r["path"] for r in local_hub.requests_to("GET", r"/resolve/"))
    source = json.loads((run_dir / "run.json").read_text())["models"]["segformer"]["spec"]["source"]
    assert source["hub"] == REPO and source["sha"] == pinned and source["revision"] == pinned
    assert source["license"] == "apache-2.0"
    html = (run_dir / "leaderboard.html").read_text()
    assert f"{REPO}@{pinned[:12]}" in html and ">apache-2.0<" in html  # the Models table of the run's leaderboard
    metrics = pq.read_table(run_dir / "metrics.parquet")
    assert set(metrics.column("model").to_pylist()) == {"segformer"} and metrics.num_rows >= 2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the same run from the local Hub cache, no request
    n_requests = len(local_hub.requests)
    medbench("run", "--config", str(config), "--out", str(tmp_path / "runs" / "offline"), "-q")
    assert len(local_hub.requests) == n_requests
    offline = json.loads((tmp_path / "runs" / "offline" / "run.json").read_text())
    assert offline["models"]["segformer"]["spec"]["source"]["sha"] == pinned
    monkeypatch.delenv("HF_HUB_OFFLINE")

    out = medbench("hub", "track", "--config", str(config))
    assert f"~ {REPO}: {pinned[:12]} -> {head[:12]}" in out
    report = json.loads(max((tmp_path / "hubcache").glob("leaderboard_report_*.json")).read_text())
    tracked = report["tasks"][0]["models"][0]
    assert tracked["sha"] == head and tracked["license"] == "apache-2.0"
    assert {(r["sha"], r["at_tracked_revision"]) for r in tracked["results"]} == {(pinned, False)}
    assert {r["run_dir"] for r in tracked["results"]} == {str(run_dir), str(tmp_path / "runs" / "offline")}

    commits_before = len(local_hub.requests_to("POST", r"/commit/"))
    dry = medbench("hub", "publish", str(run_dir), "--config", str(config), "--dry-run")
    assert "metrics.parquet" in dry and "configs:" in dry and len(local_hub.requests_to("POST", r"/commit/")) == commits_before
    assert "published" in medbench("hub", "publish", str(run_dir), "--config", str(config))
    assert len(local_hub.requests_to("POST", r"/api/datasets/alice/ct-results/commit/")) == 1
    first_head = local_hub.head("alice/ct-results", "dataset")
    assert "no new commit" in medbench("hub", "publish", str(run_dir), "--repo", "alice/ct-results")
    assert local_hub.head("alice/ct-results", "dataset") == first_head
    assert len(local_hub.requests_to("POST", r"/api/datasets/alice/ct-results/commit/")) == 1

    down = Path(snapshot_download("alice/ct-results", repo_type="dataset", cache_dir=str(tmp_path / "download"),
                                  endpoint=local_hub.url))
    assert pq.read_table(down / "metrics.parquet").equals(metrics)
    assert (down / "metrics.parquet").read_bytes() == (run_dir / "metrics.parquet").read_bytes()
    front = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", (down / "README.md").read_text(), re.DOTALL).group(1))
    assert front["license"] == "other" and "medical-imaging" in front["tags"]
    assert all((down / c["data_files"]).is_file() for c in front["configs"])
    assert front["configs"][0] == {"config_name": "metrics", "data_files": "metrics.parquet", "default": True}
    assert f"`{REPO}@{pinned[:12]}`" in (down / "README.md").read_text()
    published = (down / "run.json").read_text()
    assert str(tmp_path) not in published and str(Path.home()) not in published
    cases = pq.read_table(down / "cases.parquet").column("image_path").to_pylist()
    assert all(not os.path.isabs(p) for p in cases)

    settings = yaml.safe_load(config.read_text())  # leaderboard.publish: each finished run goes up itself
    settings["leaderboard"]["publish"] = True
    config.write_text(yaml.safe_dump(settings))
    out = medbench("run", "--config", str(config), "--out", str(tmp_path / "runs" / "auto"), "-q")
    assert "published 7 files to dataset alice/ct-results" in out  # no scores.parquet: no case-level model
    assert len(local_hub.requests_to("POST", r"/api/datasets/alice/ct-results/commit/")) == 2

    written = [p for root in (tmp_path, Path(os.environ["HF_HOME"])) for p in root.rglob("*") if p.is_file()]
    assert len(written) > 20
    leaks = [str(p) for p in written if TOKEN.encode() in p.read_bytes()]
    captured = capfd.readouterr()
    assert not leaks and TOKEN not in caplog.text and TOKEN not in "".join(outputs)
    assert TOKEN not in captured.out + captured.err
    assert any(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in local_hub.requests)
    hf_logger.removeHandler(caplog.handler)
