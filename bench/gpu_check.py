"""The prepared GPU measurement for a short GPU loan (about 5 minutes; see README "GPU servers").

Run: ``python bench/gpu_check.py`` (``--providers tensorrt`` for TensorRT, ``--providers cpu``
for a dry run of the script itself). Writes ``bench/results/gpu_check_<provider>.json``
after every (model, precision), never only at the end.

It stops at once, before anything else, when onnxruntime has no CUDA provider or a strict
CUDA session cannot be created (the message names the missing libraries). Then, for the
demo models (the HU-threshold baseline; SegFormer-tiny with the ``export`` extra; the
AI-ENE DualNet) and a 3D sliding-window conv net, each in fp32 and fp16 with strict
providers:

- cold start (session creation + first case) apart from warm cases;
- every case once untimed (each distinct input shape), then timed cases round-robin until
  ``--samples`` (default 200) cases or ``--seconds`` per model have passed: cases/s on the
  wall clock, p50/p95/p99 of ``inference_s``, of the case's wall time and of every session
  call (batches: at least 200 of them even where fewer cases fit in the time cap);
- host-to-device, device and device-to-host seconds per session call (reused IO binding);
- this process's peak GPU memory (NVML, ``gpu`` extra) on the device used;
- fp16 against fp32: per-label Dice of each against the reference and the speed-up.

All inputs are generated (seeded synthetic CT, random weights); nothing is downloaded.
"""

from __future__ import annotations

import sys

import onnxruntime

_ASKED = sys.argv[sys.argv.index("--providers") + 1] if "--providers" in sys.argv[:-1] else "cuda"
if _ASKED != "cpu" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
    sys.exit(f"gpu_check: no CUDAExecutionProvider in this onnxruntime ({onnxruntime.__version__}, providers "
             f"{onnxruntime.get_available_providers()}): pip uninstall onnxruntime && pip install -e '.[gpu]'")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_results  # noqa: E402

from medbench_fast import evaluate_pair  # noqa: E402
from medbench_fast.data.reader import Volume, load_volume  # noqa: E402
from medbench_fast.models.spec import ModelError  # noqa: E402


def build_sliding_net(path: Path, classes: int = 14, width: int = 16) -> Path:
    """A 3D conv net (two 3x3x3 convs + ReLU, a 1x1x1 head) on 96^3 patches; random weights, spec beside it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from medbench_fast.models.spec import IntensityStep, ModelSpec, OutputSpec, StrategySpec, spec_path_for

    rng = np.random.default_rng(0)
    shapes = [(width, 1, 3, 3, 3), (width, width, 3, 3, 3), (classes, width, 1, 1, 1)]
    nodes, inits, prev = [], [], "image"
    for i, shape in enumerate(shapes):
        w = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(shape[0], np.float32), f"b{i}")]
        pads = [shape[2] // 2] * 6
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=pads))
        prev = f"c{i}"
        if i < len(shapes) - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["logits"]))
    graph = helper.make_graph(nodes, "sliding", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, 96, 96, 96])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", classes, 96, 96, 96])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    ModelSpec(name="sliding-3d", inputs=["image"], intensity=[IntensityStep(op="window", range=[-1000.0, 1000.0])],
              strategy=StrategySpec(type="sliding_window", patch_size=[96, 96, 96], overlap=0.5, batch_size=2),
              output=OutputSpec(kind="segmentation_logits", activation="softmax", labels={1: 1, 2: 2, 3: 3, 4: 4, 5: 5}),
              ).to_json(spec_path_for(path))
    return path


class _CallTimer:
    """Stands in for a model's session during the timed loop, timing every ``run`` call."""

    def __init__(self, session):
        self.session = session
        self.samples: list[float] = []

    def run(self, feeds, names=None):
        t = time.perf_counter()
        out = self.session.run(feeds, names)
        self.samples.append(time.perf_counter() - t)
        return out


def percentiles(values: list[float]) -> dict:
    a = np.asarray(values, np.float64) * 1e3
    p50, p95, p99 = np.percentile(a, [50, 95, 99]) if a.size else (None, None, None)
    return {"n": int(a.size), "p50_ms": p50 and float(p50), "p95_ms": p95 and float(p95), "p99_ms": p99 and float(p99)}


