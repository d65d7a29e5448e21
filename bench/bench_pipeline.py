"""``medbench run`` pipeline overhead, load/inference overlap and memory flatness.

Run: ``python bench/bench_pipeline.py [--cases 24]``. Writes ``bench/results/pipeline.json``.

1. Inference dominates: a 2D convolutional ONNX model (6 conv layers, 64 channels) on
   synthetic CT; ``medbench run`` cases/s over its case loop vs a bare
   ``session.run`` loop over the same slices preloaded in memory (target >= 0.95x).
2. Loading dominates: a one-threshold ONNX model on larger noisy CT .nii.gz cases. The
   run decoding every file (``--no-cache``) vs decoding alone (sequential SimpleITK) and
   vs the same run from the volume cache (everything but decoding): overlap means close
   to their max, not their sum.
3. Memory: peak RSS of ``medbench run`` on 200 cases vs 20 (target: within 20 %).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_results  # noqa: E402

from medbench_fast.data.reader import Volume, load_volume, write_volume  # noqa: E402
from medbench_fast.data.synthetic import make_case  # noqa: E402
from medbench_fast.demo import write_dataset  # noqa: E402
from medbench_fast.demo.baseline import build_baseline  # noqa: E402


def build_threshold(path: Path) -> Path:
    """A one-operator model: label 1 where HU > -500 (output ``label_map``), spec beside it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from medbench_fast.models.spec import ModelSpec, OutputSpec, StrategySpec, spec_path_for

    graph = helper.make_graph(
        [helper.make_node("Greater", ["image", "t"], ["b"]), helper.make_node("Cast", ["b"], ["classes"], to=TensorProto.UINT8)],
        "threshold", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [helper.make_tensor_value_info("classes", TensorProto.UINT8, ["n", 1, "h", "w"])],
        initializer=[numpy_helper.from_array(np.array(-500.0, np.float32), "t")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    ModelSpec(name="threshold", inputs=["image"], channels=1, strategy=StrategySpec(type="slice2d", batch_size=32),
              output=OutputSpec(kind="label_map", labels={1: 1})).to_json(spec_path_for(path))
    return path


def build_convnet(path: Path, channels: int = 64, layers: int = 6) -> Path:
    """A 2D conv net (3x3 convs + ReLU) ending in 6 class scores; random weights, spec beside it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from medbench_fast.models.spec import IntensityStep, ModelSpec, OutputSpec, StrategySpec, spec_path_for

    rng = np.random.default_rng(0)
    nodes, inits, prev, cin = [], [], "image", 1
    for i in range(layers):
        cout = 6 if i == layers - 1 else channels
        w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        prev = f"c{i}"
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
        cin = cout
    nodes.append(helper.make_node("Identity", [prev], ["logits"]))
    graph = helper.make_graph(nodes, "convnet",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, "h", "w"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 6, "h", "w"])],
                              initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    ModelSpec(name="convnet", inputs=["image"], channels=1,
              intensity=[IntensityStep(op="window", range=[-1000.0, 1000.0])],
              strategy=StrategySpec(type="slice2d", axis=0, batch_size=16),
              output=OutputSpec(kind="segmentation_logits", labels={1: 1, 2: 2, 4: 4, 5: 5})).to_json(spec_path_for(path))
    return path


def config(root: Path, model: Path, n: int, metrics: str = "[counts]", data: str = "data") -> Path:
    path = root / f"cfg_{model.stem}_{n}.yaml"
    path.write_text(textwrap.dedent(f"""\
        dataset: {{image_dir: {root}/{data}/images, seg_dir: {root}/{data}/labels, max_cases: {n}}}
        models: [{{name: {model.stem}, path: {model}}}]
        benchmark: {{metrics: {metrics}, write_every: 8}}
        output: {{dir: {root}/runs, formats: [json]}}
        """))
    return path


def medbench_run(cfg: Path, out: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "medbench_fast", "run", "--config", str(cfg), "--out", str(out), "--overwrite",
                           "--quiet", *extra], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stdout + proc.stderr)
    run = json.loads((out / "run.json").read_text())
    return {"loop_s": run["loop_s"], "cases": run["cases_run"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def bare_loop(model_path: Path, images: list[np.ndarray], window: bool = True, batch: int = 16) -> float:
    """Seconds for a plain ``session.run`` loop over preloaded, preprocessed slice batches."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    batches = []
    for img in images:
        x = img.astype(np.float32)[:, None]
        if window:
            x = np.clip((x + 1000.0) / 2000.0, 0, 1)
        batches += [x[i: i + batch] for i in range(0, len(x), batch)]
    sess.run(None, {"image": batches[0]})
    t = time.perf_counter()
    for b in batches:
        sess.run(None, {"image": b})
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--memory-cases", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="medbench-pipeline-"))
    write_dataset(root / "data", n_cases=max(args.cases, args.memory_cases), seed=11)
    images = [np.asarray(load_volume(p).array) for p in sorted((root / "data" / "images").iterdir())[: args.cases]]
    results: dict = {}

    conv = build_convnet(root / "convnet.onnx")
    bare = min(bare_loop(conv, images) for _ in range(3))
    runs = [medbench_run(config(root, conv, args.cases), root / "runs" / f"conv{i}") for i in range(3)]
    loop = min(r["loop_s"] for r in runs)
    results["inference_dominates"] = {"cases": args.cases, "bare_session_run_s": bare, "medbench_loop_s": loop,
                                      "throughput_ratio": bare / loop}

    thresh = build_threshold(root / "threshold.onnx")
    big = root / "big"
    for sub in ("images", "labels"):
        (big / sub).mkdir(parents=True, exist_ok=True)
    for i in range(args.cases):
        case = make_case(i, seed=5, shape=(96, 256, 256), spacing=(2.0, 0.9, 0.9))
        write_volume(Volume(case.image, case.spacing), big / "images" / f"{case.case_id}.nii.gz")
        write_volume(Volume(case.labels, case.spacing), big / "labels" / f"{case.case_id}.nii.gz")
    files = sorted((big / "images").iterdir()) + sorted((big / "labels").iterdir())
    t = time.perf_counter()
    for f in files:
        load_volume(f)
    load_s = time.perf_counter() - t
    cfg = config(root, thresh, args.cases, data="big")
    cache = str(root / "volume-cache")
    medbench_run(cfg, root / "runs" / "fill", "--cache-dir", cache)
    rest = min(medbench_run(cfg, root / "runs" / f"cached{i}", "--cache-dir", cache)["loop_s"] for i in range(2))
    piped = min(medbench_run(cfg, root / "runs" / f"load{i}", "--no-cache")["loop_s"] for i in range(2))
    results["load_dominates"] = {"decode_s": load_s, "everything_but_decode_s": rest, "medbench_loop_s": piped,
                                 "over_max": piped / max(load_s, rest), "over_sum": piped / (load_s + rest)}

    base = build_baseline(root / "baseline.onnx")
    memory, process = {}, {}
    for n in (20, args.memory_cases):
        code = (f"import resource, subprocess, sys; subprocess.run([sys.executable, '-m', 'medbench_fast', 'run', "
                f"'--config', '{config(root, base, n)}', '--out', '{root}/runs/mem{n}', '--quiet', '--no-cache'], "
                f"check=True, stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
        process[n] = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        memory[n] = json.loads((root / "runs" / f"mem{n}" / "run.json").read_text())["loop_peak_rss_mb"]
    results["memory"] = {"loop_peak_rss_mb": memory, "ratio": memory[args.memory_cases] / memory[20],
                         "process_peak_rss_mb": process,
                         "process_ratio": process[args.memory_cases] / process[20]}

    inf, lod, mem = results["inference_dominates"], results["load_dominates"], results["memory"]
    print(markdown_table(["measurement", "value"], [
        ["inference dominates: medbench / bare session.run throughput", f"{inf['throughput_ratio']:.3f}x"],
        ["loading dominates: decode alone s / run from the cache s / run decoding s",
         f"{lod['decode_s']:.2f} / {lod['everything_but_decode_s']:.2f} / {lod['medbench_loop_s']:.2f}"],
        ["loading dominates: run / max(decode, the rest)", f"{lod['over_max']:.2f}x"],
        ["loading dominates: run / (decode + the rest)", f"{lod['over_sum']:.2f}x"],
        [f"peak RSS of the case loop, 20 vs {args.memory_cases} cases (MB)",
         f"{memory[20]:.0f} vs {memory[args.memory_cases]:.0f} ({mem['ratio']:.2f}x)"],
        [f"peak RSS of the whole process incl. reports, 20 vs {args.memory_cases} cases (MB)",
         f"{process[20]:.0f} vs {process[args.memory_cases]:.0f} ({mem['process_ratio']:.2f}x)"],
    ]))
    print(f"wrote {write_results('pipeline', results)}")


if __name__ == "__main__":
    main()
