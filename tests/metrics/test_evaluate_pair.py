"""``evaluate_pair`` counting metrics: references, METRICS.md conventions, properties, peers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from reference import counts as ref_counts

from medbench_fast import evaluate_pair
from medbench_fast.metrics.evaluate import ROW_FIELDS

COUNT_FIELDS = ("tp", "fp", "fn", "tn", "dice", "iou", "sensitivity", "specificity", "precision",
                "volume_similarity", "ref_volume_ml", "pred_volume_ml", "ref_empty", "pred_empty")
SPACING = (2.5, 0.7, 0.9)


def _same(a, b):
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    return a == pytest.approx(b, rel=1e-12, abs=0)


def _check_rows(rows, ref, pred, spacing=SPACING):
    for row in rows:
        expected = ref_counts.metrics(ref, pred, row["label"], spacing)
        for key in COUNT_FIELDS:
            assert _same(row[key], expected[key]), (row["label"], key, row[key], expected[key])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("n_labels", [1, 2, 4, 6])
def test_counting_metrics_match_reference(rng, dtype, order, n_labels):
    ref = rng.integers(0, n_labels + 1, (7, 12, 10)).astype(dtype)
    pred = np.where(rng.random(ref.shape) < 0.25, rng.integers(0, n_labels + 1, ref.shape), ref).astype(dtype)
    ref, pred = np.asarray(ref, order=order), np.asarray(pred, order=order)
    rows = evaluate_pair(ref, pred, spacing=SPACING, metrics="counts")
    assert [r["label"] for r in rows] == sorted((set(np.unique(ref).tolist()) | set(np.unique(pred).tolist())) - {0})
    _check_rows(rows, ref, pred)


def test_row_fields_and_unrequested_metrics_are_none(rng):
    ref = np.zeros((3, 4, 5), np.uint8)
    ref[1, 1, 1] = 1
    row = evaluate_pair(ref, ref, spacing=SPACING, metrics="dice")[0]
    assert tuple(row) == ROW_FIELDS
    assert row["dice"] == 1.0 and row["iou"] is None and row["hd95"] is None
    assert row["tp"] == 1 and row["ref_empty"] is False


def test_labels_absent_from_one_volume_and_requested_labels(rng):
    ref = np.zeros((4, 5, 6), np.uint8)
    pred = np.zeros_like(ref)
    ref[0:2, 0:2, 0:2] = 1
    pred[2:4, 3:5, 3:6] = 3
    rows = evaluate_pair(ref, pred, spacing=SPACING, labels=[1, 2, 3], metrics="counts")
    assert [r["label"] for r in rows] == [1, 2, 3]
    _check_rows(rows, ref, pred)
    by = {r["label"]: r for r in rows}
    assert by[1]["pred_empty"] and not by[1]["ref_empty"] and by[1]["dice"] == 0.0
    assert math.isnan(by[1]["precision"]) and by[1]["sensitivity"] == 0.0
    assert by[3]["ref_empty"] and math.isnan(by[3]["sensitivity"]) and by[3]["precision"] == 0.0


def test_both_empty_convention_one():
    z = np.zeros((2, 3, 4), np.uint8)
    row = evaluate_pair(z, z, spacing=SPACING, labels=[1])[0]
    assert row["dice"] == row["iou"] == row["volume_similarity"] == 1.0
    assert math.isnan(row["sensitivity"]) and math.isnan(row["precision"])
    assert row["specificity"] == 1.0 and row["tn"] == z.size
    assert row["hd"] == row["hd95"] == row["assd"] == row["masd"] == 0.0 and row["nsd"] == 1.0
    assert row["ref_empty"] and row["pred_empty"]


def test_both_empty_convention_nan():
    z = np.zeros((2, 3, 4), np.uint8)
    row = evaluate_pair(z, z, spacing=SPACING, labels=[1], empty="nan")[0]
    for key in ("dice", "iou", "volume_similarity", "hd", "hd95", "assd", "masd", "nsd"):
        assert math.isnan(row[key]), key
    assert row["specificity"] == 1.0


def test_empty_nan_leaves_other_rows_alone():
    ref = np.zeros((2, 3, 4), np.uint8)
    ref[0, 0, 0] = 1
    rows = evaluate_pair(ref, ref, spacing=SPACING, labels=[1, 2], empty="nan", metrics="counts")
    assert rows[0]["dice"] == 1.0 and math.isnan(rows[1]["dice"])


def test_specificity_undefined_when_everything_is_the_label():
    full = np.ones((2, 2, 2), np.uint8)
    row = evaluate_pair(full, full, spacing=SPACING, metrics="counts")[0]
    assert row["tn"] == 0 and row["fp"] == 0 and math.isnan(row["specificity"])


def test_one_voxel_objects_and_volumes_in_ml():
    ref = np.zeros((5, 5, 5), np.uint8)
    pred = np.zeros_like(ref)
    ref[2, 2, 2] = 1
    pred[2, 2, 3] = 1
    row = evaluate_pair(ref, pred, spacing=(2.0, 0.5, 0.5), metrics="counts")[0]
    assert row["dice"] == 0.0 and row["ref_volume_ml"] == pytest.approx(0.5 / 1000)
    assert row["volume_similarity"] == 1.0


def test_dice_smoothed_by_name():
    ref = np.zeros((2, 2, 2), np.uint8)
    row = evaluate_pair(ref, ref, spacing=SPACING, labels=[1], metrics="dice_smoothed")[0]
    assert row["dice_smoothed"] == 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"spacing": None}, "spacing: required"),
    ({"spacing": (1.0, 1.0)}, "spacing: expected 3"),
    ({"spacing": (1.0, 0.0, 1.0)}, "spacing: every value"),
    ({"spacing": (1.0, float("nan"), 1.0)}, "spacing: every value"),
    ({"spacing": SPACING, "metrics": "dise"}, "metrics: unknown metric 'dise'"),
    ({"spacing": SPACING, "surface": "mesh"}, "surface:"),
    ({"spacing": SPACING, "hd95_mode": "mean"}, "hd95_mode:"),
    ({"spacing": SPACING, "empty": "zero"}, "empty:"),
    ({"spacing": SPACING, "labels": [-1]}, "labels:"),
])
def test_bad_arguments_are_named(kwargs, message):
    z = np.zeros((2, 3, 4), np.uint8)
    with pytest.raises(ValueError, match=message):
        evaluate_pair(z, z, **kwargs)


masks = arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 9)), elements=st.integers(0, 2))


@settings(max_examples=60, deadline=None)
@given(masks, st.data())
def test_properties(ref, data):
    pred = data.draw(arrays(np.uint8, ref.shape, elements=st.integers(0, 2)))
    ab = evaluate_pair(ref, pred, spacing=SPACING, labels=[1, 2], metrics="counts")
    ba = evaluate_pair(pred, ref, spacing=SPACING, labels=[1, 2], metrics="counts")
    aa = evaluate_pair(ref, ref, spacing=SPACING, labels=[1, 2], metrics="counts")
    for x, y, same in zip(ab, ba, aa):
        assert x["dice"] == pytest.approx(y["dice"])  # symmetric
        assert same["dice"] == 1.0  # Dice(x, x) = 1
        assert x["iou"] == pytest.approx(x["dice"] / (2 - x["dice"]))
        assert x["tp"] + x["fp"] + x["fn"] + x["tn"] == ref.size
    _check_rows(ab, ref, pred)


def _peer_pairs(rng, n=6):
    out = []
    for i in range(n):
        shape = (6 + i, 16, 12 + 2 * i)
        ref = np.zeros(shape, np.uint8)
        pred = np.zeros(shape, np.uint8)
        for label in (1, 2, 3):
            c = rng.integers(2, np.array(shape) - 2)
            ref[c[0] - 2: c[0] + 2, c[1] - 3: c[1] + 3, c[2] - 2: c[2] + 3] = label
            d = c + rng.integers(-1, 2, 3)
            pred[d[0] - 2: d[0] + 1, d[1] - 3: d[1] + 4, d[2] - 2: d[2] + 2] = label
        out.append((ref, pred))
    return out


def test_agrees_with_monai(rng):
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_confusion_matrix_metric, compute_dice, compute_iou, get_confusion_matrix

    for ref, pred in _peer_pairs(rng):
        # MONAI leaves both-empty rows NaN: the empty="nan" convention
        rows = evaluate_pair(ref, pred, spacing=SPACING, labels=[1, 2, 3], metrics="counts", empty="nan")
        onehot = lambda a: torch.from_numpy(np.stack([a == k for k in (1, 2, 3)])[None].astype(np.float32))
        y_pred, y = onehot(pred), onehot(ref)
        dice = compute_dice(y_pred, y, include_background=True).numpy()[0]
        iou = compute_iou(y_pred, y, include_background=True).numpy()[0]
        cm = get_confusion_matrix(y_pred, y, include_background=True)
        sens = compute_confusion_matrix_metric("sensitivity", cm).numpy()[0]
        spec = compute_confusion_matrix_metric("specificity", cm).numpy()[0]
        prec = compute_confusion_matrix_metric("precision", cm).numpy()[0]
        for k, row in enumerate(rows):
            assert row["dice"] == pytest.approx(float(dice[k]), rel=1e-6, nan_ok=True)
            assert row["iou"] == pytest.approx(float(iou[k]), rel=1e-6, nan_ok=True)
            assert row["sensitivity"] == pytest.approx(float(sens[k]), rel=1e-6, nan_ok=True)
            assert row["specificity"] == pytest.approx(float(spec[k]), rel=1e-6, nan_ok=True)
            assert row["precision"] == pytest.approx(float(prec[k]), rel=1e-6, nan_ok=True)
            assert [row[c] for c in ("tp", "fp", "tn", "fn")] == cm[0, k].int().tolist()


def test_agrees_with_medpy(rng):
    binary = pytest.importorskip("medpy.metric.binary")
    for ref, pred in _peer_pairs(rng):
        for row in evaluate_pair(ref, pred, spacing=SPACING, labels=[1, 2, 3], metrics="counts"):
            if row["ref_empty"] or row["pred_empty"]:
                continue  # medpy returns 0 or divides by zero there; conventions are tested above
            r, p = ref == row["label"], pred == row["label"]
            assert row["dice"] == pytest.approx(binary.dc(p, r), rel=1e-12, nan_ok=True)
            assert row["iou"] == pytest.approx(binary.jc(p, r), rel=1e-12, nan_ok=True)
            assert row["sensitivity"] == pytest.approx(binary.sensitivity(p, r), rel=1e-12, nan_ok=True)
            assert row["specificity"] == pytest.approx(binary.specificity(p, r), rel=1e-12, nan_ok=True)
            assert row["precision"] == pytest.approx(binary.precision(p, r), rel=1e-12, nan_ok=True)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 2**45), min_size=4, max_size=4), st.lists(st.booleans(), min_size=4, max_size=4))
def test_counting_metrics_equal_float64_division_bit_for_bit(counts, zero):
    """A row's metrics are worked out in Python numbers: each equals the float64 (numpy) division
    of the same counts, zero denominators included."""
    from medbench_fast.metrics.overlap import overlap_metrics

    tp, fp, fn, tn = (0 if z else c for c, z in zip(counts, zero))
    f = {name: np.float64(value) for name, value in dict(tp=tp, fp=fp, fn=fn, tn=tn).items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = {
            "dice": np.where(2 * f["tp"] + f["fp"] + f["fn"], 2 * f["tp"] / (2 * f["tp"] + f["fp"] + f["fn"]), 1.0),
            "iou": np.where(f["tp"] + f["fp"] + f["fn"], f["tp"] / (f["tp"] + f["fp"] + f["fn"]), 1.0),
            "sensitivity": np.where(f["tp"] + f["fn"], f["tp"] / (f["tp"] + f["fn"]), np.nan),
            "specificity": np.where(f["tn"] + f["fp"], f["tn"] / (f["tn"] + f["fp"]), np.nan),
            "precision": np.where(f["tp"] + f["fp"], f["tp"] / (f["tp"] + f["fp"]), np.nan),
            "volume_similarity": 1.0 - np.where(2 * f["tp"] + f["fp"] + f["fn"],
                                                abs(f["fp"] - f["fn"]) / (2 * f["tp"] + f["fp"] + f["fn"]), 0.0),
            "dice_smoothed": (2 * f["tp"] + 1e-6) / (2 * f["tp"] + f["fp"] + f["fn"] + 1e-6),
        }
    got = overlap_metrics(tp, fp, fn, tn)
    assert list(got) == list(expected)
    for name, value in got.items():
        assert type(value) is float
        assert value.hex() == float(expected[name]).hex(), name
