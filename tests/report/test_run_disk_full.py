"""A full disk while a run's reports are written: its results are whole, ``run.json`` says which
reports are missing, the message names the file and the way out (``medbench report RUN_DIR``),
and that command, once there is room, completes the run folder. Also: reports are never
written through a link that leads out of the run folder."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner
from disk_full import fill, small_disk
from report.run_builder import write_small_dataset

from medbench_fast.cli.main import cli

REAL_WRITE_TEXT = Path.write_text


def _enospc_for_leaderboard(self, data, *args, **kwargs):
    """Path.write_text where the disk is full for the leaderboard (a write error names no file)."""
    if self.name.startswith(".leaderboard.html."):
        REAL_WRITE_TEXT(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return REAL_WRITE_TEXT(self, data, *args, **kwargs)


def test_disk_full_while_writing_a_runs_reports(tmp_path, monkeypatch):
    dirs = write_small_dataset(tmp_path / "data", 3)
    with small_disk(tmp_path / "disk", 2048) as real:
        run = tmp_path / "disk" / "run"
        if real:  # the disk fills up once the results and the first reports are written
            import medbench_fast.report.html as html

            render = html.render_leaderboard

            def fill_then_render(*args, **kwargs):
                page = render(*args, **kwargs)
                fill(tmp_path / "disk", min(len(page) // 2, 48_000))  # room for run.json, not for the page
                return page

            monkeypatch.setattr(html, "render_leaderboard", fill_then_render)
        else:
            monkeypatch.setattr(Path, "write_text", _enospc_for_leaderboard)
        result = CliRunner().invoke(cli, ["evaluate", "--pred", str(dirs["pred_a"]), "--ref", str(dirs["labels"]),
                                          "--out", str(run), "--quiet"])
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
        assert f"Error: {run / 'leaderboard.html'}: No space left on device" in result.output
        assert "reports not written: leaderboard.html (written: results.csv, cases.csv, summary.json)" in result.output
        assert f"free space on its disk, then run `medbench report {run}`" in result.output
        assert "?" not in result.output
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "finished"
        assert info["reports"]["status"] == "failed"
        assert info["reports"]["written"] == ["results.csv", "cases.csv", "summary.json"]
        assert info["reports"]["missing"] == ["leaderboard.html"]
        assert pq.read_table(run / "metrics.parquet").num_rows > 0  # the results are whole
        assert not (run / "leaderboard.html").exists()
        assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]

        monkeypatch.undo()
        if real:
            (tmp_path / "disk" / "filler").unlink()
        again = CliRunner().invoke(cli, ["report", str(run)])
        assert again.exit_code == 0, again.output
        assert (run / "leaderboard.html").is_file()
        assert "reports" not in json.loads((run / "run.json").read_text())


def test_a_report_failure_is_recorded_by_medbench_report_too(tmp_path, bench_run, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(bench_run, run)
    monkeypatch.setattr(Path, "write_text", _enospc_for_leaderboard)
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 1, result.output
    assert f"{run / 'leaderboard.html'}: No space left on device" in result.output
    assert json.loads((run / "run.json").read_text())["reports"]["missing"] == ["leaderboard.html"]
    monkeypatch.undo()
    assert CliRunner().invoke(cli, ["report", str(run), "--html"]).exit_code == 0
    assert "reports" not in json.loads((run / "run.json").read_text())


def test_reports_are_not_written_through_a_link_that_leads_outside(tmp_path, bench_run):
    outside = tmp_path / "outside"
    outside.mkdir()
    run = tmp_path / "run"
    shutil.copytree(bench_run, run)
    (run / "summary.json").unlink()
    (run / "summary.json").symlink_to(outside / "summary.json")
    result = CliRunner().invoke(cli, ["report", str(run), "--json"])
    assert result.exit_code == 2, result.output
    assert "refusing to write outside" in result.output and str(run) in result.output
    assert not list(outside.iterdir())
