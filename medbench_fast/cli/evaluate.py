"""``medbench evaluate``: score a folder of predictions against a folder of references."""

from __future__ import annotations

import math

import click

from medbench_fast.cli.options import (
    cache_dir_option, make_cache, no_cache_option, parse_label_names, parse_labels, quiet_option,
)


@click.command()
@click.option("--pred", "pred_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of predicted label maps.")
@click.option("--ref", "ref_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of reference label maps.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder (created).")
@click.option("--labels", help="Comma-separated labels (default: every non-zero label in either folder).")
@click.option("--label-names", help="Names for labels, e.g. 1=liver,2=spleen.")
@click.option("--regions", help="Regions scored like labels, e.g. 'WT=1,2,3;TC=1,3;ET=3' (default: from dataset.json).")
@click.option("--dataset-json", type=click.Path(exists=True, dir_okay=False),
              help="nnU-Net / Decathlon dataset.json with label names and regions (default: the one in PRED, "
                   "or beside REF's folder).")
@click.option("--metrics", help="Metric names or groups (counts, surface), comma-separated (default: all).")
@click.option("--tolerance-mm", default=1.0, show_default=True, type=float, help="NSD tolerance in mm.")
@click.option("--surface", type=click.Choice(["voxel", "surfel"]), default="voxel", show_default=True,
              help="Surface representation: voxel borders (MONAI) or surfels with areas (DeepMind).")
@click.option("--hd95-mode", type=click.Choice(["max", "pooled"]), default="max", show_default=True,
              help="HD95 as the max of directed 95th percentiles, or pooled over both directions (medpy).")
@click.option("--empty", type=click.Choice(["one", "nan"]), default="one", show_default=True,
              help="Both-empty rows: Dice 1 (METRICS.md) or NaN (nnU-Net / MONAI).")
@click.option("--worst-distance", type=click.Choice(["inf", "diagonal"]), default="inf", show_default=True,
              help="Summary only: keep +inf distances apart, or replace them by the image diagonal (BraTS).")
@click.option("--geometry-tolerance", default=1e-4, show_default=True, type=float,
              help="Relative tolerance on spacing, origin and direction between prediction and reference.")
@click.option("--executor", type=click.Choice(["local", "processes", "ray"]), default="local", show_default=True,
              help="Where cases are scored: this process (reading threads), worker processes, or Ray actors.")
@click.option("--workers", type=click.IntRange(min=1),
              help="local: reading threads (default: CPU count); processes, ray: worker processes or actors "
                   "(default 2).")
@click.option("--ray-address", help="Ray cluster address (--executor ray; default: RAY_ADDRESS, else a local Ray).")
@click.option("--shard", help="Score the K-th of N subsets of the cases (K from 1) into OUT, e.g. 2/8; "
                              "consolidate with --resume once all have finished.")
@click.option("--resume", is_flag=True, help="Continue the evaluation that OUT holds (same PRED, REF and options): "
                                             "finished cases are skipped; consolidates finished shards.")
@click.option("--write-every", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Cases per Parquet part at most; a part is written anyway once its oldest case is 5 s old "
                   "(what an interrupted evaluation loses at most).")
