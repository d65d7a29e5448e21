"""Surface kernels against scipy: EDT, voxel borders, surfel codes, row offsets."""

from __future__ import annotations

import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference import surface as ref_surface

from medbench_fast.kernels.edt import sq_distances_at, steps_none
from medbench_fast.kernels.surface import gather_areas, row_offsets, surfel_codes, voxel_border, voxel_distances

SPACINGS = [(1.0, 1.0, 1.0), (2.5, 0.8, 0.8), (0.37, 3.1, 1.3)]
SHAPES = [(1, 1, 1), (1, 7, 5), (9, 1, 4), (6, 5, 1), (13, 11, 17), (3, 40, 2)]


def _padded(mask):
    return np.pad(np.asarray(mask, np.uint8), 1)


def _full_edt(features, spacing):
    queries = np.ones(features.shape, np.uint8)
    sq = sq_distances_at(features, queries, row_offsets(queries), spacing)
    return np.sqrt(sq).reshape(features.shape)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", [0.002, 0.05, 0.6])
def test_edt_matches_scipy(shape, spacing, density):
    rng = np.random.default_rng(hash((shape, spacing, density)) % 2**32)
    features = (rng.random(shape) < density).astype(np.uint8)
    features.flat[rng.integers(features.size)] = 1
    expected = ndimage.distance_transform_edt(features == 0, sampling=spacing)
    np.testing.assert_allclose(_full_edt(features, spacing), expected, rtol=1e-12, atol=0)


def test_edt_without_features_is_infinite():
    features = np.zeros((4, 5, 6), np.uint8)
    assert np.all(np.isinf(_full_edt(features, (1.0, 2.0, 3.0))))


@pytest.mark.parametrize("layout", ["F", "strided", "readonly"])
def test_edt_accepts_any_layout(layout):
    rng = np.random.default_rng(5)
    features = (rng.random((12, 14, 10)) < 0.03).astype(np.uint8)
    queries = (rng.random((12, 14, 10)) < 0.3).astype(np.uint8)
    spacing = (1.7, 0.6, 2.2)
    offsets = row_offsets(queries)
    expected = ndimage.distance_transform_edt(features == 0, sampling=spacing)[queries != 0]
    if layout == "F":
        f_in, q_in = np.asfortranarray(features), np.asfortranarray(queries)
    elif layout == "strided":
        f_in = np.zeros((24, 14, 10), np.uint8)[::2]
        f_in[...] = features
        q_in = queries
    else:
        f_in, q_in = features.copy(), queries.copy()
        f_in.setflags(write=False)
        q_in.setflags(write=False)
    got = np.sqrt(sq_distances_at(f_in, q_in, offsets, spacing))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed", range(6))
def test_voxel_border_matches_scipy_erosion(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=tuple(rng.integers(1, 15, 3))).astype(np.int32)
    labels = ndimage.median_filter(labels, size=2)
    for label in (0, 1, 2, 7):
        np.testing.assert_array_equal(voxel_border(_padded(labels == label)), ref_surface.voxel_border(labels == label))


@pytest.mark.parametrize("seed", range(6))
def test_surfel_codes_match_reference(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=tuple(rng.integers(1, 15, 3))).astype(np.uint16)
    for label in (1, 2):
        expected = ref_surface.surfel_codes(labels == label)
        expected[expected == 255] = 0
        np.testing.assert_array_equal(surfel_codes(_padded(labels == label)), expected)


def test_row_offsets_and_areas_follow_c_order():
    rng = np.random.default_rng(3)
    codes = (rng.random((5, 6, 7)) < 0.4) * rng.integers(1, 255, (5, 6, 7))
    codes = codes.astype(np.uint8)
    offsets = row_offsets(codes)
    np.testing.assert_array_equal(np.diff(offsets), (codes != 0).sum(axis=2).ravel())
    table = np.arange(256, dtype=np.float64) / 7
    np.testing.assert_array_equal(gather_areas(codes, offsets, table), table[codes[codes != 0]])


def test_edt_is_identical_across_thread_counts():
    rng = np.random.default_rng(11)
    features = (rng.random((40, 30, 20)) < 0.01).astype(np.uint8)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _full_edt(features, (2.5, 0.8, 0.8))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, _full_edt(features, (2.5, 0.8, 0.8)))


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("shape", SHAPES + [(20, 9, 33), (70, 3, 90)])
def test_voxel_distances_equal_the_separate_kernels_bit_for_bit(shape, spacing, parallel):
    rng = np.random.default_rng(hash((shape, spacing)) % 2**32)
    for density_r, density_p in ((0.3, 0.5), (0.02, 0.9), (0.0, 0.4), (0.6, 0.0), (0.0, 0.0), (1.0, 1.0)):
        mr, mp = _padded(rng.random(shape) < density_r), _padded(rng.random(shape) < density_p)
        br, bp = voxel_border(mr), voxel_border(mp)
        off_r, off_p = row_offsets(br), row_offsets(bp)
        if off_r[-1] and off_p[-1]:
            expected = (np.sqrt(sq_distances_at(bp, br, off_r, spacing)),
                        np.sqrt(sq_distances_at(br, bp, off_p, spacing)))
        else:
            expected = (np.full(off_r[-1], np.inf), np.full(off_p[-1], np.inf))
        none = steps_none(shape)
        steps = np.empty(shape, none.dtype)
        got = voxel_distances(mr, mp, steps, none, *(s * s for s in spacing), parallel)
        for g, e in zip(got, expected):
            assert g.dtype == np.float64 and g.shape == e.shape
            assert g.tobytes() == e.tobytes()
