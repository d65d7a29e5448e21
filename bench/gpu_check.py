"""The prepared GPU measurement for a short GPU loan (under 5 minutes; see README "GPU servers").

Run: ``python bench/gpu_check.py`` (``--providers tensorrt`` for TensorRT, ``--providers cpu``
for a dry run of the script itself). It stops at once, before anything else, when
onnxruntime is missing, has no CUDA provider, or a strict session on a tiny graph cannot be
created (the message says: libraries missing, no GPU visible, or model refused). It needs only numpy, numba, onnx, pyarrow,
pyyaml, click and onnxruntime-gpu besides the project's source, and builds its models and
cases itself (seeded synthetic CT, random weights; nothing is downloaded):

- ``hu-threshold-baseline`` and ``sliding-3d`` (a 3D conv net on 96^3 patches) always;
- ``segformer-tiny`` with torch, transformers and optimum-onnx (the ``export`` extra);
- ``aiene-dualnet`` with h5py and SimpleITK (its conversion and object crops);
- ``torchscript-3d`` (a scripted 3D conv net, whole volume at 64^3) with torch;

a model whose packages are missing is listed under ``skipped`` with the reason. Cases are
written to disk and read back for every pipeline pass: with SimpleITK as ``.nii.gz`` through
the reader ``medbench run`` uses, else as ``.npy`` files (memory-mapped).

For each model in fp32 and fp16, with strict providers (onnxruntime's node placement is
recorded):

- the model call: cold start (session creation + first case) apart; every case once
  untimed; then cases round-robin until ``--samples`` or ``--seconds``: p50/p95/p99 of the
  case's inference seconds and of every session call, and host-to-device, device and
  device-to-host milliseconds per call (the reused IO binding);
- the pipeline: ``--pipeline-cases`` cases, each read from disk, prepared, inferred and
  scored (Dice, HD95 against the reference) as ``medbench run`` does: cases/s on the wall
  clock and seconds per stage;
- fp16 against fp32 directly: per label, Dice and HD95 between the two label maps, the
  largest absolute difference of the raw scores on one input, and of the per-object scores
  of case-level models (AI-ENE);
- GPU memory: this process's, sampled every 20 ms during the loops (NVML through
  ``nvidia-ml-py``); "not measured" without a source.

Any exception of a (model, precision) is recorded under ``errors`` and the check goes on;
``bench/results/gpu_check_<provider>.json`` is written after every (model, precision).
"""

from __future__ import annotations

import sys


def cuda_problem(providers: tuple[str, ...]) -> str | None:
    """Why this machine cannot run the check with ``providers`` (None: it can)."""
    try:
        import onnxruntime
    except ImportError:
        return "gpu_check: onnxruntime is not installed: pip install -e '.[gpu]'"
    if providers[0] == "cpu":
        return None
    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return (f"gpu_check: no CUDAExecutionProvider in this onnxruntime ({onnxruntime.__version__}, providers "
                f"{available}): pip uninstall onnxruntime && pip install -e '.[gpu]'")
    return None


if __name__ == "__main__":
    _asked = tuple(sys.argv[sys.argv.index("--providers") + 1].split(",")) if "--providers" in sys.argv[:-1] \
        else ("cuda",)
    _problem = cuda_problem(_asked)
    if _problem:
        sys.exit(_problem)

import argparse  # noqa: E402
import gc  # noqa: E402
import importlib.util  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import markdown_table, write_results  # noqa: E402

from medbench_fast.data.reader import Volume  # noqa: E402
from medbench_fast.metrics.evaluate import evaluate_pair  # noqa: E402

MODELS = ("hu-threshold-baseline", "segformer-tiny", "aiene-dualnet", "sliding-3d", "torchscript-3d")


