"""GPU facts with a fake ``nvidia-smi`` on PATH and a fake NVML: parsing that cannot crash,
the device used resolved through ``CUDA_VISIBLE_DEVICES``, per-process GPU memory."""

from __future__ import annotations

import os
import socket
import stat
import sys
import time
from types import SimpleNamespace

import pytest

from medbench_fast import environment
from medbench_fast.environment import GpuMemory, GpuWatch

UUID0 = "GPU-0a1b2c3d-1111-2222-3333-444455556666"
UUID1 = "GPU-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"

QUERY_OUTPUT = f"""WARNING: infoROM is corrupted at gpu 0000:41:00.0
0, {UUID0}, NVIDIA H100 80GB HBM3, 550.54.15, 81559

1, {UUID1}, NVIDIA A100-SXM4-40GB, 550.54.15, 40960
Failed to initialize NVML: Unknown Error, but, still, six, fields
2, not-a-uuid, broken row, x, y
"""
HEADER = """+-----------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |
|-------------------------------+----------------------+----------------------+
"""


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """Put an ``nvidia-smi`` on PATH that prints ``query`` for queries and ``HEADER`` otherwise."""
    def install(query: str = QUERY_OUTPUT, code: int = 0):
        folder = tmp_path / "bin"
        folder.mkdir(exist_ok=True)
        (folder / "query.txt").write_text(query)
        (folder / "header.txt").write_text(HEADER)
        script = folder / "nvidia-smi"
        script.write_text(f"#!/bin/sh\ncase \"$1\" in --query*) cat '{folder}/query.txt';; *) cat '{folder}/header.txt';; "
                          f"esac\nexit {code}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return install


def test_extra_lines_and_several_gpus(fake_smi, monkeypatch):
    fake_smi()
    gpus = environment.gpu_info()
    assert [(g["index"], g["uuid"], g["name"], g["memory_total_mib"]) for g in gpus] == [
        (0, UUID0, "NVIDIA H100 80GB HBM3", 81559.0), (1, UUID1, "NVIDIA A100-SXM4-40GB", 40960.0)]
    assert all(g["driver"] == "550.54.15" and g["driver_cuda"] == "12.4" for g in gpus)


@pytest.mark.parametrize("visible, ordinal, uuid", [
    (None, 1, UUID1), ("1,0", 0, UUID1), ("1,0", 1, UUID0), (UUID1[:12], 0, UUID1), (f"{UUID0},{UUID1}", 1, UUID1),
    ("MIG-5c1a2b3c-aaaa-bbbb-cccc-000011112222", 0, "MIG-5c1a2b3c-aaaa-bbbb-cccc-000011112222"), ("0", 1, None),
])
def test_visible_gpu_by_uuid(fake_smi, monkeypatch, visible, ordinal, uuid):
    fake_smi()
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    gpu = environment.visible_gpu(ordinal)
    assert (gpu or {}).get("uuid") == uuid


def test_hardware_records_the_device_used(fake_smi, monkeypatch):
    import onnxruntime

    fake_smi()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setattr(environment, "DEVICES_USED", {0})
    nvml = FakeNvml(used=30 << 30, processes=[SimpleNamespace(pid=os.getpid(), usedGpuMemory=5 << 30)])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(GpuWatch, "_process", None)
    hw = environment.hardware()
    assert hw["gpus_used"] == [{"index": 1, "uuid": UUID1, "name": "NVIDIA A100-SXM4-40GB", "driver": "550.54.15",
                                "memory_total_mib": 40960.0, "process_peak_mib": 5120.0,
                                "processes": [{"pid": os.getpid(), "host": socket.gethostname(),
                                               "process_peak_mib": 5120.0, "memory_source": "process"}]}]
    assert len(hw["gpus"]) == 2
    assert hw["onnxruntime_build"]["version"] == onnxruntime.__version__


@pytest.mark.parametrize("query, code", [("", 0), ("garbage\n,,,,\n", 0), (QUERY_OUTPUT, 9), ("\x00\xff", 0)])
def test_broken_nvidia_smi_never_raises(fake_smi, query, code):
    fake_smi(query, code)
    assert environment.gpu_info() is None
    assert environment.hardware()["gpus"] is None


def test_no_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert environment.gpu_info() is None and environment.visible_gpu(0) is None


class FakeNvml(SimpleNamespace):
    """NVML stand-in: device-wide used memory and a compute-process list per UUID."""

    class NVMLError(Exception):
        pass

    def __init__(self, used: int, processes: list):
        super().__init__(used=used, processes=processes, handles=[])

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.handles.append(uuid)
        return uuid

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=self.used)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return self.processes


