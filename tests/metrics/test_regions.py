"""Regions (unions of labels) against brute force on the union masks, empty cases included."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from reference import counts as ref_counts
from reference import surface as ref_surface

from medbench_fast.metrics.evaluate import both_empty_rows, evaluate_pair
from medbench_fast.metrics.regions import Region, make_regions, parse_regions

REGIONS = {"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}
SURFACE = ("hd", "hd95", "assd", "masd", "nsd")
COUNTING = ("tp", "fp", "fn", "tn", "dice", "iou", "sensitivity", "specificity", "precision",
            "volume_similarity", "ref_volume_ml", "pred_volume_ml")


def _close(a, b):
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _maps(rng, shape, *, drop_ref=(), drop_pred=()):
    ref = rng.integers(0, 4, shape).astype(np.uint8)
    ref[rng.random(shape) < 0.5] = 0
    pred = ref.copy()
    flip = rng.random(shape) < 0.2
    pred[flip] = rng.integers(0, 4, int(flip.sum()))
    for v in drop_ref:
        ref[ref == v] = 0
    for v in drop_pred:
        pred[pred == v] = 0
    return ref, pred


@pytest.mark.parametrize("surface, hd95_mode", [("voxel", "max"), ("voxel", "pooled"), ("surfel", "max")])
@pytest.mark.parametrize("drops", [
    ((), ()),            # every label in both
    ((3,), ()),          # ET empty in the reference only
    ((), (1, 3)),        # TC and ET empty in the prediction only
    ((1, 3), (1, 3)),    # TC and ET absent from both
    ((1, 2, 3), (1, 2, 3)),  # no foreground at all
])
def test_region_rows_match_brute_force_on_union_masks(rng, surface, hd95_mode, drops):
    shape = (7, 11, 9)
    spacing = (2.0, 0.7, 0.9)
    ref, pred = _maps(rng, shape, drop_ref=drops[0], drop_pred=drops[1])
    rows = evaluate_pair(ref, pred, spacing=spacing, labels=[1, 2, 3], regions=REGIONS, surface=surface,
                         hd95_mode=hd95_mode)
    assert [r["label"] for r in rows] == [1, 2, 3, -1, -2, -3]
    assert [r["label_name"] for r in rows[3:]] == ["WT", "TC", "ET"]
    for row, (name, members) in zip(rows[3:], REGIONS.items()):
        r_mask, p_mask = np.isin(ref, members), np.isin(pred, members)
        want = ref_counts.metrics(r_mask, p_mask, True, spacing)
        want.update(ref_surface.metrics(r_mask, p_mask, spacing, surface=surface, hd95_mode=hd95_mode))
        for key in COUNTING + SURFACE:
            assert _close(row[key], want[key]), (name, key, row[key], want[key])
        assert row["ref_empty"] == (not r_mask.any()) and row["pred_empty"] == (not p_mask.any())
    # A one-label region is that label, row for row.
    et, label3 = rows[5], rows[2]
    assert all(_close(et[k], label3[k]) for k in COUNTING + SURFACE)


def test_regions_follow_the_empty_nan_convention(rng):
    ref, pred = _maps(rng, (5, 6, 7), drop_ref=(1, 3), drop_pred=(1, 3))
    rows = {r["label_name"]: r for r in evaluate_pair(ref, pred, spacing=(1, 1, 1), regions=REGIONS, empty="nan")
            if r["label"] < 0}
    tc = rows["TC"]
    assert tc["ref_empty"] and tc["pred_empty"]
    assert all(math.isnan(tc[k]) for k in ("dice", "iou", "volume_similarity", *SURFACE))
    assert not math.isnan(rows["WT"]["dice"])


def test_region_counts_come_from_the_histogram_without_another_pass(rng, monkeypatch):
    """Counts are sums over the joint histogram: one call of the counting kernel per pair."""
    import medbench_fast.metrics.evaluate as ev

    calls = []
    real = ev.label_counts
    monkeypatch.setattr(ev, "label_counts", lambda *a: calls.append(1) or real(*a))
    ref, pred = _maps(rng, (6, 8, 8))
    evaluate_pair(ref, pred, spacing=(1, 1, 1), regions=REGIONS, metrics="counts")
    assert calls == [1]


def test_regions_on_fortran_ordered_arrays(rng):
    ref, pred = _maps(rng, (6, 7, 8))
    c_rows = evaluate_pair(ref, pred, spacing=(1.0, 2.0, 3.0), regions=REGIONS)
    f_rows = evaluate_pair(np.asfortranarray(ref), np.asfortranarray(pred), spacing=(1.0, 2.0, 3.0), regions=REGIONS)
    for a, b in zip(c_rows, f_rows):
        assert all(_close(a[k], b[k]) for k in COUNTING + SURFACE)


def test_both_empty_rows_of_region_ids():
    rows = both_empty_rows([2, -2], n_voxels=60, spacing=(1, 1, 1), regions=REGIONS)
    assert [(r["label"], r["label_name"], r["dice"], r["hd95"], r["nsd"]) for r in rows] == [
        (2, None, 1.0, 0.0, 1.0), (-2, "TC", 1.0, 0.0, 1.0)]


@pytest.mark.parametrize("regions, known, message", [
    ({"WT": []}, None, "regions.WT: expected at least one label value"),
    ({"WT": [1, 0]}, None, "regions.WT: 0 is not a foreground label value"),
    ({"WT": "1,2"}, None, "regions.WT: expected a list of label values"),
    ({"WT": [1, 2, 9]}, [1, 2, 3], "regions.WT: label(s) [9] are not among the dataset's labels [1, 2, 3]"),
])
def test_bad_regions_name_the_region(regions, known, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_regions(regions, known_labels=known)


def test_region_ids_and_parsing():
    regions = make_regions(parse_regions("WT=1,2,3; TC=1,3;ET=3"))
    assert regions == (Region("WT", (1, 2, 3), -1), Region("TC", (1, 3), -2), Region("ET", (3,), -3))
    with pytest.raises(ValueError, match="regions: 'WT' is not NAME=label"):
        parse_regions("WT")