def _torchscript_net(path: Path) -> Path:
    """A scripted 3D conv net (1 -> 8 -> 6 channels) with random weights, whole-volume at 64^3."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(8, 6, 1))
    torch.jit.script(net.eval()).save(str(path))
    return path


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def build_models(root: Path, wanted: list[str]) -> tuple[list[dict], dict[str, str]]:
    """Model entries (as a config's ``models:`` list) and, per model left out, why."""
    from medbench_fast.demo.baseline import build_baseline
    from medbench_fast.demo.sliding import build_sliding_net

    root.mkdir(parents=True, exist_ok=True)
    entries, skipped = [], {}
    if "hu-threshold-baseline" in wanted:
        entries.append({"name": "hu-threshold-baseline", "kind": "onnx", "path": str(build_baseline(root / "b.onnx"))})
    if "segformer-tiny" in wanted:
        missing = _missing("torch", "transformers", "optimum")
        if missing:
            skipped["segformer-tiny"] = f"needs {', '.join(missing)} (pip install -e '.[export]')"
        else:
            from medbench_fast.demo import _segformer

            entries.append({"name": "segformer-tiny", "kind": "huggingface", "task": "semantic-segmentation",
                            "path": str(_segformer(root / "segformer"))})
    if "aiene-dualnet" in wanted:
        missing = _missing("h5py", "SimpleITK")
        if missing:
            skipped["aiene-dualnet"] = f"needs {', '.join(missing)} (Keras file conversion, object crops)"
        else:
            from medbench_fast.demo import NODE_LABEL
            from medbench_fast.models.aiene.dualnet import write_dualnet_h5

            write_dualnet_h5(root / "dualnet.h5")
            entries.append({"name": "aiene-dualnet", "kind": "aiene", "path": str(root / "dualnet.h5"),
                            "node_label": NODE_LABEL})
    if "torchscript-3d" in wanted:
        if _missing("torch"):
            skipped["torchscript-3d"] = "needs torch (TorchScript export)"
        else:
            entries.append({"name": "torchscript-3d", "kind": "torchscript", "input_shape": [1, 1, 64, 64, 64],
                            "path": str(_torchscript_net(root / "net.pt"))})
    if "sliding-3d" in wanted:
        entries.append({"name": "sliding-3d", "kind": "onnx", "path": str(build_sliding_net(root / "sliding.onnx"))})
    return entries, skipped


class Cases:
    """Synthetic cases written to ``root`` and read back from disk on every :meth:`read`."""

    def __init__(self, root: Path, n: int):
        from medbench_fast.data.synthetic import make_case

        root.mkdir(parents=True, exist_ok=True)
        self.nifti = not _missing("SimpleITK")
        self.files = []
        for i in range(n):
            case = make_case(i, seed=0)
            pair = []
            for kind, array in (("image", case.image), ("label", case.labels)):
                if self.nifti:
                    from medbench_fast.data.reader import write_volume

                    path = root / f"{case.case_id}_{kind}.nii.gz"
                    write_volume(Volume(array, case.spacing), path)
                else:
                    path = root / f"{case.case_id}_{kind}.npy"
                    np.save(path, array)
                    path.with_suffix(".spacing").write_text(",".join(str(s) for s in case.spacing))
                pair.append(path)
            self.files.append(tuple(pair))

    def read(self, index: int) -> tuple[Volume, Volume]:
        out = []
        for path in self.files[index % len(self.files)]:
            if self.nifti:
                from medbench_fast.data.reader import load_volume

                out.append(load_volume(path))
            else:
                spacing = tuple(float(s) for s in path.with_suffix(".spacing").read_text().split(","))
                out.append(Volume(np.load(path, mmap_mode="r"), spacing, path=str(path)))
        return out[0], out[1]


class MemorySampler:
    """This process's GPU memory on device 0, sampled every ``every`` seconds in a thread."""

    def __init__(self, every: float = 0.02):
        from medbench_fast.environment import GpuMemory

        self.memory = GpuMemory(0)
        self.every = every
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if self.memory.uuid is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.every):
            self.memory.sample()

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.memory.sample()

    def record(self) -> dict:
        return {"gpu_process_peak_mib": self.memory.peak_mib, "gpu_memory_source": self.memory.source or "not measured"}


