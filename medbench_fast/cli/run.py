"""``medbench run``: benchmark the configured models on the configured dataset."""

from __future__ import annotations

from pathlib import Path

import click

from medbench_fast.cli.errors import finish, stop_unless_whole
from medbench_fast.cli.options import cache_dir_option, make_cache, no_cache_option, quiet_option


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="benchmark_config.yaml (optional with --resume: the run's own config is used).")
@click.option("--image-dir", type=click.Path(file_okay=False), help="Overrides dataset.image_dir.")
@click.option("--seg-dir", type=click.Path(file_okay=False), help="Overrides dataset.seg_dir.")
@click.option("--max-cases", type=click.IntRange(min=1), help="Overrides dataset.max_cases.")
@click.option("--models", "model_names", help="Comma-separated model names to run (default: all).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder (default: output.dir/<run id>).")
@click.option("--provider", "providers", help="Overrides benchmark.providers, e.g. cuda,cpu.")
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False),
              help="Finish the run recorded in this folder, with its recorded settings and paths; finished "
                   "(model, case) pairs are skipped. A --config that changes the run's fingerprint is refused.")
@click.option("--overwrite", is_flag=True, help="Replace the run that --out already holds.")
@click.option("--executor", type=click.Choice(["local", "processes", "ray"]),
              help="Where cases run: this process (local, default), worker processes, or Ray actors "
                   "[default: benchmark.executor].")
@click.option("--gpus", help="Workers pinned to these GPUs: ids such as 0,1 or 'all' (processes, ray).")
@click.option("--workers-per-gpu", type=int, help="Workers per GPU (ray: fractional GPUs) [default: 1].")
@click.option("--workers", "executor_workers", type=int,
              help="CPU worker processes or actors, intra-op threads split between them [default: 2].")
@click.option("--shard", help="Run the K-th of N subsets of the cases (K from 1) into --out, e.g. 2/8; "
                              "consolidate with --resume once all have finished.")
@click.option("--allow-failures", is_flag=True, help="Exit 0 even when some (model, case) pairs failed.")
@click.option("--precision", "precision",
              help="Overrides benchmark.precision: fp32,fp16 runs every model in both and compares them.")
@click.option("--strict-providers/--no-strict-providers", default=None,
              help="Overrides benchmark.strict_providers (default: strict when a GPU provider is requested).")
