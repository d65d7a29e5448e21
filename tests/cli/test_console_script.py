"""The ``medbench`` console script: ``main`` runs the click group, keeps its exit code and output,
and leaves the process's objects frozen so that the exit skips the last cyclic collection."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest
from process_hooks import evaluate_with_hook

from medbench_fast.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]


def test_the_console_script_and_python_m_run_main():
    scripts = (ROOT / "pyproject.toml").read_text().split("[project.scripts]", 1)[1].split("[", 1)[0]
    assert scripts.strip() == 'medbench = "medbench_fast.cli.main:main"'
    assert "from medbench_fast.cli.main import main" in (ROOT / "medbench_fast" / "__main__.py").read_text()


@pytest.mark.parametrize("args, code", [(["--version"], 0), (["evaluate", "--pred"], 2)])
def test_main_keeps_the_exit_code_and_freezes_what_is_left(monkeypatch, capsys, args, code):
    monkeypatch.setattr(sys, "argv", ["medbench", *args])
    monkeypatch.setattr(cli_main, "_OWNS_PROCESS", False)  # main() sets it: restored after this test
    try:
        with pytest.raises(SystemExit) as stop:
            cli_main.main()
        assert stop.value.code == code
        assert gc.get_freeze_count() > 0 and cli_main._OWNS_PROCESS
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


def test_startup_done_freezes_only_in_the_medbench_process(monkeypatch):
    gc.unfreeze()
    cli_main.startup_done()  # an in-process caller (this test session): the collector as it is
    assert gc.get_freeze_count() == 0
    monkeypatch.setattr(cli_main, "_OWNS_PROCESS", True)
    try:
        cli_main.startup_done()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_evaluate_process_runs_its_engine_on_frozen_startup_objects(tmp_path):
    marker = tmp_path / "frozen.txt"
    proc = evaluate_with_hook(tmp_path, "import gc, os\n"
                                        "import medbench_fast.runner.pipeline as pipeline\n"
                                        "_execute = pipeline.execute\n"
                                        "def execute(*args, **kwargs):\n"
                                        "    with open(os.environ['MARKER'], 'w') as f:\n"
                                        "        f.write(str(gc.get_freeze_count()))\n"
                                        "    return _execute(*args, **kwargs)\n"
                                        "pipeline.execute = execute\n", MARKER=str(marker))
    assert proc.returncode == 0, proc.stderr
    assert int(marker.read_text()) > 1000  # numba's, pyarrow's and the project's objects
