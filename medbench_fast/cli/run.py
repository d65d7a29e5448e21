"""``medbench run``: benchmark the configured models on the configured dataset."""

from __future__ import annotations

import sys

import click

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
              help="Finish an interrupted run in this folder; finished (model, case) pairs are skipped.")
@click.option("--precision", "precision",
              help="Overrides benchmark.precision: fp32,fp16 runs every model in both and compares them.")
@click.option("--strict-providers/--no-strict-providers", default=None,
              help="Overrides benchmark.strict_providers (default: strict when a GPU provider is requested).")
@cache_dir_option
@no_cache_option
@quiet_option
def run(config_path, image_dir, seg_dir, max_cases, model_names, out_dir, providers, resume_dir, precision,
        strict_providers, cache_dir, no_cache, quiet):
    """Run every model of the config on every case and write the run folder.

    The run folder holds run.json, metrics.parquet, cases.parquet, latency.parquet
    (scores.parquet for case-level models) and the reports. Ctrl-C stops after the
    current case; the printed command resumes the run.

    \b
    Examples:
      medbench config init > benchmark_config.yaml
      medbench run --config benchmark_config.yaml
      medbench run --config benchmark_config.yaml --max-cases 10 --models baseline --provider cuda,cpu
      medbench run --config benchmark_config.yaml --provider cuda --precision fp32,fp16
      medbench run --resume runs/20261128T101500Z-3fa2c1
    """
    from medbench_fast.config import ConfigError, load_config, validate
    from medbench_fast.models.spec import ModelError
    from medbench_fast.runner.pipeline import run_benchmark
    from medbench_fast.runner.precision import expand_precisions, parse_precisions
    from medbench_fast.store.run_info import read_run_json

    try:
        if config_path:
            config, text = load_config(config_path)
        elif resume_dir:
            record = read_run_json(resume_dir).get("config") or {}
            if not record.get("text"):
                raise ConfigError(f"{resume_dir}: run.json holds no config; pass --config")
            import yaml

            text = record["text"]
            config = validate(yaml.safe_load(text), source=f"{resume_dir}/run.json")
        else:
            raise click.UsageError("give --config FILE (or --resume RUN_DIR)")
        overrides = {"image_dir": image_dir, "seg_dir": seg_dir, "max_cases": max_cases}
        for key, value in overrides.items():
            if value is not None:
                config["dataset"][key] = str(value) if key != "max_cases" else value
        if providers:
            config["benchmark"]["providers"] = [p.strip() for p in providers.split(",") if p.strip()]
            validate({"benchmark": {"providers": config["benchmark"]["providers"]}}, source="--provider")
        if strict_providers is not None:
            config["benchmark"]["strict_providers"] = strict_providers
        names = [m.strip() for m in model_names.split(",")] if model_names else None
        pairs = expand_precisions(config, parse_precisions(precision) or config["benchmark"].get("precision"))
        if names and pairs:
            names = [v for base in names for v in pairs.get(base, {base: base}).values()]
        result = run_benchmark(config, config_text=text, run_dir=resume_dir or out_dir, resume=bool(resume_dir),
                               models=names, progress=False if quiet else None, cache=make_cache(cache_dir, no_cache))
    except (ConfigError, ModelError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if result.interrupted:
        click.echo(f"\ninterrupted; finished cases are saved in {result.run_dir}", err=True)
        click.echo(f"resume with: medbench run --resume {result.run_dir}", err=True)
        sys.exit(130)
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
