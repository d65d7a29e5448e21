"""A ``medbench evaluate`` process of one small case, run with a ``sitecustomize`` hook that every
interpreter of the command imports first (to record or change what happens inside it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from medbench_fast.data.reader import Volume, write_volume


def evaluate_with_hook(root: Path, hook: str, **env: str) -> subprocess.CompletedProcess:
    """Write a one-case pair of folders under ``root``, then run ``python -m medbench_fast evaluate``
    on them (into ``root/out``, without the volume cache) with ``hook`` as its ``sitecustomize``
    and ``env`` added to the environment."""
    ref = np.zeros((4, 6, 6), np.uint8)
    ref[1:3, 1:5, 2:5] = 1
    for folder in ("ref", "pred"):
        (root / folder).mkdir(parents=True)
        write_volume(Volume(ref, (1.0, 1.0, 1.0)), root / folder / "case1.nii.gz")
    (root / "hook").mkdir()
    (root / "hook" / "sitecustomize.py").write_text(hook)
    full_env = {**os.environ, **env,
                "PYTHONPATH": os.pathsep.join([str(root / "hook"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "medbench_fast", "evaluate", "--pred", str(root / "pred"),
                           "--ref", str(root / "ref"), "--out", str(root / "out"), "--quiet", "--no-cache"],
                          capture_output=True, text=True, env=full_env)