def measure(entry: dict, cases: list[tuple[Volume, Volume]], precision: str, args, export_dir: Path) -> tuple[dict, list]:
    """Load ``entry`` strict at ``precision``, time cold start, warm every case, then time cases round-robin."""
    from medbench_fast.runner.model_sources import open_model
    from medbench_fast.runner.profile import GpuMemory

    benchmark = {"providers": list(args.providers), "threads": None, "fp16": precision == "fp16",
                 "strict_providers": True, "cudnn_search": "exhaustive", "tf32": False, "postprocess": "graph"}
    memory = GpuMemory(0)
    t0 = time.perf_counter()
    model = open_model({**entry, "precision": precision}, export_dir=export_dir, benchmark=benchmark)
    session_s = time.perf_counter() - t0
    needs_mask = model.spec.strategy.type == "object_crops"
    prepared = [model.prepare(image, ref if needs_mask else None) for image, ref in cases]
    t1 = time.perf_counter()
    predictions = [model.execute(prepared[0])]
    first_run_s = time.perf_counter() - t1
    predictions += [model.execute(p) for p in prepared[1:]]  # every case (and shape) once, untimed
    session = model.session
    if session.binding is not None:
        session.binding.split = True
    model.session = calls = _CallTimer(session)
    inference, wall = [], []
    start = time.perf_counter()
    while len(wall) < args.samples and time.perf_counter() - start < args.seconds:
        p = prepared[len(wall) % len(prepared)]
        t = time.perf_counter()
        timings = model.execute(p).timings
        wall.append(time.perf_counter() - t)
        inference.append(timings["inference_s"])
    loop_s = time.perf_counter() - start
    model.session = session
    binding = session.binding
    memory.sample()
    result = {"providers_in_use": model.providers_in_use, "precision": model.session.precision,
              "provider_options": model.session.provider_options, "postprocess": model.run_facts()["postprocess"],
              "session_s": session_s, "first_run_s": first_run_s, "cold_start_s": session_s + first_run_s,
              "shape_warmups": model.shape_warmups, "cases_per_s": len(wall) / loop_s if loop_s else None,
              "inference": percentiles(inference), "case_wall": percentiles(wall),
              "session_call": percentiles(calls.samples),
              "enough_samples": len(wall) >= 200 or len(calls.samples) >= 200, "gpu_process_peak_mb": memory.peak_mib, "gpu_memory_source": memory.source}
    if binding is not None and binding.times["calls"]:
        calls = binding.times["calls"]
        result["per_call_ms"] = {k[:-2]: binding.times[k] / calls * 1e3 for k in ("h2d_s", "device_s", "d2h_s")}
    return result, [p.label_map for p in predictions]


def label_dice(cases, maps) -> dict[int, float]:
    """Mean Dice per label of ``maps`` against the cases' references."""
    per_label: dict[int, list[float]] = {}
    for (_, ref), pred in zip(cases, maps):
        for row in evaluate_pair(ref.array, pred.array, spacing=ref.spacing, metrics="counts"):
            if not np.isnan(row["dice"]):
                per_label.setdefault(int(row["label"]), []).append(float(row["dice"]))
    return {label: float(np.mean(v)) for label, v in sorted(per_label.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=lambda s: tuple(s.split(",")), default=("cuda",))
    parser.add_argument("--samples", type=int, default=200, help="timed cases per (model, precision)")
    parser.add_argument("--seconds", type=float, default=25.0, help="time cap of the timed loop per (model, precision)")
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--models", default="hu-threshold-baseline,segformer-tiny,aiene-dualnet,sliding-3d")
    args = parser.parse_args()

    from medbench_fast.demo import build_models, write_dataset
    from medbench_fast.models.session import create_session

    started = time.perf_counter()
    payload = {"providers_requested": list(args.providers), "samples": args.samples, "seconds_cap": args.seconds,
               "models": {}, "errors": {}}
    suffix = args.providers[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sliding = build_sliding_net(work / "sliding.onnx")
        try:  # the CUDA libraries load, strict: else stop now, naming what is missing
            create_session(sliding, providers=args.providers)
        except ModelError as exc:
            sys.exit(f"gpu_check: {exc}")
        data = write_dataset(work / "data", n_cases=args.cases, seed=0)
        cases = [(load_volume(image), load_volume(data["labels"] / image.name))
                 for image in sorted(data["images"].glob("*.nii.gz"))]
        entries, notes = build_models(work / "models")
        entries.append({"name": "sliding-3d", "kind": "onnx", "path": str(sliding)})
        payload["notes"] = notes
        wanted = args.models.split(",")
        rows = []
        for entry in [e for e in entries if e["name"] in wanted]:
            name = entry["name"]
            results, maps = {}, {}
            for precision in ("fp32", "fp16"):
                try:
                    results[precision], maps[precision] = measure(entry, cases, precision, args, work / "export")
                except ModelError as exc:
                    payload["errors"][f"{name}/{precision}"] = str(exc)
                    continue
                if maps[precision][0] is not None:
                    results[precision]["dice_vs_reference"] = label_dice(cases, maps[precision])
                payload["models"][name] = dict(results)
                payload["elapsed_s"] = time.perf_counter() - started
                write_results(f"gpu_check_{suffix}", payload)
            if "fp32" in results and "fp16" in results:
                a, b = results["fp32"]["inference"]["p50_ms"], results["fp16"]["inference"]["p50_ms"]
                payload["models"][name]["fp16_speedup_p50"] = a / b if a and b else None
                write_results(f"gpu_check_{suffix}", payload)
            for precision, r in results.items():
                rows.append([name, precision, r["providers_in_use"][0].replace("ExecutionProvider", ""),
                             f"{r['cold_start_s']:.2f}", f"{r['cases_per_s']:.1f}", r["inference"]["n"],
                             f"{r['inference']['p50_ms']:.2f}", f"{r['inference']['p95_ms']:.2f}",
                             f"{r['inference']['p99_ms']:.2f}", f"{r['gpu_process_peak_mb'] or 0:.0f}"])
    print(markdown_table(["model", "precision", "provider", "cold s", "cases/s", "n", "p50 ms", "p95 ms", "p99 ms",
                          "GPU MiB"], rows))
    for key, message in payload["errors"].items():
        print(f"{key}: {message}")
    print(write_results(f"gpu_check_{suffix}", payload))


if __name__ == "__main__":
    main()
