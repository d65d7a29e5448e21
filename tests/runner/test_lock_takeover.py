"""Stale-lock takeover is atomic: of many processes that find the same stale lock, exactly
one takes it over. The window between judging the lock stale and replacing it is widened
on purpose (each taker sleeps there for a different time), so an unguarded takeover lets
several win, one after the other."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from medbench_fast.store.lock import RunLock, RunLockedError

TAKERS = 8


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_stale_lock(folder, pid) -> None:
    (folder / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "process_start": "1",
                                              "command": "medbench run", "since": "2026-01-01T00:00:00Z"}))


TAKER = textwrap.dedent("""\
    import os, sys, time
    from pathlib import Path
    from medbench_fast.store import lock
    from medbench_fast.store.lock import RunLock, RunLockedError

    folder, index = Path(sys.argv[1]), sys.argv[2]
    original = RunLock._stale

    def slow_stale(self, holder):  # widen the window between judging the lock stale and replacing it,
        stale = original(self, holder)  # a different width for each taker so that they replace in turn
        time.sleep(0.05 + 0.04 * int(index))
        return stale

    lock.RunLock._stale = slow_stale
    (folder.parent / f"ready-{index}").touch()
    while not (folder.parent / "start").exists():
        time.sleep(0.002)
    try:
        RunLock(folder, command="medbench run").acquire()
    except RunLockedError:
        print("refused", flush=True)
        sys.exit(0)
    print("won", flush=True)
    sys.stdin.read()  # hold the lock until the test closes stdin
    """)


def test_many_concurrent_takers_of_a_stale_lock_have_one_winner(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    _write_stale_lock(folder, _dead_pid())
    procs = [subprocess.Popen([sys.executable, "-c", TAKER, str(folder), str(i)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for i in range(TAKERS)]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("ready-*"))) < TAKERS and time.monotonic() < deadline:
            time.sleep(0.01)
        (tmp_path / "start").touch()
        outcomes = [p.stdout.readline().strip() for p in procs]
        holder = json.loads((folder / ".lock").read_text())
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(30)
    assert sorted(outcomes) == ["refused"] * (TAKERS - 1) + ["won"]
    assert holder["pid"] == procs[outcomes.index("won")].pid


@pytest.mark.parametrize("pid", ["abc", None, -5, True, 2 ** 31, 10 ** 30])
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
