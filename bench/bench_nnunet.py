"""An nnU-Net v2 model through medbench against ``nnUNetv2_predict``, on the CPU with the same threads.

Run: ``python bench/bench_nnunet.py [--cases 3] [--repeat 3] [--threads 2] [--work DIR]``.
Writes ``bench/results/nnunet.json``.

The trained-model folder is built by nnunetv2 itself
(:func:`nnunet_synthetic.build_trained_folder` (tests/nnunet_synthetic.py): planner's spacing and
normalisation, a 3-stage U-Net of the plans' architecture with 8 base features on
24 x 64 x 64 patches, one fold, mirroring on), and kept in ``--work`` for later runs.
Both sides predict the same held-out cases, interleaved run by run:

- ``nnunet_cli``: ``nnUNetv2_predict_from_modelfolder -device cpu -npp 1 -nps 1``, the
  process end to end (it sets torch to all cores; ``--threads`` should equal them);
- ``medbench_cli``: ``medbench run`` with ``benchmark.threads`` = ``--threads``, end to end,
  the export already cached (the one-time export is timed apart as ``export_s``);
- in this process, ``nnUNetPredictor.predict_from_files_sequential`` (torch threads =
  ``--threads``) against medbench's timed loop (``run.json`` ``loop_s``).

Reported: medians, the ratios nnU-Net / medbench (above 1: medbench is faster), medbench's
split per case (preprocessing, network, network per tile, window blending plus export) and
the voxel agreement of the two label maps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the generators tests use
from common import host, markdown_table, write_results  # noqa: E402


def build(work: Path, cases: int) -> tuple[Path, Path]:
    from nnunet_synthetic import build_trained_folder

    raw = work / "raw" / "Dataset601_Synth"
    folder = work / "results" / "Dataset601_Synth" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    if not (folder / "fold_0" / "checkpoint_final.pth").is_file() or \
            len(list((raw / "imagesTs").glob("*.nii.gz"))) != cases:
        shutil.rmtree(work, ignore_errors=True)
        build_trained_folder(work, 601, n_train=4, n_test=cases, shape=(40, 112, 112), spacing=(2.5, 0.8, 0.8),
                             patch_3d=(24, 64, 64), features=8)
    return folder, raw


def _timed(cmd, env) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def _config(work: Path, folder: Path, raw: Path, threads: int) -> Path:
    path = work / "bench.yaml"
    path.write_text(f"dataset:\n  nnunet: {raw}\n  split: test\nmodels:\n  - name: nnunet\n    kind: nnunet\n"
                    f"    path: {folder}\n    folds: [0]\nbenchmark:\n  threads: {threads}\n  warmup: 1\n"
                    f"output:\n  save_predictions: true\n  formats: [json]\n", encoding="utf-8")
    return path


def _agreement(ours: Path, theirs: Path) -> float:
    from medbench_fast.data.reader import load_volume

    fractions = [float((load_volume(p).array == load_volume(theirs / p.name).array).mean()) for p in ours.iterdir()]
    return min(fractions)


def _in_process(folder: Path, raw: Path, out: Path, threads: int) -> float:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(threads)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=True, perform_everything_on_device=False,
                                device=torch.device("cpu"), verbose=False, verbose_preprocessing=False,
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=(0,))
    t0 = time.perf_counter()
    predictor.predict_from_files_sequential(str(raw / "imagesTs"), str(out), save_probabilities=False,
                                            overwrite=True, folder_with_segs_from_prev_stage=None)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/medbench-bench-nnunet"))
    args = parser.parse_args()
    folder, raw = build(args.work, args.cases)
    env = {**os.environ, "MEDBENCH_EXPORT_CACHE": str(args.work / "export-cache"), "OMP_NUM_THREADS": str(args.threads)}
    config = _config(args.work, folder, raw, args.threads)
    medbench = [sys.executable, "-m", "medbench_fast", "run", "--config", str(config), "--quiet", "--overwrite"]
    shutil.rmtree(args.work / "export-cache", ignore_errors=True)
    export_s = _timed([sys.executable, "-m", "medbench_fast", "export", "--nnunet", str(folder), "--folds", "0",
                       "--name", "nnunet", "--out", str(args.work / "export" / "nnunet.onnx")], env)
    nnunet = ["nnUNetv2_predict_from_modelfolder", "-i", str(raw / "imagesTs"), "-o", str(args.work / "nnunet_out"),
              "-m", str(folder), "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"]
    samples = {"nnunet_cli": [], "medbench_cli": [], "nnunet_in_process": [], "medbench_loop": []}
    stages = []
    for i in range(args.repeat):
        samples["nnunet_cli"].append(_timed(nnunet, env))
        out = args.work / "medbench_run"
        samples["medbench_cli"].append(_timed(medbench + ["--out", str(out)], env))
        samples["medbench_loop"].append(json.loads((out / "run.json").read_text())["loop_s"])
        import pyarrow.parquet as pq

        stages.extend(r for r in pq.read_table(out / "cases.parquet").to_pylist() if r["success"])
        samples["nnunet_in_process"].append(_in_process(folder, raw, args.work / "nnunet_inproc", args.threads))
    med = {k: statistics.median(v) for k, v in samples.items()}
    split = {k: statistics.median(r[k] for r in stages) for k in ("preprocess_s", "inference_s", "postprocess_s")}
    split["per_tile_ms"] = statistics.median(1e3 * r["inference_s"] / r["patches"] for r in stages)
    split["tiles"] = statistics.median(r["patches"] for r in stages)
    payload = {"host": host(), "threads": args.threads, "cases": args.cases, "repeat": args.repeat,
               "export_s": export_s, "samples_s": samples, "median_s": med,
               "ratio_cli": med["nnunet_cli"] / med["medbench_cli"],
               "ratio_in_process": med["nnunet_in_process"] / med["medbench_loop"],
               "medbench_split_per_case_s": split,
               "min_voxel_agreement": _agreement(out / "predictions" / "nnunet", args.work / "nnunet_out")}
    print(markdown_table(["comparison", "nnU-Net s", "medbench s", "ratio"], [
        ["CLI end to end", f"{med['nnunet_cli']:.2f}", f"{med['medbench_cli']:.2f}", f"{payload['ratio_cli']:.2f}x"],
        ["in process (predict loop)", f"{med['nnunet_in_process']:.2f}", f"{med['medbench_loop']:.2f}",
         f"{payload['ratio_in_process']:.2f}x"]]))
    print(markdown_table(["medbench per case", "seconds"], [[k, f"{v:.3f}"] for k, v in split.items()]))
    print(f"export (once, cached after): {export_s:.1f} s; lowest voxel agreement with nnU-Net: "
          f"{payload['min_voxel_agreement']:.6f}")
    print(write_results("nnunet", payload))


if __name__ == "__main__":
    main()
