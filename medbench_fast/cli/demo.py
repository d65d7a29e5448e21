"""``medbench demo``: the embedded default benchmark on synthetic CT, end to end."""

from __future__ import annotations

import click

from medbench_fast.cli.options import quiet_option


@click.command()
@click.option("--out", "out_dir", default="medbench_demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the generated dataset and the run.")
@click.option("--cases", default=8, show_default=True, type=click.IntRange(min=1), help="Number of synthetic cases.")
@click.option("--seed", default=0, show_default=True, type=int, help="Dataset seed (same seed, same data).")
@quiet_option
def demo(out_dir, cases, seed, quiet):
    """Generate a synthetic head-and-neck CT dataset and benchmark predictions on it.

    Writes DATA (images, reference labels, predictions as .nii.gz) under OUT/data and the
    run folder (Parquet, CSV, JSON summary) under OUT/run, then prints a per-label table.

    \b
    Examples:
      medbench demo
      medbench demo --out /tmp/demo --cases 20
    """
    from medbench_fast.demo import run_demo

    result = run_demo(out_dir, n_cases=cases, seed=seed, progress=False if quiet else None)
    if not quiet:
        from medbench_fast.cli.tables import print_label_table

        print_label_table(result.run_dir)
    click.echo(f"data: {result.data_dir}")
    click.echo(f"run:  {result.run_dir} ({result.n_cases} cases, {result.n_failed} failed)")
    for name, path in sorted(result.files.items()):
        click.echo(f"  {name:<8} {path}")
