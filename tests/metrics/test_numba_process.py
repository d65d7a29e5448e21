"""What loading the kernels costs a process: the ``medbench`` command skips numba's scan of every
distribution's entry points for extensions, a library user keeps it; neither imports
``scipy.linalg`` at the first dispatch."""

from __future__ import annotations

import os
import subprocess
import sys

from process_hooks import evaluate_with_hook

#: Records, in a marker file, every scan of entry points by numba and every import of scipy.linalg.
HOOK = '''
import importlib.metadata as md, os, sys
_marker = os.environ["MARKER"]
_entry_points = md.entry_points
def entry_points(*args, **kwargs):
    if sys._getframe(1).f_globals.get("__name__") == "numba.core.entrypoints":
        with open(_marker, "a") as f:
            f.write("numba scanned entry points\\n")
    return _entry_points(*args, **kwargs)
md.entry_points = entry_points
class _Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "scipy.linalg":
            with open(_marker, "a") as f:
                f.write("scipy.linalg imported\\n")
        return None
sys.meta_path.insert(0, _Watch())
'''

LIBRARY_USE = '''
import numpy as np
from medbench_fast.metrics.evaluate import evaluate_pair
a = np.zeros((4, 5, 6), np.uint8); a[1:3, 1:4, 2:5] = 1
print(evaluate_pair(a, a, spacing=(1.0, 1.0, 1.0))[0]["dice"])
'''


def test_the_command_loads_the_kernels_without_scanning_for_numba_extensions(tmp_path):
    marker = tmp_path / "marker.txt"
    marker.write_text("")
    proc = evaluate_with_hook(tmp_path, HOOK, MARKER=str(marker))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "metrics.parquet").exists()
    assert marker.read_text() == ""


def test_a_library_user_keeps_numbas_extensions(tmp_path):
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOOK)
    marker = tmp_path / "marker.txt"
    marker.write_text("")
    env = {**os.environ, "MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", LIBRARY_USE], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1.0"
    assert marker.read_text() == "numba scanned entry points\n"
