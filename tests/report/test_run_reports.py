"""Reports of a realistic multi-model run folder: content, determinism, escaping, CLI."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import json
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.stats
from click.testing import CliRunner
from markupsafe import escape as h
from report.run_builder import HOSTILE, MODELS

from medbench_fast.cli.main import cli
from medbench_fast.report.run import load_run, merge_runs
from medbench_fast.report.stats import holm
from medbench_fast.report.tables import (
    _json_safe,
    build_summary,
    neutralise_table,
    summarize,
    summary_json,
    write_reports,
)

REPORTS = ("results.csv", "cases.csv", "summary.json", "leaderboard.html")


def test_summary_sections_and_seed_fields(bench_run):
    s = json.loads((bench_run / "summary.json").read_text())
    cases = pq.read_table(bench_run / "cases.parquet").to_pylist()
    ok = [c for c in cases if c["success"]]
    assert (s["total_cases"], s["successful_cases"]) == (len(cases), len(ok))
    assert s["success_rate"] == pytest.approx(len(ok) / len(cases))
    times = np.array([c["inference_s"] for c in ok])
    assert s["avg_inference_time"] == pytest.approx(times.mean())
    assert s["std_inference_time"] == pytest.approx(times.std(ddof=1))
    assert s["cases"][HOSTILE]["failed"] == 1 and s["cases"][HOSTILE]["failures"][0]["case_id"] == "case_<b>999</b>"
    assert set(s["models"]) == set(MODELS) == set(s["classification"]) == set(s["latency"]["profiles"])
    dice = s["per_label"]["fast-net"]["1"]["dice"]
    assert dice["ci95"][0] <= dice["mean"] <= dice["ci95"][1]
    assert s["run_id"] and s["run"]["started"] and s["conventions"]["surface_mode"] == "voxel"
    assert set(s["nnunet"]["fast-net"]) == {"metric_per_case", "mean", "foreground_mean"}
    assert "samples_ms" not in s["latency"]["profiles"]["fast-net"][0]


def test_summary_json_parses_as_pythons_indented_encoding(bench_run):
    """summary.json holds what ``json.dumps(indent=2, sort_keys=True)`` would: the same parsed
    content, keys sorted; objects indented, each per-case entry on a line of its own."""
    text = (bench_run / "summary.json").read_text()
    summary = _json_safe(build_summary(bench_run))
    assert json.loads(text) == json.loads(json.dumps(summary, indent=2, sort_keys=True, allow_nan=False))
    assert text == summary_json(summary)
    lines = text.splitlines()
    assert lines[0] == "{" and lines[-1] == "}" and text.endswith("}\n")
    top = [line for line in lines if re.match(r'^  "', line)]
    assert [json.loads("{" + line.rstrip(",").split(": ")[0] + ": 0}") for line in top]  # one top-level key a line
    assert [line.split('"')[1] for line in top] == sorted(summary)
    per_case = summary["nnunet"][min(summary["nnunet"])]["metric_per_case"]  # the first model in the file
    entries = [line.strip().rstrip(",") for line in lines if line.startswith(" " * 8 + '{"metrics": ')]
    assert len(entries) >= len(per_case) > 1
    assert [json.loads(e) for e in entries[:len(per_case)]] == per_case


@pytest.mark.parametrize("value", [
    {}, [], {"a": []}, {"a": {}}, {"b": 1, "a": [1, "x", None, True, 2.5]},
    {"z": [{"y": 1, "x": [1, 2]}, [3, {"k": "v"}], 4], "a": {"nested": {"deeper": [[], {}]}}},
    {"text": 'quote " backslash \\ newline \n tab \t nul \x00 unicode \u00e9\u2603 <b>&amp;</b>'},
    {10: "int keys", 9: {"x": 1}}, {"labels": {2: "a", 10: [{"b": 3}]}},
])
def test_summary_json_is_valid_json_of_any_summary(value):
    """Any JSON-safe value comes back equal, sorted as ``sort_keys`` sorts, whatever it nests."""
    text = summary_json(value)
    assert json.loads(text) == json.loads(json.dumps(value, sort_keys=True))
    assert text.endswith("\n") and json.loads(text) == json.loads(text.replace("\n", " "))


def test_json_safe_replaces_every_non_finite_float_and_keeps_the_rest():
    nan, inf = float("nan"), float("inf")
    value = {"a": [1.5, -0.0, nan, inf, -inf, np.float64(nan), np.float64(2.5), np.float64(-inf)],
             "b": (3, True, None, "inf", np.int64(4)), "c": {"d": {"e": inf}}, "f": []}
    safe = _json_safe(value)
    assert safe == {"a": [1.5, -0.0, None, "inf", "-inf", None, 2.5, "-inf"], "b": [3, True, None, "inf", 4],
                    "c": {"d": {"e": "inf"}}, "f": []}
    assert [type(v) for v in safe["b"]] == [int, bool, type(None), str, np.int64]
    assert str(safe["a"][1]) == "-0.0" and type(safe["a"][6]) is np.float64


def test_neutralise_table_prefixes_formula_cells_of_string_columns_only():
    import pyarrow as pa

    table = pa.table({"s": ["=1+1", "+a", "-1", "@x", "\tt", "\rr", "ok", None, "", "a=b"],
                      "l": pa.array(["=x"] * 10, pa.large_string()), "n": list(range(10)),
                      "safe": ["a"] * 10})
    got = neutralise_table(table)
    assert got.column("s").to_pylist() == ["'=1+1", "'+a", "'-1", "'@x", "'\tt", "'\rr", "ok", None, "", "a=b"]
    assert got.column("l").to_pylist() == ["'=x"] * 10 and got.schema == table.schema
    assert got.column("n").equals(table.column("n")) and got.column("safe").equals(table.column("safe"))
    safe = table.select(["n", "safe"])
    assert neutralise_table(safe) is safe


def test_summary_json_refuses_nan():
    """Strict JSON: a value not made JSON-safe is an error, never a ``NaN`` token."""
    with pytest.raises(ValueError):
        summary_json({"a": [float("nan")]})
    with pytest.raises(ValueError):
        summary_json({"a": {"b": [{"c": float("inf")}]}})


def test_model_means_are_per_case_foreground_means(bench_run):
    s = json.loads((bench_run / "summary.json").read_text())
    rows = [r for r in pq.read_table(bench_run / "metrics.parquet").to_pylist() if r["model"] == "fast-net" and r["label"]]
    per_case = {}
    for r in rows:
        per_case.setdefault(r["case_id"], []).append(r["dice"])
    expected = np.mean([np.mean(v) for v in per_case.values()])
    assert s["models"]["fast-net"]["dice"]["mean"] == pytest.approx(expected)
    assert s["models"]["fast-net"]["cases"] == len(per_case)


def test_latency_stages_match_numpy(bench_run):
    s = json.loads((bench_run / "summary.json").read_text())
    cases = [c for c in pq.read_table(bench_run / "cases.parquet").to_pylist() if c["model"] == "fast-net" and c["success"]]
    inf = np.array([c["inference_s"] for c in cases]) * 1e3
    stage = s["latency"]["stages"]["fast-net"]["inference"]
    assert stage["count"] == len(cases)
    assert [stage[f"p{q}_ms"] for q in (50, 90, 95, 99)] == pytest.approx(np.percentile(inf, [50, 90, 95, 99]))
    assert stage["throughput_per_s"] == pytest.approx(len(cases) / (inf.sum() / 1e3))
    assert "load" in s["latency"]["stages"]["fast-net"] and "total" in s["latency"]["stages"]["fast-net"]


def test_comparisons_match_scipy_and_holm(bench_run):
    summary, per_case = summarize(load_run(bench_run))
    dice = [c for c in summary["comparisons"] if c["metric"] == "dice"]
    assert len(dice) == 3
    for c in dice:
        common = sorted(set(per_case[c["model_a"]]) & set(per_case[c["model_b"]]))
        a = [per_case[c["model_a"]][k]["dice"] for k in common]
        b = [per_case[c["model_b"]][k]["dice"] for k in common]
        assert c["p_value"] == pytest.approx(scipy.stats.wilcoxon(a, b).pvalue)
        assert c["mean_diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert [c["p_holm"] for c in dice] == pytest.approx(holm([c["p_value"] for c in dice]))
    best = {(c["better"], c["worse"]) for c in dice if c["significant"]}
    assert ("reference-copy", "fast-net") in best and ("fast-net", HOSTILE) in best
    hd95 = {(c["better"], c["worse"]) for c in summary["comparisons"] if c["metric"] == "hd95" and c["significant"]}
    assert ("fast-net", HOSTILE) in hd95  # lower HD95 is better


def test_classification_section(bench_run):
    s = json.loads((bench_run / "summary.json").read_text())
    c = s["classification"]["reference-copy"]["ene"]
    assert c["positives"] + c["negatives"] == 40 and c["auc"] > 0.9
    assert c["at_threshold"]["threshold"] == 0.5 and c["at_youden"]["threshold"] is not None
    other = build_summary(bench_run, threshold=0.7)["classification"]["reference-copy"]["ene"]
    assert other["at_threshold"]["threshold"] == 0.7


def test_seed_cases_csv(bench_run):
    rows = list(csv.DictReader((bench_run / "cases.csv").open()))
    assert list(rows[0]) == ["case_id", "model", "inference_time", "success", "image_shape", "seg_shape"]
    assert len(rows) == pq.read_table(bench_run / "cases.parquet").num_rows
    ok = next(r for r in rows if r["model"] == "fast-net")
    assert ok["success"] == "True" and ok["image_shape"] == ok["seg_shape"] == "(16, 48, 48)"
    assert float(ok["inference_time"]) > 0
    failed = next(r for r in rows if r["success"] == "False")
    assert failed["inference_time"] == "" and failed["image_shape"] == ""


def test_rebuild_is_byte_identical(bench_run, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("metrics.parquet", "cases.parquet", "scores.parquet", "latency.parquet", "run.json"):
        shutil.copy(bench_run / name, copy / name)
    write_reports(copy)
    for name in REPORTS:
        assert (copy / name).read_bytes() == (bench_run / name).read_bytes(), name


def test_formats_and_options(bench_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(bench_run, copy)
    for name in REPORTS:
        (copy / name).unlink()
    files = write_reports(copy, formats=("json",), worst_distance="diagonal")
    assert set(files) == {"summary"} and not (copy / "leaderboard.html").exists()
    assert json.loads(files["summary"].read_text())["conventions"]["worst_distance"] == "diagonal"
    with pytest.raises(ValueError, match="formats"):
        write_reports(copy, formats=("pdf",))
    with pytest.raises(ValueError, match="worst_distance"):
        write_reports(copy, worst_distance="max")


def test_html_escapes_every_data_string(bench_run):
    page = (bench_run / "leaderboard.html").read_text()
    assert HOSTILE not in page and "<script>alert" not in page and "case_<b>" not in page
    assert h(HOSTILE) in page and h("case_<b>999</b>") in page
    assert re.findall(r"<img\b", page) == [] and len(re.findall(r"<script\b", page)) == 1
    assert not re.search(r"https?://|src=\"|@import|url\(", page.replace(h(HOSTILE), ""))


def test_html_csp_hashes_match_inline_code(bench_run):
    page = (bench_run / "leaderboard.html").read_text()
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1))
    assert "default-src 'none'" in csp
    for tag in ("style", "script"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL).group(1)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in csp


def test_html_sections_present(bench_run):
    page = (bench_run / "leaderboard.html").read_text()
    for ident in ("leaderboard", "comparisons", "labels", "distributions", "tradeoff", "classification", "latency",
                  "failures", "environment"):
        assert f'<section id="{ident}">' in page
    assert page.count('<tr data-model="') == len(MODELS)
    assert "better than" in page and "CPUExecutionProvider" in page


def test_merge_runs_renames_shared_models(bench_run, tmp_path):
    run = load_run(bench_run)
    merged = merge_runs([run, run], ["old", "new"])
    models = set(merged.cases.column("model").to_pylist())
    assert models == {f"{m} ({n})" for m in MODELS for n in ("old", "new")}
    assert merged.metrics.num_rows == 2 * run.metrics.num_rows and merged.scores.num_rows == 2 * run.scores.num_rows
    assert set(merged.info["runs"]) == {"old", "new"}
    with pytest.raises(ValueError, match="names"):
        merge_runs([run, run], ["same", "same"])


def test_report_cli(bench_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(bench_run, copy)
    (copy / "leaderboard.html").unlink()
    result = CliRunner().invoke(cli, ["report", str(copy), "--html"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (copy / "leaderboard.html").read_bytes() == (bench_run / "leaderboard.html").read_bytes()
    result = CliRunner().invoke(cli, ["report", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 2 and "metrics.parquet" in result.output


def test_compare_cli(bench_run, tmp_path):
    other = tmp_path / "candidate"
    shutil.copytree(bench_run, other)
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["compare", str(bench_run), str(other), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "reference-copy (candidate)" in result.output and "better than" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["run"]["runs"]) == {"run", "candidate"}
    assert (out / "leaderboard.html").exists()
    result = CliRunner().invoke(cli, ["compare", str(bench_run)], catch_exceptions=False)
    assert result.exit_code == 2 and "two run folders" in result.output


def test_compare_out_onto_a_run_folder_is_refused(bench_run, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(bench_run, first)
    shutil.copytree(bench_run, second)
    before = {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()}
    for out in (first, second):
        result = CliRunner().invoke(cli, ["compare", str(first), str(bench_run), "--out", str(out)],
                                    catch_exceptions=False)
        assert result.exit_code == 2, result.output
        assert f"{out}: holds a run (run.json)" in result.output and "choose another folder" in result.output
    assert {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("command", ["report", "compare"])
def test_help_has_examples(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Examples:" in result.output
    assert command in CliRunner().invoke(cli, ["--help"]).output


def test_evaluate_run_writes_every_report(tmp_path):
    from medbench_fast.demo import write_dataset
    from medbench_fast.runner.evaluate import evaluate_folders

    folders = write_dataset(tmp_path / "data", n_cases=2)
    result = evaluate_folders(folders["preds"], folders["labels"], tmp_path / "run", progress=False, model="demo")
    assert {"csv", "cases_csv", "summary"} <= set(result.files)
    s = json.loads(result.files["summary"].read_text())
    assert s["avg_inference_time"] is None and s["classification"] == {} and s["comparisons"] == []
    assert s["latency"]["stages"]["demo"]["total"]["count"] == 2
    page = write_reports(result.run_dir, formats=("html",))["html"].read_text()
    assert '<section id="leaderboard">' in page and "total stage" in page
