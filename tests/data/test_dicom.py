"""DICOM datasets: series grids, DICOM-SEG and RTSTRUCT read onto them, bad input (pairing by
UIDs: ``tests/data/test_pairing.py``)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from reference.polygon_fill import fill_slice

from medbench_fast.data.cache import VolumeCache
from medbench_fast.data.checks import check_same_grid
from medbench_fast.data.dicom.labels import parse_rules
from medbench_fast.data.dicom.paths import ObjectPath, SeriesPath
from dicom_synthetic import SeriesSpec, circle_contours, write_ct_series, write_rtstruct, write_seg
from medbench_fast.data.dicom.write import write_prediction_seg
from medbench_fast.data.reader import VolumeError, load_volume
from medbench_fast.data.pairing import find_cases

#: Anisotropic, coronal (array Z runs along patient y; rows along -z), files in shuffled order.
CORONAL = SeriesSpec((18, 40, 36), spacing=(2.7, 1.3, 0.9), axes=((1, 0, 0), (0, 0, -1), (0, 1, 0)))
AXIAL = SeriesSpec((16, 48, 40), spacing=(3.0, 0.7, 0.8))


def _masks(spec):
    z, y, x = np.meshgrid(*[np.arange(n) for n in spec.shape], indexing="ij")
    ball = (z - 8) ** 2 / 16 + (y - 20) ** 2 / 80 + (x - 15) ** 2 / 50 <= 1
    box = (z >= 3) & (z < 12) & (y >= 25) & (y < 38) & (x >= 10) & (x < 30)
    return {1: ball, 2: box}


def _dataset(tmp_path, spec=CORONAL):
    ct = tmp_path / "images" / "case1"
    write_ct_series(ct, spec)
    return ct, SeriesPath(ct, str(pydicom.dcmread(next(ct.iterdir())).SeriesInstanceUID))


def _read(obj_path, series, rules=None, cache=None):
    kind = pydicom.dcmread(obj_path, stop_before_pixels=True).Modality
    return load_volume(ObjectPath(obj_path, kind, series, rules or parse_rules(None)), cache=cache)


def test_series_files_are_shuffled_and_the_grid_matches_simpleitk(tmp_path):
    ct, series = _dataset(tmp_path)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(ct.iterdir())]
    along = [float(h.ImagePositionPatient[1]) for h in headers]  # the coronal series' slice axis is patient y
    assert along != sorted(along) and [h.InstanceNumber for h in headers] != sorted(h.InstanceNumber for h in headers)
    image = load_volume(series)
    plain = load_volume(str(ct))  # SimpleITK on the folder
    assert image.shape == CORONAL.shape and np.array_equal(image.array, plain.array)
    from medbench_fast.data.dicom.paths import series_grid
    grid, _ = series_grid(series)
    assert np.allclose(grid.spacing, CORONAL.spacing) and np.allclose(grid.direction, plain.direction)
    assert np.allclose(grid.origin, plain.origin)


@pytest.mark.parametrize("spec", [CORONAL, AXIAL], ids=["coronal", "axial"])
def test_seg_round_trip_is_exact(tmp_path, spec):
    _, series = _dataset(tmp_path, spec)
    masks = _masks(spec)
    write_seg(tmp_path / "seg.dcm", series, masks)
    ref = _read(tmp_path / "seg.dcm", series)
    expected = np.maximum(masks[1] * 1, masks[2] * 2)
    assert np.array_equal(ref.array, expected)
    check_same_grid(load_volume(series), ref)


def test_fractional_seg_and_frames_covering_part_of_the_volume(tmp_path):
    _, series = _dataset(tmp_path)
    masks = _masks(CORONAL)
    write_seg(tmp_path / "frac.dcm", series, masks, fractional=True)
    assert np.array_equal(_read(tmp_path / "frac.dcm", series).array, np.maximum(masks[1] * 1, masks[2] * 2))
    ds = pydicom.dcmread(tmp_path / "frac.dcm")
    assert int(ds.NumberOfFrames) < 2 * CORONAL.shape[0]  # empty frames omitted: sparse, part of the volume


def test_seg_frames_in_any_order(tmp_path):
    _, series = _dataset(tmp_path)
    masks = _masks(CORONAL)
    write_seg(tmp_path / "seg.dcm", series, masks)
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    n = int(ds.NumberOfFrames)
    order = np.random.default_rng(0).permutation(n)
    frames = np.unpackbits(np.frombuffer(ds.PixelData, np.uint8), bitorder="little")[: n * ds.Rows * ds.Columns]
    frames = frames.reshape(n, -1)[order]
    ds.PixelData = np.packbits(frames.ravel(), bitorder="little").tobytes()
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence([ds.PerFrameFunctionalGroupsSequence[i] for i in order])
    ds.save_as(tmp_path / "shuffled.dcm")
    assert np.array_equal(_read(tmp_path / "shuffled.dcm", series).array, np.maximum(masks[1] * 1, masks[2] * 2))


def test_seg_labels_from_segment_label_rules(tmp_path):
    _, series = _dataset(tmp_path)
    masks = _masks(CORONAL)
    write_seg(tmp_path / "seg.dcm", series, masks, names={1: "Node_L", 2: "Parotid"})
    rules = parse_rules({"nocase:parotid": 3, "regex:Node_(L|R)": 5})
    ref = _read(tmp_path / "seg.dcm", series, rules)
    assert set(np.unique(ref.array)) == {0, 3} | ({5} if masks[1].any() else set())
    with pytest.raises(VolumeError, match=r"seg.dcm: segment\(s\) matching no dicom_labels rule: 1 'Node_L'"):
        _read(tmp_path / "seg.dcm", series, parse_rules({"Parotid": 1}))
    ignored = _read(tmp_path / "seg.dcm", series, parse_rules({"Parotid": 1}, "ignore"))
    assert ignored.meta["ignored"] == ["1 'Node_L'"] and np.array_equal(ignored.array, masks[2])
    code = _read(tmp_path / "seg.dcm", series, parse_rules({"code:99MEDBENCH:1002": 7}, "ignore"))
    assert np.array_equal(code.array, masks[2] * 7)


def _circles(spec, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    rois = []
    for name, slices in (("GTVp", range(3, 11)), ("Node_R", range(6, 15))):
        centre = (rng.uniform(12, 24), rng.uniform(14, 26))
        radius = rng.uniform(5.1, 8.9)
        rois.append((name, circle_contours(spec, centre, radius, slices), centre, radius, slices))
    return rois


def _to_index(spec, points):
    """Patient mm -> (i, j, k), solved independently of medbench's grid code."""
    steps = np.array([spec.spacing[2], spec.spacing[1], spec.spacing[0]])
    matrix = (np.asarray(spec.axes, dtype=np.float64) * steps[:, None]).T  # columns: one index step each
    return np.linalg.solve(matrix, (np.asarray(points) - np.asarray(spec.origin)).T).T


