"""All-label confusion counts and ``medbench evaluate`` throughput.

Run: ``python bench/bench_counts.py [--cases 20] [--repeat 5]``. Prints medians and ratios
measured in this process and writes ``bench/results/counts.json``.

Baselines, same arrays, same process:
- ``np.bincount(ref.astype(np.int64) * K + pred)`` (the usual numpy joint histogram);
- MONAI ``compute_dice`` on one-hot tensors (CPU torch);
- reading both volumes once (``np.add.reduce`` over each): the memory-bandwidth floor;
- for ``medbench evaluate``: decoding the same .nii.gz files with SimpleITK only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, reference_pair, timed, write_results  # noqa: E402

from medbench_fast.metrics.counts import label_counts  # noqa: E402


def four_label(ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference pair split into four labels by octant-like slabs (labels 1-4)."""
    r, p = ref.copy(), pred.copy()
    for k, (lo, hi) in enumerate(((0, 130), (130, 256), (256, 380), (380, 512)), start=1):
        r[:, :, lo:hi] *= k
        p[:, :, lo:hi] *= k
    return r, p


def bench_kernel(ref, pred, n_labels: int, repeat: int) -> dict:
    import torch
    from monai.metrics import compute_dice

    k = n_labels + 1
    ours = timed(lambda: label_counts(ref, pred), repeat=repeat)
    bincount = timed(lambda: np.bincount((ref.astype(np.int64) * k + pred).ravel(), minlength=k * k), repeat=repeat)
    read = timed(lambda: (np.add.reduce(ref, axis=None), np.add.reduce(pred, axis=None)), repeat=repeat)

    def monai():
        labels = torch.arange(1, k, dtype=torch.uint8).view(-1, 1, 1, 1)
        y = (torch.from_numpy(ref)[None] == labels)[None].float()
        y_pred = (torch.from_numpy(pred)[None] == labels)[None].float()
        return compute_dice(y_pred, y, include_background=True)

    monai_t = timed(monai, repeat=max(2, repeat // 2))
    return {
        "labels": n_labels, "medbench_s": ours, "bincount_s": bincount, "read_both_s": read, "monai_compute_dice_s": monai_t,
        "speedup_vs_bincount": bincount["median_s"] / ours["median_s"],
        "speedup_vs_monai": monai_t["median_s"] / ours["median_s"],
        "ratio_to_read_both": ours["median_s"] / read["median_s"],
    }


def bench_evaluate(n_cases: int) -> dict:
    import SimpleITK as sitk
    from click.testing import CliRunner

    from medbench_fast.cli.main import cli
    from medbench_fast.data.reader import Volume, write_volume
    from medbench_fast.data.synthetic import make_case, perturb

    root = Path(tempfile.mkdtemp(prefix="medbench-bench-"))
    try:
        refs, preds = root / "labels", root / "preds"
        refs.mkdir()
        preds.mkdir()
        shape, spacing = (160, 512, 512), (2.0, 0.8, 0.8)  # CT-sized label maps
        for i in range(n_cases):
            case = make_case(i, seed=7, shape=shape, spacing=spacing)
            write_volume(Volume(case.labels, spacing), refs / f"{case.case_id}.nii.gz")
            write_volume(Volume(perturb(case.labels, seed=i), spacing), preds / f"{case.case_id}.nii.gz")
        files = sorted(refs.iterdir()) + sorted(preds.iterdir())

        def decode_only():
            for f in files:
                sitk.GetArrayFromImage(sitk.ReadImage(str(f))).sum(dtype=np.int64)

        out: dict = {"cases": n_cases, "shape": shape, "compressed_mb": sum(f.stat().st_size for f in files) / 1e6}
        decode = timed(decode_only, repeat=3, warmup=1)
        out["decode_only_s"] = decode
        for metrics in ("counts", "all"):
            extra = ["--metrics", "counts"] if metrics == "counts" else []
            runs = []
            for _ in range(3):
                cache = root / "cache"
                shutil.rmtree(cache, ignore_errors=True)
                args = ["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(root / "out"), "-q", "--overwrite",
                        "--cache-dir", str(cache), *extra]
                t = time.perf_counter()
                CliRunner().invoke(cli, args, catch_exceptions=False)
                first = time.perf_counter() - t
                t = time.perf_counter()
                CliRunner().invoke(cli, args, catch_exceptions=False)
                runs.append((first, time.perf_counter() - t))
            first = float(np.median([r[0] for r in runs]))
            second = float(np.median([r[1] for r in runs]))
            out[metrics] = {"first_run_s": first, "cached_run_s": second,
                            "first_over_decode": first / decode["median_s"], "cache_speedup": first / second}
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ref, pred, _ = reference_pair()
    kernel = [bench_kernel(ref, pred, 1, args.repeat), bench_kernel(*four_label(ref, pred), 4, args.repeat)]
    evaluate = bench_evaluate(args.cases)
    rows = [[k["labels"], f"{k['medbench_s']['median_s'] * 1e3:.1f}", f"{k['medbench_s']['first_s']:.2f}",
             f"{k['speedup_vs_bincount']:.1f}x", f"{k['speedup_vs_monai']:.1f}x", f"{k['ratio_to_read_both']:.2f}x"]
            for k in kernel]
    print("All-label counts, 300 x 512 x 512 uint8 (medians, warm):")
    print(markdown_table(["labels", "medbench ms", "first call s", "vs np.bincount", "vs MONAI compute_dice",
                          "time / read both"], rows))
    print(f"\nmedbench evaluate, {evaluate['cases']} .nii.gz cases {evaluate['shape']} "
          f"(decode only: {evaluate['decode_only_s']['median_s']:.2f} s):")
    print(markdown_table(["metrics", "first run s", "first / decode", "cached run s", "cache speed-up"], [
        [m, f"{evaluate[m]['first_run_s']:.2f}", f"{evaluate[m]['first_over_decode']:.2f}x",
         f"{evaluate[m]['cached_run_s']:.2f}", f"{evaluate[m]['cache_speedup']:.1f}x"] for m in ("counts", "all")]))
    path = write_results("counts", {"kernel": kernel, "evaluate": evaluate})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