class _CallTimer:
    """Stands in for a model's session during the timed loop, timing every ``run`` call."""

    def __init__(self, session):
        self.session = session
        self.samples: list[float] = []

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run(self, feeds, names=None):
        t = time.perf_counter()
        out = self.session.run(feeds, names)
        self.samples.append(time.perf_counter() - t)
        return out


def percentiles(values: list[float]) -> dict:
    a = np.asarray(values, np.float64) * 1e3
    if not a.size:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def raw_scores(model, precision: str, providers) -> np.ndarray:
    """The graph's own output (no appended post-processing) on one seeded input."""
    from medbench_fast.models.providers import GpuSettings
    from medbench_fast.models.session import create_session
    from medbench_fast.runner.profile import make_inputs

    session = create_session(model.session.path, providers=providers, fp16=precision == "fp16",
                             gpu=GpuSettings(strict=False))
    feeds = make_inputs(session, 1, [1, 64, 64, 64], seed=0)
    for name, value in feeds.items():
        if np.issubdtype(value.dtype, np.floating):
            feeds[name] = (value * 2000.0 - 1000.0).astype(value.dtype) if "image" in name else value
    return np.asarray(session.run(feeds, [session.output_names[0]])[0], np.float32)


def measure(entry: dict, cases: Cases, precision: str, args, export_dir: Path) -> tuple[dict, list]:
    """Model-call and pipeline figures of ``entry`` at ``precision`` (strict providers)."""
    from medbench_fast.config import validate
    from medbench_fast.runner.model_sources import open_model

    config = validate({"models": [{**entry, "precision": precision}],
                       "benchmark": {"providers": list(args.providers), "fp16": precision == "fp16",
                                     "strict_providers": args.providers[0] != "cpu", "cudnn_search": "exhaustive",
                                     "tf32": False, "postprocess": "graph"}}, source="gpu_check")
    with MemorySampler() as sampler:
        t0 = time.perf_counter()
        model = open_model(config.models[0], export_dir=export_dir, benchmark=config.benchmark)
        session_s = time.perf_counter() - t0
        needs_mask = model.spec.strategy.type == "object_crops"
        pairs = [cases.read(i) for i in range(len(cases.files))]
        prepared = [model.prepare(image, ref if needs_mask else None) for image, ref in pairs]
        t1 = time.perf_counter()
        predictions = [model.execute(prepared[0])]
        first_run_s = time.perf_counter() - t1
        predictions += [model.execute(p) for p in prepared[1:]]  # every case (and shape) once, untimed
        session = model.session
        if session.binding is not None:
            session.binding.split = True
            session.binding.times.update(calls=0, h2d_s=0.0, device_s=0.0, d2h_s=0.0)
        model.session = calls = _CallTimer(session)
        inference = []
        start = time.perf_counter()
        while len(inference) < args.samples and time.perf_counter() - start < args.seconds:
            inference.append(model.execute(prepared[len(inference) % len(prepared)]).timings["inference_s"])
        model.session = session
        binding = session.binding
        if binding is not None:
            binding.split = False
        # the pipeline: read from disk, prepare, infer, score, as medbench run does per case
        stages = {"read_s": 0.0, "prepare_s": 0.0, "infer_s": 0.0, "score_s": 0.0}
        n = max(args.pipeline_cases, 1)
        if predictions[0].label_map is not None:  # compile the metric kernels outside the timing, as medbench run does
            evaluate_pair(pairs[0][1].array, predictions[0].label_map.array, spacing=pairs[0][1].spacing,
                          metrics=["dice", "hd95"])
        pipe_start = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            image, ref = cases.read(i)
            stages["read_s"] += time.perf_counter() - t
            t = time.perf_counter()
            p = model.prepare(image, ref if needs_mask else None)
            stages["prepare_s"] += time.perf_counter() - t
            t = time.perf_counter()
            prediction = model.execute(p)
            stages["infer_s"] += time.perf_counter() - t
            t = time.perf_counter()
            if prediction.label_map is not None:
                evaluate_pair(ref.array, prediction.label_map.array, spacing=ref.spacing, metrics=["dice", "hd95"])
            stages["score_s"] += time.perf_counter() - t
        pipe_s = time.perf_counter() - pipe_start
    result = {"providers_in_use": model.providers_in_use, "precision": model.session.precision,
              "provider_options": model.session.provider_options, **model.run_facts(),
              "session_s": session_s, "first_run_s": first_run_s, "cold_start_s": session_s + first_run_s,
              "shape_warmups": model.shape_warmups,
              "model_call": {"inference": percentiles(inference), "session_call": percentiles(calls.samples),
                             "enough_samples": len(inference) >= 200 or len(calls.samples) >= 200},
              "pipeline": {"cases": n, "cases_per_s": n / pipe_s if pipe_s else None,
                           "seconds_per_case": {k: v / n for k, v in stages.items()},
                           "from": "nifti" if cases.nifti else "npy"},
              **sampler.record()}
    if binding is not None and binding.times["calls"]:
        k = binding.times["calls"]
        result["model_call"]["per_call_ms"] = {s[:-2]: binding.times[s] / k * 1e3 for s in ("h2d_s", "device_s", "d2h_s")}
    try:
        result_scores = raw_scores(model, precision, args.providers)
    except Exception as exc:  # a graph whose inputs make_inputs cannot size: no score comparison
        result_scores = None
        result["raw_scores_error"] = f"{type(exc).__name__}: {exc}"
    maps = [p.label_map for p in predictions]
    objects = [p.scores for p in predictions]
    del model, session, prepared
    gc.collect()
    return result, [maps, result_scores, objects]


