"""``medbench hub track`` against the local Hub: snapshots, history, report, changes, offline
fallback, retries, timeouts and credential errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from hub.conftest import TOKEN
from medbench_fast.cli.main import cli
from medbench_fast.hub.client import settings
from medbench_fast.hub.tasks import Task
from medbench_fast.hub.tracking import HISTORY, NoSnapshotError, track

SEG = {"tags": ["medical", "ct"], "pipeline_tag": "image-segmentation", "library_name": "transformers",
       "license": "apache-2.0"}


def _config(tmp_path, **leaderboard) -> str:
    path = tmp_path / "benchmark_config.yaml"
    board = {"tasks": [{"name": "ct-seg", "pipeline_tag": "image-segmentation", "tags": ["medical"]}],
             "cache_dir": str(tmp_path / "hubcache"), **leaderboard}
    path.write_text(yaml.safe_dump({"leaderboard": board, "output": {"dir": str(tmp_path / "runs")}}))
    return str(path)


def _run(args, **kwargs):
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)


def _reports(folder):
    return sorted(folder.glob("leaderboard_report_*.json"))


def test_track_records_snapshot_history_report_and_changes(local_hub, make_model, tmp_path):
    first = {name: make_model(name, **SEG) for name in ("alice/ct-a", "alice/ct-b", "alice/ct-c")}
    make_model("alice/xray", tags=["medical"], pipeline_tag="image-classification")
    local_hub.set_meta("alice/ct-b", downloads=50, likes=3, gated="manual")
    config = _config(tmp_path)
    out = _run(["hub", "track", "--config", config, "-q"])
    assert out.exit_code == 0, out.output
    assert "ct-seg: 3 model(s); 3 new, 0 new revision(s), 0 removed" in out.output
    cache = tmp_path / "hubcache"
    report = json.loads(_reports(cache)[0].read_text())
    assert report["source"] == "hub" and report["tasks"][0]["filters"] == {
        "pipeline_tag": "image-segmentation", "tags": ["medical"], "sort": "downloads", "limit": 50}
    models = report["tasks"][0]["models"]
    assert [m["id"] for m in models] == ["alice/ct-b", "alice/ct-c", "alice/ct-a"]  # the Hub's order
    top = models[0]
    assert top["sha"] == first["alice/ct-b"] and top["license"] == "apache-2.0" and top["gated"] == "manual"
    assert top["downloads"] == 50 and top["likes"] == 3 and top["library"] == "transformers"
    assert top["pipeline_tag"] == "image-segmentation" and "medical" in top["tags"]
    assert top["created_at"].endswith("Z") and top["last_modified"].endswith("Z")
    listing = local_hub.requests_to("GET", r"^/api/models$")[0]["query"]
    assert listing["filter"] == ["medical"] and listing["pipeline_tag"] == ["image-segmentation"]
    assert listing["sort"] == ["downloads"] and "sha" in listing["expand"]

    updated = make_model("alice/ct-a", **{**SEG, "tags": ["medical", "ct", "v2"]})
    make_model("alice/ct-d", **SEG)
    make_model("alice/ct-c", **{**SEG, "pipeline_tag": "image-classification"})  # leaves the task
    out = _run(["hub", "track", "--config", config, "--task", "ct-seg"])
    assert "1 new, 1 new revision(s), 1 removed" in out.output
    assert f"~ alice/ct-a: {first['alice/ct-a'][:12]} -> {updated[:12]}" in out.output
    assert "+ alice/ct-d" in out.output and "- alice/ct-c" in out.output
    history = pq.read_table(cache / HISTORY).to_pylist()
    assert len({r["snapshot"] for r in history}) == 2 and len(history) == 6


def test_offline_uses_the_last_snapshot_and_says_how_old(local_hub, make_model, tmp_path, monkeypatch):
    make_model("alice/ct-a", **SEG)
    tasks = [Task("ct-seg", pipeline_tag="image-segmentation")]
    cache = tmp_path / "hubcache"
    taken = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    track(tasks, hub=settings(), cache_dir=cache, now=taken)
    n_requests = len(local_hub.requests)
    later = track(tasks, hub=settings(), cache_dir=cache, offline=True, now=taken + timedelta(hours=3, minutes=5))
    assert later.source == "snapshot" and later.age_s == 3 * 3600 + 300 and len(local_hub.requests) == n_requests
    assert json.loads(later.report.read_text())["tasks"][0]["models"][0]["id"] == "alice/ct-a"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = _run(["hub", "track", "--config", _config(tmp_path)])
    assert out.exit_code == 0 and "offline mode (HF_HUB_OFFLINE=1): using the snapshot of" in out.output
    assert len(local_hub.requests) == n_requests


def test_two_snapshots_within_one_second_stay_apart(local_hub, make_model, tmp_path):
    make_model("alice/ct-a", **SEG)
    tasks = [Task("ct-seg", pipeline_tag="image-segmentation")]
    taken = datetime(2026, 3, 1, 12, 0, 0, 100000, tzinfo=timezone.utc)
    first = track(tasks, hub=settings(), cache_dir=tmp_path, now=taken)
    make_model("alice/ct-b", **SEG)
    second = track(tasks, hub=settings(), cache_dir=tmp_path, now=taken + timedelta(milliseconds=300))
    assert first.changes["ct-seg"]["new"] == ["alice/ct-a"] and second.changes["ct-seg"]["new"] == ["alice/ct-b"]
    assert first.report != second.report and max(tmp_path.glob("leaderboard_report_*.json")) == second.report


def test_offline_without_snapshot_exits_2_and_writes_nothing(local_hub, tmp_path):
    out = _run(["hub", "track", "--config", _config(tmp_path), "--offline"])
    assert out.exit_code == 2 and "no earlier snapshot of ct-seg" in out.output
    assert not (tmp_path / "hubcache").exists() and not local_hub.requests


def test_429_is_retried_after_backoff(local_hub, make_model, tmp_path):
    make_model("alice/ct-a", **SEG)
    local_hub.add_fault("GET", "/api/models", status=429, headers={"Retry-After": "0"})
    out = _run(["hub", "track", "--config", _config(tmp_path), "-q"])
    assert out.exit_code == 0 and "ct-seg: 1 model(s)" in out.output
    assert len(local_hub.requests_to("GET", r"^/api/models$")) == 2


def test_5xx_is_retried_and_a_hub_that_stays_down_means_the_snapshot(local_hub, make_model, tmp_path):
    make_model("alice/ct-a", **SEG)
    local_hub.add_fault("GET", "/api/models", status=503, times=2, headers={"Retry-After": "0"})
    config = _config(tmp_path)
    assert "ct-seg: 1 model(s); 1 new" in _run(["hub", "track", "--config", config, "-q"]).output
    assert len(local_hub.requests_to("GET", r"^/api/models$")) == 3
    # a Hub that stays down: with_retries' 5 attempts (each retried by huggingface_hub too where it does)
    local_hub.add_fault("GET", "/api/models", status=502, times=1000, headers={"Retry-After": "0"})
    out = _run(["hub", "track", "--config", config, "-q"])
    assert out.exit_code == 0 and "the Hub is unavailable (HTTP 502 after retries): using the snapshot" in out.output
    assert len(local_hub.requests_to("GET", r"^/api/models$")) - 3 in (5, 5 * 6)


def test_server_stopped_mid_listing_falls_back_to_the_snapshot(local_hub, make_model, tmp_path):
    for name in ("alice/ct-a", "alice/ct-b", "alice/ct-c"):
        make_model(name, **SEG)
    config = _config(tmp_path)
    assert _run(["hub", "track", "--config", config, "-q"]).exit_code == 0
    local_hub.add_fault("GET", "/api/models", stop=True)  # the first page goes out, then the server is gone
    out = _run(["hub", "track", "--config", config, "-q"])
    assert out.exit_code == 0, out.output
    assert "the Hub is unreachable" in out.output and "using the snapshot of" in out.output and "min old" in out.output
    assert "ct-seg: 3 model(s)" in out.output
    assert len(pq.read_table(tmp_path / "hubcache" / HISTORY).to_pylist()) == 3  # nothing appended
    assert len(_reports(tmp_path / "hubcache")) == 2


def test_hanging_server_times_out(local_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDBENCH_HUB_TIMEOUT", "0.5")
    local_hub.add_fault("GET", "/api/models", hang=True)
    with pytest.raises(NoSnapshotError, match=r"no answer within 0.5 s"):
        track([Task("ct-seg", pipeline_tag="image-segmentation")], hub=settings(), cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_bad_token_is_a_clear_error_without_the_token(local_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_notAValidToken987")
    out = CliRunner().invoke(cli, ["hub", "track", "--config", _config(tmp_path)])
    assert out.exit_code == 1 and "rejected the credentials (HTTP 401)" in out.output
    assert "hf_notAValidToken987" not in out.output and TOKEN not in out.output


def test_tracked_ids_use_model_info(local_hub, make_model, tmp_path):
    sha = make_model("alice/special", **SEG)
    config = _config(tmp_path, tasks=[], track=["alice/special"])
    out = _run(["hub", "track", "--config", config, "--task", "tracked", "-q"])
    assert out.exit_code == 0 and "tracked: 1 model(s)" in out.output
    model = json.loads(_reports(tmp_path / "hubcache")[0].read_text())["tasks"][0]["models"][0]
    assert model["id"] == "alice/special" and model["sha"] == sha and model["license"] == "apache-2.0"


def test_a_fresh_process_finds_the_hub_through_its_environment(local_hub, make_model, tmp_path):
    import os
    import subprocess
    import sys

    make_model("alice/ct-a", **SEG)
    proc = subprocess.run([sys.executable, "-m", "medbench_fast", "hub", "track", "--config", _config(tmp_path), "-q"],
                          capture_output=True, text=True, env=dict(os.environ), check=False, timeout=120)
    assert proc.returncode == 0 and "ct-seg: 1 model(s); 1 new" in proc.stdout, proc.stdout + proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert local_hub.requests_to("GET", r"^/api/models$")[0]["headers"]["authorization"] == f"Bearer {TOKEN}"


def test_a_server_that_trickles_bytes_is_given_up_at_the_deadline(local_hub, tmp_path):
    """One byte every 0.4 s never lets a single read time out; the request's deadline still holds."""
    import time

    local_hub.add_fault("GET", "/api/models", trickle=0.4)
    start = time.monotonic()
    out = _run(["hub", "track", "--config", _config(tmp_path), "--timeout", "1.5", "-q"])
    took = time.monotonic() - start
    assert out.exit_code == 2 and "the Hub is unreachable" in out.output and "no answer within 1.5 s" in out.output
    assert took < 4, took
    assert len(local_hub.requests_to("GET", r"^/api/models$")) == 1  # no retry loop after the deadline


