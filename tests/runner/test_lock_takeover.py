"""Stale-lock takeover is atomic: of many processes that find the same stale lock, exactly
one takes it over. The window between judging the lock stale and replacing it is widened
on purpose (every taker sleeps there), so an unguarded takeover lets several win."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from medbench_fast.store import lock as lock_module
from medbench_fast.store.lock import RunLock, RunLockedError

TAKERS = 8


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_stale_lock(folder, pid) -> None:
    (folder / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "process_start": "1",
                                              "command": "medbench run", "since": "2026-01-01T00:00:00Z"}))


def _taker(folder: str, start, results, release) -> None:
    original = RunLock._stale

    def slow_stale(self, holder):  # widen the read-judge-replace window
        stale = original(self, holder)
        time.sleep(0.15)
        return stale

    lock_module.RunLock._stale = slow_stale
    start.wait()
    try:
        RunLock(folder, command="medbench run").acquire()
    except RunLockedError:
        results.put("refused")
        return
    results.put("won")
    release.wait(30)  # hold the lock (never released: the process exits holding it)


def test_many_concurrent_takers_of_a_stale_lock_have_one_winner(tmp_path):
    _write_stale_lock(tmp_path, _dead_pid())
    ctx = multiprocessing.get_context("fork")
    start, release, results = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_taker, args=(str(tmp_path), start, results, release)) for _ in range(TAKERS)]
    for p in procs:
        p.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in procs]
    release.set()
    for p in procs:
        p.join(30)
    assert sorted(outcomes) == ["refused"] * (TAKERS - 1) + ["won"]
    holder = json.loads((tmp_path / ".lock").read_text())
    assert holder["pid"] in {p.pid for p in procs}


@pytest.mark.parametrize("pid", ["abc", None, -5, True])
def test_lock_with_a_bad_pid_is_a_clear_refusal(tmp_path, pid):
    _write_stale_lock(tmp_path, pid)
    with pytest.raises(RunLockedError, match=r"not a lock medbench-fast writes .* remove .*\.lock"):
        RunLock(tmp_path, command="medbench run").acquire()


def test_lock_with_a_bad_pid_exits_2_from_the_cli(tmp_path):
    from medbench_fast.cli.main import cli

    preds = tmp_path / "p"
    preds.mkdir()
    (preds / "a.nii.gz").write_bytes(b"not read: the lock is refused first")
    out = tmp_path / "out"
    out.mkdir()
    _write_stale_lock(out, "abc")
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(preds), "--ref", str(preds), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "not a lock medbench-fast writes" in result.output and "internal error" not in result.output


def test_a_lock_is_still_taken_when_nothing_holds_it(tmp_path):
    with RunLock(tmp_path, command="a"):
        assert (tmp_path / ".lock").exists()
    assert not (tmp_path / ".lock").exists()
    assert os.listdir(tmp_path) == []
