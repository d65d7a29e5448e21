"""``medbench hub``: tracked Hub tasks, model tracking, publishing runs to a dataset repo."""

from __future__ import annotations

from pathlib import Path

import click

from medbench_fast.cli.options import quiet_option


class NoSnapshot(click.ClickException):
    """Offline with no earlier snapshot: nothing to show, exit code 2."""

    exit_code = 2


def _config(config_path: str | None):
    from medbench_fast.config import ConfigError, load_config, validate

    try:
        return load_config(config_path)[0] if config_path else validate({}, source="defaults")
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _tasks(config):
    from medbench_fast.hub.tasks import tasks_from_config

    try:
        return tasks_from_config(config.leaderboard)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                             help="benchmark_config.yaml whose leaderboard.* keys apply.")

timeout_option = click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True, max=86400),
                              help="Seconds within which every Hub request must be answered in total "
                                   "(default: MEDBENCH_HUB_TIMEOUT, else 30).")


@click.group()
def hub() -> None:
    """Hugging Face Hub: track medical models per task, publish runs.

    Uses HF_ENDPOINT, HF_TOKEN (or the `hf auth login` store), HF_HUB_OFFLINE and HF_HOME
    like huggingface_hub itself; --timeout (or MEDBENCH_HUB_TIMEOUT) bounds every request (s).

    \b
    Examples:
      medbench hub tasks
      medbench hub track --config benchmark_config.yaml --task ct-organ-segmentation
      medbench hub publish runs/20261128T101500Z-3fa2c1 --repo my-org/ct-benchmark
    """


@hub.command()
@config_option
def tasks(config_path):
    """List the tracked tasks and their Hub filters.

    \b
    Examples:
      medbench hub tasks
      medbench hub tasks --config benchmark_config.yaml
    """
    for task in _tasks(_config(config_path)):
        filters = ", ".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in task.filters().items())
        click.echo(f"{task.name}\n  {task.description}\n  {filters}" if task.description else f"{task.name}\n  {filters}")


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    return f"{days} d {hours} h" if days else f"{hours} h {mins} min" if hours else f"{mins} min"


@hub.command()
@config_option
@click.option("--task", "task_name", help="Track only this task (default: all).")
@click.option("--offline", is_flag=True, help="Do not query the Hub: report from the last snapshot.")
@click.option("--cache-dir", type=click.Path(file_okay=False), envvar="MEDBENCH_HUB_CACHE", show_envvar=True,
              help="History and reports folder (default: leaderboard.cache_dir, else ~/.cache/medbench-fast/hub).")
@click.option("--runs", "runs", multiple=True, type=click.Path(file_okay=False),
              help="Run folder, or folder of runs, whose results join the report (default: output.dir).")
@timeout_option
@quiet_option
def track(config_path, task_name, offline, cache_dir, runs, timeout_s, quiet):
    """Query the Hub for each task's models, keep a history, write a report.

    Appends a snapshot to hub_history.parquet, writes leaderboard_report_<UTC time>.json
    (tasks, ranked models with metadata, joined by id and commit sha to benchmarked runs)
    and prints what changed since the previous snapshot. Offline (--offline,
    HF_HUB_OFFLINE=1, or the Hub unreachable) the last snapshot is used; with none, exit 2.

    \b
    Examples:
      medbench hub track
      medbench hub track --config benchmark_config.yaml --task brain-mri-segmentation
      medbench hub track --offline
      medbench hub track --timeout 5
    """
    from medbench_fast.hub.client import HubError, settings
    from medbench_fast.hub.tasks import select
    from medbench_fast.hub.tracking import NoSnapshotError, hub_cache_dir
    from medbench_fast.hub.tracking import track as run_track

    config = _config(config_path)
    try:
        chosen = select(_tasks(config), task_name)
    except ValueError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[1], param_hint="--task") from None
    roots = [Path(r) for r in runs] or [Path(config.output.dir)]
    folder = hub_cache_dir(cache_dir or config.leaderboard.cache_dir)
    try:
        result = run_track(chosen, hub=settings(timeout_s), cache_dir=folder, offline=offline, run_roots=roots,
                           progress=False if quiet else None)
    except NoSnapshotError as exc:
        raise NoSnapshot(str(exc)) from None
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    if result.source == "snapshot":
        click.echo(f"{result.reason}: using the snapshot of {result.snapshot} ({_age(result.age_s)} old)", err=True)
    for task in chosen:
        rows = result.models[task.name]
        change = result.changes.get(task.name)
        line = f"{task.name}: {len(rows)} model(s)"
        if change:
            line += (f"; {len(change['new'])} new, {len(change['updated'])} new revision(s), "
                     f"{len(change['removed'])} removed")
        click.echo(line)
        if change and not quiet:
            sha = {r["id"]: r["sha"] for r in rows}
            for model_id in change["new"]:
                click.echo(f"  + {model_id} @ {str(sha[model_id])[:12]}")
            for item in change["updated"]:
                click.echo(f"  ~ {item['id']}: {str(item['from'])[:12]} -> {str(item['to'])[:12]}")
            for model_id in change["removed"]:
                click.echo(f"  - {model_id}")
    click.echo(f"report: {result.report}")


@hub.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--repo", "repo_id", help="Dataset repo owner/name (default: leaderboard.hub_repo of --config).")
@config_option
@click.option("--private", is_flag=True, help="Create the dataset repo as private.")
@click.option("--license", "license_", default="other", show_default=True, help="License in the dataset card.")
@click.option("--dry-run", is_flag=True, help="Print the files and the dataset card; upload nothing.")
@timeout_option
def publish(run_dir, repo_id, config_path, private, license_, dry_run, timeout_s):
    """Upload a run folder to a Hub dataset repo in one commit.

    Uploads the Parquet tables, summary.json, leaderboard.html, run.json (paths made
    relative, no home folder, no token) and a dataset card whose configs show the tables
    in the Hub's dataset viewer. Publishing the same run again makes no new commit.

    \b
    Examples:
      medbench hub publish runs/try1 --repo my-org/ct-benchmark --dry-run
      medbench hub publish runs/try1 --repo my-org/ct-benchmark --private
    """
    from medbench_fast.hub.client import HubError, settings
    from medbench_fast.hub.publish import publish as run_publish

    repo_id = repo_id or (_config(config_path).leaderboard.hub_repo if config_path else None)
    if not repo_id or repo_id.count("/") != 1:
        raise click.BadParameter(f"expected a dataset repo owner/name, got {repo_id!r}", param_hint="--repo")
    try:
        result = run_publish(run_dir, repo_id, hub=settings(timeout_s), private=private, license_=license_, dry_run=dry_run)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    if dry_run:
        click.echo(f"would publish to dataset {repo_id}:")
        for name, data in result.files.items():
            click.echo(f"  {name}  ({len(data):,} bytes)")
        click.echo("\n" + result.card)
    elif result.changed:
        click.echo(f"published {len(result.files)} files to dataset {repo_id}: commit {result.commit}")
    else:
        click.echo(f"dataset {repo_id} already holds this run: no new commit (head {result.commit})")
