"""Cost of the reader's own checks (completeness, non-finite voxels) over SimpleITK's decode.

Run: ``python bench/bench_read_checks.py [--repeat 5]``. Prints medians of ``load_volume``
without a cache and of SimpleITK's ``ReadImage`` alone on the same files, in this process,
and writes ``bench/results/read_checks.json``. The checks run on the first read only: later
reads come from the volume cache.

Files: a CT-sized uint8 label map and a float32 image with zeros (.nii.gz: read by the
project's NIfTI reader, one inflate, the checks on that buffer) and the same image as
compressed MetaImage (.mha: SimpleITK decodes it, and the data is inflated again to check it
holds every voxel).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, timed, write_results  # noqa: E402

from medbench_fast.data.reader import Volume, load_volume, write_volume  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    labels = np.zeros((160, 512, 512), np.uint8)
    labels[20:140, 100:400, 100:400] = 1
    labels[50:90, 200:300, 200:300] = 2
    image = rng.normal(0, 200, (96, 256, 256)).astype(np.float32)
    image[:, :20] = 0
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {"labels uint8 160x512x512 .nii.gz": (Path(tmp) / "labels.nii.gz", labels),
                 "image float32 96x256x256 .nii.gz": (Path(tmp) / "image.nii.gz", image),
                 "image float32 96x256x256 .mha (compressed)": (Path(tmp) / "image.mha", image)}
        for path, array in files.values():
            write_volume(Volume(array, (1.0, 1.0, 1.0)), path)
        for name, (path, _) in files.items():
            ours = timed(lambda p=path: load_volume(p), repeat=args.repeat)["median_s"]
            itk = timed(lambda p=path: sitk.GetArrayFromImage(sitk.ReadImage(str(p))), repeat=args.repeat)["median_s"]
            results[name] = {"load_volume_s": ours, "simpleitk_s": itk, "ratio": ours / itk}
            rows.append([name, f"{ours:.3f}", f"{itk:.3f}", f"{ours / itk:.2f}x"])
    print(markdown_table(["file", "load_volume s", "SimpleITK alone s", "ratio"], rows))
    print(write_results("read_checks", {"repeat": args.repeat, "files": results}))


if __name__ == "__main__":
    main()
