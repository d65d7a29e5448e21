"""Reading DICOM-SEG and rasterising RTSTRUCT onto a CT series, against SimpleITK reading the series.

Run: ``python bench/bench_dicom.py [--slices 300] [--rois 30] [--repeat 3]``. Prints medians
and ratios measured in this process and writes ``bench/results/dicom.json``.

Setup (untimed): a ``slices`` x 512 x 512 CT series written with pydicom (shuffled file
names), a two-segment DICOM-SEG (highdicom) and an RTSTRUCT of ``rois`` ROIs (96-point
circular contours on 40 slices each). Timed, no volume cache:
- baseline: SimpleITK ``ImageSeriesReader`` on the series folder (series alone);
- series + SEG: ``load_volume`` of the series and of the SEG placed on it (what a run reads);
- RTSTRUCT: ``load_volume`` of the structure set rasterised onto the series (headers, parsing and fill);
- fill only: the even-odd kernel for all ROIs (contours already in voxel indices).
Targets: series + SEG within 1.5x of the baseline; RTSTRUCT below 1x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the generators and fetchers tests use
from common import markdown_table, timed, write_results  # noqa: E402
from dicom_synthetic import SeriesSpec, circle_contours, write_ct_series, write_rtstruct, write_seg  # noqa: E402

from medbench_fast.data.dicom.labels import LabelRules  # noqa: E402
from medbench_fast.data.dicom.paths import ObjectPath, SeriesPath, series_grid  # noqa: E402
from medbench_fast.data.reader import load_volume  # noqa: E402


def setup(root: Path, slices: int, n_rois: int) -> tuple[SeriesPath, ObjectPath, ObjectPath]:
    import pydicom

    spec = SeriesSpec((slices, 512, 512), spacing=(1.0, 0.7, 0.7))
    write_ct_series(root / "ct", spec)
    uid = str(pydicom.dcmread(next((root / "ct").iterdir()), stop_before_pixels=True).SeriesInstanceUID)
    series = SeriesPath(root / "ct", uid)
    z, y, x = np.ogrid[:slices, :512, :512]
    ball = ((z - slices / 2) / (slices / 3)) ** 2 + ((y - 256) / 150) ** 2 + ((x - 256) / 170) ** 2 <= 1
    box = (z > slices // 4) & (z < slices // 2) & (y > 100) & (y < 200) & (x > 300) & (x < 420)
    write_seg(root / "seg.dcm", series, {1: ball, 2: box})
    rng = np.random.default_rng(0)
    rois = []
    for n in range(n_rois):
        first = int(rng.integers(0, slices - 40))
        rois.append((f"ROI_{n}", circle_contours(spec, (rng.uniform(100, 412), rng.uniform(100, 412)),
                                                 rng.uniform(5, 60), range(first, first + 40))))
    write_rtstruct(root / "rt.dcm", series, rois)
    rules = LabelRules()
    return series, ObjectPath(root / "seg.dcm", "SEG", series, rules), ObjectPath(root / "rt.dcm", "RTSTRUCT", series, rules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--rois", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import SimpleITK as sitk

    from medbench_fast.data.dicom.rtstruct import contour_edges, roi_contours
    from medbench_fast.kernels.polyfill import fill_even_odd

    with tempfile.TemporaryDirectory() as tmp:
        series, seg, rt = setup(Path(tmp), args.slices, args.rois)

        def sitk_series():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series)))
            image = reader.Execute()
            return sitk.GetArrayViewFromImage(image).sum()

        grid, _ = series_grid(series)
        import pydicom
        planned = [(n, contour_edges(c, grid, name)) for n, name, c in roi_contours(pydicom.dcmread(rt), str(rt))]

        def fill_only():
            out = np.zeros(grid.shape, np.uint8)
            for label, (edges, starts, slices) in planned:
                fill_even_odd(edges, starts, slices, out, np.uint8(label))

        results = {
            "sitk_series": timed(sitk_series, repeat=args.repeat),
            "series_plus_seg": timed(lambda: (load_volume(series), load_volume(seg)), repeat=args.repeat),
            "seg_only": timed(lambda: load_volume(seg), repeat=args.repeat),
            "rtstruct": timed(lambda: load_volume(rt), repeat=args.repeat),
            "fill_only": timed(fill_only, repeat=args.repeat),
        }
    base = results["sitk_series"]["median_s"]
    ratios = {k: v["median_s"] / base for k, v in results.items()}
    rows = [[k, f"{v['median_s'] * 1e3:.0f}", f"{ratios[k]:.2f}"] for k, v in results.items()]
    print(f"{args.slices} x 512 x 512 CT series, 2-segment SEG, {args.rois}-ROI RTSTRUCT (no cache)")
    print(markdown_table(["read", "median ms", "x SimpleITK series"], rows))
    print(f"series + SEG: {ratios['series_plus_seg']:.2f}x SimpleITK (target <= 1.5); "
          f"RTSTRUCT {args.rois} ROIs: {ratios['rtstruct']:.2f}x (target < 1)")
    path = write_results("dicom", {"slices": args.slices, "rois": args.rois, "results": results, "ratios": ratios,
                                   "targets": {"series_plus_seg": 1.5, "rtstruct": 1.0}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
