"""Scale-out: the processes and Ray executors and shards write exactly the rows of a local run,
survive dead workers without losing or duplicating a row, and refuse bad options clearly."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.runner.plan import Shard, shard_of

TIMING = {"load_s", "preprocess_s", "inference_s", "postprocess_s", "metrics_s", "total_s", "run_id"}


def _rows(run_dir):
    def clean(name):
        return [{k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items() if k not in TIMING}
                for r in pq.read_table(run_dir / name).to_pylist()]

    return clean("metrics.parquet"), clean("cases.parquet")


def _medbench(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "medbench_fast", *args, "--quiet"],
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ok(proc: subprocess.Popen, timeout=600) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out + err
    return out + err


def _invoke(args, code=0):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def scale_setup(tmp_path_factory, bench_assets):
    """A config with write_every 1 and single-threaded sessions, and its local run's rows."""
    root = tmp_path_factory.mktemp("scale")
    config = root / "cfg.yaml"
    config.write_text(f"""\
dataset:
  image_dir: {bench_assets}/data/images
  seg_dir: {bench_assets}/data/labels
  targets_csv: {bench_assets}/data/targets.csv
models:
  - name: baseline
    path: {bench_assets}/models/baseline.onnx
benchmark:
  write_every: 1
  threads: 1
  metrics: [counts, hd95]
output:
  formats: [csv, json, html]
""")
    local = root / "local"
    _ok(_medbench("run", "--config", str(config), "--out", str(local)))
    return config, _rows(local)


def _parts_pairs(run_dir) -> list[tuple[str, str]]:
    files = sorted((run_dir / "parts" / "cases").glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(f).replace_schema_metadata(None) for f in files])
    return list(zip(table.column("model").to_pylist(), table.column("case_id").to_pylist()))


pytestmark = pytest.mark.slow


# -- processes ---------------------------------------------------------------------------------
def test_processes_executor_writes_the_rows_of_a_local_run(tmp_path, scale_setup):
    config, want = scale_setup
    out = tmp_path / "procs"
    _ok(_medbench("run", "--config", str(config), "--out", str(out), "--executor", "processes", "--workers", "2"))
    assert _rows(out) == want
    run = json.loads((out / "run.json").read_text())
    assert run["executor"] == "processes" and len(run["workers"]) == 2
    assert {w["pid"] for w in run["workers"]}.isdisjoint({os.getpid()})
    assert sum(w["cases_done"] for w in run["workers"]) == len(want[1])
    assert all(w["threads"] == 1 and w["providers_in_use"]["baseline"] == ["CPUExecutionProvider"]
               for w in run["workers"])
    assert len(_parts_pairs(out)) == len(want[1])  # no row written twice


def _worker_pids(parent: int) -> list[int]:
    """Worker processes spawned by ``parent`` (not multiprocessing's resource tracker)."""
    out = []
    for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "spawn_main" in cmd and "resource_tracker" not in cmd:
            out.append(int(pid))
    return out


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(tmp_path, scale_setup):
    config, want = scale_setup
    out = tmp_path / "killed"
    proc = _medbench("run", "--config", str(config), "--out", str(out), "--executor", "processes", "--workers", "2")
    victim = _kill_a_worker_mid_run(proc, out)
    _ok(proc)
    _check_rows_after_a_death(out, want, "killed by SIGKILL", pid=victim)


def _kill_a_worker_mid_run(proc, out) -> int:
    """SIGKILL one worker process once the run has written a part; its pid."""
    deadline = time.time() + 300
    victims = []
    while time.time() < deadline and not victims:
        if list((out / "parts" / "cases").glob("part-*.parquet")):
            victims = _worker_pids(proc.pid)
        time.sleep(0.005)
    assert victims, "no worker process found"
    os.kill(victims[0], signal.SIGKILL)
    return victims[0]


# -- ray ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray with 2 CPUs and 2 logical GPUs, started by the test; yields its address."""
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    startup = time.perf_counter() - t0
    print(f"\nRay start-up: {startup:.1f} s", file=sys.__stderr__)
    yield ray, ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_ray_executor_with_two_gpu_actors(tmp_path, scale_setup, ray_cluster):
    config, want = scale_setup
    ray, address = ray_cluster
    out = tmp_path / "ray"
    _ok(_medbench("run", "--config", str(config), "--out", str(out), "--executor", "ray", "--gpus", "0,1",
                  env={"RAY_ADDRESS": address}))
    assert _rows(out) == want
    run = json.loads((out / "run.json").read_text())
    devices = sorted(w["cuda_visible_devices"] for w in run["workers"])
    assert devices == ["0", "1"] and all(w["num_gpus"] == 1.0 for w in run["workers"])
    html = (out / "leaderboard.html").read_text()
    assert "<h3>Workers</h3>" in html and "CUDA_VISIBLE_DEVICES" in html and ">ray<" in html
    assert len(_parts_pairs(out)) == len(want[1])


