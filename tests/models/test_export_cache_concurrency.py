"""Two processes exporting one model through the export cache never break each other."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import onnx
import pytest

SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from medbench_fast.demo.baseline import build_baseline
    from medbench_fast.models.exports import cached_export
    from medbench_fast.models.spec import ModelSpec, spec_path_for

    root, source, out, flags, force = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5] == "1"

    def build(path):
        (flags / f"built-{os.getpid()}").write_text("")
        deadline = time.time() + 2.0  # both processes inside their export at once (unless one waits for the other)
        while len(list(flags.glob("started-*"))) < 2 and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        build_baseline(path)
        return ModelSpec.from_json(spec_path_for(path))

    (flags / f"started-{os.getpid()}").write_text("")
    path, spec, hit = cached_export("baseline", [source], {}, out, build, cache_dir=root, force=force)
    print("hit" if hit else "built")
""")


@pytest.mark.parametrize("force", [False, True])
def test_two_processes_export_one_model(tmp_path, force):
    source = tmp_path / "source.txt"
    source.write_text("the model's source file")
    flags = tmp_path / "flags"
    flags.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "cache"), str(source),
                               str(tmp_path / f"out{i}.onnx"), str(flags), "1" if force else "0"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    results = sorted(out.strip() for out, _ in outputs)
    builds = list(flags.glob("built-*"))
    if force:
        assert results == ["built", "built"] and len(builds) == 2
    else:
        assert results == ["built", "hit"] and len(builds) == 1  # the second waited and reused the entry
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]
    for i in range(2):
        onnx.checker.check_model(onnx.load(str(tmp_path / f"out{i}.onnx")))
        assert (tmp_path / f"out{i}.onnx").read_bytes() == (entries[0] / "model.onnx").read_bytes()
        assert (tmp_path / f"out{i}.spec.json").is_file()
