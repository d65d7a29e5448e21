"""``leaderboard.html``: one self-contained page (inline CSS, JS and SVG; no network access).

The page is rendered by Jinja2 templates (``templates/*.html``) with autoescaping on: every
string from data (model names, case ids, labels, errors, versions, config text) is escaped
by the engine, and no template marks data as safe. Only the package's own stylesheet and
script go in as they are. A Content-Security-Policy allows only that inline style and script
(by hash) and blocks every request, so injected markup could neither run nor load anything.

Compiling the templates costs 35-70 ms per process, so their compiled code is kept in the
user's cache (:func:`template_cache_dir`, Jinja2's bytecode cache: an entry is used only for
the same template source, Jinja2 and Python versions). The cache never fails a report: a
folder that cannot be created or written, or that other users could write (compiled code is
run), leaves the templates compiled in memory as before; entries are written under a unique
temporary name and renamed, so concurrent processes never read a partial one.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import stat
from pathlib import Path

import jinja2
from markupsafe import Markup

from medbench_fast.report import sections as sec
from medbench_fast.report.charts import colour


#: Environment variable naming the folder of compiled templates.
CACHE_ENV = "MEDBENCH_TEMPLATE_CACHE"


def template_cache_dir() -> Path:
    """``$MEDBENCH_TEMPLATE_CACHE``, else ``$XDG_CACHE_HOME/medbench-fast/templates``, else
    ``~/.cache/medbench-fast/templates`` (beside the volume and export caches; compiled code
    stays valid whatever data a run reads, as numba's does)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if not base.is_absolute():  # no home folder known ("~" left as it is): never the working folder
        raise RuntimeError(f"no user cache folder ({base})")
    return base / "medbench-fast" / "templates"


class TemplateCache(jinja2.FileSystemBytecodeCache):
    """Jinja2's file bytecode cache that never raises: an entry that cannot be read or is
    damaged is compiled again, one that cannot be written is not kept. Entry names carry the
    Jinja2 version (its compiled code calls Jinja2's runtime)."""

    def __init__(self, directory: Path):
        super().__init__(str(directory), f"jinja2-{jinja2.__version__}-%s.cache")

    def load_bytecode(self, bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # unreadable or damaged (a truncated checksum raises from pickle)
            bucket.reset()

    def dump_bytecode(self, bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:  # full, read-only or removed meanwhile: the next process compiles again
            pass


def clear_template_cache() -> tuple[Path | None, int]:
    """Delete every compiled template (of any Jinja2 version) of :func:`template_cache_dir`;
    the folder and the number of files removed (None, 0 when no cache folder is known)."""
    try:
        folder = template_cache_dir()
    except (RuntimeError, KeyError):
        return None, 0
    removed = 0
    for entry in folder.glob("jinja2-*.cache") if folder.is_dir() else ():
        try:
            entry.unlink()
            removed += 1
        except FileNotFoundError:  # another process removed it meanwhile
            pass
    return folder, removed


def _private_dir(path: Path) -> bool:
    """Create ``path`` (mode 0700) if needed; whether it is a folder of this user that no other
    user can write (compiled code from it is run)."""
    try:
        path.mkdir(mode=stat.S_IRWXU, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return stat.S_ISDIR(st.st_mode) and mine and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _bytecode_cache() -> TemplateCache | None:
    try:
        folder = template_cache_dir()
    except (RuntimeError, KeyError):  # no home folder to find
        return None
    return TemplateCache(folder) if _private_dir(folder) else None


@functools.cache
def environment() -> jinja2.Environment:
    """The template environment of the report: autoescaped, strict about undefined names, with
    compiled templates cached on disk where the cache folder allows it (module docstring)."""
    return jinja2.Environment(loader=jinja2.PackageLoader("medbench_fast.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, bytecode_cache=_bytecode_cache())


def _asset(name: str) -> str:
    """A file of the package's templates folder (the page's own stylesheet or script), as it is."""
    return environment().loader.get_source(environment(), name)[0]


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _subtitle(summary: dict) -> str:
    run = summary.get("run") or {}
    if "runs" in run:
        return "Comparison of runs " + ", ".join(map(str, run["runs"]))
    bits = [f"run {run.get('run_id')}"] if run.get("run_id") else []
    if run.get("started"):
        bits.append(f"{run.get('started')} \u2192 {run.get('finished') or ''}")
    bits.append(f"{summary.get('total_cases', 0)} case rows, {summary.get('successful_cases', 0)} successful")
    return " \u00b7 ".join(bits)


def render_leaderboard(summary: dict, per_case: dict, info: dict) -> str:
    """The page for a (JSON-safe) summary, per-case foreground means and the run's ``run.json``."""
    models = sec.ordered_models(summary)
    sections = [
        sec.leaderboard_section(summary, models), sec.comparison_section(summary),
        sec.per_label_section(summary, models), sec.distribution_section(per_case, models),
        sec.scatter_section(summary, models), sec.classification_section(summary, models),
        sec.latency_section(summary, models), sec.failures_section(summary, models), sec.environment_section(info),
    ]
    css, js = _asset("leaderboard.css"), _asset("leaderboard.js")
    return environment().get_template("leaderboard.html").render(
        csp=f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; "
            f"base-uri 'none'; form-action 'none'",
        title="medbench leaderboard", subtitle=_subtitle(summary),
        css=Markup(css), js=Markup(js),  # the package's own files, hashed into the CSP above
        legend=[(colour(i), m) for i, m in enumerate(models)], sections=[s for s in sections if s])
