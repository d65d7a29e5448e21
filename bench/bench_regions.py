"""Region metrics cost no extra pass: ``medbench evaluate`` with and without three regions.

Run: ``python bench/bench_regions.py [--cases 12] [--repeat 5]``. Prints medians and ratios
measured in this process and writes ``bench/results/regions.json``.

BraTS-sized label maps (155 x 240 x 240, labels 1, 2, 3 nested) are written as .nii.gz;
``medbench evaluate --metrics counts --labels 1,2,3`` runs on them with a warm volume cache,
alternating runs without and with ``--regions 'WT=1,2,3;TC=1,3;ET=3'``. The claim: the
run with regions stays within 1.1x of the run without. One case's metric step is also
timed in its two parts: the pass over both volumes (the joint histogram, computed once with
or without regions) and the rows computed from the histogram, with and without regions.
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
from common import markdown_table, write_results  # noqa: E402


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


def alternate(variants: dict, repeat: int) -> dict:
    """Wall and CPU seconds (all threads of this process) of each callable, run alternately
    ``repeat`` times after one untimed call each (the first call compiles and fills caches), so
    drift on a shared machine hits both alike. CPU time is the steadier figure there: other
    processes' load stretches wall time, not this process's CPU time."""
    for fn in variants.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    out = {f"{k}_s": {"median_s": statistics.median(wall[k]), "cpu_median_s": statistics.median(cpu[k]),
                      "samples_s": wall[k], "cpu_samples_s": cpu[k]} for k in variants}
    for stat in ("median", "cpu_median"):
        out[f"ratio_{stat}"] = out["labels_and_regions_s"][f"{stat}_s"] / out["labels_s"][f"{stat}_s"]
    return out


def bench_pair(repeat: int) -> dict:
    """The metric step of one case split in its two parts: the pass over both volumes (the
    joint histogram, the same with or without regions) and the rows computed from it."""
    import timeit

    from medbench_fast.metrics.counts import label_counts
    from medbench_fast.metrics.evaluate import rows_from_counts
    from medbench_fast.metrics.regions import make_regions
    from medbench_fast.metrics.selection import resolve_metrics

    ref, pred = brats_like(0)
    counts = label_counts(ref, pred)
    regions = make_regions(REGION_MAP)
    opts = dict(spacing=SPACING, arrays=(ref, pred), names=resolve_metrics("counts"), nsd_tolerance_mm=1.0,
                surface="voxel", hd95_mode="max", empty="one", label_names=None)

    def best(fn, number: int) -> float:
        return min(timeit.repeat(fn, number=number, repeat=3 * repeat)) / number

    histogram = best(lambda: label_counts(ref, pred), 1)
    rows_labels = best(lambda: rows_from_counts(counts, [1, 2, 3], **opts), 200)
    rows_regions = best(lambda: rows_from_counts(counts, [1, 2, 3, *(r.id for r in regions)], regions=regions,
                                                 **opts), 200)
    return {"histogram_pass_s": histogram, "rows_labels_s": rows_labels, "rows_labels_and_regions_s": rows_regions,
            "ratio": (histogram + rows_regions) / (histogram + rows_labels),
            "regions_extra_s": rows_regions - rows_labels}


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

        def run(args) -> None:
            shutil.rmtree(root / "out", ignore_errors=True)
            result = CliRunner().invoke(cli, args, catch_exceptions=False)
            assert result.exit_code == 0, result.output

        return {"cases": n_cases, "shape": list(SHAPE),
                **alternate({k: (lambda a=a: run(a)) for k, a in variants.items()}, repeat)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    pair = bench_pair(args.repeat)
    evaluate = bench_evaluate(args.cases, args.repeat)
    print(f"Counts only, labels 1, 2, 3 with and without regions {REGIONS} (warm; medians of runs "
          "alternating the two; wall s / CPU s):")
    r = evaluate
    print(markdown_table(["step", "labels only", "labels + 3 regions", "ratio wall / CPU (target <= 1.10)"], [
        [f"medbench evaluate, {r['cases']} .nii.gz cases {SHAPE}, warm cache",
         f"{r['labels_s']['median_s']:.3f} / {r['labels_s']['cpu_median_s']:.3f}",
         f"{r['labels_and_regions_s']['median_s']:.3f} / {r['labels_and_regions_s']['cpu_median_s']:.3f}",
         f"{r['ratio_median']:.3f}x / {r['ratio_cpu_median']:.3f}x"]]))
    print(f"\nOne case's metric step (best of {3 * args.repeat}): the pass over both volumes "
          f"{pair['histogram_pass_s'] * 1e3:.2f} ms (once, with or without regions); rows from its histogram "
          f"{pair['rows_labels_s'] * 1e6:.0f} us for 3 labels, {pair['rows_labels_and_regions_s'] * 1e6:.0f} us "
          f"for 3 labels + 3 regions: {pair['ratio']:.3f}x in all.")
    path = write_results("regions", {"evaluate_pair": pair, "evaluate": evaluate, "target_ratio": 1.1})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
