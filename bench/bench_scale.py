"""Scale-out: cases/s of the processes and Ray executors, and ``medbench estimate`` against measurement.

Run: ``python bench/bench_scale.py [--cases 16] [--repeat 2]``. Writes ``bench/results/scale.json``.

An inference-bound model (the 2D conv net of bench_pipeline.py, single-threaded sessions:
``benchmark.threads: 1``) on synthetic CT, each configuration run ``--repeat`` times, in
one process so the ratios share the machine's state:

1. processes executor, 1 worker vs 2 workers (target >= 1.7x on 2 cores);
2. Ray executor, 2 CPU actors on a local Ray vs the processes executor with 2 workers
   (target >= 0.9x; Ray's start-up is timed and reported apart);
3. ``medbench estimate`` of the 2-worker run from the 1-worker run vs the measured 2-worker
   run (target within 15 %).

cases/s is ``cases_run / loop_s`` from run.json: the case loop on the wall clock, from the
first worker ready to the last result, less the workers' mean cold start.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import build_convnet  # noqa: E402
from common import markdown_table, write_results  # noqa: E402

from medbench_fast.demo import write_dataset  # noqa: E402


def _config(root: Path, model: Path, n: int) -> Path:
    path = root / "cfg.yaml"
    path.write_text(textwrap.dedent(f"""\
        dataset: {{image_dir: {root}/data/images, seg_dir: {root}/data/labels, max_cases: {n}}}
        models: [{{name: convnet, path: {model}}}]
        benchmark: {{metrics: [counts], write_every: 4, threads: 1, warmup: 1}}
        output: {{formats: [json]}}
        """))
    return path


def _run(cfg: Path, out: Path, *extra: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "medbench_fast", "run", "--config", str(cfg), "--out", str(out),
                           "--overwrite", "--quiet", *extra], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(proc.stdout + proc.stderr)
    run = json.loads((out / "run.json").read_text())
    return {"cases_per_s": run["cases_run"] / run["loop_s"], "loop_s": run["loop_s"], "command_s": wall,
            "ray_startup_s": run.get("ray_startup_s"), "workers": len(run["workers"])}


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="medbench-scale-"))
    write_dataset(root / "data", n_cases=args.cases, seed=5)
    model = build_convnet(root / "convnet.onnx", channels=32, layers=5)
    cfg = _config(root, model, args.cases)
    runs: dict[str, list[dict]] = {"processes-1": [], "processes-2": [], "ray-2": []}
    for i in range(args.repeat):
        runs["processes-1"].append(_run(cfg, root / "p1", "--executor", "processes", "--workers", "1"))
        runs["processes-2"].append(_run(cfg, root / "p2", "--executor", "processes", "--workers", "2"))
        runs["ray-2"].append(_run(cfg, root / "r2", "--executor", "ray", "--workers", "2"))
    rate = {k: _median(v, "cases_per_s") for k, v in runs.items()}
    est = subprocess.run([sys.executable, "-m", "medbench_fast", "estimate", str(root / "p1"), "--cases",
                          str(args.cases), "--workers", "2", "--json"], capture_output=True, text=True, check=True)
    predicted = json.loads(est.stdout)
    measured_2 = json.loads((root / "p2" / "run.json").read_text())
    measured_rate = measured_2["cases_run"] / measured_2["loop_s"]
    error = predicted["cases_per_s"] / measured_rate - 1
    results = {
        "cases": args.cases, "repeat": args.repeat, "runs": runs, "cases_per_s": rate,
        "processes_2_vs_1": rate["processes-2"] / rate["processes-1"],
        "ray_2_vs_processes_2": rate["ray-2"] / rate["processes-2"],
        "ray_startup_s": _median(runs["ray-2"], "ray_startup_s"),
        "estimate": {"predicted_cases_per_s": predicted["cases_per_s"], "measured_cases_per_s": measured_rate,
                     "relative_error": error, "bottleneck": predicted["bottleneck"],
                     "limited_by": predicted["limited_by"]},
    }
    path = write_results("scale", results)
    rows = [
        ["processes, 1 worker: cases/s", f"{rate['processes-1']:.2f}"],
        ["processes, 2 workers: cases/s", f"{rate['processes-2']:.2f}"],
        ["ray, 2 actors: cases/s", f"{rate['ray-2']:.2f}"],
        ["processes 2 workers / 1 worker (target >= 1.7x)", f"{results['processes_2_vs_1']:.2f}x"],
        ["ray 2 actors / processes 2 workers (target >= 0.9x)", f"{results['ray_2_vs_processes_2']:.2f}x"],
        ["Ray start-up (local cluster), s", f"{results['ray_startup_s']:.1f}"],
        ["estimate of the 2-worker run from the 1-worker run: predicted / measured cases/s",
         f"{predicted['cases_per_s']:.2f} / {measured_rate:.2f} ({error:+.0%}; target within 15 %)"],
    ]
    print(markdown_table(["measurement", "value"], rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
