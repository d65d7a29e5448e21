"""``medbench evaluate`` against SimpleITK's decode and nnU-Net's evaluation, on one generated folder.

Run: ``python bench/bench_evaluate.py [--repeat 3] [--cases 20] [--tiny 1000]``. Generates (in
a temporary folder) ``--cases`` pairs of 160x256x256 uint8 label maps (labels 1-4, written by
SimpleITK as ``.nii.gz``, as nnU-Net writes them) and ``--tiny`` pairs of 16x32x32 ones, then
times, round-robin so that drift of a shared machine hits every measurement alike:

- SimpleITK decoding both folders of a set in this process (``ReadImage`` + array), the same
  decode as a whole ``python`` process (interpreter start and ``import SimpleITK`` included:
  the like-for-like baseline of a ``medbench evaluate`` process), and the project's reader
  doing the same (``decode_volume``, no cache);
- ``medbench evaluate --metrics counts``, first run (empty volume cache), whole process;
- the same with the default metrics (surface distances too), first run;
- the counts run again (second run, with what the first run stored in the volume cache:
  nothing for these label maps, which decode faster than an entry is written), and with
  ``--no-cache``;
- ``nnUNetv2_evaluate_simple -np 2`` (nnU-Net v2's folder evaluation), whole process;
- ``medbench evaluate`` of one case (one of the large ones), whole process, with the default
  metrics and with counts only.

numba's cache is filled by an untimed run first, and the package's modules are byte-compiled
first (as an installed package is; where ``PYTHONDONTWRITEBYTECODE`` is set, every process
would otherwise compile them from source). Prints medians of wall time and of CPU time
(user + system, of this process or of the child processes) and the ratios of wall times
against the targets, and writes ``bench/results/evaluate.json``. Timings on a shared machine
are noisy: compare ratios measured in one invocation; CPU time moves less than wall time
when other processes compete for the cores.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_results  # noqa: E402

LARGE = (160, 256, 256)
TINY = (16, 32, 32)
SPACING_XYZ = (0.8, 0.8, 2.0)


def _labels(shape, rng, shift: float = 0.0) -> np.ndarray:
    """Four ellipsoids (labels 1-4) at seeded places; ``shift`` moves and resizes them a little."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    out = np.zeros(shape, np.uint8)
    for label in range(1, 5):
        centre = rng.uniform(0.3, 0.7, 3) * shape
        radii = rng.uniform(0.08, 0.22, 3) * shape
        centre = centre + shift * radii * rng.uniform(-0.3, 0.3, 3)
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0
        out[inside] = label
    return out


def _write(array: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING_XYZ)
    sitk.WriteImage(image, str(path), useCompression=True)


def _make_set(root: Path, n: int, shape) -> tuple[Path, Path]:
    ref, pred = root / "ref", root / "pred"
    ref.mkdir(parents=True)
    pred.mkdir()
    for i in range(n):
        seed = np.random.SeedSequence([len(shape), n, i])
        _write(_labels(shape, np.random.default_rng(seed)), ref / f"case_{i:04d}.nii.gz")
        _write(_labels(shape, np.random.default_rng(seed), shift=1.0), pred / f"case_{i:04d}.nii.gz")
    return ref, pred


#: CPU seconds (user + system) of each timed run, by measurement: less sensitive than wall
#: time to other processes on a shared machine.
CPU: dict[str, list[float]] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _sitk_decode(*folders: Path) -> tuple[float, float]:
    import SimpleITK as sitk

    t, c = time.perf_counter(), time.process_time()
    for folder in folders:
        for path in sorted(folder.iterdir()):
            sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    return time.perf_counter() - t, time.process_time() - c


def _sitk_decode_process(*folders: Path) -> tuple[float, float]:
    """The same decode as a whole Python process (interpreter start, ``import SimpleITK``): the
    like-for-like baseline of a ``medbench evaluate`` process."""
    code = ("import sys, pathlib, SimpleITK as sitk\n"
            "for folder in sys.argv[1:]:\n"
            "    for path in sorted(pathlib.Path(folder).iterdir()):\n"
            "        sitk.GetArrayFromImage(sitk.ReadImage(str(path)))\n")
    return _process([sys.executable, "-c", code, *map(str, folders)])


