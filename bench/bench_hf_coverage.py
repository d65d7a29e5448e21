"""Hugging Face coverage: every architecture of transformers' semantic-segmentation and
image-classification auto mappings through ``export_hf`` (the path ``medbench export --hf``
takes), with the exporter that made the file, the parity figure, and CPU latency per slice.

Each architecture is a tiny random-weight model built from its config class for
``--side`` x ``--side`` inputs (default 512, one CT slice; ImageGPT and Perceiver keep
their 32 x 32 processor size), saved with its image processor, exported, checked against
PyTorch (the export refuses a max |ONNX - PyTorch| above 1e-4), then timed at batch 1:
ONNX Runtime (CPU provider) against PyTorch eager on the same input, one thread each, warm
medians. Absolute times are those of tiny widths; the ratio is the figure to read.

Run: ``python bench/bench_hf_coverage.py [--side 512] [--repeat 5] [--only vit,upernet]``.
Writes ``bench/results/hf_coverage.json`` and prints the README table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import hf_tiny  # noqa: E402  the tiny configs the coverage test uses
from common import markdown_table, timed, write_results  # noqa: E402

from medbench_fast.models.hf_export import EXPORTERS, NOT_POSSIBLE, load_torch_model, pixels_to_logits  # noqa: E402
from medbench_fast.models.huggingface import export_hf  # noqa: E402
from medbench_fast.models.spec import ModelError  # noqa: E402

ID2LABEL = {0: "background", 1: "organ", 2: "lesion"}
#: Threads of each engine: one, so that a shared, oversubscribed host slows both alike.
THREADS = 1


def architectures() -> list[tuple[str, str]]:
    from transformers.models.auto import modeling_auto

    return [(task, model_type)
            for task, mapping in ((hf_tiny.SEG, modeling_auto.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES),
                                  (hf_tiny.CLS, modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES))
            for model_type in mapping]


def measure(task: str, model_type: str, root: Path, side: int, repeat: int) -> dict:
    """Export one architecture and time it; a row of the table."""
    import onnxruntime as ort
    import torch

    row = {"architecture": model_type, "task": task}
    if model_type in NOT_POSSIBLE:
        return dict(row, export="not possible", reason=NOT_POSSIBLE[model_type])
    folder = hf_tiny.save_tiny(root / f"{task}-{model_type}", task, model_type, id2label=ID2LABEL, side=side)
    t0 = time.perf_counter()
    try:
        path, spec, _ = export_hf(folder, root / "out" / f"{task}-{model_type}", task=task, cache_dir=root / "cache")
    except ModelError as exc:
        return dict(row, export="failed", reason=str(exc))
    export_s = time.perf_counter() - t0
    shape = (1, spec.channels, *spec.strategy.input_size)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = THREADS
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    net = pixels_to_logits(load_torch_model(folder, task, len(ID2LABEL)), model_type, processor)
    tx = torch.from_numpy(x)

    def run_torch():
        with torch.no_grad():
            net(tx)

    ort_t = timed(lambda: session.run(None, {"pixel_values": x}), repeat=repeat)
    torch_t = timed(run_torch, repeat=repeat)
    return dict(row, export=spec.source["export"], optimum_task=spec.source["optimum_task"],
                notes=spec.source["export_notes"],
                max_abs_diff=spec.source["parity_max_abs_diff"], input=list(spec.strategy.input_size),
                export_s=export_s, ort_ms=ort_t["median_s"] * 1e3, torch_ms=torch_t["median_s"] * 1e3,
                speedup=torch_t["median_s"] / ort_t["median_s"])


def table(rows: list[dict]) -> str:
    body = []
    for r in rows:
        task = "segmentation" if r["task"] == hf_tiny.SEG else "classification"
        if r["export"] in ("not possible", "failed"):
            body.append([f"`{r['architecture']}`", task, f"{r['export']}: {r['reason']}", "", "", "", ""])
            continue
        how = f"optimum ({r['optimum_task']})" if r["export"] == "optimum" else r["export"]
        size = "x".join(str(v) for v in r["input"])
        body.append([f"`{r['architecture']}`", task, how, f"{r['max_abs_diff']:.1e}", size,
                     f"{r['ort_ms']:.2f} / {r['torch_ms']:.2f}", f"{r['speedup']:.1f}x"])
    return markdown_table(["architecture", "task", "exporter", "max abs diff", "input",
                           "ORT / PyTorch ms per slice", "ORT speed-up"], body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512, help="slice side in pixels (a multiple of 32)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per engine (after one warm-up)")
    parser.add_argument("--only", help="comma-separated model types (default: all)")
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(THREADS)
    only = set(args.only.split(",")) if args.only else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task, model_type in architectures():
            if only and model_type not in only:
                continue
            rows.append(measure(task, model_type, Path(tmp), args.side, args.repeat))
            r = rows[-1]
            print(f"{task:22s} {model_type:22s} {r['export']:12s} "
                  + (f"diff {r['max_abs_diff']:.1e}  ORT {r['ort_ms']:.2f} ms  PyTorch {r['torch_ms']:.2f} ms"
                     if "ort_ms" in r else r["reason"][:90]), flush=True)
    done = [r for r in rows if "ort_ms" in r]
    summary = {task: {"architectures": sum(r["task"] == task for r in rows),
                      "exported": sum(r["task"] == task for r in done),
                      **{exporter: sum(r["task"] == task and r["export"] == exporter for r in done)
                         for exporter in EXPORTERS}}
               for task in (hf_tiny.SEG, hf_tiny.CLS)}
    versions = {}
    for name in ("transformers", "huggingface_hub", "torch", "onnxscript", "onnx", "onnxruntime", "optimum-onnx"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    print()
    print(table(rows))
    print()
    for task, s in summary.items():
        print(f"{task}: {s['exported']}/{s['architectures']} exported and matching PyTorch ("
              + ", ".join(f"{s[e]} {e}" for e in EXPORTERS) + ")")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if only is None:
        write_results("hf_coverage", {"side": args.side, "repeat": args.repeat, "threads": THREADS,
                                      "versions": versions, "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
