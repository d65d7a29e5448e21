"""``MetricOptions``: one object, one record in run.json, read back exactly."""

from __future__ import annotations

import json

import pytest

from medbench_fast.metrics.options import GEOMETRY_RTOL, MetricOptions
from medbench_fast.metrics.regions import Region

EVERY_FIELD = [
    MetricOptions(),
    MetricOptions(labels=(3, 1, 2), metrics=("dice", "hd95", "nsd"), nsd_tolerance_mm=0.1, surface="surfel",
                  hd95_mode="pooled", empty="nan", label_names={1: "liver", 3: "tumour; core=1,2"},
                  geometry_rtol=2.5e-3, regions={"whole tumour": [3, 2, 1], "core": [3, 1], "a;b:c=d": [2]}),
    MetricOptions(labels=None, label_names={}, regions={"WT": [1, 2, 7]}),
    MetricOptions(labels=(1,), metrics=(), nsd_tolerance_mm=0, geometry_rtol=0.0),
    MetricOptions(labels=(2**63 - 1,), label_names={2**63 - 1: ""}, nsd_tolerance_mm=1 / 3),
]


@pytest.mark.parametrize("options", EVERY_FIELD)
def test_the_record_reads_back_exactly(options):
    record = json.loads(json.dumps(options.to_record()))  # what run.json holds
    back = MetricOptions.from_record(record)
    assert back == options
    assert back.to_record() == options.to_record() and back.metadata() == options.metadata()
    assert back.fingerprint_components() == options.fingerprint_components()
    assert back.pair_kwargs() == options.pair_kwargs()


def test_the_record_and_the_metadata_keep_the_keys_of_earlier_run_folders():
    options = EVERY_FIELD[1]
    assert options.to_record() == {
        "surface_mode": "surfel", "hd95_mode": "pooled", "empty_mode": "nan", "nsd_tolerance_mm": "0.1",
        "metrics": "dice,hd95,nsd", "labels": [3, 1, 2], "label_names": {"1": "liver", "3": "tumour; core=1,2"},
        "geometry_rtol": 2.5e-3, "regions": {"whole tumour": [1, 2, 3], "core": [1, 3], "a;b:c=d": [2]}}
    assert options.metadata() == {
        "surface_mode": "surfel", "hd95_mode": "pooled", "empty_mode": "nan", "nsd_tolerance_mm": "0.1",
        "metrics": "dice,hd95,nsd", "regions": "-1:whole tumour=1,2,3;-2:core=1,3;-3:a;b:c=d=2"}
    assert "regions" not in MetricOptions().to_record() and "regions" not in MetricOptions().metadata()
    assert options.regions == (Region("whole tumour", (1, 2, 3), -1), Region("core", (1, 3), -2),
                               Region("a;b:c=d", (2,), -3))


def test_other_settings_in_run_json_are_ignored_and_regions_as_text_are_read():
    """run.json's options hold worst_distance and threshold too; earlier versions wrote the
    regions as the metadata text."""
    record = {"surface_mode": "voxel", "hd95_mode": "max", "empty_mode": "one", "nsd_tolerance_mm": "1.0",
              "metrics": "dice,hd95", "labels": [1, 2, 3], "label_names": None, "geometry_rtol": 0.0001,
              "worst_distance": "diagonal", "threshold": 0.5, "regions": "-1:WT=1,2,3;-2:TC=1,3;-3:ET=3"}
    options = MetricOptions.from_record(record)
    assert options.regions == (Region("WT", (1, 2, 3), -1), Region("TC", (1, 3), -2), Region("ET", (3,), -3))
    assert options == MetricOptions(labels=(1, 2, 3), metrics=("dice", "hd95"),
                                    regions={"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]})
    del record["geometry_rtol"], record["labels"], record["regions"]
    assert MetricOptions.from_record(record) == MetricOptions(metrics=("dice", "hd95"), geometry_rtol=GEOMETRY_RTOL)


@pytest.mark.parametrize("change, message", [
    ({"surface_mode": None}, "lack surface_mode"),
    ({"metrics": ["dice"]}, "lack metrics"),
    ({"surface_mode": "mesh"}, "surface: 'mesh' is not one of voxel, surfel"),
    ({"labels": [0]}, "labels: 0 is not a foreground label value"),
    ({"regions": {"WT": [9]}}, "regions.WT: label(s) [9] are not among the dataset's labels [1]"),
    ({"regions": "WT"}, "the recorded regions 'WT' are not id:NAME=labels"),
    ({"label_names": ["liver"]}, "the recorded options are not valid"),
])
def test_a_bad_record_is_a_value_error_naming_the_key(change, message):
    record = {**MetricOptions(labels=(1,)).to_record(), **change}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        MetricOptions.from_record(record)


def test_fingerprint_components_are_the_run_identity_view():
    """Pinned: these components are hashed into the fingerprints of existing run folders."""
    assert EVERY_FIELD[1].fingerprint_components() == {
        "labels": [1, 2, 3], "label_names": {"1": "liver", "3": "tumour; core=1,2"},
        "metrics": ["dice", "hd95", "nsd"], "surface": "surfel", "hd95_mode": "pooled", "tolerance_mm": 0.1,
        "empty": "nan", "geometry_rtol": 2.5e-3,
        "regions": [["whole tumour", [1, 2, 3]], ["core", [1, 3]], ["a;b:c=d", [2]]]}
    assert MetricOptions(label_names={}).fingerprint_components()["label_names"] is None