def test_ray_actor_killed_mid_run(tmp_path, scale_setup, ray_cluster):
    config, want = scale_setup
    ray, address = ray_cluster
    out = tmp_path / "raykill"
    proc = _medbench("run", "--config", str(config), "--out", str(out), "--executor", "ray", "--workers", "2",
                     env={"RAY_ADDRESS": address})
    _kill_an_actor_mid_run(ray, proc, out)
    _ok(proc)
    _check_rows_after_a_death(out, want, "actor died")


def _kill_an_actor_mid_run(ray, proc, out) -> None:
    """Kill one medbench actor once the run has written a part, while it is still going on."""
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith("medbench-")]
        if names and list((out / "parts" / "cases").glob("part-*.parquet")):
            ray.kill(ray.get_actor(names[0], namespace="medbench"))
            return
        time.sleep(0.005)
    raise AssertionError("no medbench actor found while the run was going on")


def _check_rows_after_a_death(out, want, ended: str, pid: int | None = None) -> None:
    """The rows of an undisturbed run, none written twice, and the dead worker recorded (as ``pid``)."""
    assert _rows(out) == want
    pairs = _parts_pairs(out)
    assert len(pairs) == len(set(pairs)) == len(want[1])
    dead = [w for w in json.loads((out / "run.json").read_text())["workers"]
            if (w.get("ended") or "").startswith(ended)]
    assert dead and (pid is None or dead[0]["pid"] == pid), dead


# -- shards --------------------------------------------------------------------------------------
def test_shards_run_concurrently_and_consolidate_to_the_unsharded_rows(tmp_path, scale_setup):
    config, want = scale_setup
    out = tmp_path / "sharded"
    procs = [_medbench("run", "--config", str(config), "--out", str(out), "--shard", k) for k in ("1/2", "2/2")]
    for p in procs:
        _ok(p)
    names = {f.name for f in (out / "parts" / "cases").iterdir()}
    assert any(n.startswith("part-shard-1-of-2-") for n in names) and any(n.startswith("part-shard-2-of-2-")
                                                                          for n in names)
    _ok(_medbench("run", "--resume", str(out)))
    assert _rows(out) == want
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and set(run["shard_runs"]) == {"1/2", "2/2"}


def test_a_missing_shard_is_named(tmp_path, scale_setup):
    config, _ = scale_setup
    out = tmp_path / "partial"
    _ok(_medbench("run", "--config", str(config), "--out", str(out), "--shard", "1/3"))
    result = _invoke(["run", "--resume", str(out)], code=2)
    assert "2/3 (missing)" in result.output and "3/3 (missing)" in result.output


def test_shards_split_by_case_id_not_by_order():
    ids = [f"case_{i:03d}" for i in range(200)]
    counts = [sum(shard_of(c, 4) == k for c in ids) for k in range(1, 5)]
    assert sum(counts) == 200 and min(counts) > 30
    assert [shard_of(c, 4) for c in ids] == [shard_of(c, 4) for c in reversed(ids)][::-1]
    assert Shard(2, 4).holds(next(c for c in ids if shard_of(c, 4) == 2))


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--executor", "processes", "--gpus", "5"], "--gpus 5: GPU(s) 5 not found on this machine"),
    (["--executor", "processes", "--workers-per-gpu", "0"], "--workers-per-gpu: expected an integer >= 1, got 0"),
    (["--workers", "2"], "--workers and --gpus apply to the processes and ray executors"),
    (["--shard", "3/2"], "K must be between 1 and N (shards are numbered from 1)"),
    (["--shard", "0/2"], "K must be between 1 and N (shards are numbered from 1)"),
    (["--shard", "two"], "expected K/N"),
])
def test_bad_scale_options_are_messages_and_write_nothing(tmp_path, scale_setup, args, message):
    config, _ = scale_setup
    out = tmp_path / "never"
    result = _invoke(["run", "--config", str(config), "--out", str(out), *args], code=2)
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_ray_address_nobody_answers_fails_within_seconds(tmp_path, scale_setup, monkeypatch):
    config, _ = scale_setup
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    t0 = time.perf_counter()
    result = _invoke(["run", "--config", str(config), "--out", str(tmp_path / "r"), "--executor", "ray"], code=2)
    assert time.perf_counter() - t0 < 15
    assert "ray address '127.0.0.1:9' does not answer" in result.output
    assert not (tmp_path / "r").exists()