@pytest.mark.parametrize("body", [b'[{"id": "alice/ct-a",, "sha": 1}]', b'[{"modelId": "alice/ct-a"}]',
                                  b'{"models": 3}', b"<html>proxy login</html>"])
def test_a_garbage_answer_is_a_clear_error(local_hub, make_model, tmp_path, body):
    make_model("alice/ct-a", **SEG)
    local_hub.add_fault("GET", "/api/models", body=body)
    out = CliRunner().invoke(cli, ["hub", "track", "--config", _config(tmp_path)])
    assert out.exit_code == 1, out.output
    assert "answered the model listing with something that is not the Hugging Face Hub's API" in out.output
    assert "check HF_ENDPOINT" in out.output and "internal error" not in out.output
    assert "Expecting" not in out.output and "KeyError: 'id'" not in out.output
    assert not (tmp_path / "hubcache").exists()


def test_a_failed_history_write_keeps_the_earlier_history(tmp_path, monkeypatch):
    """The history is replaced atomically: a write that fails half-way (disk full) leaves the
    earlier snapshots as they were and no temporary file."""
    import errno

    import pyarrow.parquet as real_pq

    from medbench_fast.hub import tracking

    row = {"snapshot": "2026-01-01T00:00:00.000000Z", "task": "ct-seg", "rank": 1, "id": "a/b", "sha": "1" * 40}
    tracking.append_history(tmp_path, [row])
    before = (tmp_path / HISTORY).read_bytes()
    write = real_pq.write_table

    def half_then_full(table, where, **kwargs):
        write(table.slice(0, 1), where, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(real_pq, "write_table", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        tracking.append_history(tmp_path, [{**row, "snapshot": "2026-01-02T00:00:00.000000Z"}])
    assert (tmp_path / HISTORY).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [HISTORY]
    monkeypatch.undo()
    assert [r["snapshot"] for r in tracking.read_history(tmp_path)] == [row["snapshot"]]


def test_reports_written_at_the_same_moment_never_replace_each_other(tmp_path):
    """Threads writing reports stamped with the same time each get a file of their own, whole."""
    from concurrent.futures import ThreadPoolExecutor

    from medbench_fast.hub.tracking import _write_report

    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda i: _write_report(tmp_path, moment, {"i": i, "pad": "x" * 100_000}), range(24)))
    assert len(set(paths)) == 24 and sorted(paths) == _reports(tmp_path)
    assert [json.loads(p.read_text())["i"] for p in paths] == list(range(24))
    stem = "leaderboard_report_20260101T000000.000000Z"  # whichever thread came first has the plain name
    assert {p.name for p in paths} == {f"{stem}.json"} | {f"{stem}-{k}.json" for k in range(1, 24)}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_report_that_cannot_be_written_leaves_nothing(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from medbench_fast.hub.tracking import _write_report

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="leaderboard_report_"):  # the error names the report
        _write_report(tmp_path, datetime(2026, 1, 1, tzinfo=timezone.utc), {"i": 1})
    assert list(tmp_path.iterdir()) == []
