"""``medbench export``: turn an AI-ENE ``.h5``, a Hugging Face model, a TorchScript file or an
nnU-Net v2 trained-model folder into an ONNX file plus its spec (``<name>.spec.json`` beside it)."""

from __future__ import annotations

import click


def _shape(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers such as 1,1,128,128,128") from None


@click.command("export")
@click.option("--aiene", "aiene", type=click.Path(dir_okay=False), help="AI-ENE Keras-2 .h5 file.")
@click.option("--hf", "hf", metavar="ID_OR_DIR", help="Hugging Face model folder, or Hub id (fetched at export time).")
@click.option("--task", type=click.Choice(["semantic-segmentation", "image-classification", "image-segmentation"]),
              help="Task for --hf (image-segmentation: optimum's name for semantic-segmentation).")
@click.option("--positive-class", metavar="NAME_OR_INDEX",
              help="--hf image-classification: the class whose probability is the case score [2 classes: class 1].")
@click.option("--torchscript", "torchscript", type=click.Path(dir_okay=False), help="TorchScript .pt file.")
@click.option("--nnunet", "nnunet", type=click.Path(file_okay=False),
              help="nnU-Net v2 trained-model folder (dataset.json, plans.json, fold_K/checkpoint).")
@click.option("--configuration", help="--nnunet: configuration of plans.json [the folder's].")
@click.option("--folds", metavar="K,K|all", help="--nnunet: folds to ensemble [every fold with the checkpoint].")
@click.option("--checkpoint", help="--nnunet: checkpoint file name [checkpoint_final.pth].")
@click.option("--mirroring/--no-mirroring", default=True, show_default=True,
              help="--nnunet: average the mirrored copies of each tile.")
@click.option("--step-size", type=float, help="--nnunet: tile step, a fraction of the patch [0.5].")
@click.option("--input-shape", callback=_shape, help="Trace shape for --torchscript: N,C,D,H,W or N,C,H,W.")
@click.option("--spec", "spec", type=click.Path(dir_okay=False, exists=True),
              help="Spec JSON to ship with the model (--torchscript; default: whole volume, argmax).")
@click.option("--out", required=True, type=click.Path(), help="Output .onnx file, or a folder (model.onnx inside).")
@click.option("--name", help="Model name recorded in the spec (default: the source file's name).")
@click.option("--node-label", default=1, show_default=True, help="--aiene: mask label of the lymph nodes.")
@click.option("--min-voxels", default=1, show_default=True, help="--aiene: ignore smaller node components.")
@click.option("--hu-window", default="-1000,1000", show_default=True, help="--hf: HU window mapped to [0, 1].")
@click.option("--axis", default=0, show_default=True, help="--hf: slice axis (0 = axial slices of a Z,Y,X volume).")
@click.option("--cache-dir", envvar="MEDBENCH_EXPORT_CACHE", type=click.Path(file_okay=False),
              help="Export cache folder [env MEDBENCH_EXPORT_CACHE; default ~/.cache/medbench-fast/exports].")
@click.option("--force", is_flag=True, help="Convert again even if the cache holds this export.")
def export(aiene, hf, task, positive_class, torchscript, nnunet, configuration, folds, checkpoint, mirroring, step_size,
           input_shape, spec, out, name, node_label, min_voxels,
           hu_window, axis, cache_dir, force):
    """Export a model to ONNX plus its spec; nothing needs TensorFlow.

    Exports are cached by the hash of the source file(s) and options, so running the same
    command again only copies the cached result.

    \b
    Examples:
      medbench export --aiene ene_model.h5 --out models/aiene.onnx
      medbench export --torchscript bbox_model.pt --input-shape 1,1,128,128,128 \\
          --spec examples/deepbet/deepbet_bbox.spec.json --out models/deepbet.onnx
      medbench export --hf ./segformer-b0-ct --task semantic-segmentation --out models/segformer
      medbench export --hf ./vit-nodule --task image-classification --positive-class malignant \\
          --out models/vit-nodule
      medbench export --nnunet nnUNet_results/Dataset003_Liver/nnUNetTrainer__nnUNetPlans__3d_fullres \\
          --folds 0,1,2,3,4 --out models/liver

    nnU-Net checkpoints are pickles (loaded as nnU-Net loads them): export only folders you trust.
    """
    from medbench_fast.models.spec import ModelError

    chosen = [flag for flag, value in (("--aiene", aiene), ("--hf", hf), ("--torchscript", torchscript),
                                       ("--nnunet", nnunet)) if value]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --aiene, --hf, --torchscript, --nnunet")
    try:
        if aiene:
            from medbench_fast.models.aiene.export import export_aiene

            path, model_spec, hit = export_aiene(aiene, out, name=name, node_label=node_label, min_voxels=min_voxels,
                                                 cache_dir=cache_dir, force=force)
        elif nnunet:
            from medbench_fast.models.nnunet.export import export_nnunet

            path, model_spec, hit = export_nnunet(nnunet, out, configuration=configuration,
                                                  folds=folds.split(",") if folds else None, checkpoint=checkpoint,
                                                  mirroring=mirroring, step_size=step_size, name=name,
                                                  cache_dir=cache_dir, force=force)
        elif torchscript:
            if input_shape is None:
                raise click.UsageError("--torchscript needs --input-shape, e.g. 1,1,128,128,128")
            from medbench_fast.models.torchscript import export_torchscript

            path, model_spec, hit = export_torchscript(torchscript, out, input_shape=input_shape, spec=spec, name=name,
                                                       cache_dir=cache_dir, force=force)
        else:
            if task is None:
                raise click.UsageError("--hf needs --task semantic-segmentation or image-classification")
            from medbench_fast.models.huggingface import export_hf

            window = [float(v) for v in hu_window.split(",")]
            path, model_spec, hit = export_hf(hf, out, task=task, name=name, hu_window=window, axis=axis,
                                              cache_dir=cache_dir, force=force, positive_class=positive_class)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    source = "cache" if hit else "converted"
    if "parity_max_abs_diff" in model_spec.source:
        found = model_spec.source
        source += f" with {found['export']}, max |ONNX - PyTorch| {found['parity_max_abs_diff']:.1e}"
    click.echo(f"{path} ({source}); spec: {path.with_name(path.stem + '.spec.json')}; "
               f"inputs {model_spec.inputs}, strategy {model_spec.strategy.type}, output {model_spec.output.kind}")