def test_gpu_memory_is_this_process_on_the_device_used(fake_smi, monkeypatch):
    fake_smi()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", UUID1)
    nvml = FakeNvml(used=30 << 30, processes=[SimpleNamespace(pid=1, usedGpuMemory=20 << 30),
                                              SimpleNamespace(pid=os.getpid(), usedGpuMemory=3 << 30)])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    memory = GpuMemory(0)
    assert nvml.handles == [UUID1] and memory.uuid == UUID1
    memory.sample()
    nvml.processes[1].usedGpuMemory = 2 << 30
    memory.sample()
    assert memory.peak_mib == 3 * 1024 and memory.source == "process"


def test_gpu_memory_falls_back_to_the_delta(fake_smi, monkeypatch):
    fake_smi()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml(used=10 << 30, processes=[])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    memory = GpuMemory(0)
    nvml.used = 12 << 30
    assert memory.sample() == 2 * 1024 and memory.source == "device_delta" and nvml.handles == [UUID0]


def test_gpu_memory_without_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    memory = GpuMemory(0)
    assert memory.sample() is None and memory.peak_mib is None


def test_uuid_from_the_cuda_driver_without_nvidia_smi(monkeypatch, tmp_path):
    """With libcuda loadable, the CUDA ordinal's UUID comes from the driver (its own
    numbering, CUDA_VISIBLE_DEVICES applied) and the name and memory from NVML."""
    import ctypes

    raw = bytes.fromhex(UUID1[4:].replace("-", ""))

    class Driver:
        def cuInit(self, flags):
            return 0

        def cuDeviceGet(self, ref, ordinal):
            ctypes.cast(ref, ctypes.POINTER(ctypes.c_int))[0] = ordinal
            return 0 if ordinal == 0 else 101

        def cuDeviceGetUuid_v2(self, out, device):
            ctypes.memmove(out, raw, 16)
            return 0

    monkeypatch.setattr(environment.ctypes, "CDLL", lambda name: Driver())
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    nvml = FakeNvml(used=0, processes=[])
    nvml.nvmlDeviceGetName = lambda handle: b"NVIDIA A100-SXM4-40GB"
    nvml.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    nvml.nvmlDeviceGetMemoryInfo = lambda handle: SimpleNamespace(used=0, total=40 << 30)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert environment.cuda_device_uuid(0) == UUID1 and environment.cuda_device_uuid(1) is None
    assert environment.visible_gpu(0) == {"uuid": UUID1, "name": "NVIDIA A100-SXM4-40GB", "driver": "550.54.15",
                                       "memory_total_mib": 40 * 1024}


def test_gpu_memory_is_sampled_during_the_run_and_gathered_from_every_worker(fake_smi, monkeypatch):
    """The watch samples while work runs (a peak between samples is kept after memory drops);
    run.json's gpus_used gathers every worker process's record (processes and Ray executors)."""
    fake_smi()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(environment, "DEVICES_USED", {0})
    nvml = FakeNvml(used=10 << 30, processes=[SimpleNamespace(pid=os.getpid(), usedGpuMemory=1 << 30)])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    watch = GpuWatch(every=0.01)
    watch.before_sessions([0])
    watch.start()
    nvml.processes[0].usedGpuMemory = 7 << 30
    deadline = time.monotonic() + 5
    while watch.memories[0].peak_mib != 7 * 1024 and time.monotonic() < deadline:
        time.sleep(0.01)
    nvml.processes[0].usedGpuMemory = 2 << 30
    mine = watch.record()
    watch.stop()
    assert mine[0]["uuid"] == UUID0 and mine[0]["process_peak_mib"] == 7 * 1024
    other = {**mine[0], "pid": 4242, "process_peak_mib": 3 * 1024.0}
    second = {**mine[0], "uuid": UUID1, "name": "NVIDIA A100-SXM4-40GB", "pid": 4343, "process_peak_mib": None,
              "memory_source": "not measured"}
    workers = [{"executor": "processes", "gpus": [mine[0]]}, {"executor": "processes", "gpus": [other]},
               {"executor": "ray", "gpus": [second]}, {"executor": "ray", "gpus": None}]
    used = environment.gpus_used(workers)
    assert [g["uuid"] for g in used] == [UUID0, UUID1]
    assert used[0]["process_peak_mib"] == 7 * 1024 and [p["pid"] for p in used[0]["processes"]] == [os.getpid(), 4242]
    assert used[1]["process_peak_mib"] is None and used[1]["processes"][0]["memory_source"] == "not measured"
