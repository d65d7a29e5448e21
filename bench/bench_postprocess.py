"""Host-side time per case before and after in-graph post-processing, on the CPU.

Run: ``python bench/bench_postprocess.py [--repeat 3] [--threads 2]``. Writes
``bench/results/postprocess.json``.

Two models with random weights, each run on the same synthetic case with
``postprocess="host"`` (scores back to numpy: softmax, resize, argmax, blending) and
``postprocess="graph"`` (those steps appended to the ONNX graph; only class indices, or
weighted patches, come back):

1. SegFormer-style ``slice2d``: 512 x 512 slices in batches of 8, 4 classes at 1/4
   resolution (average pooling + a 1x1 convolution), softmax, linear resize to the slice
   size, argmax.
2. ``sliding_window``: 64^3 patches, 14 classes (1x1x1 convolution), softmax, Gaussian
   blending over a 96 x 192 x 192 volume.

Per case: ``postprocess_s`` (host time outside ``session.run``), ``inference_s`` and their
sum, the median of ``--repeat`` warm runs after one untimed run; the label maps of the two
paths are compared voxel by voxel. The host-side ratio is the figure the GPU cares about
(the host work sits between GPU calls); on the CPU the total shows whether onnxruntime's
threaded kernels also beat single-threaded numpy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_results  # noqa: E402

from medbench_fast.data.reader import Volume  # noqa: E402
from medbench_fast.models import load_model  # noqa: E402
from medbench_fast.models.spec import ModelSpec, OutputSpec, StrategySpec  # noqa: E402


def build(path: Path, *, rank: int, classes: int, pool: int, seed: int = 0) -> Path:
    """Input ``(N, 1, *spatial)`` -> average pool by ``pool`` -> 1x1 conv to ``classes`` scores."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    dims = [f"d{i}" for i in range(rank)]
    nodes, x = [], "image"
    if pool > 1:
        nodes.append(helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[pool] * rank, strides=[pool] * rank))
        x = "pooled"
    weight = rng.normal(0, 4, size=(classes, 1) + (1,) * rank).astype(np.float32)
    bias = rng.normal(0, 0.5, size=classes).astype(np.float32)
    nodes.append(helper.make_node("Conv", [x, "w", "b"], ["logits"]))
    graph = helper.make_graph(nodes, "bench", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, *dims])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes, *[f"o{i}" for i in range(rank)]])],
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def spec(name: str, strategy: StrategySpec, classes: int) -> ModelSpec:
    return ModelSpec(name=name, inputs=["image"], strategy=strategy,
                     output=OutputSpec(kind="segmentation_logits", activation="softmax",
                                       labels={c: c for c in range(1, classes)}))


def measure(path: Path, model_spec: ModelSpec, volume: Volume, mode: str, repeat: int, threads: int) -> dict:
    model = load_model(path, spec=model_spec, threads=threads, postprocess=mode)
    prepared = model.prepare(volume)
    first = model.execute(prepared)
    runs = [model.execute(prepared).timings for _ in range(repeat)]
    out = {k: statistics.median(r[k] for r in runs) for k in ("inference_s", "postprocess_s")}
    out["total_s"] = out["inference_s"] + out["postprocess_s"]
    out["samples"] = runs
    out["in_graph"] = model.post is not None
    return out, first.label_map.array


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = {
        "slice2d_segformer_like": (dict(rank=2, classes=4, pool=4),
                                   StrategySpec(type="slice2d", batch_size=8),
                                   Volume(rng.normal(0, 1, (32, 512, 512)).astype(np.float32), (1.0, 1.0, 1.0))),
        "sliding_window_14_classes": (dict(rank=3, classes=14, pool=1),
                                      StrategySpec(type="sliding_window", patch_size=[64, 64, 64], batch_size=2,
                                                   overlap=0.5),
                                      Volume(rng.normal(0, 1, (96, 192, 192)).astype(np.float32), (1.0, 1.0, 1.0))),
    }
    payload = {"repeat": args.repeat, "threads": args.threads, "cases": {}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDBENCH_EXPORT_CACHE"] = str(Path(tmp) / "export-cache")  # derived graphs stay out of the user's cache
        for name, (graph_args, strategy, volume) in cases.items():
            path = build(Path(tmp) / f"{name}.onnx", **graph_args)
            model_spec = spec(name, strategy, graph_args["classes"])
            host, host_map = measure(path, model_spec, volume, "host", args.repeat, args.threads)
            graph, graph_map = measure(path, model_spec, volume, "graph", args.repeat, args.threads)
            entry = {"shape": list(volume.shape), "classes": graph_args["classes"], "host": host, "graph": graph,
                     "label_maps_equal_fraction": float((host_map == graph_map).mean()),
                     "host_side_speedup": host["postprocess_s"] / graph["postprocess_s"],
                     "total_speedup": host["total_s"] / graph["total_s"]}
            payload["cases"][name] = entry
            rows.append([name, f"{host['postprocess_s'] * 1e3:.0f}", f"{graph['postprocess_s'] * 1e3:.0f}",
                         f"{entry['host_side_speedup']:.1f}x", f"{host['inference_s'] * 1e3:.0f}",
                         f"{graph['inference_s'] * 1e3:.0f}", f"{host['total_s'] * 1e3:.0f}",
                         f"{graph['total_s'] * 1e3:.0f}", f"{entry['total_speedup']:.2f}x",
                         f"{entry['label_maps_equal_fraction']:.6f}"])
            write_results("postprocess", payload)  # after each case
    print(markdown_table(["case", "host-side ms (host)", "host-side ms (graph)", "host-side ratio",
                          "inference ms (host)", "inference ms (graph)", "total ms (host)", "total ms (graph)",
                          "total ratio", "equal voxels"], rows))
    print(write_results("postprocess", payload))


if __name__ == "__main__":
    main()
