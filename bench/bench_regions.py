"""Region metrics cost no extra pass: ``medbench evaluate`` with and without three regions.

Run: ``python bench/bench_regions.py [--cases 12] [--repeat 5]``. Prints medians and ratios
measured in this process and writes ``bench/results/regions.json``.

BraTS-sized label maps (155 x 240 x 240, labels 1, 2, 3 nested) are written as .nii.gz;
``medbench evaluate --metrics counts --labels 1,2,3`` runs on them with a warm volume cache,
alternating runs without and with ``--regions 'WT=1,2,3;TC=1,3;ET=3'``. The claim: the
run with regions stays within 1.1x of the run without. The same ratio is measured for
``evaluate_pair`` alone on in-memory arrays (the metric step without I/O or reports).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, timed, write_results  # noqa: E402

from medbench_fast.metrics.evaluate import evaluate_pair  # noqa: E402

SHAPE = (155, 240, 240)
SPACING = (1.0, 1.0, 1.0)
REGIONS = "WT=1,2,3;TC=1,3;ET=3"
REGION_MAP = {"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}


def brats_like(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A nested tumour (2 outside 3 outside 1) and a prediction with shifted, noisy borders."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    centre = np.array(SHAPE) / 2 + rng.uniform(-20, 20, 3)

    def nested(c, size):
        r = np.sqrt((z - c[0]) ** 2 + ((y - c[1]) / 1.2) ** 2 + (x - c[2]) ** 2)
        out = np.zeros(SHAPE, np.uint8)
        out[r < size] = 2
        out[r < 0.7 * size] = 3
        out[r < 0.4 * size] = 1
        return out

    size = rng.uniform(18, 30)
    ref = nested(centre, size)
    pred = nested(centre + rng.normal(0, 2, 3), size * rng.uniform(0.9, 1.1))
    noise = rng.random(SHAPE) < 0.002
    pred[noise] = rng.integers(0, 4, int(noise.sum()))
    return ref, pred


def bench_pair(repeat: int) -> dict:
    ref, pred = brats_like(0)
    kwargs = dict(spacing=SPACING, labels=[1, 2, 3], metrics="counts")
    plain = timed(lambda: evaluate_pair(ref, pred, **kwargs), repeat=repeat)
    regions = timed(lambda: evaluate_pair(ref, pred, regions=REGION_MAP, **kwargs), repeat=repeat)
    return {"labels_s": plain, "labels_and_regions_s": regions, "ratio": regions["median_s"] / plain["median_s"]}


def bench_evaluate(n_cases: int, repeat: int) -> dict:
    from click.testing import CliRunner

    from medbench_fast.cli.main import cli
    from medbench_fast.data.reader import Volume, write_volume

    root = Path(tempfile.mkdtemp(prefix="medbench-regions-"))
    try:
        refs, preds = root / "labels", root / "preds"
        refs.mkdir()
        preds.mkdir()
        for i in range(n_cases):
            ref, pred = brats_like(i + 1)
            write_volume(Volume(ref, SPACING), refs / f"BraTS_{i:03d}.nii.gz")
            write_volume(Volume(pred, SPACING), preds / f"BraTS_{i:03d}.nii.gz")
        base = ["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(root / "out"), "-q",
                "--cache-dir", str(root / "cache"), "--metrics", "counts", "--labels", "1,2,3"]
        variants = {"labels": base, "labels_and_regions": base + ["--regions", REGIONS]}

        def run(args) -> float:
            shutil.rmtree(root / "out", ignore_errors=True)
            t = time.perf_counter()
            result = CliRunner().invoke(cli, args, catch_exceptions=False)
            elapsed = time.perf_counter() - t
            assert result.exit_code == 0, result.output
            return elapsed

        for args in variants.values():  # fills the volume cache, compiles the kernels
            run(args)
        samples: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(repeat):  # alternate, so drift hits both alike
            for name, args in variants.items():
                samples[name].append(run(args))
        out = {"cases": n_cases, "shape": list(SHAPE), **{f"{k}_s": {"median_s": statistics.median(v), "samples_s": v}
                                                          for k, v in samples.items()}}
        out["ratio"] = out["labels_and_regions_s"]["median_s"] / out["labels_s"]["median_s"]
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pair = bench_pair(args.repeat)
    evaluate = bench_evaluate(args.cases, args.repeat)
    print(f"Counts only, labels 1, 2, 3 with and without regions {REGIONS} (medians, warm):")
    print(markdown_table(["step", "labels only s", "labels + 3 regions s", "ratio (target <= 1.10)"], [
        ["evaluate_pair, one 155x240x240 case", f"{pair['labels_s']['median_s']:.4f}",
         f"{pair['labels_and_regions_s']['median_s']:.4f}", f"{pair['ratio']:.3f}x"],
        [f"medbench evaluate, {evaluate['cases']} .nii.gz cases, warm cache", f"{evaluate['labels_s']['median_s']:.3f}",
         f"{evaluate['labels_and_regions_s']['median_s']:.3f}", f"{evaluate['ratio']:.3f}x"],
    ]))
    path = write_results("regions", {"evaluate_pair": pair, "evaluate": evaluate, "target_ratio": 1.1})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
