"""``leaderboard.html``: one self-contained page (inline CSS, JS and SVG; no network access).

The page is rendered by Jinja2 templates (``templates/*.html``) with autoescaping on: every
string from data (model names, case ids, labels, errors, versions, config text) is escaped
by the engine, and no template marks data as safe. Only the package's own stylesheet and
script go in as they are. A Content-Security-Policy allows only that inline style and script
(by hash) and blocks every request, so injected markup could neither run nor load anything.
"""

from __future__ import annotations

import base64
import functools
import hashlib

import jinja2
from markupsafe import Markup

from medbench_fast.report import sections as sec
from medbench_fast.report.charts import colour


@functools.cache
def environment() -> jinja2.Environment:
    """The template environment of the report: autoescaped, strict about undefined names."""
    return jinja2.Environment(loader=jinja2.PackageLoader("medbench_fast.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


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
