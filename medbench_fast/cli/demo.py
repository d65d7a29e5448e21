"""``medbench demo``: the embedded default benchmark on synthetic CT, end to end."""

from __future__ import annotations

import click

from medbench_fast.cli.options import quiet_option


@click.command()
@click.option("--out", "out_dir", default="medbench_demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the dataset, the models and the run.")
@click.option("--cases", default=8, show_default=True, type=click.IntRange(min=1), help="Number of synthetic cases.")
@click.option("--seed", default=0, show_default=True, type=int, help="Dataset seed (same seed, same data).")
@quiet_option
def demo(out_dir, cases, seed, quiet):
    """Benchmark locally built models on a synthetic head-and-neck CT dataset.

    Generates CT volumes with reference labels (body, vertebra, spinal cord, airway, lymph
    nodes) and per-node ENE targets, builds an ONNX threshold baseline, a tiny SegFormer
    (with the export extra) and the AI-ENE architecture (random weights, converted from a
    Keras-2 .h5), runs them with `medbench run` and writes the leaderboard. Nothing is
    downloaded.

    \b
    Examples:
      medbench demo
      medbench demo --out /tmp/demo --cases 20
    """
    from medbench_fast.demo import run_demo

    result = run_demo(out_dir, n_cases=cases, seed=seed, progress=False if quiet else None)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if not quiet:
        from medbench_fast.cli.tables import print_classification_table, print_label_table

        print_label_table(result.run_dir)
        print_classification_table(result.run_dir)
    click.echo(f"data: {result.data_dir}")
    click.echo(f"run:  {result.run_dir} ({result.n_cases} (model, case) pairs, {result.n_failed} failed)")
    if "html" in result.files:
        click.echo(f"leaderboard: {result.files['html']}")
