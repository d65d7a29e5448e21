"""``medbench estimate``: predict the wall time of a bigger run from a measured one."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--cases", required=True, type=click.IntRange(min=1), help="Cases of the bigger run.")
@click.option("--gpus", default=0, show_default=True, type=click.IntRange(min=0), help="GPUs of the target machine(s).")
@click.option("--cpu-cores", type=click.IntRange(min=1), help="CPU cores of the target [default: the measured run's].")
@click.option("--workers-per-gpu", default=1, show_default=True, type=click.IntRange(min=1), help="Workers per GPU.")
@click.option("--workers", type=click.IntRange(min=1),
              help="CPU workers (no GPUs) [default: cores / the measured intra-op threads].")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate(run_dir, cases, gpus, cpu_cores, workers_per_gpu, workers, as_json):
    """Predict the wall time of CASES cases on bigger hardware, and the stage that bounds it.

    Uses the per-stage times RUN_DIR measured (decode, preprocess, inference, postprocess,
    metrics, write); the model and its assumptions are in the README ("Sizing a bigger run").

    \b
    Examples:
      medbench estimate runs/pilot --cases 50000 --gpus 8 --cpu-cores 64
      medbench estimate runs/pilot --cases 50000 --gpus 8 --cpu-cores 64 --workers-per-gpu 2
      medbench estimate runs/cpu-pilot --cases 2000 --workers 2
    """
    from medbench_fast.cli.errors import InputError
    from medbench_fast.runner.estimate import estimate as predict

    try:
        result = predict(run_dir, cases=cases, gpus=gpus, cpu_cores=cpu_cores, workers_per_gpu=workers_per_gpu,
                         workers=workers)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    t = result["target"]
    click.echo(f"{cases} cases on {t['gpus']} GPU(s), {t['cores']} CPU cores, {t['workers']} worker(s) "
               f"({t['threads']} intra-op thread(s) each):")
    click.echo("  per case (median s): " + ", ".join(f"{k} {v:.4f}" for k, v in result["stages_s"].items()))
    click.echo("  bounds (cases/s):    " + ", ".join(f"{k} {v:.2f}" for k, v in result["bounds_cases_per_s"].items()))
    hours, rest = divmod(result["wall_s"], 3600)
    click.echo(f"  predicted: {result['cases_per_s']:.2f} cases/s, wall {int(hours)} h {rest / 60:.1f} min "
               f"(cold start {result['cold_start_s']:.1f} s); bounded by {result['limited_by']} "
               f"(stage: {result['bottleneck']}); calibration {result['calibration']:.2f}")
