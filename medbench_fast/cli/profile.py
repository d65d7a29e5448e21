"""``medbench profile``: latency percentiles and throughput of an ONNX model per batch size."""

from __future__ import annotations

import click


def _ints(text: str | None, option: str) -> list[int] | None:
    if not text:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated integers", param_hint=option) from None
    if not values or min(values) < 1:
        raise click.BadParameter("sizes must be >= 1", param_hint=option)
    return values


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--provider", "providers", default="cpu", show_default=True, help="Providers in order, e.g. cuda,cpu.")
@click.option("--batch-sizes", default="1", show_default=True, help="Comma-separated batch sizes.")
@click.option("--input-shape", help="Sizes of the non-batch axes where the model's axes are dynamic, e.g. 1,512,512.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(min=0), help="Untimed runs per batch size.")
@click.option("--min-iters", default=20, show_default=True, type=click.IntRange(min=1), help="Timed runs at least.")
@click.option("--min-seconds", default=2.0, show_default=True, type=click.FloatRange(min=0), help="Timed seconds at least.")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads (default: onnxruntime's).")
@click.option("--cv-threshold", default=0.1, show_default=True, type=float,
              help="Flag a batch size as unstable when its coefficient of variation exceeds this.")
@click.option("--ort-profile", is_flag=True, help="Also write onnxruntime's per-operator profiling JSON into OUT.")
@click.option("--out", "out_dir", default="profiles", show_default=True, type=click.Path(file_okay=False),
              help="Folder receiving latency.parquet (raw samples included).")
def profile(model, providers, batch_sizes, input_shape, warmup, min_iters, min_seconds, threads, cv_threshold,
            ort_profile, out_dir):
    """Profile MODEL (an .onnx file) on random inputs, per batch size.

    Reports p50/p90/p95/p99, mean, std and coefficient of variation of the latency,
    throughput on the wall clock, peak RSS and (on GPU, through NVML) device memory.

    \b
    Examples:
      medbench profile model.onnx --batch-sizes 1,2,4,8
      medbench profile model.onnx --provider cuda,cpu --input-shape 1,512,512 --min-seconds 5
    """
    from pathlib import Path

    import pyarrow as pa

    from medbench_fast.models.spec import ModelError
    from medbench_fast.runner.profile import profile_model
    from medbench_fast.store.parts import write_table
    from medbench_fast.store.run_info import new_run_id
    from medbench_fast.store.schema import LATENCY_SCHEMA

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    try:
        rows = profile_model(model, providers=tuple(p.strip() for p in providers.split(",") if p.strip()),
                             batch_sizes=_ints(batch_sizes, "--batch-sizes"), warmup=warmup, min_iters=min_iters,
                             min_seconds=min_seconds, input_shape=_ints(input_shape, "--input-shape"),
                             threads=threads, cv_threshold=cv_threshold,
                             ort_profile=Path(out_dir) / "ort_profile" if ort_profile else None)
    except (ModelError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    run_id = new_run_id()
    ort_file = rows[0].pop("ort_profile", None)
    path = write_table(pa.Table.from_pylist([{"run_id": run_id, **r} for r in rows], schema=LATENCY_SCHEMA),
                       out_dir, "latency")
    click.echo(f"{'batch':>5} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'cv':>6} {'items/s':>9} {'RSS MB':>8}  provider")
    for r in rows:
        flag = "  unstable" if r["unstable"] else ""
        click.echo(f"{r['batch_size']:>5} {r['p50_ms']:>9.2f} {r['p95_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['cv']:>6.3f} "
                   f"{r['throughput_items_per_s']:>9.1f} {r['peak_rss_mb'] or 0:>8.0f}  {r['provider']}{flag}")
    click.echo(f"cold start {rows[0]['cold_start_s']:.3f} s; samples in {path}")
    if ort_file:
        click.echo(f"onnxruntime profile: {ort_file}")