@cache_dir_option
@no_cache_option
@quiet_option
def run(config_path, image_dir, seg_dir, max_cases, model_names, out_dir, providers, resume_dir, overwrite,
        executor, gpus, workers_per_gpu, executor_workers, shard, allow_failures, precision, strict_providers,
        cache_dir, no_cache, quiet):
    """Run every model of the config on every case and write the run folder.

    The run folder holds run.json, metrics.parquet, cases.parquet, latency.parquet
    (scores.parquet for case-level models) and the reports. A folder holds exactly one
    run: --out naming a folder with another run is refused unless --overwrite. Ctrl-C
    stops after the current case; the printed command resumes the run.

    \b
    Examples:
      medbench config init > benchmark_config.yaml
      medbench run --config benchmark_config.yaml
      medbench run --config benchmark_config.yaml --max-cases 10 --models baseline --provider cuda,cpu
      medbench run --config benchmark_config.yaml --provider cuda --precision fp32,fp16
      medbench run --resume runs/20261128T101500Z-3fa2c1
      medbench run --config c.yaml --executor processes --gpus all --provider cuda,cpu
      medbench run --config c.yaml --executor processes --workers 4
      medbench run --config c.yaml --out runs/big --shard 3/8     # one shard of a batch job
      medbench run --config benchmark_config.yaml --provider cuda --precision fp32,fp16

    Exit codes: 0 all pairs succeeded, 1 stopped on an error, 2 usage/config/run-folder
    error, 3 finished with failed pairs (0 with --allow-failures), 130 interrupted.
    """
    from dataclasses import replace

    from medbench_fast.cli.errors import user_errors
    from medbench_fast.config import load_config, preflight, validate
    from medbench_fast.cli.main import startup_done
    from medbench_fast.runner.pipeline import run_benchmark
    from medbench_fast.runner.plan import Shard
    from medbench_fast.runner.precision import expand_precisions, parse_precisions, recorded_precisions

    if resume_dir and out_dir:
        raise click.UsageError("give --resume RUN_DIR or --out RUN_DIR, not both")
    if resume_dir and overwrite:
        raise click.UsageError("--resume continues a run; --overwrite replaces one: give only one")
    with user_errors(ValueError):
        if config_path:
            config, text = load_config(config_path)
        elif resume_dir:
            config, text = _recorded_config(resume_dir), None
        else:
            raise click.UsageError("give --config FILE (or --resume RUN_DIR)")
        overrides = {"image_dir": image_dir, "seg_dir": seg_dir, "max_cases": max_cases}
        dataset = {key: str(Path(value).resolve()) if key != "max_cases" else value
                   for key, value in overrides.items() if value is not None}
        bench = {}
        if providers:
            listed = [p.strip() for p in providers.split(",") if p.strip()]
            bench["providers"] = validate({"benchmark": {"providers": listed}}, source="--provider").benchmark.providers
        if strict_providers is not None:
            bench["strict_providers"] = strict_providers
        config = replace(config, dataset=replace(config.dataset, **dataset), benchmark=replace(config.benchmark, **bench))
        preflight(config, source=config_path or f"{resume_dir}/run.json")
        names = [m.strip() for m in model_names.split(",")] if model_names else None
        if precision and resume_dir:
            raise click.UsageError("--resume runs the recorded models; --precision is recorded with them")
        config, pairs = expand_precisions(config, parse_precisions(precision) or config.benchmark.precision)
        if names and pairs:
            names = [v for base in names for v in pairs.get(base, {base: base}).values()]
        pairs = pairs or recorded_precisions(config)
        scale = _scale_options(config, executor, gpus, workers_per_gpu, executor_workers)
        scale.check()
        shard_of = Shard.parse(shard) if shard else None
        if shard_of and not out_dir:
            raise click.UsageError("--shard needs --out RUN_DIR: every shard writes into the same folder")
    startup_done()
    with user_errors():
        result = run_benchmark(config, config_text=text, run_dir=resume_dir or out_dir, resume=bool(resume_dir),
                               overwrite=overwrite, models=names, progress=False if quiet else None,
                               cache=make_cache(cache_dir, no_cache), scale=scale, shard=shard_of)
    if stop_unless_whole(result, f"medbench run --resume {result.run_dir}"):
        return
    if not quiet:
        from medbench_fast.cli.tables import print_classification_table, print_label_table

        print_label_table(result.run_dir)
        print_classification_table(result.run_dir)
    if len(next(iter(pairs.values()), {})) > 1:
        from medbench_fast.runner.precision import format_report, precision_report

        report = precision_report(result.run_dir, pairs)
        result.files.update(precision=result.run_dir / "precision.csv")
        if not quiet:
            click.echo(format_report(report))
    click.echo(f"{result.n_cases} (model, case) pairs, {result.n_failed} failed -> {result.run_dir}")
    for name, path in sorted(result.files.items()):
        click.echo(f"  {name:<10} {path}")
    if config.leaderboard.publish:
        from medbench_fast.cli.hub import publish

        click.get_current_context().invoke(publish, run_dir=str(result.run_dir), repo_id=config.leaderboard.hub_repo)
    finish(result.n_failed, allow_failures, f"{result.run_dir}/cases.parquet")


def _scale_options(config, executor, gpus, workers_per_gpu, workers):
    """The executor settings: command-line flags over the config's benchmark/ray keys."""
    from medbench_fast.runner.scale import ScaleOptions

    bench = config.benchmark
    return ScaleOptions(executor=executor or bench.executor, workers=workers if workers is not None
                        else bench.executor_workers, gpus=gpus if gpus is not None else bench.gpus,
                        workers_per_gpu=workers_per_gpu if workers_per_gpu is not None else bench.workers_per_gpu,
                        ray_address=config.ray.address)


def _recorded_config(run_dir: str):
    """The resolved config (absolute paths) recorded at the start of the run in ``run_dir``."""
    from medbench_fast.config import ConfigError, validate
    from medbench_fast.store.run_info import read_run_json

    record = read_run_json(run_dir)
    resolved = record.get("resolved_config")
    if not isinstance(resolved, dict):
        raise ConfigError(f"{run_dir}/run.json: no resolved config recorded (not a medbench run folder, or one "
                          f"written by an older version); start a new run")
    return validate(resolved, source=f"{run_dir}/run.json", base=Path("/"))