def fp16_vs_fp32(cases: Cases, fp32: list, fp16: list) -> dict:
    """Per label: mean Dice and largest HD95 between the fp32 and fp16 label maps; max |score diff|."""
    dice: dict[int, list[float]] = {}
    hd95: dict[int, list[float]] = {}
    for i, (a, b) in enumerate(zip(fp32[0], fp16[0])):
        if a is None or b is None:
            continue
        _, ref = cases.read(i)
        for row in evaluate_pair(a.array, b.array, spacing=ref.spacing, metrics=["dice", "hd95"]):
            label = int(row["label"])
            if row["dice"] is not None and not np.isnan(row["dice"]):
                dice.setdefault(label, []).append(float(row["dice"]))
            if row["hd95"] is not None and np.isfinite(row["hd95"]):
                hd95.setdefault(label, []).append(float(row["hd95"]))
    out = {"dice_mean": {k: float(np.mean(v)) for k, v in sorted(dice.items())},
           "hd95_max_mm": {k: float(np.max(v)) for k, v in sorted(hd95.items())}}
    if fp32[1] is not None and fp16[1] is not None and fp32[1].shape == fp16[1].shape:
        out["max_abs_score_diff"] = float(np.max(np.abs(fp32[1] - fp16[1])))
    diffs = [abs(float(a[k]) - float(b[k])) for x, y in zip(fp32[2], fp16[2]) if x and y
             for a, b in zip(x, y) for k in a if k.startswith("score_")]
    if diffs:  # case-level models (AI-ENE): the per-object scores of the cases
        out["max_abs_object_score_diff"] = max(diffs)
    return out


