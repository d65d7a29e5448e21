"""Nothing is written outside the folder the user named: every writer builds its paths from
names checked to be plain file names (model names, case ids from manifests and from DICOM
attributes) and checks that the result lies inside its folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.config import ModelEntry
from medbench_fast.files import UnsafePathError, path_inside, safe_name
from medbench_fast.runner.model_sources import SOURCES
from medbench_fast.store.parts import PartWriter, write_table

SHAPE, SPACING = (16, 64, 64), (2.5, 1.0, 1.0)


def _invoke(args, code):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["../../ESCAPED", "/tmp/medbench-escaped/ESCAPED", "..", "a\\b", "a\0b"])
@pytest.mark.parametrize("kind", ["onnx", "huggingface"])
def test_a_model_name_that_leaves_the_run_folder_is_a_config_error(tmp_path, name, kind):
    """``output.dicom_seg`` writes RUN_DIR/dicom_seg/MODEL/...; a Hugging Face model's export
    goes to RUN_DIR/models/MODEL.onnx: a name with a path in it is refused before anything runs."""
    (tmp_path / "images").mkdir()
    (tmp_path / "m.onnx").write_bytes(b"")
    source = (f"path: {tmp_path}/m.onnx" if kind == "onnx"
              else "id: owner/tiny-segformer\n    task: semantic-segmentation")
    config = tmp_path / "cfg.yaml"
    config.write_text(f"dataset:\n  image_dir: {tmp_path}/images\nmodels:\n  - name: {name!r}\n    kind: {kind}\n"
                      f"    {source}\noutput:\n  dicom_seg: true\n".replace("'", '"').replace("\0", "\\0"))
    before = _files(tmp_path.parent)
    result = _invoke(["run", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"], code=2)
    assert f"{config}: models[0].name:" in result.output and "cannot name the model's files" in result.output
    assert "Traceback" not in result.output
    assert _files(tmp_path.parent) == before and not (tmp_path / "run").exists()
    assert not Path("/tmp/medbench-escaped").exists()


def test_the_onnx_export_of_a_model_stays_in_its_folder(tmp_path):
    """The export writer checks its target itself (a name the config check did not see)."""
    source = SOURCES["huggingface"](ModelEntry(name="../../HF_ESCAPED", kind="huggingface", id="x/y", task="t"))
    with pytest.raises(UnsafePathError, match="HF_ESCAPED"):
        source.onnx(tmp_path / "run" / "models")
    assert _files(tmp_path) == set()


def test_part_and_table_writers_refuse_a_folder_that_leads_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "parts").symlink_to(outside, target_is_directory=True)
    schema = pa.schema([("x", pa.int64())])
    with pytest.raises(UnsafePathError, match="outside"):
        PartWriter(run, "cases", schema, fingerprint="f", run_id="r")
    (run / "metrics.parquet").symlink_to(outside / "metrics.parquet")
    with pytest.raises(UnsafePathError, match="outside"):
        write_table(pa.table({"x": [1]}), run, "metrics")
    with pytest.raises(UnsafePathError):
        write_table(pa.table({"x": [1]}), run, "../metrics")
    assert _files(outside) == set()


def test_a_manifest_case_id_with_a_path_is_a_config_error(tmp_path, bench_assets):
    manifest = tmp_path / "cases.csv"
    image = next((bench_assets / "data" / "images").iterdir())
    manifest.write_text(f"case_id,image\n../../../ESCAPED,{image}\n")
    config = tmp_path / "cfg.yaml"
    config.write_text(f"dataset:\n  manifest: {manifest}\nmodels:\n  - name: baseline\n"
                      f"    path: {bench_assets}/models/baseline.onnx\n")
    result = _invoke(["run", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"], code=2)
    assert f"{manifest}:2: case_id '../../../ESCAPED' cannot name the files written" in result.output


def test_path_inside_and_safe_name():
    assert path_inside("/r", "a", "b.dcm") == Path("/r/a/b.dcm")
    for bad in ("..", ".", "", "a/b", "/abs", "a\\b", "x\ny"):
        with pytest.raises(UnsafePathError):
            path_inside("/r", bad)
    assert safe_name("/../../../../X") == "_.._.._.._.._X"
    assert safe_name("..") == "_." and safe_name("") == "_" and safe_name("3") == "3"
    assert safe_name("a b/c") == "a_b_c" and "/" not in safe_name("\\..\\x")


@pytest.fixture(scope="module")
def dicom_two_series(tmp_path_factory):
    """A folder ``both`` holding two CT series (SeriesNumber 1 and ``/../../../../X``), their SEG
    references, the baseline model, and a config saving predictions as DICOM-SEG."""
    import pydicom
    from pydicom.dataelem import DataElement

    from dicom_synthetic import SeriesSpec, write_ct_series, write_seg
    from medbench_fast.data.synthetic import LABEL_NAMES, make_case
    from medbench_fast.demo.baseline import build_baseline

    root = tmp_path_factory.mktemp("dicom_two_series")
    data = root / "data"
    both = data / "images" / "both"
    both.mkdir(parents=True)
    for i, number in enumerate((1, 2)):
        case = make_case(i, seed=5, shape=SHAPE, spacing=SPACING)
        folder = data / f"series{number}"
        write_ct_series(folder, SeriesSpec(SHAPE, SPACING, seed=i), case.image, series_number=number)
        write_seg(data / "refs" / f"s{number}.dcm", folder, {n: case.labels == n for n in LABEL_NAMES},
                  names=LABEL_NAMES)
        for f in sorted(folder.iterdir()):
            ds = pydicom.dcmread(f)
            if number == 2:
                ds[0x00200011] = DataElement(0x00200011, "LO", "/../../../../X")
            ds.save_as(both / f"s{number}_{f.name}")
            f.unlink()
        folder.rmdir()
    build_baseline(root / "baseline.onnx")
    return textwrap.dedent(f"""\
        dataset:
          image_dir: {data}/images
          seg_dir: {data}/refs
          dicom_labels: {{"nocase:body": 1, airway: 4, "regex:(vertebra|spinal_cord|lymph_node)": 2}}
          dicom_unmatched: ignore
        models:
          - name: NAME
            path: {root}/baseline.onnx
        benchmark:
          metrics: [counts]
        output:
          formats: [json]
          dicom_seg: true
        """)


def _new_files(tmp_path: Path, before: set[Path]) -> set[Path]:
    """Files written since ``before``, the caches of the tests apart."""
    return {p for p in _files(tmp_path) - before if not p.relative_to(tmp_path).parts[0].endswith("-cache")}


def test_a_dicom_series_number_cannot_lead_a_seg_outside_the_run_folder(tmp_path, dicom_two_series):
    """Two series in one folder get case ids ``<folder>_<SeriesNumber>``; a SeriesNumber of
    ``/../../../../X`` becomes a plain name, and the prediction SEG stays in the run folder."""
    config = tmp_path / "config.yaml"
    config.write_text(dicom_two_series.replace("NAME", "baseline"))
    out = tmp_path / "work" / "deep" / "run"
    before = _files(tmp_path)
    _invoke(["run", "--config", str(config), "--out", str(out), "--quiet"], code=0)
    cases = pq.read_table(out / "cases.parquet").to_pylist()
    assert sorted(c["case_id"] for c in cases) == ["both_1", "both__.._.._.._.._X"]
    saved = sorted(p.relative_to(out).as_posix() for p in (out / "dicom_seg").rglob("*.dcm"))
    assert saved == ["dicom_seg/baseline/both_1.dcm", "dicom_seg/baseline/both__.._.._.._.._X.dcm"]
    new = _new_files(tmp_path, before)
    assert new and all(out in p.parents for p in new), sorted(map(str, new))
    assert not any(p.name.startswith("X") for p in _files(tmp_path))


def test_a_model_name_with_a_path_saves_no_seg_anywhere(tmp_path, dicom_two_series):
    """The end-to-end case of ``output.dicom_seg`` with a model named ``../../ESCAPED``."""
    config = tmp_path / "config.yaml"
    config.write_text(dicom_two_series.replace("NAME", "../../ESCAPED"))
    out = tmp_path / "work" / "deep" / "run"
    before = _files(tmp_path)
    result = _invoke(["run", "--config", str(config), "--out", str(out), "--quiet"], code=2)
    assert "models[0].name: '../../ESCAPED' cannot name the model's files in the run folder" in result.output
    assert _new_files(tmp_path, before) == set()
    assert not [p for p in tmp_path.rglob("*ESCAPED*")]
