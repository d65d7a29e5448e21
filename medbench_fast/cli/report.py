"""``medbench report``: rebuild a run folder's reports from its Parquet files."""

from __future__ import annotations

from pathlib import Path

import click

_WHAT = {"csv": "results.csv and cases.csv", "json": "summary.json", "html": "leaderboard.html"}


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--csv", "want_csv", is_flag=True, help="Write results.csv (one row per model, case, label) and cases.csv.")
@click.option("--json", "want_json", is_flag=True, help="Write summary.json.")
@click.option("--html", "want_html", is_flag=True, help="Write leaderboard.html (self-contained).")
@click.option("--worst-distance", type=click.Choice(["inf", "diagonal"]), default=None,
              help="Keep +inf distances apart, or replace them by the image diagonal (BraTS) [default: the run's, else inf].")
@click.option("--threshold", default=None, type=click.FloatRange(0, 1),
              help="Score threshold of the classification metrics (case-level models) [default: the run's, else 0.5].")
def report(run_dir, want_csv, want_json, want_html, worst_distance, threshold):
    """Write the reports of RUN_DIR from its Parquet files and run.json.

    With no format flag, every format is written. Reports are pure functions of the run's
    files: rebuilding them gives byte-identical output.

    \b
    Examples:
      medbench report results/
      medbench report results/ --html
      medbench report results/ --json --worst-distance diagonal
    """
    from medbench_fast.cli.errors import InputError
    from medbench_fast.report.tables import FORMATS, ReportsError, write_reports
    from medbench_fast.runner.finalize import rebuild_tables
    from medbench_fast.store.parts import StoreError
    from medbench_fast.store.run_info import read_run_json, record_reports

    chosen = tuple(f for f, on in zip(FORMATS, (want_csv, want_json, want_html)) if on) or FORMATS
    try:
        info = read_run_json(run_dir)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    recorded = info.get("options") or {}
    worst_distance = worst_distance or recorded.get("worst_distance") or "inf"
    threshold = threshold if threshold is not None else recorded.get("threshold", 0.5)
    for attempt in (1, 2):
        try:
            files = write_reports(run_dir, worst_distance=worst_distance, formats=chosen, threshold=threshold)
            break
        except ReportsError as exc:  # disk full, no permission: the previous reports are kept (atomic writes)
            if isinstance(exc.cause, FileNotFoundError):
                raise InputError(str(exc)) from None
            failed = exc.record()
            missing = set(failed["missing"]) | set((info.get("reports") or {}).get("missing") or ())
            record_reports(run_dir, {**failed, "missing": sorted(missing - set(failed["written"]))})
            raise click.ClickException(str(exc)) from None
        except (OSError, StoreError) as exc:  # a table deleted or corrupt: rebuilt from the parts when there are
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):  # disk full, no permission
                raise click.ClickException(f"{run_dir}: cannot write the reports: {exc.strerror or exc}") from None
            if attempt == 2 or not (Path(run_dir) / "parts").is_dir():
                raise InputError(str(exc)) from None
            click.echo(f"{exc}\nrebuilding the run's tables from {Path(run_dir) / 'parts'}", err=True)
            try:
                for path in rebuild_tables(run_dir):
                    click.echo(f"rebuilt {path}", err=True)
            except StoreError as again:
                raise InputError(f"{exc}; {again}") from None
    missing = set((info.get("reports") or {}).get("missing") or ()) - {p.name for p in files.values()}
    record_reports(run_dir, None if not missing else {**info["reports"], "missing": sorted(missing)})
    for path in files.values():
        click.echo(str(path))
