"""``medbench compare``: put several runs side by side, with paired tests between their models."""

from __future__ import annotations

from pathlib import Path

import click


def _run_names(run_dirs: tuple[str, ...]) -> list[str]:
    """Folder names, numbered where two runs share one."""
    names = [Path(d).resolve().name for d in run_dirs]
    return [f"{n}#{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _mean(stats: dict | None, digits: int) -> str:
    if not stats or stats.get("mean") is None:
        return "-"
    ci = stats.get("ci95")
    return f"{stats['mean']:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def print_comparison(summary: dict) -> None:
    """Models ranked by mean Dice, then the significant paired differences."""
    models = sorted(summary["cases"], key=lambda m: -((summary["models"].get(m, {}).get("dice") or {}).get("mean") or -1))
    header = f"{'model':<34} {'cases':>7} {'Dice [95% CI]':>24} {'HD95 mm':>10} {'p50 ms':>9}"
    click.echo(header)
    click.echo("-" * len(header))
    for model in models:
        stats = summary["models"].get(model, {})
        c = summary["cases"][model]
        stages = summary["latency"]["stages"].get(model, {})
        stage = stages.get("inference") or stages.get("total") or {}
        p50 = f"{stage['p50_ms']:.1f}" if stage.get("p50_ms") is not None else "-"
        click.echo(f"{model[:34]:<34} {c['successful']:>3}/{c['cases']:<3} {_mean(stats.get('dice'), 3):>24} "
                   f"{_mean(stats.get('hd95'), 2).split(' ')[0]:>10} {p50:>9}")
    scope = summary.get("comparison_scope") or {}
    labels = scope.get("labels") or {}
    if labels.get("dropped"):
        click.echo(f"\nlabels compared: {', '.join(map(str, labels['compared'])) or 'none'}; left out: "
                   + "; ".join(f"{run}: {', '.join(map(str, ls))}" for run, ls in labels["dropped"].items()))
    tested = [c for c in summary["comparisons"] if c.get("tested", True)]
    for c in tested:
        if c.get("cases_only_a") or c.get("cases_only_b"):
            click.echo(f"{c['metric']}: {c['model_a']} vs {c['model_b']}: {c['n']} paired cases used, "
                       f"{c['cases_only_a'] + c['cases_only_b']} dropped (in one model only)")
    significant = [c for c in tested if c["significant"]]
    if significant:
        click.echo("")
        for c in significant:
            differ = f"  [conventions differ: {c['conventions_differ']}]" if c.get("conventions_differ") else ""
            click.echo(f"{c['metric']}: {c['better']} better than {c['worse']} (p = {c['p_holm']:.3g}, Holm, "
                       f"n = {c['n']}){differ}")
    untested = [c for c in summary["comparisons"] if not c.get("tested", True)]
    if untested:
        click.echo("")
        for c in untested:
            click.echo(f"{c['metric']}: {c['model_a']} vs {c['model_b']} not tested: {c['reason']} "
                       f"(--allow-different-conventions tests it anyway)")


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Also write the merged reports (summary.json, leaderboard.html, CSVs) to this folder.")
@click.option("--worst-distance", type=click.Choice(["inf", "diagonal"]), default="inf", show_default=True,
              help="Keep +inf distances apart, or replace them by the image diagonal (BraTS).")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Score threshold of the classification metrics (case-level models).")
@click.option("--allow-different-conventions", "allow_conflicts", is_flag=True,
              help="Also test metrics whose conventions (surface mode, HD95 mode, NSD tolerance, both-empty "
                   "policy) differ between runs; the difference is printed beside the result.")
def compare(run_dirs, out_dir, worst_distance, threshold, allow_conflicts):
    """Compare the models of two or more run folders side by side.

    Runs are merged; a model name found in several runs becomes "MODEL (RUN)", where RUN
    is the run folder's name. Models are compared on the cases they share with a
    Wilcoxon signed-rank test per pair, Holm-corrected across pairs. Models of different
    runs are compared only on the labels every run scored, and a metric is tested only
    when both runs computed it under the same conventions; what was left out, and why,
    is printed.

    \b
    Examples:
      medbench compare runs/baseline runs/candidate
      medbench compare runs/a runs/b runs/c --out comparison/
    """
    from medbench_fast.report.run import load_run, merge_runs
    from medbench_fast.report.tables import summarize, write_tables_reports

    if len(run_dirs) < 2:
        raise click.UsageError("give at least two run folders")
    from medbench_fast.cli.errors import InputError
    from medbench_fast.runner.identity import holds_run
    from medbench_fast.store.parts import StoreError

    if out_dir and holds_run(Path(out_dir)):
        raise InputError(f"{out_dir}: holds a run (run.json); --out writes the comparison's reports and would "
                         f"replace that run's: choose another folder")

    try:
        tables = merge_runs([load_run(d) for d in run_dirs], _run_names(run_dirs))
    except (FileNotFoundError, StoreError, ValueError) as exc:
        raise InputError(str(exc)) from None
    summary, _ = summarize(tables, worst_distance=worst_distance, threshold=threshold, allow_conflicts=allow_conflicts)
    print_comparison(summary)
    if out_dir:
        files = write_tables_reports(tables, out_dir, worst_distance=worst_distance, threshold=threshold,
                                     allow_conflicts=allow_conflicts)
        click.echo(f"reports: {', '.join(str(p) for p in files.values())}")
