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
    significant = [c for c in summary["comparisons"] if c["significant"]]
    if significant:
        click.echo("")
        for c in significant:
            click.echo(f"{c['metric']}: {c['better']} better than {c['worse']} (p = {c['p_holm']:.3g}, Holm, n = {c['n']})")


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Also write the merged reports (summary.json, leaderboard.html, CSVs) to this folder.")
@click.option("--worst-distance", type=click.Choice(["inf", "diagonal"]), default="inf", show_default=True,
              help="Keep +inf distances apart, or replace them by the image diagonal (BraTS).")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Score threshold of the classification metrics (case-level models).")
def compare(run_dirs, out_dir, worst_distance, threshold):
    """Compare the models of two or more run folders side by side.

    Runs are merged; a model name found in several runs becomes "MODEL (RUN)", where RUN
    is the run folder's name. Models are compared on the cases they share with a
    Wilcoxon signed-rank test per pair, Holm-corrected across pairs.

    \b
    Examples:
      medbench compare runs/baseline runs/candidate
      medbench compare runs/a runs/b runs/c --out comparison/
    """
    from medbench_fast.report.run import load_run, merge_runs
    from medbench_fast.report.tables import summarize, write_tables_reports

    if len(run_dirs) < 2:
        raise click.UsageError("give at least two run folders")
    try:
        tables = merge_runs([load_run(d) for d in run_dirs], _run_names(run_dirs))
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None
    summary, _ = summarize(tables, worst_distance=worst_distance, threshold=threshold)
    print_comparison(summary)
    if out_dir:
        files = write_tables_reports(tables, out_dir, worst_distance=worst_distance, threshold=threshold)
        click.echo(f"reports: {', '.join(str(p) for p in files.values())}")
