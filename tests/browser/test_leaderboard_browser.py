"""``leaderboard.html`` in a real headless Chromium: loads offline, sorts, renders hostile names as text."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from report.run_builder import HOSTILE, MODELS, build_run

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MEDBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def leaderboard(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("browser-run")) / "leaderboard.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium; or set MEDBENCH_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1366, "height": 900}, device_scale_factor=1)
        yield context
        context.close()


@pytest.fixture
def page(browser, leaderboard):
    """The page, opened fresh, with everything it logged, requested or tried to pop up."""
    page = browser.new_page()
    seen = {"console": [], "errors": [], "requests": [], "dialogs": []}
    page.on("console", lambda m: seen["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.goto(leaderboard.as_uri())
    page.wait_for_load_state("load")
    page.seen = seen
    yield page
    page.close()


def _models(page) -> list[str]:
    return page.locator("#leaderboard-table tbody td.model").all_inner_texts()


def test_loads_offline_without_errors(page, leaderboard):
    page.wait_for_timeout(200)
    assert page.seen["errors"] == []
    assert [m for m in page.seen["console"] if m[0] in ("error", "warning")] == []
    assert page.seen["requests"] == [leaderboard.as_uri()]
    assert page.title() == "medbench leaderboard"


def test_header_click_reorders_rows(page):
    initial = _models(page)
    assert initial[0] == "reference-copy" and sorted(initial) == sorted(MODELS)
    header = page.locator("#leaderboard-table thead th", has_text="HD95")
    header.locator("button").click()
    by_hd95 = _models(page)
    assert header.get_attribute("aria-sort") == "ascending"
    assert by_hd95 == ["reference-copy", "fast-net", HOSTILE]
    header.locator("button").click()
    assert _models(page) == by_hd95[::-1]
    page.locator("#leaderboard-table thead th", has_text="p50").locator("button").click()
    assert _models(page) == [HOSTILE, "fast-net", "reference-copy"]


def test_rank_by_selects_the_ranking_metric(page):
    page.select_option("#rank-by", label="p50 ms")
    assert _models(page) == [HOSTILE, "fast-net", "reference-copy"]
    assert page.locator("#leaderboard-table tbody td.rank").all_inner_texts() == ["1", "2", "3"]
    page.select_option("#rank-by", label="Dice")
    assert _models(page)[0] == "reference-copy"


def test_hostile_names_render_as_text(page):
    page.wait_for_timeout(200)
    assert page.seen["dialogs"] == []
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1
    assert HOSTILE in _models(page)
    assert page.locator("td.error code").inner_text() == "pred: <script>alert('boom')</script> cannot be read"
    assert page.get_by_text("case_<b>999</b>", exact=True).count() == 1


def test_screenshots_laptop_and_phone(page, tmp_path):
    """Screenshots go to the test's tmp folder; with ``MEDBENCH_UPDATE_SCREENSHOTS=1`` they
    also replace the README's pictures in docs/."""
    update_docs = os.environ.get("MEDBENCH_UPDATE_SCREENSHOTS") == "1"
    for name, width, height in (("leaderboard.png", 1366, 900), ("leaderboard-phone.png", 390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        shot = tmp_path / name
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if update_docs:
            shutil.copy(shot, DOCS / name)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"page scrolls sideways at {width}px"


def test_comparison_page_loads_clean(browser, leaderboard, tmp_path):
    from medbench_fast.report.run import load_run, merge_runs
    from medbench_fast.report.tables import write_tables_reports

    run = load_run(leaderboard.parent)
    page_path = write_tables_reports(merge_runs([run, run], ["base", "next"]), tmp_path, formats=("html",))["html"]
    page = browser.new_page()
    problems, requests = [], []
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_path.as_uri())
    assert problems == [] and requests == [page_path.as_uri()]
    assert page.locator("#leaderboard-table tbody tr").count() == 2 * len(MODELS)
    assert page.locator("h3.run-name").all_inner_texts() == ["Run base", "Run next"]
    page.close()


def test_hostile_strings_run_nothing(browser, leaderboard, tmp_path):
    """Payloads in every data field of the page: no dialog, error or request; they show as text."""
    import json

    from report.hostile import poison

    from medbench_fast.report.html import render_leaderboard
    from medbench_fast.report.run import load_run
    from medbench_fast.report.tables import summarize

    run = load_run(leaderboard.parent)
    _, per_case = summarize(run)
    summary = json.loads((leaderboard.parent / "summary.json").read_text())
    summary, per_case, info, _shown = poison(summary, per_case, run.info)
    path = tmp_path / "hostile.html"
    path.write_text(render_leaderboard(summary, per_case, info), encoding="utf-8")
    page = browser.new_page()
    seen = {"dialogs": [], "problems": [], "requests": []}
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.on("console", lambda m: m.type in ("error", "warning") and seen["problems"].append(m.text))
    page.on("pageerror", lambda e: seen["problems"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    page.locator("#leaderboard-table thead th", has_text="p50").locator("button").click()
    page.wait_for_timeout(200)
    assert seen == {"dialogs": [], "problems": [], "requests": [path.as_uri()]}
    assert page.locator("img").count() == 0 and page.locator("script").count() == 1
    assert page.locator("[onerror], [onload], [onmouseover], textarea, iframe, object").count() == 0
    models = page.locator("#leaderboard-table tbody td.model").all_text_contents()
    assert sorted(models) == sorted(summary["cases"])
    assert page.locator("pre").text_content() == info["config"]["text"]
    page.close()
