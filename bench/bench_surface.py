"""Surface-distance metrics: medbench-fast against MONAI, medpy, DeepMind surface-distance and scipy.

Runs on the METRICS.md reference pair (300 x 512 x 512 uint8, spacing 2.5 x 0.8 x 0.8 mm),
on a 10-label map and on a label filling a 1000 x 512 x 512 volume, in one process. Setup
is untimed; the first call of each medbench-fast mode (JIT compile or cache load) is
reported apart, and every tool gets one untimed warm-up call. The timed calls are interleaved round by round (medbench-fast, MONAI,
scipy), so load from other processes hits them alike; ratios are medians of per-round
ratios. Wall and CPU time (all threads) are recorded; peak extra memory is the resident set
size sampled every 2 ms during a call, minus the size before it. Prints a table and a
Markdown table, and writes bench/results/surface.json.

    python bench/bench_surface.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
import warnings
from importlib import metadata
from pathlib import Path

import numba
import numpy as np

from medbench_fast.metrics.surface import label_surface_metrics

SPACING = (2.5, 0.8, 0.8)
SHAPE = (300, 512, 512)
RESULTS = Path(__file__).resolve().parent / "results" / "surface.json"
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


def _run(fn, memory: bool = True):
    """Call ``fn`` once: (result, wall seconds, CPU seconds of all threads, peak extra bytes)."""
    stop, high, base = threading.Event(), [0], _rss()

    def sample():
        while not stop.is_set():
            high[0] = max(high[0], _rss() - base)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    if memory:
        sampler.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if memory:
        stop.set()
        sampler.join()
    return result, wall, cpu, high[0]


def reference_pair():
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    ref = (((z - 150) / 60) ** 2 + ((y - 256) / 125) ** 2 + ((x - 256) / 125) ** 2 <= 1).astype(np.uint8)
    pred = (((z - 153) / 58) ** 2 + ((y - 262) / 128) ** 2 + ((x - 251) / 121) ** 2 <= 1).astype(np.uint8)
    pred[20:24, 40:46, 440:446] = 1
    return ref, pred


def box_of(mask) -> tuple:
    out = []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        out.append((int(hits[0]), int(hits[-1]) + 1))
    return tuple(out)


def ten_label_pair(rng):
    """Ten ellipsoids of growing size in a 300 x 512 x 512 map; prediction = each shifted and scaled."""
    ref = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    for label in range(1, 11):
        r = 4 + 5 * label
        c = (rng.integers(r // 2 + 2, SHAPE[0] - r // 2 - 2), rng.integers(r + 2, 510 - r), rng.integers(r + 2, 510 - r))
        ref[((z - c[0]) / (r / 2)) ** 2 + ((y - c[1]) / r) ** 2 + ((x - c[2]) / r) ** 2 <= 1] = label
        d = rng.integers(-2, 3, 3)
        pred[((z - c[0] - d[0]) / (r / 2 * 1.05)) ** 2 + ((y - c[1] - d[1]) / (r * 0.95)) ** 2
             + ((x - c[2] - d[2]) / r) ** 2 <= 1] = label
    return ref, pred


def _version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _summary(samples):
    walls = [w for _, w, _, _ in samples]
    return {"value": samples[-1][0], "wall_s": walls, "median_wall_s": statistics.median(walls),
            "median_cpu_s": statistics.median(c for _, _, c, _ in samples),
            "peak_extra_bytes": max(m for _, _, _, m in samples)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import surface_distance as deepmind
    import torch
    from medpy.metric.binary import hd95 as medpy_hd95
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice
    from scipy import ndimage

    ref, pred = reference_pair()
    box = box_of((ref == 1) | (pred == 1))
    crop_voxels = int(np.prod([hi - lo for lo, hi in box]))
    not_ref_crop = np.ascontiguousarray(ref[tuple(slice(lo, hi) for lo, hi in box)] == 0)
    r_t, p_t = torch.as_tensor(ref[None, None]), torch.as_tensor(pred[None, None])

    def scipy_edt():
        ndimage.distance_transform_edt(not_ref_crop, sampling=SPACING)

    def ours(surface, mode):
        return lambda: label_surface_metrics(ref, pred, 1, box=box, spacing=SPACING, surface=surface, hd95_mode=mode)

    calls = {
        "medbench_voxel": ours("voxel", "max"),
        "medbench_pooled": ours("voxel", "pooled"),
        "medbench_surfel": ours("surfel", "max"),
        "monai_hd95": lambda: compute_hausdorff_distance(p_t, r_t, include_background=True, percentile=95,
                                                         spacing=list(SPACING)).item(),
        "monai_nsd": lambda: compute_surface_dice(p_t, r_t, [1.0], include_background=True,
                                                  spacing=list(SPACING)).item(),
        "scipy_edt_on_crop": scipy_edt,
    }
    first_call_s = {name: _run(calls[name], memory=False)[1] for name in calls}
    samples = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, fn in calls.items():
            samples[name].append(_run(fn))
    stats = {name: _summary(s) for name, s in samples.items()}
    for name in ("medbench_voxel", "medbench_pooled", "medbench_surfel"):
        stats[name]["first_call_s"] = first_call_s[name]
    per_round = list(zip(samples["medbench_voxel"], samples["monai_hd95"], samples["monai_nsd"],
                         samples["scipy_edt_on_crop"]))
    ratio_monai = statistics.median((h[1] + n[1]) / v[1] for v, h, n, _ in per_round)
    ratio_monai_cpu = statistics.median((h[2] + n[2]) / v[2] for v, h, n, _ in per_round)
    ratio_edt = statistics.median(e[1] / v[1] for v, _, _, e in per_round)

    def run_deepmind():
        sd = deepmind.compute_surface_distances(ref == 1, pred == 1, SPACING)
        return deepmind.compute_robust_hausdorff(sd, 95), deepmind.compute_surface_dice_at_tolerance(sd, 1.0)

    stats["deepmind"] = _summary([_run(run_deepmind) for _ in range(2)])
    stats["medpy_hd95"] = _summary([_run(lambda: medpy_hd95(pred == 1, ref == 1, voxelspacing=SPACING))])

    # 10-label map: cost follows the boxes, not labels x volume.
    ref10, pred10 = ten_label_pair(np.random.default_rng(0))
    labels = []
    for label in range(1, 11):
        lbox = box_of((ref10 == label) | (pred10 == label))

        def one(label=label, lbox=lbox):
            return label_surface_metrics(ref10, pred10, label, box=lbox, spacing=SPACING)

        one()
        walls = [_run(one, memory=False)[1] for _ in range(args.rounds)]
        labels.append({"label": label, "box": lbox, "box_voxels": int(np.prod([b - a for a, b in lbox])),
                       "median_s": statistics.median(walls)})
    full_box = tuple((0, n) for n in SHAPE)
    _run(lambda: label_surface_metrics(ref10, pred10, 10, box=full_box, spacing=SPACING), memory=False)
    full_walls = [_run(lambda: label_surface_metrics(ref10, pred10, 10, box=full_box, spacing=SPACING),
                       memory=False)[1] for _ in range(3)]
    total_10 = sum(item["median_s"] for item in labels)

    # A label filling a 1000 x 512 x 512 volume: the box is the whole volume.
    big_ref = np.ones((1000, 512, 512), np.uint8)
    big_pred = big_ref.copy()
    big_pred[:, :, :10] = 0
    big_box = ((0, 1000), (0, 512), (0, 512))
    huge = _summary([_run(lambda: label_surface_metrics(big_ref, big_pred, 1, box=big_box, spacing=(1.0, 0.7, 0.7)))])

    v, pl, sf = stats["medbench_voxel"], stats["medbench_pooled"], stats["medbench_surfel"]
    hd, nsd = stats["monai_hd95"], stats["monai_nsd"]
    dm, mp, edt = stats["deepmind"], stats["medpy_hd95"], stats["scipy_edt_on_crop"]
    rows = [
        ("MONAI (HD95 + NSD calls)", "voxel, max", hd["value"], nsd["value"],
         hd["median_wall_s"] + nsd["median_wall_s"], max(hd["peak_extra_bytes"], nsd["peak_extra_bytes"])),
        ("medpy hd95", "voxel, pooled", mp["value"], None, mp["median_wall_s"], mp["peak_extra_bytes"]),
        ("surface-distance (DeepMind)", "surfel, max", dm["value"][0], dm["value"][1], dm["median_wall_s"],
         dm["peak_extra_bytes"]),
    ] + [
        ("medbench-fast (all 5 metrics)", conv, st["value"]["hd95"], st["value"]["nsd"], st["median_wall_s"],
         st["peak_extra_bytes"])
        for conv, st in (("voxel, max", v), ("voxel, pooled", pl), ("surfel, max", sf))
    ]
    report = {
        "host": {
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "numba_threads": numba.get_num_threads(),
            "numba_threading_layer": numba.threading_layer(), "loadavg_at_end": os.getloadavg(),
            "python": platform.python_version(),
            "versions": {name: _version(name) for name in
                         ("numpy", "numba", "scipy", "monai", "torch", "medpy", "surface-distance", "medbench-fast")},
        },
        "pair": {"shape": SHAPE, "spacing_mm": SPACING, "box": box, "box_voxels": crop_voxels},
        "rounds": args.rounds,
        "results": stats,
        "ratios": {"monai_over_medbench_voxel_wall": ratio_monai, "monai_over_medbench_voxel_cpu": ratio_monai_cpu,
                   "scipy_edt_over_medbench_voxel_wall": ratio_edt},
        "ten_labels": {"labels": labels, "total_s": total_10, "one_label_full_volume_box_s": statistics.median(full_walls),
                       "full_volume_voxels": int(np.prod(SHAPE))},
        "label_filling_1000x512x512": huge,
    }

    print(f"pair {SHAPE} spacing {SPACING}, box {box} = {crop_voxels / 1e6:.1f} Mvox; {os.cpu_count()} CPUs, "
          f"numba threads {numba.get_num_threads()} ({numba.threading_layer()}), load {os.getloadavg()[0]:.1f}")
    for name in ("medbench_voxel", "medbench_pooled", "medbench_surfel"):
        st = stats[name]
        print(f"{name:16s} first call {st['first_call_s']:.2f} s, warm median {st['median_wall_s']:.3f} s "
              f"(CPU {st['median_cpu_s']:.2f} s, {crop_voxels / st['median_wall_s'] / 1e6:.0f} Mvox/s of box), "
              f"peak extra {st['peak_extra_bytes'] / 2**20:.0f} MiB")
    print(f"MONAI hd95 {hd['median_wall_s']:.2f} s + nsd {nsd['median_wall_s']:.2f} s: {ratio_monai:.1f}x the time "
          f"of medbench-fast voxel, all metrics ({ratio_monai_cpu:.1f}x the CPU time)")
    print(f"scipy distance_transform_edt on the crop alone: {edt['median_wall_s']:.2f} s: {ratio_edt:.1f}x the time "
          f"of all medbench-fast metrics")
    print(f"10 labels: total {total_10:.3f} s over {sum(i['box_voxels'] for i in labels) / 1e6:.2f} Mvox of boxes; "
          f"one label with the whole {np.prod(SHAPE) / 1e6:.0f} Mvox volume as box: {statistics.median(full_walls):.3f} s")
    for item in labels:
        print(f"  label {item['label']:2d}: box {item['box_voxels'] / 1e6:6.3f} Mvox  {item['median_s'] * 1e3:7.1f} ms")
    print(f"label filling a 1000 x 512 x 512 volume (box = volume): {huge['median_wall_s']:.1f} s, "
          f"peak extra {huge['peak_extra_bytes'] / 2**30:.2f} GiB")

    def fmt(x, digits):
        return "-" if x is None else f"{x:.{digits}f}"

    lines = ["| library | surface, HD95 | HD95 (mm) | NSD @ 1 mm | time (s) | peak extra memory (MiB) |",
             "|---|---|---|---|---|---|"]
    for name, conv, hd95, nsd_value, t, mem in rows:
        lines.append(f"| {name} | {conv} | {fmt(hd95, 3)} | {fmt(nsd_value, 4)} | {t:.2f} | {mem / 2**20:.0f} |")
    report["markdown"] = "\n".join(lines)
    print()
    print(report["markdown"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=float))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