@click.option("--overwrite", is_flag=True, help="Replace the run that OUT already holds.")
@click.option("--allow-failures", is_flag=True, help="Exit 0 even when some cases failed.")
@cache_dir_option
@no_cache_option
@quiet_option
def evaluate(pred_dir, ref_dir, out_dir, labels, label_names, regions, dataset_json, metrics, tolerance_mm, surface,
             hd95_mode, empty, worst_distance, geometry_tolerance, executor, workers, ray_address, shard, resume,
             write_every, overwrite, allow_failures, cache_dir, no_cache, quiet):
    """Score every prediction in PRED against the reference of the same case in REF.

    Cases pair by file name without extension (.nii.gz, .nii, .nrrd, .mha, .mhd) or DICOM
    series folder name. Writes metrics.parquet, cases.parquet, run.json, results.csv and
    summary.json to OUT. A case that cannot be scored is recorded as failed and the run
    goes on. OUT holds exactly one run: a folder with another run is refused unless
    --overwrite. With an nnU-Net or Decathlon dataset.json (in PRED, where nnU-Net writes it, or
    in the folder holding REF), its labels, label names and regions are scored.

    \b
    Examples:
      medbench evaluate --pred preds/ --ref labels/ --out results/
      medbench evaluate --pred preds/ --ref labels/ --out results/ --labels 1,2 --metrics counts
      medbench evaluate --pred preds/ --ref labels/ --out results/ --surface surfel --tolerance-mm 2
      medbench evaluate --pred preds/ --ref Dataset001_BraTS/labelsTs/ --out results/ --regions 'WT=1,2,3;TC=1,3;ET=3'
      medbench evaluate --pred preds/ --ref labels/ --out results/ --executor processes --workers 8
      medbench evaluate --pred preds/ --ref labels/ --out results/ --shard 2/4   # one shard of a batch job
      medbench evaluate --pred preds/ --ref labels/ --out results/ --resume      # continue, or consolidate shards

    Exit codes: 0 every case scored, 1 stopped on an error (a bug included), 2 usage error or a
    folder holding another run, 3 finished with failed cases (0 with --allow-failures), 130 interrupted.
    """
    from medbench_fast.cli.errors import finish, stop_unless_whole, user_errors
    from medbench_fast.cli.main import startup_done
    from medbench_fast.metrics.regions import parse_regions
    from medbench_fast.metrics.selection import resolve_metrics
    from medbench_fast.metrics.options import MetricOptions
    from medbench_fast.runner.evaluate import evaluate_folders, find_layout, with_layout
    from medbench_fast.runner.plan import Shard
    from medbench_fast.runner.scale import ScaleOptions
    from medbench_fast.store.parts import skip_pandas_detection

    skip_pandas_detection()  # this process never hands pyarrow a DataFrame

    if not math.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise click.BadParameter(f"expected a finite number >= 0, got {tolerance_mm}", param_hint="--tolerance-mm")
    if not math.isfinite(geometry_tolerance) or geometry_tolerance < 0:
        raise click.BadParameter(f"expected a finite number >= 0, got {geometry_tolerance}",
                                 param_hint="--geometry-tolerance")
    try:
        options = MetricOptions(
            labels=parse_labels(labels), metrics=resolve_metrics(metrics), nsd_tolerance_mm=tolerance_mm,
            surface=surface, hd95_mode=hd95_mode, empty=empty, label_names=parse_label_names(label_names),
            geometry_rtol=geometry_tolerance, regions=parse_regions(regions),
        )
        layout = find_layout(pred_dir, ref_dir, dataset_json)
        options = with_layout(options, layout)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if layout is not None and not quiet:
        click.echo(f"labels, label names and regions from {layout.json_path}", err=True)
    if resume and overwrite:
        raise click.UsageError("--resume continues the evaluation in OUT; --overwrite replaces it: give only one")
    local = executor == "local"
    scale = ScaleOptions(executor=executor, workers=None if local else workers, ray_address=ray_address)
    with user_errors():
        scale.check()
        part = Shard.parse(shard) if shard else None
        import medbench_fast.runner.pipeline  # noqa: F401  (the engine, imported before startup_done)

        startup_done()
        result = evaluate_folders(pred_dir, ref_dir, out_dir, options=options, workers=workers if local else None,
                                  cache=make_cache(cache_dir, no_cache), progress=False if quiet else None,
                                  worst_distance=worst_distance, overwrite=overwrite, resume=resume, scale=scale,
                                  shard=part, batch_size=write_every)
    if stop_unless_whole(result, "the same command with --resume"):
        return
    if not quiet:
        from medbench_fast.cli.tables import print_label_table

        print_label_table(result.run_dir)
    click.echo(f"{result.n_cases} cases, {result.n_failed} failed -> {result.run_dir}")
    finish(result.n_failed, allow_failures, f"{result.files.get('summary', result.run_dir)} (cases.*.failures)")
