"""``kind: huggingface`` with ``hub:``: errors are clear and come before the first case (bad
token, gated repo, missing repo or revision, offline without the model in the local cache)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hub.conftest import TOKEN
from medbench_fast.cli.main import cli
from medbench_fast.config import ConfigError, validate
from medbench_fast.data.reader import Volume, write_volume
from medbench_fast.data.synthetic import make_case
from medbench_fast.hub.client import HubError
from medbench_fast.hub.download import export_patterns, fetch_model

BOB = "hf_bobTokenForTheGatedRepo000000"


def _config(tmp_path, **model) -> str:
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir(exist_ok=True)
    case = make_case(0, shape=(4, 16, 16), n_nodes=1)
    write_volume(Volume(case.image, case.spacing), tmp_path / "images" / "c.nii.gz")
    write_volume(Volume(case.labels, case.spacing), tmp_path / "labels" / "c.nii.gz")
    path = tmp_path / "benchmark_config.yaml"
    path.write_text(yaml.safe_dump({
        "dataset": {"image_dir": str(tmp_path / "images"), "seg_dir": str(tmp_path / "labels")},
        "models": [{"name": "m", "kind": "huggingface", **model}], "output": {"dir": str(tmp_path / "runs")}}))
    return str(path)


def _run_fails(config: str, tmp_path, expected: str) -> None:
    out = CliRunner().invoke(cli, ["run", "--config", config, "--out", str(tmp_path / "run"), "-q"])
    assert out.exit_code == 2 and expected in out.output, out.output
    assert "Traceback" not in out.output
    assert not list((tmp_path / "run").glob("**/*.parquet"))  # stopped before the first case


@pytest.fixture
def gated(local_hub, make_model):
    local_hub.add_token(BOB, "bob")
    sha = make_model("bob/gated-seg", token=BOB, files={"config.json": "{}", "model.safetensors": b"\0" * 32},
                     license="cc-by-nc-4.0")
    local_hub.set_meta("bob/gated-seg", gated="manual", access=[])
    return sha


def test_gated_model_without_access_is_a_clear_error(local_hub, gated, tmp_path):
    _run_fails(_config(tmp_path, hub="bob/gated-seg"), tmp_path, "model 'm': hub model bob/gated-seg@main: the "
                                                                 "repository is gated")
    local_hub.set_meta("bob/gated-seg", access=["alice"])
    snapshot = fetch_model("bob/gated-seg")
    assert snapshot.sha == gated and snapshot.license == "cc-by-nc-4.0"
    assert sorted(p.name for p in snapshot.folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_bad_token_missing_repo_and_revision(local_hub, make_model, tmp_path, monkeypatch):
    make_model("alice/seg", files={"config.json": "{}"})
    _run_fails(_config(tmp_path, hub="alice/nothing-here"), tmp_path, "repository not found")
    _run_fails(_config(tmp_path, hub="alice/seg", revision="0" * 40), tmp_path, "revision not found")
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    _run_fails(_config(tmp_path, hub="alice/seg"), tmp_path, "rejected the credentials (HTTP 401)")


def test_offline_needs_the_model_in_the_local_cache(local_hub, make_model, tmp_path, monkeypatch):
    sha = make_model("alice/seg", files={"config.json": "{}", "model.safetensors": b"\1" * 8}, license="mit")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _run_fails(_config(tmp_path, hub="alice/seg"), tmp_path, "not in the local Hub cache")
    assert not local_hub.requests_to("GET", r"/api/models/alice/seg")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert fetch_model("alice/seg").sha == sha
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = len(local_hub.requests)
    cached = fetch_model("alice/seg")  # "main" -> sha through the cache's refs
    assert cached.sha == sha and cached.license == "mit" and len(local_hub.requests) == n


def test_unreachable_hub_falls_back_to_the_cache(local_hub, make_model):
    sha = make_model("alice/seg", files={"config.json": "{}"})
    assert fetch_model("alice/seg", sha).sha == sha
    local_hub.stop()
    assert fetch_model("alice/seg", sha).sha == sha
    with pytest.raises(HubError, match="not in the local Hub cache .* unreachable"):
        fetch_model("alice/other")


def test_private_model_needs_the_token_from_env_or_login_store(local_hub, make_model, monkeypatch):
    sha = make_model("alice/private-seg", files={"config.json": "{}"})
    local_hub.set_meta("alice/private-seg", private=True)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="repository not found \\(or private"):
        fetch_model("alice/private-seg")
    from huggingface_hub import constants

    Path(constants.HF_TOKEN_PATH).write_text(TOKEN)  # what `hf auth login` stores
    assert fetch_model("alice/private-seg").sha == sha


def test_export_patterns_prefer_safetensors():
    assert export_patterns(["config.json", "model.safetensors", "pytorch_model.bin"]) == [
        "*.json", "README.md", "*.safetensors"]
    assert export_patterns(["config.json", "pytorch_model.bin"])[-1] == "*.bin"


def test_hub_key_is_validated():
    base = {"dataset": {"image_dir": "i", "seg_dir": "s"}}
    with pytest.raises(ConfigError, match=r"models\[0\]\.hub: only for kind 'huggingface'"):
        validate({**base, "models": [{"name": "m", "kind": "onnx", "hub": "a/b"}]})
    with pytest.raises(ConfigError, match=r"models\[0\]\.hub: expected a Hub model id owner/name"):
        validate({**base, "models": [{"name": "m", "kind": "huggingface", "hub": "nope"}]})
    with pytest.raises(ConfigError, match=r"leaderboard.publish: needs leaderboard.hub_repo"):
        validate({**base, "leaderboard": {"publish": True}})
    config = validate({**base, "models": [{"name": "m", "kind": "huggingface", "hub": "a/b"}]})
    assert config.models[0].revision == "main"
