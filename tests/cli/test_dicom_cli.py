"""``medbench run`` and ``medbench evaluate`` on a DICOM dataset: CT series with DICOM-SEG and
RTSTRUCT references, end to end through click."""

from __future__ import annotations

import textwrap

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from dicom_synthetic import SeriesSpec, circle_contours, write_ct_series, write_rtstruct, write_seg
from medbench_fast.data.synthetic import LABEL_NAMES, make_case

SHAPE, SPACING = (24, 96, 96), (2.5, 1.0, 1.0)


def _invoke(args, code=0):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def dicom_dataset(tmp_path_factory):
    """Two CT series: one with a DICOM-SEG of five structures, one with an RTSTRUCT; plus an
    RTSTRUCT whose frame of reference does not match its series (a failed row)."""
    from medbench_fast.demo.baseline import build_baseline

    root = tmp_path_factory.mktemp("dicom")
    spec = SeriesSpec(SHAPE, SPACING)
    for i, name in enumerate(("ct_seg", "ct_rt", "ct_bad")):
        case = make_case(i, seed=5, shape=SHAPE, spacing=SPACING)
        write_ct_series(root / "images" / name, SeriesSpec(SHAPE, SPACING, seed=i), case.image, series_number=i + 1)
        if name == "ct_seg":
            write_seg(root / "refs" / "a.dcm", root / "images" / name,
                      {n: case.labels == n for n in LABEL_NAMES}, names=LABEL_NAMES)
        else:
            body = circle_contours(spec, (48, 48), 30.0, range(2, 22))
            write_rtstruct(root / "refs" / f"{name}.dcm", root / "images" / name, [("BODY", body), ("Couch", body[:1])],
                           frame_uid="1.2.3" if name == "ct_bad" else None)
    build_baseline(root / "baseline.onnx")
    return root


def test_run_on_seg_and_rtstruct_references_saves_predictions_as_seg(tmp_path, dicom_dataset):
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(f"""\
        dataset:
          image_dir: {dicom_dataset}/images
          seg_dir: {dicom_dataset}/refs
          dicom_labels: {{"nocase:body": 1, airway: 4, "regex:(vertebra|spinal_cord|lymph_node)": 2}}
          dicom_unmatched: ignore
        models:
          - name: baseline
            path: {dicom_dataset}/baseline.onnx
        benchmark:
          metrics: [counts, hd95]
        output:
          dir: {tmp_path}/runs
          formats: [csv]
          dicom_seg: true
        """))
    out = tmp_path / "run"
    _invoke(["run", "--config", str(config), "--out", str(out), "--quiet"], code=3)  # one case fails
    cases = pq.read_table(out / "cases.parquet").to_pandas().set_index("case_id")
    assert sorted(cases.index) == ["ct_bad", "ct_rt", "ct_seg"]
    assert cases.loc["ct_seg", "success"] and cases.loc["ct_rt", "success"]
    assert not cases.loc["ct_bad", "success"]
    assert "ct_bad.dcm: frame of reference 1.2.3 differs" in cases.loc["ct_bad", "error"]
    metrics = pq.read_table(out / "metrics.parquet").to_pandas()
    body = metrics[(metrics.case_id == "ct_seg") & (metrics.label == 1)].iloc[0]
    assert body.dice > 0.9  # the baseline finds the body in the CT
    assert set(metrics[metrics.case_id == "ct_rt"].label) >= {1}
    saved = sorted(p.name for p in (out / "dicom_seg" / "baseline").iterdir())
    assert saved == ["ct_rt.dcm", "ct_seg.dcm"]

    # the saved SEGs are predictions medbench evaluate reads back, paired with the references by UID
    ev = tmp_path / "ev"
    _invoke(["evaluate", "--pred", str(out / "dicom_seg" / "baseline"), "--ref", str(dicom_dataset),
             "--out", str(ev), "--metrics", "counts", "--labels", "1", "--quiet"], code=3)
    ev_cases = pq.read_table(ev / "cases.parquet").to_pandas().set_index("case_id")
    assert ev_cases.loc["ct_seg", "success"] and not ev_cases.loc["ct_bad", "success"]
    assert "no prediction for case 'ct_bad'" in ev_cases.loc["ct_bad", "error"]
    ev_metrics = pq.read_table(ev / "metrics.parquet").to_pandas()
    row = ev_metrics[(ev_metrics.case_id == "ct_seg") & (ev_metrics.label == 1)].iloc[0]
    assert row.tp == body.tp and row.fp == body.fp and row.fn == body.fn


def test_unmatched_roi_fails_the_case_and_is_listed(tmp_path, dicom_dataset):
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(f"""\
        dataset:
          image_dir: {dicom_dataset}/images
          seg_dir: {dicom_dataset}/refs
          dicom_labels: {{BODY: 1, body: 1}}
        models:
          - name: baseline
            path: {dicom_dataset}/baseline.onnx
        benchmark:
          metrics: [counts]
        output:
          dir: {tmp_path}/runs
          formats: [csv]
        """))
    _invoke(["run", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"], code=3)
    cases = pq.read_table(tmp_path / "run" / "cases.parquet").to_pandas().set_index("case_id")
    assert "ct_rt.dcm: ROI(s) matching no dicom_labels rule: 2 'Couch'" in cases.loc["ct_rt", "error"]
    assert "segment(s) matching no dicom_labels rule: 2 'vertebra'" in cases.loc["ct_seg", "error"]


def test_bad_label_rule_is_a_config_error(tmp_path, dicom_dataset):
    config = tmp_path / "config.yaml"
    config.write_text(f"dataset: {{image_dir: {dicom_dataset}/images, dicom_labels: {{'regex:(': 1}}}}\n"
                      f"models: [{{name: m, path: {dicom_dataset}/baseline.onnx}}]\n")
    result = _invoke(["run", "--config", str(config)], code=2)
    assert "dataset.dicom_labels.regex:(: not a valid regular expression" in result.output
    assert str(config) in result.output
