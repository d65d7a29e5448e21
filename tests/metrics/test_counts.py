"""The one-pass counting kernel and its wrapper, against slow numpy references."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from reference import counts as ref_counts

from medbench_fast.metrics.counts import MAX_LABELS, label_counts


def _random_pair(rng, shape, n_labels, dtype):
    ref = rng.integers(0, n_labels + 1, shape).astype(dtype)
    pred = ref.copy()
    flip = rng.random(shape) < 0.3
    pred[flip] = rng.integers(0, n_labels + 1, int(flip.sum())).astype(dtype)
    return ref, pred


def _check(counts, ref, pred):
    values = np.unique(np.concatenate([np.ravel(ref), np.ravel(pred)]))
    assert counts.values.tolist() == values.astype(np.int64).tolist()
    expected = np.zeros((len(values), len(values)), np.int64)
    np.add.at(expected, (np.searchsorted(values, np.ravel(ref)), np.searchsorted(values, np.ravel(pred))), 1)
    np.testing.assert_array_equal(counts.hist, expected)
    assert counts.n_voxels == ref.size
    for i, v in enumerate(values):
        if v == 0:
            continue
        for arr, boxes in ((ref, counts.ref_boxes), (pred, counts.pred_boxes)):
            expected_box = ref_counts.box(arr, v)
            assert boxes[i].tolist() == (expected_box or [0] * 6), (v, expected_box)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.int64])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("n_labels", [1, 3, 6])
def test_matches_reference_grid(rng, dtype, order, n_labels):
    ref, pred = _random_pair(rng, (9, 11, 16), n_labels, dtype)
    ref, pred = np.asarray(ref, order=order), np.asarray(pred, order=order)
    _check(label_counts(ref, pred), ref, pred)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 7), (3, 5, 13), (2, 3, 8), (64, 1, 3), (5, 33, 40)])
def test_odd_shapes_and_word_tails(rng, shape):
    ref, pred = _random_pair(rng, shape, 3, np.uint8)
    _check(label_counts(ref, pred), ref, pred)


def test_read_only_memmap_is_neither_copied_nor_written(rng, tmp_path):
    ref, pred = _random_pair(rng, (6, 10, 24), 4, np.uint16)
    np.save(tmp_path / "r.npy", ref)
    np.save(tmp_path / "p.npy", pred)
    mr, mp = np.load(tmp_path / "r.npy", mmap_mode="r"), np.load(tmp_path / "p.npy", mmap_mode="r")
    assert not mr.flags.writeable
    _check(label_counts(mr, mp), ref, pred)
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), ref)


def test_inputs_are_not_mutated(rng):
    ref, pred = _random_pair(rng, (5, 7, 16), 3, np.int32)
    before = ref.copy(), pred.copy()
    ref.flags.writeable = False
    pred.flags.writeable = False
    label_counts(ref, pred)
    np.testing.assert_array_equal(ref, before[0])
    np.testing.assert_array_equal(pred, before[1])


def test_sparse_large_label_values_stay_compact(rng):
    ref = np.zeros((4, 8, 8), np.int32)
    pred = np.zeros_like(ref)
    ref[0, 0, :3] = 7
    ref[1, 2, 2] = 300
    pred[3, 7, 7] = 2_000_000_000
    counts = label_counts(ref, pred)
    assert counts.values.tolist() == [0, 7, 300, 2_000_000_000]
    assert counts.hist.shape == (4, 4)
    _check(counts, ref, pred)


def test_label_absent_from_one_side(rng):
    ref = np.zeros((4, 8, 8), np.uint8)
    pred = np.zeros_like(ref)
    ref[1:3, 1:3, 1:3] = 2
    pred[2, 4:6, 4:8] = 5
    counts = label_counts(ref, pred)
    _check(counts, ref, pred)
    assert counts.pred_boxes[counts.index(2)].tolist() == [0] * 6
    assert counts.union_box(2) == ((1, 3), (1, 3), (1, 3))
    assert counts.union_box(5) == ((2, 3), (4, 6), (4, 8))
    assert counts.union_box(9) is None


def test_many_labels_grow_the_table(rng):
    ref = rng.integers(0, 300, (6, 20, 24)).astype(np.uint16)
    pred = rng.integers(0, 300, (6, 20, 24)).astype(np.uint16)
    _check(label_counts(ref, pred), ref, pred)


def test_instance_maps_beyond_capacity_are_refused():
    ref = np.arange(MAX_LABELS + 8, dtype=np.int32).reshape(1, 1, -1)
    with pytest.raises(ValueError, match="distinct label values"):
        label_counts(ref, ref)


def test_mixed_dtypes_and_memory_orders(rng):
    ref, pred = _random_pair(rng, (5, 6, 9), 3, np.uint8)
    pred16 = np.asfortranarray(pred.astype(np.int16))
    _check(label_counts(ref, pred16), ref, pred)


def test_non_contiguous_and_unaligned_views(rng):
    ref, pred = _random_pair(rng, (6, 10, 33), 3, np.uint8)
    _check(label_counts(ref[:, ::2, 1:], pred[:, ::2, 1:]), ref[:, ::2, 1:], pred[:, ::2, 1:])
    buf = np.zeros(ref.size + 1, np.uint8)
    unaligned = buf[1:].reshape(ref.shape)
    unaligned[...] = ref
    _check(label_counts(unaligned, pred), ref, pred)


def test_bool_and_integral_float_inputs(rng):
    ref, pred = _random_pair(rng, (4, 6, 8), 1, np.uint8)
    _check(label_counts(ref.astype(bool), pred.astype(bool)), ref, pred)
    _check(label_counts(ref.astype(np.float32), pred.astype(np.float64)), ref, pred)


@pytest.mark.parametrize("bad, message", [
    (np.full((2, 2, 2), 0.5), "non-integral"),
    (np.full((2, 2, 2), np.nan), "NaN or infinite"),
    (np.full((2, 2, 2), -1.0), "negative label"),
    (np.zeros((4, 4)), "3D"),
    (np.zeros((2, 2, 2), np.complex64), "dtype"),
    (np.full((2, 2, 2), np.iinfo(np.uint64).max, np.uint64), "label 18446744073709551615 is out of range"),
    (np.full((2, 2, 2), 1e20, np.float32), "label 1e\\+20 is out of range"),
])
def test_bad_prediction_arrays_name_the_argument(bad, message):
    with pytest.raises(ValueError, match=message) as info:
        label_counts(np.zeros(bad.shape if bad.ndim == 3 else (2, 2, 2), np.uint8), bad)
    assert str(info.value).startswith("pred")


def test_uint64_labels_within_int64_are_counted():
    ref = np.zeros((2, 3, 4), np.uint64)
    ref[0, 0, :2] = 2**40
    counts = label_counts(ref, np.zeros((2, 3, 4), np.int64))
    assert counts.values.tolist() == [0, 2**40] and counts.hist[1, 0] == 2


def test_negative_integer_labels_are_refused():
    ref = np.zeros((2, 3, 4), np.int16)
    ref[0, 0, 0] = -3
    with pytest.raises(ValueError, match="ref: negative label -3"):
        label_counts(ref, np.zeros_like(ref))


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        label_counts(np.zeros((2, 3, 4), np.uint8), np.zeros((2, 3, 5), np.uint8))


def test_deterministic_across_thread_counts(rng):
    ref, pred = _random_pair(rng, (17, 23, 40), 5, np.uint8)
    results = []
    for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
        numba.set_num_threads(threads)
        results.append(label_counts(ref, pred))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].hist, other.hist)
        np.testing.assert_array_equal(results[0].ref_boxes, other.ref_boxes)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64])
def test_blocky_runs_counted_word_at_a_time(rng, dtype):
    ref = np.zeros((6, 9, 48), dtype)
    ref[1:5, 2:8, 3:45] = 1
    ref[2:4, 3:6, 8:24] = 2
    ref[0, 0, 40:48] = 3
    pred = ref.copy()
    pred[1:5, 2:8, 16:40] = 2  # equal-valued runs that differ between maps
    pred[5, 8, :] = 4
    _check(label_counts(ref, pred), ref, pred)
    _check(label_counts(ref, ref), ref, ref)


def _counts_in_chunks(monkeypatch, ref, pred):
    """``label_counts`` with the kernel's rows split into several chunks (as on CT-sized arrays),
    and the number of chunks it reduced."""
    from medbench_fast.metrics import counts as module

    seen = []

    def reduce(values, nvalues, *args):
        seen.append(len(nvalues))
        return reduce_once(values, nvalues, *args)

    reduce_once = module._reduce
    with monkeypatch.context() as patch:
        patch.setattr(module, "PARALLEL_MIN_VOXELS", 0)
        patch.setattr(module, "_reduce", reduce)
        counts = label_counts(ref, pred)
    return counts, seen[-1]


def _assert_same_counts(one, other):
    for field in ("values", "hist", "ref_boxes", "pred_boxes"):
        got, expected = getattr(one, field), getattr(other, field)
        assert got.dtype == expected.dtype == np.int64, field
        np.testing.assert_array_equal(got, expected, err_msg=field)
    assert one.n_voxels == other.n_voxels


@pytest.mark.parametrize("n_labels, dtype, layout", [
    (1, np.uint8, "C"), (4, np.uint8, "F"), (4, bool, "C"), (9, np.int16, "F"), (70, np.uint16, "C"),
    (300, np.int32, "C"), (300, np.uint8, "memmap"), (5, np.int64, "memmap-F"),
])
def test_one_chunk_equals_the_merge_of_many(rng, tmp_path, monkeypatch, n_labels, dtype, layout):
    """Small arrays are counted in one chunk, whose table is the result without a merge: it
    must equal the merge of many chunks' tables (labels in one chunk only, in several, absent
    from one map, and beyond the table's first capacity)."""
    ref, pred = _random_pair(rng, (12, 9, 40), min(n_labels, 255 if dtype == np.uint8 else n_labels), np.int64)
    ref[:4] = 0  # a band of background where some chunks see no label at all
    pred[-2:, :, :8] = n_labels + 1  # a label only the prediction has, in the last chunks only
    ref, pred = ref.astype(dtype), pred.astype(dtype)
    if layout.endswith("F"):
        ref, pred = np.asfortranarray(ref), np.asfortranarray(pred)
    if layout.startswith("memmap"):
        np.save(tmp_path / "r.npy", ref)
        np.save(tmp_path / "p.npy", pred)
        ref, pred = np.load(tmp_path / "r.npy", mmap_mode="r"), np.load(tmp_path / "p.npy", mmap_mode="r")
    one = label_counts(ref, pred)
    many, chunks = _counts_in_chunks(monkeypatch, ref, pred)
    assert chunks > 1
    _assert_same_counts(one, many)
    _check(one, np.asarray(ref), np.asarray(pred))


def test_value_zero_is_dropped_where_no_voxel_holds_it(rng, monkeypatch):
    ref = rng.integers(1, 4, (6, 8, 16)).astype(np.uint8)
    pred = rng.integers(2, 6, (6, 8, 16)).astype(np.uint8)
    one = label_counts(ref, pred)
    assert one.values.tolist() == [1, 2, 3, 4, 5]
    _check(one, ref, pred)
    _assert_same_counts(one, _counts_in_chunks(monkeypatch, ref, pred)[0])


def test_negative_labels_are_refused_in_one_chunk_and_in_many(rng, monkeypatch):
    ref = rng.integers(0, 3, (6, 8, 16)).astype(np.int16)
    pred = ref.copy()
    pred[5, 7, 15] = -4
    for count in (lambda: label_counts(ref, pred), lambda: _counts_in_chunks(monkeypatch, ref, pred)):
        with pytest.raises(ValueError, match="pred: negative label -4"):
            count()
