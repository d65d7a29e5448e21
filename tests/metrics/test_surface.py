"""Public surface metrics against the float64 references, hand-worked geometry, empty masks, bad input."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference import surface as ref_surface

from medbench_fast.metrics.surface import SURFACE_METRICS, label_surface_metrics, surface_distances

MODES = [("voxel", "max"), ("voxel", "pooled"), ("surfel", "max"), ("surfel", "pooled")]
PAIRS = list(ref_surface.generated_pairs(seed=2024, n=70))


def _metrics(ref, pred, label, spacing, surface="voxel", hd95_mode="max", tolerance_mm=1.0, box=...):
    if box is ...:
        box = ref_surface.box_of(ref, pred, label)
    return label_surface_metrics(ref, pred, label, box=box, spacing=spacing, tolerance_mm=tolerance_mm,
                                 surface=surface, hd95_mode=hd95_mode)


def _assert_close(got, expected, rtol=1e-6):
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=rtol, abs=0), name


@pytest.mark.parametrize("surface,hd95_mode", MODES)
@pytest.mark.parametrize("name,ref,pred,label,spacing", PAIRS, ids=[p[0] for p in PAIRS])
def test_matches_reference(name, ref, pred, label, spacing, surface, hd95_mode):
    tolerance = 1.0 + int(name.split("-")[0]) % 7 / 3.0
    expected = ref_surface.metrics(ref == label, pred == label, spacing, tolerance_mm=tolerance,
                                   surface=surface, hd95_mode=hd95_mode)
    got = _metrics(ref, pred, label, spacing, surface, hd95_mode, tolerance)
    _assert_close(got, expected)


@pytest.mark.parametrize("surface", ["voxel", "surfel"])
@pytest.mark.parametrize("name,ref,pred,label,spacing", PAIRS[:21], ids=[p[0] for p in PAIRS[:21]])
def test_directed_distances_match_reference(name, ref, pred, label, spacing, surface):
    got = surface_distances(ref, pred, label, box=ref_surface.box_of(ref, pred, label), spacing=spacing,
                            surface=surface)
    d_r, d_p, a_r, a_p = ref_surface.surface_distances(ref == label, pred == label, spacing, surface)
    np.testing.assert_allclose(got.ref_to_pred, d_r, rtol=1e-12)
    np.testing.assert_allclose(got.pred_to_ref, d_p, rtol=1e-12)
    if surface == "surfel":
        np.testing.assert_allclose(got.ref_areas, a_r, rtol=1e-12)
        np.testing.assert_allclose(got.pred_areas, a_p, rtol=1e-12)
    else:
        assert got.ref_areas is None and got.pred_areas is None


# -- hand-worked geometry ---------------------------------------------------------------

SPACING = (2.0, 0.5, 1.5)


def _two_voxels():
    ref = np.zeros((6, 8, 5), np.uint8)
    pred = np.zeros((6, 8, 5), np.uint8)
    ref[1, 2, 3] = 1
    pred[4, 6, 3] = 1   # 3 slices (6 mm) and 4 rows (2 mm) away: sqrt(36 + 4) mm
    return ref, pred


@pytest.mark.parametrize("hd95_mode", ["max", "pooled"])
def test_two_voxels_voxel_mode(hd95_mode):
    ref, pred = _two_voxels()
    d = math.sqrt(40.0)
    got = _metrics(ref, pred, 1, SPACING, "voxel", hd95_mode, tolerance_mm=6.4)
    _assert_close(got, {"hd": d, "hd95": d, "assd": d, "masd": d, "nsd": 1.0}, rtol=1e-12)
    assert _metrics(ref, pred, 1, SPACING, tolerance_mm=6.3)["nsd"] == 0.0


def test_two_voxels_surfel_mode():
    # Corners of each voxel span 2 positions per axis; the nearest corner of the other
    # voxel is 2 or 3 slices (4 or 6 mm), 3 or 4 rows (1.5 or 2 mm) and 0 columns away,
    # each combination for two corners of equal area.
    ref, pred = _two_voxels()
    distances = [math.sqrt(a * a + b * b) for a in (4.0, 6.0) for b in (1.5, 2.0)]
    got = _metrics(ref, pred, 1, SPACING, "surfel", tolerance_mm=4.5)
    _assert_close(got, {"hd": max(distances), "hd95": max(distances), "assd": np.mean(distances),
                        "masd": np.mean(distances), "nsd": 0.5}, rtol=1e-12)


def test_overlapping_voxel_is_distance_zero():
    ref = np.zeros((5, 5, 5), np.uint8)
    ref[1:4, 1:4, 1:4] = 1
    pred = ref.copy()
    got = _metrics(ref, pred, 1, (3.0, 1.0, 0.5))
    assert got == {"hd": 0.0, "hd95": 0.0, "assd": 0.0, "masd": 0.0, "nsd": 1.0}


def test_cube_border_is_its_faces():
    # A 3x3x3 cube has 26 border voxels. Shifted up one slice (2.5 mm): the 9 bottom-face
    # voxels are 2.5 mm from the copy's bottom face, the 16 side voxels of the upper two
    # slices lie on the copy's sides (0 mm), and the top-face centre is 1 mm from a side.
    ref = np.zeros((7, 5, 5), np.uint8)
    ref[1:4, 1:4, 1:4] = 1
    pred = np.roll(ref, 1, axis=0)
    sd = surface_distances(ref, pred, 1, box=((1, 5), (1, 4), (1, 4)), spacing=(2.5, 1.0, 1.0))
    assert sd.ref_to_pred.size == 26 and sd.pred_to_ref.size == 26
    values, counts = np.unique(np.round(sd.ref_to_pred, 12), return_counts=True)
    assert values.tolist() == [0.0, 1.0, 2.5] and counts.tolist() == [16, 1, 9]


# -- empty masks: METRICS.md table, every metric, both surface modes --------------------

BOTH_EMPTY = {"hd": 0.0, "hd95": 0.0, "assd": 0.0, "masd": 0.0, "nsd": 1.0}
ONE_EMPTY = {"hd": math.inf, "hd95": math.inf, "assd": math.inf, "masd": math.inf, "nsd": 0.0}


def _blob_pair():
    ref = np.zeros((6, 7, 8), np.uint8)
    ref[2:4, 2:5, 3:6] = 1
    return ref, np.zeros_like(ref)


@pytest.mark.parametrize("surface,hd95_mode", MODES)
def test_both_empty_without_box(surface, hd95_mode):
    ref = np.zeros((4, 5, 6), np.uint8)
    assert _metrics(ref, ref, 1, (1.0, 1.0, 1.0), surface, hd95_mode, box=None) == BOTH_EMPTY


@pytest.mark.parametrize("surface,hd95_mode", MODES)
def test_both_empty_with_box(surface, hd95_mode):
    ref = np.full((4, 5, 6), 2, np.uint8)
    got = _metrics(ref, ref, 1, (1.0, 1.0, 1.0), surface, hd95_mode, box=((0, 4), (0, 5), (0, 6)))
    assert got == BOTH_EMPTY


@pytest.mark.parametrize("surface,hd95_mode", MODES)
def test_ref_empty(surface, hd95_mode):
    full, empty = _blob_pair()
    assert _metrics(empty, full, 1, (1.0, 2.0, 0.5), surface, hd95_mode) == ONE_EMPTY


@pytest.mark.parametrize("surface,hd95_mode", MODES)
def test_pred_empty(surface, hd95_mode):
    full, empty = _blob_pair()
    assert _metrics(full, empty, 1, (1.0, 2.0, 0.5), surface, hd95_mode) == ONE_EMPTY


@pytest.mark.parametrize("surface", ["voxel", "surfel"])
def test_empty_intermediate(surface):
    full, empty = _blob_pair()
    sd = surface_distances(full, empty, 1, box=ref_surface.box_of(full, empty, 1), spacing=(1, 1, 1),
                           surface=surface)
    assert sd.ref_to_pred.size > 0 and np.all(np.isinf(sd.ref_to_pred)) and sd.pred_to_ref.size == 0


# -- inputs ------------------------------------------------------------------------------

def test_readonly_memmap_input_is_not_written(tmp_path):
    _, ref, pred, label, spacing = PAIRS[5]
    paths = []
    for tag, arr in (("ref", ref), ("pred", pred)):
        path = tmp_path / f"{tag}.npy"
        np.save(path, arr)
        paths.append(path)
    ref_mm, pred_mm = (np.load(p, mmap_mode="r") for p in paths)
    expected = _metrics(ref, pred, label, spacing)
    for surface in ("voxel", "surfel"):
        got = _metrics(ref_mm, pred_mm, label, spacing, surface)
        assert got == _metrics(ref, pred, label, spacing, surface)
    assert expected == _metrics(ref_mm, pred_mm, label, spacing)
    np.testing.assert_array_equal(ref_mm, ref)
    np.testing.assert_array_equal(pred_mm, pred)


def test_fortran_order_input_gives_the_same_values():
    _, ref, pred, label, spacing = PAIRS[7]
    for surface in ("voxel", "surfel"):
        c_order = _metrics(ref, pred, label, spacing, surface)
        f_order = _metrics(np.asfortranarray(ref), np.asfortranarray(pred), label, spacing, surface)
        assert c_order == f_order


def test_multilabel_only_counts_the_label():
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 4, (12, 10, 9)).astype(np.uint16)
    pred = rng.integers(0, 4, (12, 10, 9)).astype(np.uint16)
    spacing = (1.2, 0.9, 2.0)
    for label in (1, 3):
        got = _metrics(ref, pred, label, spacing, tolerance_mm=1.5)
        _assert_close(got, ref_surface.metrics(ref == label, pred == label, spacing, tolerance_mm=1.5))


def test_returns_only_requested_metrics_in_order():
    _, ref, pred, label, spacing = PAIRS[0]
    got = label_surface_metrics(ref, pred, label, box=ref_surface.box_of(ref, pred, label), spacing=spacing,
                                metrics=("nsd", "hd"))
    assert list(got) == ["nsd", "hd"]


def test_repeated_calls_are_bitwise_identical():
    _, ref, pred, label, spacing = PAIRS[14]
    assert _metrics(ref, pred, label, spacing) == _metrics(ref, pred, label, spacing)


def test_tolerance_slack_counts_float32_header_spacing():
    # 0.8 stored as float32 reads back as 0.800000011920929: a neighbour 1.25 rows away at
    # the nominal spacing sits exactly at tau = 1.0 mm and must still count.
    ref = np.zeros((3, 9, 3), np.uint8)
    pred = np.zeros((3, 9, 3), np.uint8)
    ref[1, 2, 1] = 1
    pred[1, 7, 1] = 1
    spacing = tuple(float(np.float32(s)) for s in (1.0, 0.8, 0.8))
    assert _metrics(ref, pred, 1, spacing, tolerance_mm=4.0)["nsd"] == 1.0


# -- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("spacing", [None, (1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -2.0, 1.0),
                                     (float("nan"), 1.0, 1.0), (1.0, float("inf"), 1.0)])
def test_bad_spacing_names_spacing(spacing):
    ref, pred = _blob_pair()
    with pytest.raises(ValueError, match="spacing"):
        label_surface_metrics(ref, pred, 1, box=ref_surface.box_of(ref, pred, 1), spacing=spacing)


@pytest.mark.parametrize("which", ["ref", "pred"])
def test_2d_input_names_the_argument(which):
    ref, pred = _blob_pair()
    args = {"ref": ref, "pred": pred}
    args[which] = args[which][0]
    with pytest.raises(ValueError, match=which):
        label_surface_metrics(args["ref"], args["pred"], 1, box=((0, 1), (0, 1), (0, 1)), spacing=(1, 1, 1))


@pytest.mark.parametrize("kwargs,argument", [
    ({"surface": "mesh"}, "surface"),
    ({"hd95_mode": "mean"}, "hd95_mode"),
    ({"metrics": ("hd", "dice")}, "metrics"),
    ({"tolerance_mm": -1.0}, "tolerance_mm"),
    ({"tolerance_mm": float("nan")}, "tolerance_mm"),
    ({"box": ((0, 9), (0, 7), (0, 8))}, "box"),
    ({"box": ((0, 6), (0, 7))}, "box"),
    ({"spacing": "1mm"}, "spacing"),
])
def test_bad_options_name_the_argument(kwargs, argument):
    ref, pred = _blob_pair()
    options = {"box": ref_surface.box_of(ref, pred, 1), "spacing": (1, 1, 1)} | kwargs
    with pytest.raises(ValueError, match=argument):
        label_surface_metrics(ref, pred, 1, **options)


@pytest.mark.parametrize("label", [1.0, "1", None])
def test_non_integer_label(label):
    ref, pred = _blob_pair()
    with pytest.raises(TypeError, match="label"):
        label_surface_metrics(ref, pred, label, box=ref_surface.box_of(ref, pred, 1), spacing=(1, 1, 1))


def test_shape_mismatch():
    ref, pred = _blob_pair()
    with pytest.raises(ValueError, match="shape"):
        label_surface_metrics(ref, pred[:, :, :-1], 1, box=((0, 1), (0, 1), (0, 1)), spacing=(1, 1, 1))


# -- properties ----------------------------------------------------------------------------

masks = arrays(np.uint8, st.tuples(*[st.integers(1, 6)] * 3), elements=st.integers(0, 1))


@settings(max_examples=60, deadline=None)
@given(masks, st.data(), st.sampled_from(MODES))
def test_symmetric_in_ref_and_pred(ref, data, mode):
    pred = data.draw(arrays(np.uint8, ref.shape, elements=st.integers(0, 1)))
    spacing = (0.7, 1.9, 1.1)
    forward = _metrics(ref, pred, 1, spacing, *mode)
    backward = _metrics(pred, ref, 1, spacing, *mode)
    for name in SURFACE_METRICS:
        assert forward[name] == pytest.approx(backward[name], rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(masks, st.sampled_from(MODES))
def test_identical_masks_are_perfect(mask, mode):
    got = _metrics(mask, mask, 1, (1.3, 0.6, 2.0), *mode)
    assert got == BOTH_EMPTY


# -- the METRICS.md reference pair -------------------------------------------------------

@pytest.mark.slow
def test_metrics_md_reference_pair():
    z, y, x = np.ogrid[:300, :512, :512]
    ref = (((z - 150) / 60) ** 2 + ((y - 256) / 125) ** 2 + ((x - 256) / 125) ** 2 <= 1).astype(np.uint8)
    pred = (((z - 153) / 58) ** 2 + ((y - 262) / 128) ** 2 + ((x - 251) / 121) ** 2 <= 1).astype(np.uint8)
    pred[20:24, 40:46, 440:446] = 1
    box = ((20, 212), (40, 391), (130, 446))
    spacing = (2.5, 0.8, 0.8)
    voxel = _metrics(ref, pred, 1, spacing, box=box)
    assert round(voxel["hd95"], 3) == 11.792 and round(voxel["nsd"], 4) == 0.1550
    assert round(_metrics(ref, pred, 1, spacing, hd95_mode="pooled", box=box)["hd95"], 3) == 11.562
    surfel = _metrics(ref, pred, 1, spacing, "surfel", box=box)
    assert round(surfel["hd95"], 3) == 10.560 and round(surfel["nsd"], 4) == 0.2037


def _percentile_samples():
    """float64 arrays of every kind the reducers see and some they never do: lengths 1 to 41
    and a few long ones, ties, integer-valued (voxel steps), sqrt-valued, +inf."""
    rng = np.random.default_rng(7)
    for n in list(range(1, 42)) + [99, 100, 101, 1000, 4097]:
        yield rng.random(n) * 50
        yield np.sqrt(rng.integers(0, 40, n).astype(np.float64))  # many ties
        yield np.full(n, rng.random())
        yield rng.integers(0, 5, n).astype(np.float64)
        with_inf = rng.random(n) * 3
        with_inf[rng.random(n) < 0.2] = np.inf
        yield with_inf
        yield np.sort(rng.random(n))[::-1].copy()
    yield np.array([np.inf])
    yield np.array([0.0, np.inf])
    yield np.array([np.inf, np.inf, 1.0])
    yield np.array([0.0])
    yield np.array([5e-324, 1.7976931348623157e308])


def test_percentile95_is_numpys_linear_percentile_bit_for_bit():
    from medbench_fast.metrics.surface import percentile95

    checked = 0
    for d in _percentile_samples():
        before = d.copy()
        got = percentile95(d)
        expected = float(np.percentile(d, 95))
        assert type(got) is float
        assert got == expected or (math.isnan(got) and math.isnan(expected)), (d.size, got, expected)
        assert np.array_equal(d, before)  # the input is not reordered
        checked += 1
    assert checked > 250


def _weighted_reduce(d_r, d_p, tau, hd95_mode):
    """The voxel-mode metrics by their weighted formulas (weights of ones, as surfel mode with
    unit areas): the reference the count-based reducer must equal bit for bit."""
    w_r, w_p = np.ones(d_r.size), np.ones(d_p.size)
    if hd95_mode == "max":
        hd95 = float(max(np.percentile(d_r, 95), np.percentile(d_p, 95)))
    else:
        hd95 = float(np.percentile(np.concatenate([d_r, d_p]), 95))
    sum_r, sum_p = float(np.sum(d_r * w_r)), float(np.sum(d_p * w_p))
    area_r, area_p = float(np.sum(w_r)), float(np.sum(w_p))
    within = float(np.sum(w_r[d_r <= tau])) + float(np.sum(w_p[d_p <= tau]))
    return {"hd": float(max(d_r.max(), d_p.max())), "hd95": hd95, "assd": (sum_r + sum_p) / (area_r + area_p),
            "masd": 0.5 * (sum_r / area_r + sum_p / area_p), "nsd": within / (area_r + area_p)}


@pytest.mark.parametrize("hd95_mode", ["max", "pooled"])
def test_voxel_reducer_equals_the_weighted_formulas_bit_for_bit(hd95_mode):
    from medbench_fast.metrics.conventions import NSD_SLACK
    from medbench_fast.metrics.surface import SurfaceDistances, _reduce

    samples = list(_percentile_samples())
    rng = np.random.default_rng(11)
    for k in range(len(samples)):
        d_r, d_p = samples[k], samples[int(rng.integers(len(samples)))]
        tolerance = float(rng.choice([0.0, 0.5, 1.0, 2.0, 7.5]))
        got = _reduce(SurfaceDistances(d_r.copy(), d_p.copy()), tolerance, hd95_mode, SURFACE_METRICS)
        expected = _weighted_reduce(d_r, d_p, tolerance * (1.0 + NSD_SLACK), hd95_mode)
        assert list(got) == list(SURFACE_METRICS)
        for name in SURFACE_METRICS:
            assert type(got[name]) is float
            assert got[name] == expected[name] or (math.isnan(got[name]) and math.isnan(expected[name])), \
                (name, d_r.size, d_p.size, got[name], expected[name])


def test_voxel_reducer_leaves_nan_to_numpy():
    from medbench_fast.metrics.surface import SurfaceDistances, _reduce

    d_r, d_p = np.array([1.0, np.nan, 2.0]), np.array([0.5, 3.0])
    for mode in ("max", "pooled"):
        got = _reduce(SurfaceDistances(d_r, d_p), 1.0, mode, ("hd95",))["hd95"]
        expected = _weighted_reduce(d_r, d_p, 1.0, mode)["hd95"]
        assert math.isnan(got) and math.isnan(expected) or got == expected