def _fmt(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=lambda s: tuple(s.split(",")), default=("cuda",))
    parser.add_argument("--samples", type=int, default=200, help="timed cases per (model, precision)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time cap of the timed loop per (model, precision)")
    parser.add_argument("--cases", type=int, default=4, help="synthetic cases written to disk")
    parser.add_argument("--pipeline-cases", type=int, default=3, help="cases read, prepared, inferred and scored")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    problem = cuda_problem(args.providers)
    if problem:
        sys.exit(problem)
    if args.providers[0] != "cpu":  # a strict session on a tiny graph: libraries, GPU, placement
        from medbench_fast.demo.baseline import build_baseline
        from medbench_fast.models.session import create_session
        from medbench_fast.models.spec import ModelError

        with tempfile.TemporaryDirectory() as tmp:
            try:
                create_session(build_baseline(Path(tmp) / "probe.onnx"), providers=args.providers)
            except ModelError as exc:
                sys.exit(f"gpu_check: {exc}")

    started = time.perf_counter()
    suffix = args.providers[0]
    payload = {"providers_requested": list(args.providers), "samples": args.samples, "seconds_cap": args.seconds,
               "models": {}, "skipped": {}, "errors": {}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        entries, payload["skipped"] = build_models(work / "models", args.models.split(","))
        cases = Cases(work / "cases", args.cases)
        payload["cases_from"] = "nifti" if cases.nifti else "npy"
        for entry in entries:
            name = entry["name"]
            results, outputs = {}, {}
            for precision in ("fp32", "fp16"):
                try:
                    results[precision], outputs[precision] = measure(entry, cases, precision, args, work / "export")
                except Exception as exc:  # any failure of one (model, precision) is recorded; the check goes on
                    payload["errors"][f"{name}/{precision}"] = (f"{type(exc).__name__}: {exc}".strip() + " | " +
                                                                traceback.format_exc(limit=-1).strip().splitlines()[-1])
                    gc.collect()
                payload["models"][name] = dict(results)
                payload["elapsed_s"] = time.perf_counter() - started
                write_results(f"gpu_check_{suffix}", payload)
            if "fp32" in results and "fp16" in results:
                try:
                    payload["models"][name]["fp16_vs_fp32"] = fp16_vs_fp32(cases, outputs["fp32"], outputs["fp16"])
                except Exception as exc:  # recorded like the rest
                    payload["errors"][f"{name}/fp16_vs_fp32"] = f"{type(exc).__name__}: {exc}"
                a = results["fp32"]["model_call"]["inference"]["p50_ms"]
                b = results["fp16"]["model_call"]["inference"]["p50_ms"]
                payload["models"][name]["fp16_speedup_p50"] = a / b if a and b else None
                write_results(f"gpu_check_{suffix}", payload)
            for precision, r in results.items():
                call = r["model_call"]
                per = call.get("per_call_ms", {})
                mem = r["gpu_process_peak_mib"]
                rows.append([name, precision, r["providers_in_use"][0].replace("ExecutionProvider", ""),
                             _fmt(r["cold_start_s"]), call["inference"]["n"], _fmt(call["inference"]["p50_ms"]),
                             _fmt(call["inference"]["p95_ms"]), _fmt(call["inference"]["p99_ms"]),
                             "/".join(_fmt(per.get(k), ".1f") for k in ("h2d", "device", "d2h")) if per else "-",
                             _fmt(r["pipeline"]["cases_per_s"]),
                             f"{mem:.0f}" if mem is not None else "not measured"])
    print(markdown_table(["model", "precision", "provider", "cold s", "n", "p50 ms", "p95 ms", "p99 ms",
                          "h2d/dev/d2h ms", "pipeline cases/s", "GPU MiB"], rows))
    for name, model in payload["models"].items():
        if "fp16_vs_fp32" in model:
            d = model["fp16_vs_fp32"]
            objects = f", max |object score diff| {d['max_abs_object_score_diff']:.2e}" \
                if "max_abs_object_score_diff" in d else ""
            print(f"{name}: fp16 vs fp32 Dice {d['dice_mean']}, HD95 mm {d['hd95_max_mm']}, "
                  f"max |score diff| {d.get('max_abs_score_diff')}{objects}")
    for name, why in payload["skipped"].items():
        print(f"skipped {name}: {why}")
    for key, message in payload["errors"].items():
        print(f"{key}: {message}")
    print(write_results(f"gpu_check_{suffix}", payload))


if __name__ == "__main__":
    main()