def _medbench_decode(*folders: Path) -> tuple[float, float]:
    """The project's own reader on the same files, in this process (no cache): the decode that
    ``evaluate`` does, without the process around it."""
    from medbench_fast.data.reader import decode_volume

    t, c = time.perf_counter(), time.process_time()
    for folder in folders:
        for path in sorted(folder.iterdir()):
            decode_volume(path)
    return time.perf_counter() - t, time.process_time() - c


def _process(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    t, c = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed, cpu = time.perf_counter() - t, _children_cpu() - c
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed, cpu


class Medbench:
    """``medbench evaluate`` runs, each into a fresh output folder, with a chosen cache folder."""

    def __init__(self, work: Path):
        self.work = work
        self.n = 0

    def __call__(self, ref: Path, pred: Path, *, counts: bool, cache: Path | None = None,
                 no_cache: bool = False) -> tuple[float, float]:
        self.n += 1
        cache = cache or self.work / f"cache{self.n}"
        out = self.work / f"out{self.n}"
        cmd = [sys.executable, "-m", "medbench_fast", "evaluate", "--pred", str(pred), "--ref", str(ref),
               "--out", str(out), "--quiet"] + (["--metrics", "counts"] if counts else []) + \
            (["--no-cache"] if no_cache else [])
        elapsed = _process(cmd, {**os.environ, "MEDBENCH_CACHE_DIR": str(cache)})
        shutil.rmtree(out)
        return elapsed


def _nnunet(ref: Path, pred: Path, out: Path) -> tuple[float, float]:
    exe = shutil.which("nnUNetv2_evaluate_simple")
    if exe is None:
        raise SystemExit("nnUNetv2_evaluate_simple not found (pip install nnunetv2)")
    return _process([exe, str(ref), str(pred), "-l", "1", "2", "3", "4", "-np", "2", "-o", str(out)])


def _record(samples: dict, key: str, timing: tuple[float, float]) -> None:
    samples.setdefault(key, []).append(timing[0])
    CPU.setdefault(key, []).append(timing[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--tiny", type=int, default=1000)
    args = parser.parse_args()
    import medbench_fast
    from medbench_fast.data.nifti_read import INFLATER

    compileall.compile_dir(Path(medbench_fast.__file__).parent, quiet=1)
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        sets = {"large": _make_set(work / "large", args.cases, LARGE),
                "tiny": _make_set(work / "tiny", args.tiny, TINY)}
        one_ref, one_pred = work / "one" / "ref", work / "one" / "pred"
        one_ref.mkdir(parents=True)
        one_pred.mkdir()
        first = sorted(sets["large"][0].iterdir())[0].name
        shutil.copy(sets["large"][0] / first, one_ref / first)
        shutil.copy(sets["large"][1] / first, one_pred / first)
        print(f"generated in {time.perf_counter() - t:.1f} s under {work}", file=sys.stderr)

        medbench = Medbench(work)
        for counts in (True, False):  # untimed: fills numba's cache
            medbench(one_ref, one_pred, counts=counts)
            medbench(*sets["tiny"], counts=counts)
        samples: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for name, (ref, pred) in sets.items():
                warm_cache = work / f"warm_{name}"
                shutil.rmtree(warm_cache, ignore_errors=True)
                runs = {
                    "sitk_decode": lambda: _sitk_decode(ref, pred),
                    "sitk_decode_process": lambda: _sitk_decode_process(ref, pred),
                    "medbench_decode": lambda: _medbench_decode(ref, pred),
                    "counts_first": lambda: medbench(ref, pred, counts=True, cache=warm_cache),
                    "counts_cached": lambda: medbench(ref, pred, counts=True, cache=warm_cache),
                    "counts_no_cache": lambda: medbench(ref, pred, counts=True, no_cache=True),
                    "surface_first": lambda: medbench(ref, pred, counts=False),
                    "nnunet_np2": lambda: _nnunet(ref, pred, work / f"nnunet_{name}.json"),
                }
                for key, run in runs.items():
                    _record(samples, f"{name}.{key}", run())
            _record(samples, "one_case_process", medbench(one_ref, one_pred, counts=False))
            _record(samples, "one_case_process_counts", medbench(one_ref, one_pred, counts=True))

    load_after = os.getloadavg()
    med = {k: statistics.median(v) for k, v in samples.items()}
    cpu = {k: statistics.median(v) for k, v in CPU.items()}
    ratios, rows = {}, []
    for name in ("large", "tiny"):
        m = {k.split(".", 1)[1]: v for k, v in med.items() if k.startswith(name + ".")}
        ratios[name] = {
            "counts_first_over_sitk_decode": m["counts_first"] / m["sitk_decode"],
            "counts_first_over_sitk_decode_process": m["counts_first"] / m["sitk_decode_process"],
            "medbench_decode_over_sitk_decode": m["medbench_decode"] / m["sitk_decode"],
            "nnunet_over_counts_first": m["nnunet_np2"] / m["counts_first"],
            "surface_over_counts_first": m["surface_first"] / m["counts_first"],
        }
        size = f"{args.cases} x 160x256x256" if name == "large" else f"{args.tiny} x 16x32x32"
        for key, label in (("sitk_decode", "SimpleITK decode of both folders, one process"),
                           ("sitk_decode_process", "same, as a whole `python` process (start, import, decode)"),
                           ("medbench_decode", "the project's reader on both folders, one process"),
                           ("counts_first", "`medbench evaluate --metrics counts`, first run"),
                           ("counts_cached", "same, second run (volume cache as the first run left it)"),
                           ("counts_no_cache", "same, `--no-cache` (nothing stored)"),
                           ("surface_first", "`medbench evaluate` (default metrics, surface too), first run"),
                           ("nnunet_np2", "`nnUNetv2_evaluate_simple -np 2`")):
            rows.append([size, label, f"{m[key]:.2f}", f"{cpu[name + '.' + key]:.2f}"])
    rows.append(["1 x 160x256x256", "`medbench evaluate`, whole process (default metrics)",
                 f"{med['one_case_process']:.2f}", f"{cpu['one_case_process']:.2f}"])
    rows.append(["1 x 160x256x256", "`medbench evaluate --metrics counts`, whole process",
                 f"{med['one_case_process_counts']:.2f}", f"{cpu['one_case_process_counts']:.2f}"])
    print(markdown_table(["folder", "what", "median wall s", "median CPU s"], rows))
    ratios["one_case"] = {"surface_over_counts": med["one_case_process"] / med["one_case_process_counts"]}
    targets = [
        ("first-run counts / SimpleITK decode, 20 large", ratios["large"]["counts_first_over_sitk_decode"], "<= 1.0"),
        ("first-run counts / SimpleITK decode as a whole process, 20 large",
         ratios["large"]["counts_first_over_sitk_decode_process"], "report"),
        ("first-run counts / SimpleITK decode as a whole process, tiny",
         ratios["tiny"]["counts_first_over_sitk_decode_process"], "report"),
        ("project's decode / SimpleITK decode, 20 large (in process)",
         ratios["large"]["medbench_decode_over_sitk_decode"], "report"),
        ("nnU-Net / first-run counts, 20 large", ratios["large"]["nnunet_over_counts_first"], ">= 5"),
        ("nnU-Net / first-run counts, tiny", ratios["tiny"]["nnunet_over_counts_first"], ">= 3"),
        ("one-case process, default metrics (s)", med["one_case_process"], "< 1.0"),
        ("one-case process, counts (s)", med["one_case_process_counts"], "report"),
        ("surface / counts, 20 large (first runs)", ratios["large"]["surface_over_counts_first"], "report"),
        ("surface / counts, tiny (first runs)", ratios["tiny"]["surface_over_counts_first"], "report"),
        ("surface / counts, one-case process", ratios["one_case"]["surface_over_counts"], "report"),
    ]
    print(markdown_table(["ratio", "measured", "target"], [[n, f"{v:.2f}", t] for n, v, t in targets]))
    print(f"load average (1, 5, 15 min): {load_before} before, {load_after} after")
    print(write_results("evaluate", {"repeat": args.repeat, "cases": args.cases, "tiny": args.tiny,
                                     "load_average": {"before": load_before, "after": load_after},
                                     "inflater": INFLATER, "median_s": med, "samples_s": samples,
                                     "median_cpu_s": cpu, "cpu_samples_s": CPU, "ratios": ratios,
                                     "targets": {n: {"measured": v, "target": t} for n, v, t in targets}}))


if __name__ == "__main__":
    main()
