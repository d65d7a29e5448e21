"""A full disk during ``medbench report`` keeps the previous reports whole and says why."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

from click.testing import CliRunner
from disk_full import fill, small_disk

from medbench_fast.cli.main import cli


def _partial_then_enospc(self, data, *args, **kwargs):
    """Path.write_text on a disk that fills up half way through."""
    with open(self, "w", encoding="utf-8") as fh:
        fh.write(data[: len(data) // 2])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_report_keeps_summary_valid(tmp_path, bench_run, monkeypatch):
    with small_disk(tmp_path / "disk", 512) as real:
        run = tmp_path / "disk" / "run"
        shutil.copytree(bench_run, run)
        before = (run / "summary.json").read_bytes()
        if real:
            fill(tmp_path / "disk", 40_000)  # less room than a new summary.json needs
        else:
            monkeypatch.setattr(Path, "write_text", _partial_then_enospc)
        result = CliRunner().invoke(cli, ["report", str(run), "--json"])
        assert result.exit_code == 1, result.output
        assert "No space left on device" in result.output and str(run) in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
        assert (run / "summary.json").read_bytes() == before
        json.loads(before)
        assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
        if real:
            (tmp_path / "disk" / "filler").unlink()
        else:
            monkeypatch.undo()
        again = CliRunner().invoke(cli, ["report", str(run), "--json"])
        assert again.exit_code == 0, again.output
        assert (run / "summary.json").read_bytes() == before  # reports are pure functions of the run
