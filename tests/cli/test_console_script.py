"""The ``medbench`` console script: ``main`` runs the click group, keeps its exit code and output,
and leaves the process's objects frozen so that the exit skips the last cyclic collection."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from medbench_fast.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]


def test_the_console_script_and_python_m_run_main():
    scripts = (ROOT / "pyproject.toml").read_text().split("[project.scripts]", 1)[1].split("[", 1)[0]
    assert scripts.strip() == 'medbench = "medbench_fast.cli.main:main"'
    assert "from medbench_fast.cli.main import main" in (ROOT / "medbench_fast" / "__main__.py").read_text()


@pytest.mark.parametrize("args, code", [(["--version"], 0), (["evaluate", "--pred"], 2)])
def test_main_keeps_the_exit_code_and_freezes_what_is_left(monkeypatch, capsys, args, code):
    monkeypatch.setattr(sys, "argv", ["medbench", *args])
    try:
        with pytest.raises(SystemExit) as stop:
            cli_main.main()
        assert stop.value.code == code
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    out = capsys.readouterr()
    assert ("medbench, version" in out.out) if code == 0 else ("Option '--pred' requires an argument" in out.err)


def test_a_process_exits_with_the_commands_code_and_all_of_its_output(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    proc = subprocess.run([sys.executable, "-m", "medbench_fast", "evaluate", "--pred", str(tmp_path / "pred"),
                           "--ref", str(tmp_path / "ref"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "no cases found" in proc.stderr and "Traceback" not in proc.stderr
