"""The leaderboard's compiled templates kept in the user's cache: used, checked, never a failure."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile

import jinja2
import jinja2.bccache
import pytest

from medbench_fast.report import html
from medbench_fast.report.tables import write_reports


@pytest.fixture
def fresh_environment():
    """Each use builds the template environment again, as a new process would."""
    html.environment.cache_clear()
    yield lambda: html.environment.cache_clear()
    html.environment.cache_clear()


@pytest.fixture
def compiles(monkeypatch):
    """Templates Jinja2 compiled from source (not loaded from the bytecode cache)."""
    names = []
    original = jinja2.Environment.compile

    def counting(self, source, name=None, filename=None, raw=False, defer_init=False):
        names.append(name)
        return original(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    return names


def _page(run, out):
    shutil.copytree(run, out)
    (out / "leaderboard.html").unlink()
    write_reports(out, formats=("html",))
    return (out / "leaderboard.html").read_bytes()


def test_second_process_loads_compiled_templates(bench_run, tmp_path, fresh_environment, compiles):
    folder = html.template_cache_dir()
    assert folder == tmp_path / "template-cache"  # $MEDBENCH_TEMPLATE_CACHE
    first = _page(bench_run, tmp_path / "a")
    assert len(compiles) >= 2  # the page and the templates it imports
    entries = sorted(p.name for p in folder.iterdir())
    assert len(entries) == len(compiles) and all(n.startswith(f"jinja2-{jinja2.__version__}-") for n in entries)
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0
    fresh_environment()
    compiles.clear()
    assert _page(bench_run, tmp_path / "b") == first == (bench_run / "leaderboard.html").read_bytes()
    assert compiles == []


def test_changed_template_source_is_compiled_again(bench_run, tmp_path, fresh_environment, compiles, monkeypatch):
    _page(bench_run, tmp_path / "a")
    fresh_environment()
    compiles.clear()
    loader = jinja2.PackageLoader("medbench_fast.report", "templates")
    original = loader.get_source

    def edited(environment, name):
        source, filename, uptodate = original(environment, name)
        return (source + "<!-- edited -->\n" if name == "leaderboard.html" else source), filename, uptodate

    monkeypatch.setattr(jinja2.PackageLoader, "get_source", lambda self, env, name: edited(env, name))
    page = _page(bench_run, tmp_path / "b")
    assert compiles == ["leaderboard.html"] and page.endswith(b"<!-- edited -->\n")


def test_damaged_entries_are_compiled_again(bench_run, tmp_path, fresh_environment, compiles):
    first = _page(bench_run, tmp_path / "a")
    n = len(compiles)
    for i, entry in enumerate(sorted(html.template_cache_dir().iterdir())):
        data = entry.read_bytes()
        entry.write_bytes([b"", data[:5], data[:30], data[:-7], b"\x00" * len(data)][i % 5])
    fresh_environment()
    compiles.clear()
    assert _page(bench_run, tmp_path / "b") == first
    assert len(compiles) == n


def test_default_folder_is_the_users_cache_and_never_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("MEDBENCH_TEMPLATE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert html.template_cache_dir() == tmp_path / "xdg" / "medbench-fast" / "templates"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert html.template_cache_dir() == tmp_path / "home" / ".cache" / "medbench-fast" / "templates"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(html.Path, "home", classmethod(lambda cls: cls("~")))  # no home folder known
    with pytest.raises(RuntimeError):
        html.template_cache_dir()
    assert html._bytecode_cache() is None and not (tmp_path / "~").exists()


@pytest.mark.parametrize("how", ["a file", "group-writable", "cannot write"])
def test_unusable_cache_folder_never_fails_the_report(bench_run, tmp_path, fresh_environment, compiles, monkeypatch,
                                                      how):
    """A cache folder that cannot be created, that other users could write, or that refuses
    writes (full, read-only) leaves the page rendered as without a cache."""
    expected = (bench_run / "leaderboard.html").read_bytes()
    if how == "a file":
        (tmp_path / "plain").write_text("not a folder")
        monkeypatch.setenv("MEDBENCH_TEMPLATE_CACHE", str(tmp_path / "plain" / "templates"))
    elif how == "group-writable":
        html.template_cache_dir().mkdir(parents=True)
        os.chmod(html.template_cache_dir(), 0o770)
    else:
        def full(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(tempfile, "NamedTemporaryFile", full)
    assert _page(bench_run, tmp_path / "a") == expected
    folder = html.template_cache_dir()
    assert not folder.is_dir() or not list(folder.iterdir())
    assert compiles


def test_concurrent_processes_share_the_cache(bench_run, tmp_path):
    """Processes rendering at once, each compiling and writing entries while the others read
    them, all write the same page and leave only whole entries."""
    code = """
import shutil, sys
from pathlib import Path
from medbench_fast.report import html
from medbench_fast.report.tables import write_reports
out = Path(sys.argv[2])
shutil.copytree(sys.argv[1], out)
for _ in range(5):
    html.environment.cache_clear()  # as a new process: reads (or compiles and writes) the entries again
    write_reports(out, formats=("html",))
"""
    procs = [subprocess.Popen([sys.executable, "-c", code, str(bench_run), str(tmp_path / f"p{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    expected = (bench_run / "leaderboard.html").read_bytes()
    assert all((tmp_path / f"p{i}" / "leaderboard.html").read_bytes() == expected for i in range(3))
    entries = list(html.template_cache_dir().iterdir())
    assert entries and all(e.name.endswith(".cache") for e in entries)  # no temporary file left
    for entry in entries:
        with open(entry, "rb") as fh:
            assert fh.read(len(jinja2.bccache.bc_magic)) == jinja2.bccache.bc_magic


def test_cache_clear_templates_removes_every_compiled_template(bench_run, tmp_path, fresh_environment, compiles):
    from click.testing import CliRunner

    from medbench_fast.cli.main import cli

    _page(bench_run, tmp_path / "a")
    folder = html.template_cache_dir()
    (folder / "jinja2-0.0.1-old.cache").write_bytes(b"an entry of another Jinja2 version")
    (folder / "notes.txt").write_text("not ours")
    kept = len(list(folder.glob("jinja2-*.cache")))
    args = ["cache", "clear", "--cache-dir", str(tmp_path / "volumes")]
    assert "compiled templates" not in CliRunner().invoke(cli, args).output  # only when asked
    assert len(list(folder.glob("jinja2-*.cache"))) == kept
    result = CliRunner().invoke(cli, [*args, "--templates"])
    assert result.exit_code == 0, result.output
    assert f"removed {kept} compiled templates in {folder}" in result.output
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    fresh_environment()
    compiles.clear()
    assert _page(bench_run, tmp_path / "b") == (bench_run / "leaderboard.html").read_bytes()
    assert compiles  # compiled again, and kept again