@pytest.mark.parametrize("spec", [CORONAL, AXIAL], ids=["coronal", "axial"])
def test_rtstruct_matches_an_independent_rasteriser_and_the_true_shape(tmp_path, spec):
    _, series = _dataset(tmp_path, spec)
    rois = _circles(spec)
    write_rtstruct(tmp_path / "rt.dcm", series, [(n, c) for n, c, *_ in rois])
    ref = _read(tmp_path / "rt.dcm", series)
    ds = pydicom.dcmread(tmp_path / "rt.dcm")
    expected = np.zeros(spec.shape, np.uint8)
    truth = np.zeros(spec.shape, np.uint8)
    jj, ii = np.meshgrid(np.arange(spec.shape[1]), np.arange(spec.shape[2]), indexing="ij")
    for number, (item, (_, _, centre, radius, slices)) in enumerate(zip(ds.ROIContourSequence, rois), start=1):
        for contour in item.ContourSequence:
            ijk = _to_index(spec, np.array(contour.ContourData, dtype=np.float64).reshape(-1, 3))
            k = int(round(ijk[:, 2].mean()))
            inside = fill_slice([ijk[:, :2]], spec.shape[1:])
            expected[k][inside] = np.maximum(expected[k][inside], number)
        disc = ((ii - centre[0]) * spec.spacing[2]) ** 2 + ((jj - centre[1]) * spec.spacing[1]) ** 2 <= radius ** 2
        for k in slices:
            truth[k][disc] = np.maximum(truth[k][disc], number)
    assert np.array_equal(ref.array, expected)  # voxel for voxel
    for label in (1, 2):
        a, b = ref.array == label, truth == label
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.99


def test_rtstruct_holes_and_islands_follow_even_odd(tmp_path):
    _, series = _dataset(tmp_path, AXIAL)
    outer = circle_contours(AXIAL, (20, 24), 12.0, [5])
    hole = circle_contours(AXIAL, (20, 24), 6.0, [5])
    island = circle_contours(AXIAL, (20, 24), 2.5, [5])
    write_rtstruct(tmp_path / "rt.dcm", series, [("ring", outer + hole + island)])
    plane = _read(tmp_path / "rt.dcm", series).array[5]
    assert plane[24, 20] == 1 and plane[24, 20 + int(4.5 / 0.8)] == 0 and plane[24, 20 + int(9 / 0.8)] == 1


def _bad_rtstruct(tmp_path, series, spec, **kwargs):
    write_rtstruct(tmp_path / "bad.dcm", series, kwargs.pop("rois"), **kwargs)
    return tmp_path / "bad.dcm"


