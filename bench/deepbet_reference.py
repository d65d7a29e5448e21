"""deepbet's own pipeline on brain scans, for ``bench_models.py`` to compare Dice against.

Run with a Python that has ``deepbet==1.0.2`` and its dependencies (kept out of
medbench-fast's environment), e.g.::

    python -m venv --system-site-packages /tmp/deepbet-venv
    /tmp/deepbet-venv/bin/pip install deepbet==1.0.2
    /tmp/deepbet-venv/bin/python bench/deepbet_reference.py OUT_DIR NAME=IMAGE [NAME=IMAGE ...]

Writes ``OUT_DIR/<NAME>_mask.nii.gz`` per scan and prints ``{name: seconds}`` as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> None:
    from deepbet.bet import BrainExtraction

    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    bet = BrainExtraction(no_gpu=True)
    seconds = {}
    for item in argv[1:]:
        name, image = item.split("=", 1)
        start = time.perf_counter()
        bet.run(image, mask_path=str(out / f"{name}_mask.nii.gz"))
        seconds[name] = time.perf_counter() - start
    print(json.dumps(seconds))


if __name__ == "__main__":
    main(sys.argv[1:])