def test_ray_executor_without_ray_names_the_extra(tmp_path, scale_setup, monkeypatch):
    config, _ = scale_setup
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = _invoke(["run", "--config", str(config), "--out", str(tmp_path / "r"), "--executor", "ray"], code=2)
    assert "pip install 'medbench-fast[ray]'" in result.output
    assert not (tmp_path / "r").exists()


def test_a_shard_of_another_config_is_refused(tmp_path, scale_setup):
    config, _ = scale_setup
    out = tmp_path / "mixed"
    _ok(_medbench("run", "--config", str(config), "--out", str(out), "--shard", "1/2"))
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace("metrics: [counts, hd95]", "metrics: [counts]"))
    result = _invoke(["run", "--config", str(other), "--out", str(out), "--shard", "2/2"], code=2)
    assert "a shard joins only shards of the same run" in result.output and "options.metrics" in result.output


# -- estimate ------------------------------------------------------------------------------------
def _fake_run(folder: Path, *, stages: dict, cases: int, workers: list[dict], loop_s: float, write_s: float,
              provider: str = "CPUExecutionProvider", threads: int = 1) -> Path:
    from medbench_fast.store.schema import CASES_SCHEMA

    folder.mkdir()
    rows = [{"run_id": "r", "model": "m", "case_id": f"c{i}", "success": True, "load_s": stages["decode"],
             **{f"{s}_s": stages[s] for s in ("preprocess", "inference", "postprocess", "metrics")}}
            for i in range(cases)]
    pq.write_table(pa.Table.from_pylist(rows, schema=CASES_SCHEMA), folder / "cases.parquet")
    info = {"status": "finished", "command": "run", "cases_run": cases, "loop_s": loop_s, "write_s": write_s,
            "workers": workers, "models": {"m": {"providers_in_use": [provider]}},
            "resolved_config": {"benchmark": {"threads": threads}}, "hardware": {"cpu_count": 2}}
    (folder / "run.json").write_text(json.dumps(info))
    return folder


def test_estimate_model_on_a_gpu_run(tmp_path):
    stages = {"decode": 0.2, "preprocess": 0.1, "inference": 0.05, "postprocess": 0.05, "metrics": 0.1}
    run = _fake_run(tmp_path / "gpu", stages=stages, cases=100, workers=[{"cuda_visible_devices": "0", "threads": 1}],
                    loop_s=50.0, write_s=1.0, provider="CUDAExecutionProvider")
    result = json.loads(_invoke(["estimate", str(run), "--cases", "50000", "--gpus", "8", "--cpu-cores", "64",
                                 "--json"]).output)
    # measured: 1 worker, t_case 0.5 s -> model 2 cases/s, measured 2 cases/s: calibration 1
    assert result["calibration"] == pytest.approx(1.0)
    assert result["bounds_cases_per_s"]["workers"] == pytest.approx(8 / 0.5)
    assert result["bounds_cases_per_s"]["gpu"] == pytest.approx(8 / 0.05)
    assert result["bounds_cases_per_s"]["cpu"] == pytest.approx(64 / 0.45)
    assert result["limited_by"] == "workers" and result["bottleneck"] == "decode"
    assert result["wall_s"] == pytest.approx(50000 / 16)
    two = json.loads(_invoke(["estimate", str(run), "--cases", "50000", "--gpus", "8", "--cpu-cores", "64",
                              "--workers-per-gpu", "2", "--json"]).output)
    assert two["cases_per_s"] == pytest.approx(32)
    text = _invoke(["estimate", str(run), "--cases", "50000", "--gpus", "8", "--cpu-cores", "4"]).output
    assert "bounded by cpu (stage: decode)" in text


def test_estimate_refuses_gpus_from_a_cpu_run(tmp_path):
    stages = {"decode": 0.1, "preprocess": 0.1, "inference": 0.3, "postprocess": 0.0, "metrics": 0.1}
    run = _fake_run(tmp_path / "cpu", stages=stages, cases=10, workers=[{"threads": 1}], loop_s=6.0, write_s=0.1)
    assert "ran on the CPU" in _invoke(["estimate", str(run), "--cases", "10", "--gpus", "2"], code=2).output
    result = json.loads(_invoke(["estimate", str(run), "--cases", "100", "--workers", "2", "--json"]).output)
    assert result["limited_by"] in ("workers", "cpu") and result["cases_per_s"] == pytest.approx(2 / 0.6)