@pytest.mark.parametrize("case, message", [
    ("two_points", r"ROI 'GTV' \(number 1\): contour 1 has 2 point\(s\)"),
    ("empty", r"ROI 'GTV' \(number 1\): is empty"),
    ("between", r"ROI 'GTV' \(number 1\): contour 1 lies between slices"),
    ("outside", r"ROI 'GTV' \(number 1\): contour 1 lies off the series"),
    ("frame", r"frame of reference 1\.2\.3 differs"),
    ("unmatched", r"ROI\(s\) matching no dicom_labels rule: 1 'GTV'"),
])
def test_bad_rtstruct_names_file_and_roi(tmp_path, case, message):
    _, series = _dataset(tmp_path, AXIAL)
    contour = circle_contours(AXIAL, (20, 24), 5.0, [4])
    rois = {"two_points": [("GTV", [contour[0][:2]])], "empty": [("GTV", [])],
            "between": [("GTV", circle_contours(AXIAL, (20, 24), 5.0, [4.5]))],
            "outside": [("GTV", circle_contours(AXIAL, (20, 24), 5.0, [40]))]}.get(case, [("GTV", contour)])
    path = _bad_rtstruct(tmp_path, series, AXIAL, rois=rois, frame_uid="1.2.3" if case == "frame" else None)
    rules = parse_rules({"BODY": 1}) if case == "unmatched" else None
    with pytest.raises(VolumeError, match=message) as info:
        _read(path, series, rules)
    assert str(path) in str(info.value)


def test_gantry_tilt_is_an_error(tmp_path):
    ct, series = _dataset(tmp_path, AXIAL)
    for p in ct.iterdir():  # shear: each slice shifted in y by its z
        ds = pydicom.dcmread(p)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.3 * (z - AXIAL.origin[2]), z]
        ds.save_as(p)
    write_rtstruct(tmp_path / "rt.dcm", series, [("GTV", circle_contours(AXIAL, (20, 24), 5.0, [4]))])
    with pytest.raises(VolumeError, match="gantry-tilted series"):
        _read(tmp_path / "rt.dcm", series)


def test_rasterised_reference_is_cached_and_memory_mapped(tmp_path):
    _, series = _dataset(tmp_path, AXIAL)
    write_rtstruct(tmp_path / "rt.dcm", series, [("GTV", circle_contours(AXIAL, (20, 24), 5.0, [4, 5]))])
    cache = VolumeCache(tmp_path / "cache", min_bytes=0, max_decode_rate=None)  # a small volume is stored too
    first = _read(tmp_path / "rt.dcm", series, cache=cache)
    second = _read(tmp_path / "rt.dcm", series, cache=cache)
    assert first.meta["cache"] == "miss" and second.meta["cache"] == "hit"
    assert isinstance(second.array.base, __import__("mmap").mmap) or not second.array.flags.writeable
    assert np.array_equal(first.array, second.array) and second.path == str(tmp_path / "rt.dcm")
    other = _read(tmp_path / "rt.dcm", series, parse_rules({"GTV": 4}), cache=cache)  # rules are part of the key
    assert other.meta["cache"] == "miss" and set(np.unique(other.array)) == {0, 4}


def test_prediction_written_as_seg_reads_back_exactly(tmp_path):
    _, series = _dataset(tmp_path)
    labels = np.maximum(_masks(CORONAL)[1] * 1, _masks(CORONAL)[2] * 3).astype(np.uint8)
    write_prediction_seg(labels, series, tmp_path / "pred.dcm", model="m", label_names={1: "ball"})
    ds = pydicom.dcmread(tmp_path / "pred.dcm", stop_before_pixels=True)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == series.uid
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["ball", "label 2", "label 3"]
    assert np.array_equal(_read(tmp_path / "pred.dcm", series).array, labels)


@pytest.mark.real
def test_real_ct_slice_from_pydicom_read_end_to_end(tmp_path):
    from package_registry import RegistryError, dicom_ct_slice

    try:
        source = dicom_ct_slice(tmp_path / "downloads")
    except RegistryError as exc:
        pytest.skip(str(exc))
    ct = tmp_path / "images" / "ct_small"
    ct.mkdir(parents=True)
    shutil.copy(source, ct / "CT_small.dcm")
    header = pydicom.dcmread(source, stop_before_pixels=True)
    series = SeriesPath(ct, str(header.SeriesInstanceUID))
    image = load_volume(series)
    assert image.shape == (1, 128, 128) and np.allclose(image.spacing[1:], 0.661468)
    mask = np.zeros(image.shape, bool)
    mask[0, 40:90, 30:100] = image.array[0, 40:90, 30:100] > 0
    write_seg(tmp_path / "seg" / "ct_small.dcm", series, {1: mask})
    cases = find_cases(image_dir=str(tmp_path / "images"), seg_dir=str(tmp_path / "seg"))
    assert [c.case_id for c in cases] == ["ct_small"] and cases[0].problem is None
    ref = load_volume(cases[0].ref_path)
    assert np.array_equal(ref.array, mask)
    check_same_grid(load_volume(cases[0].image_path), ref)
    origin = np.array([float(v) for v in header.ImagePositionPatient])  # a 20 mm disc on the real slice
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    disc = origin + np.column_stack([42 + 20 * np.cos(t), 42 + 20 * np.sin(t), np.zeros_like(t)])
    write_rtstruct(tmp_path / "rt.dcm", series, [("GTV", [disc])])
    area = _read(tmp_path / "rt.dcm", series).array.sum() * 0.661468 ** 2
    assert abs(area - np.pi * 400) < 0.02 * np.pi * 400