def test_a_dead_workers_case_is_retried_once_then_a_failed_row():
    from collections import deque

    from medbench_fast.runner.cases import RunCase
    from medbench_fast.runner.executors.remote import RetryOnce

    class Sink:
        def __init__(self):
            self.results = []

        def add(self, result):
            self.results.append(result)

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    waiting, sink, bar = deque(), Sink(), Bar()
    retry = RetryOnce(waiting, sink, bar)
    task = (RunCase("c1", "/data/c1.nii.gz", "/labels/c1.nii.gz"), ("a", "b"))
    retry.worker_died(None, "idle")
    assert not waiting and not sink.results
    retry.worker_died(task, "worker process killed by SIGKILL")
    assert list(waiting) == [task] and not sink.results
    retry.worker_died(waiting.popleft(), "worker process killed by SIGKILL")
    (result,) = sink.results
    assert bar.n == 1 and [o.case_row["model"] for o in result.outcomes] == ["a", "b"]
    assert all(not o.case_row["success"] and o.case_row["error"] == "worker process killed by SIGKILL on this "
               "case, twice" for o in result.outcomes)


# -- thread counts -------------------------------------------------------------------------------
def test_rows_are_bit_identical_across_executors_and_thread_counts(tmp_path, bench_assets, ray_cluster):
    """Local (every core), processes (one thread each) and Ray (whose workers run with
    ``OMP_NUM_THREADS=1``) give the same surface-distance values, bit for bit."""
    config = tmp_path / "cfg.yaml"
    config.write_text(f"""\
dataset:
  image_dir: {bench_assets}/data/images
  seg_dir: {bench_assets}/data/labels
models:
  - name: baseline
    path: {bench_assets}/models/baseline.onnx
benchmark:
  threads: 1
  metrics: [dice, hd, hd95, assd, masd, nsd]
output:
  formats: [json]
""")
    threads = str(max(2, os.cpu_count() or 2))
    many = dict.fromkeys(("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"), threads)
    one = dict.fromkeys(many, "1")
    _, address = ray_cluster
    runs = {"local": ([], many), "processes": (["--executor", "processes", "--workers", "2"], one),
            "ray": (["--executor", "ray", "--workers", "2"], {"RAY_ADDRESS": address})}
    rows = {}
    for name, (args, env) in runs.items():
        _ok(_medbench("run", "--config", str(config), "--out", str(tmp_path / name), *args, env=env))
        metrics, _ = _rows(tmp_path / name)
        rows[name] = [{k: v.hex() if isinstance(v, float) else v for k, v in r.items()} for r in metrics]
    assert rows["local"] and any(r["assd"] not in ("0x0.0p+0", "inf") for r in rows["local"])
    assert rows["processes"] == rows["local"]
    assert rows["ray"] == rows["local"]


def test_a_killed_resource_tracker_prints_no_tracebacks(tmp_path, scale_setup):
    """multiprocessing's resource tracker killed from outside: the run finishes with its rows
    and nothing on stderr (queues made its replacement print a traceback per semaphore)."""
    config, want = scale_setup
    out = tmp_path / "run"
    proc = _medbench("run", "--config", str(config), "--out", str(out), "--executor", "processes", "--workers", "2")
    deadline, killed = time.time() + 300, None
    while killed is None and time.time() < deadline and proc.poll() is None:
        for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" in cmd and list((out / "parts").glob("*/part-*.parquet")):
                os.kill(int(pid), signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.02)
    assert killed, "no resource tracker found while the run was going on"
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "resource_tracker" not in err and "Warning" not in err, err
    assert _rows(out) == want


# -- evaluate on the same engine -----------------------------------------------------------------
@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory, bench_assets):
    """``medbench evaluate`` arguments (one case per part, every metric) and its local run's rows."""
    args = ["--pred", f"{bench_assets}/data/preds", "--ref", f"{bench_assets}/data/labels", "--write-every", "1",
            "--no-cache"]
    local = tmp_path_factory.mktemp("eval") / "local"
    _ok(_medbench("evaluate", *args, "--out", str(local)))
    want = _rows(local)
    assert len(want[1]) == 12 and all(c["success"] for c in want[1])
    return args, want


def test_evaluate_on_worker_processes_writes_the_rows_of_a_local_evaluation(tmp_path, eval_setup):
    args, want = eval_setup
    out = tmp_path / "procs"
    _ok(_medbench("evaluate", *args, "--out", str(out), "--executor", "processes", "--workers", "2"))
    assert _rows(out) == want
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "evaluate" and run["executor"] == "processes" and len(run["workers"]) == 2
    assert {w["pid"] for w in run["workers"]}.isdisjoint({os.getpid()})
    assert sum(w["cases_done"] for w in run["workers"]) == len(want[1])
    assert len(_parts_pairs(out)) == len(want[1])


def test_evaluate_worker_killed_mid_run_loses_and_duplicates_nothing(tmp_path, eval_setup):
    args, want = eval_setup
    out = tmp_path / "killed"
    proc = _medbench("evaluate", *args, "--out", str(out), "--executor", "processes", "--workers", "2")
    victim = _kill_a_worker_mid_run(proc, out)
    _ok(proc)
    _check_rows_after_a_death(out, want, "killed by SIGKILL", pid=victim)


def test_evaluate_on_ray_actors_and_an_actor_killed(tmp_path, eval_setup, ray_cluster):
    args, want = eval_setup
    ray, address = ray_cluster
    out = tmp_path / "ray"
    _ok(_medbench("evaluate", *args, "--out", str(out), "--executor", "ray", "--workers", "2",
                  env={"RAY_ADDRESS": address}))
    assert _rows(out) == want
    run = json.loads((out / "run.json").read_text())
    assert run["executor"] == "ray" and len(run["workers"]) == 2
    out = tmp_path / "raykill"
    proc = _medbench("evaluate", *args, "--out", str(out), "--executor", "ray", "--workers", "2",
                     env={"RAY_ADDRESS": address})
    _kill_an_actor_mid_run(ray, proc, out)
    _ok(proc)
    _check_rows_after_a_death(out, want, "actor died")


def test_evaluate_shards_run_concurrently_and_consolidate_to_the_unsharded_rows(tmp_path, eval_setup):
    args, want = eval_setup
    out = tmp_path / "sharded"
    procs = [_medbench("evaluate", *args, "--out", str(out), "--shard", k) for k in ("1/3", "2/3", "3/3")]
    outputs = [_ok(p) for p in procs]
    assert any("consolidate with: the same command with --resume" in o for o in outputs)
    for k in (1, 2, 3):
        assert any(f.name.startswith(f"part-shard-{k}-of-3-") for f in (out / "parts" / "cases").iterdir())
    early = _medbench("evaluate", *args, "--out", str(tmp_path / "early"), "--shard", "1/2")
    _ok(early)
    proc = _medbench("evaluate", *args, "--out", str(tmp_path / "early"), "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "shard(s) 2/2 (missing) have not finished" in err, err
    _ok(_medbench("evaluate", *args, "--out", str(out), "--resume"))
    assert _rows(out) == want
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and set(run["shard_runs"]) == {"1/3", "2/3", "3/3"}


def test_an_evaluation_killed_mid_run_resumes_to_the_rows_of_an_uninterrupted_one(tmp_path, eval_setup):
    args, want = eval_setup
    out = tmp_path / "resumed"
    proc = _medbench("evaluate", *args, "--out", str(out), "--workers", "1")
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "parts" / "cases").glob("part-*.parquet"))) < 2:
        time.sleep(0.002)
    proc.kill()
    proc.communicate()
    done = len(_parts_pairs(out))
    assert 0 < done < len(want[1]), done
    again = _medbench("evaluate", *args, "--out", str(out))  # a folder holding a run is refused ...
    _, err = again.communicate(timeout=300)
    assert again.returncode == 2 and "use --resume to continue it" in err, err
    changed = _medbench("evaluate", *args, "--out", str(out), "--resume", "--metrics", "dice")  # ... another run too
    _, err = changed.communicate(timeout=300)
    assert changed.returncode == 2 and "options.metrics" in err, err
    _ok(_medbench("evaluate", *args, "--out", str(out), "--resume"))
    assert _rows(out) == want
    pairs = _parts_pairs(out)
    assert len(pairs) == len(set(pairs)) == len(want[1])
    run = json.loads((out / "run.json").read_text())
    assert run["resumed"] is True and run["cases_run"] == len(want[1]) - done


def test_estimate_sizes_a_bigger_evaluation(tmp_path, eval_setup):
    args, _ = eval_setup
    out = tmp_path / "measured"
    _ok(_medbench("evaluate", *args, "--out", str(out)))
    result = json.loads(_invoke(["estimate", str(out), "--cases", "10000", "--workers", "8", "--cpu-cores", "8",
                                 "--json"]).output)
    stages = result["stages_s"]
    assert stages["decode"] > 0 and stages["metrics"] > 0 and stages["inference"] == 0 == stages["preprocess"]
    assert result["target"]["workers"] == 8 and result["wall_s"] > 0
    assert result["bottleneck"] in ("decode", "metrics", "write")
    assert "needs a run measured on a GPU" in _invoke(["estimate", str(out), "--cases", "10", "--gpus", "1"],
                                                      code=2).output
