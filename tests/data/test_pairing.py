"""Case pairing (:mod:`medbench_fast.data.pairing`): each rule and each problem message, for
``medbench run`` (images with references) and ``medbench evaluate`` (predictions with
references) alike.

Pairing reads names, never pixels: files here are empty unless a test reads them."""

from __future__ import annotations

import builtins
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_synthetic import SeriesSpec, circle_contours, write_ct_series, write_rtstruct, write_seg

from medbench_fast.data import pairing
from medbench_fast.data.checks import check_same_grid
from medbench_fast.data.dicom.labels import LabelRules
from medbench_fast.data.dicom.paths import SeriesPath
from medbench_fast.data.layouts import LayoutError, read_layout
from medbench_fast.data.pairing import (
    Case, CasePair, DatasetError, RunCase, find_cases, layout_cases, pair_cases, pair_folders,
)
from medbench_fast.data.reader import load_volume

AXIAL = SeriesSpec((16, 48, 40), spacing=(3.0, 0.7, 0.8))


def _touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def _problems(cases) -> dict:
    return {c.case_id: c.problem for c in cases}


# -- the record -----------------------------------------------------------------------------------
def test_run_cases_and_evaluation_pairs_are_one_record(tmp_path):
    assert RunCase is Case and CasePair is Case
    assert RunCase("c1", "/i/c1.nii.gz", "/r/c1.nii.gz").pred_path is None  # positional as before
    preds, refs = _touch(tmp_path / "p", "c1.nii.gz"), _touch(tmp_path / "r", "c1.nrrd")
    [case] = pair_cases(preds, refs)
    assert case == Case("c1", None, str(refs / "c1.nrrd"), None, pred_path=str(preds / "c1.nii.gz"))


# -- two folders by case id -----------------------------------------------------------------------
def test_run_pairs_every_image_with_its_reference(tmp_path):
    images = _touch(tmp_path / "images", "a.nii.gz", "b.mha", "c.nrrd", ".hidden.nii.gz", "notes.txt")
    refs = _touch(tmp_path / "labels", "a.nii", "b.nii.gz", "only_ref.nii.gz")
    cases = pair_folders(images, refs)
    assert [(c.case_id, Path(c.image_path).name, c.ref_path and Path(c.ref_path).name) for c in cases] == [
        ("a", "a.nii.gz", "a.nii"), ("b", "b.mha", "b.nii.gz"), ("c", "c.nrrd", None)]
    assert _problems(cases) == {"a": None, "b": None,
                                "c": f"{images / 'c.nrrd'}: no reference for case 'c' in {refs}"}
    assert [c.case_id for c in pair_folders(images, refs, pattern="*.mha")] == ["b"]
    assert _problems(pair_folders(images, None)) == {"a": None, "b": None, "c": None}  # references optional


def test_evaluate_pairs_both_ways(tmp_path):
    preds = _touch(tmp_path / "preds", "both.nii.gz", "no_ref.nii.gz")
    refs = _touch(tmp_path / "refs", "both.nii.gz", "no_pred.nii.gz")
    assert _problems(pair_cases(preds, refs)) == {
        "both": None,
        "no_pred": f"{refs / 'no_pred.nii.gz'}: no prediction for case 'no_pred' in {preds}",
        "no_ref": f"{preds / 'no_ref.nii.gz'}: no reference for case 'no_ref' in {refs}",
    }


def test_several_files_for_one_case(tmp_path):
    images = _touch(tmp_path / "images", "a.nii.gz", "a.mha", "b.nii.gz")
    refs = _touch(tmp_path / "labels", "a.nii.gz", "b.nii.gz", "b.nrrd")
    want = {"a": f"case 'a' has several files: {images / 'a.mha'}, {images / 'a.nii.gz'}",
            "b": f"case 'b' has several files: {refs / 'b.nii.gz'}, {refs / 'b.nrrd'}"}
    assert _problems(pair_folders(images, refs)) == want
    assert _problems(pair_cases(images, refs)) == want


def test_both_commands_give_the_same_message_for_the_same_folder_problem(tmp_path):
    """The folder given to ``run`` as ``image_dir`` and to ``evaluate`` as ``--pred``."""
    left = _touch(tmp_path / "left", "ok.nii.gz", "lonely.nii.gz", "twice.nii.gz", "twice.nrrd")
    refs = _touch(tmp_path / "refs", "ok.nii.gz", "twice.nii.gz")
    run = _problems(find_cases(image_dir=str(left), seg_dir=str(refs)))
    evaluate = _problems(pair_cases(left, refs))
    assert run == evaluate
    assert run["lonely"] == f"{left / 'lonely.nii.gz'}: no reference for case 'lonely' in {refs}"
    assert run["twice"].startswith("case 'twice' has several files: ")


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'}: not a folder"):
        pair_cases(tmp_path / "nope", tmp_path)
    with pytest.raises(DatasetError, match=f"dataset: {tmp_path / 'nope'}: not a folder"):
        find_cases(image_dir=str(tmp_path / "nope"))


def test_folders_of_image_files_are_never_opened_to_look_for_dicom(tmp_path, monkeypatch):
    """Names that all say NIfTI / NRRD / MetaImage: the DICOM check opens no file."""
    from medbench_fast.data.dicom import index

    preds = _touch(tmp_path / "preds", "a.nii.gz", "b.nii", "c.nhdr", "c.raw.gz", ".DS_Store")
    refs = _touch(tmp_path / "refs", "a.nrrd", "b.mhd", "b.raw", "c.mha")  # .raw: a MetaImage's data file

    def never(*args, **kwargs):
        raise AssertionError("scanned for DICOM objects")

    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and Path(file).is_relative_to(tmp_path):
            raise AssertionError(f"opened {file}")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(index, "has_dicom_objects", never)
    monkeypatch.setattr(index, "is_dicom_file", never)
    monkeypatch.setattr(builtins, "open", guarded_open)
    assert [c.case_id for c in pair_cases(preds, refs)] == ["a", "b", "c"]
    assert [c.case_id for c in find_cases(image_dir=str(preds), seg_dir=str(refs))] == ["a", "b", "c"]


def test_a_folder_with_other_files_is_scanned_for_dicom(tmp_path, monkeypatch):
    from medbench_fast.data.dicom import index

    scanned = []
    monkeypatch.setattr(index, "has_dicom_objects", lambda folder: scanned.append(Path(folder)) or False)
    preds = _touch(tmp_path / "preds", "a.nii.gz")
    refs = _touch(tmp_path / "refs", "a.nii.gz", "export.dcm")
    assert [c.case_id for c in pair_cases(preds, refs)] == ["a"]
    assert scanned == [refs]


# -- nnU-Net channel files ------------------------------------------------------------------------
def test_channel_files_in_a_plain_folder_are_one_case(tmp_path):
    images = _touch(tmp_path / "imagesTs", "A_0000.nii.gz", "A_0001.nii.gz", "B_0000.nii.gz", "B_0001.nii.gz",
                    "C_0000.nii.gz", "C_0001.nii.gz", "D_0001.nii.gz")
    refs = _touch(tmp_path / "labelsTs", "A.nii.gz", "B.nii.gz", "D.nii.gz")
    cases = {c.case_id: c for c in pair_folders(images, refs)}
    assert cases["A"].channel_paths == (str(images / "A_0000.nii.gz"), str(images / "A_0001.nii.gz"))
    assert cases["A"].image_path == str(images / "A_0000.nii.gz") and cases["A"].ref_path == str(refs / "A.nii.gz")
    assert cases["A"].channel_names == () and cases["A"].problem is None
    assert cases["C"].problem == f"{images / 'C_0000.nii.gz'}: no reference for case 'C' in {refs}"
    assert cases["D"].problem == f"{images / 'D_0000.nii.gz'}: channel 0 of case 'D' is missing"


def test_channel_names_and_count_come_from_the_parent_dataset_json(tmp_path):
    images = _touch(tmp_path / "imagesTs", "A_0000.nii.gz", "A_0001.nii.gz", "B_0000.nii.gz",
                    "C_0000.nii.gz", "C_0001.nii.gz", "C_0002.nii.gz")
    refs = _touch(tmp_path / "labelsTs", "A.nii.gz", "B.nii.gz", "C.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "T1w", "1": "t1gd"}, "labels": {"background": 0, "tumour": 1}, "file_ending": ".nii.gz"}))
    cases = {c.case_id: c for c in pair_folders(images, refs)}
    assert cases["A"].channel_names == ("T1w", "t1gd") and cases["A"].problem is None
    assert cases["B"].problem == f"{images / 'B_0001.nii.gz'}: channel 1 (t1gd) of case 'B' is missing"
    assert cases["C"].problem == (f"{images / 'C_0002.nii.gz'}: channel 2 of case 'C' is not among the 2 channels "
                                  f"the dataset declares")
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="dataset.image_dir: .*dataset.json: not valid JSON"):
        find_cases(image_dir=str(images), seg_dir=str(refs))


def test_plain_case_ids_ending_in_digits_stay_single_channel(tmp_path):
    images = _touch(tmp_path / "images", "case_0000.nii.gz", "case_0001.nii.gz")
    refs = _touch(tmp_path / "labels", "case_0000.nii.gz", "case_0001.nii.gz")
    cases = find_cases(image_dir=str(images), seg_dir=str(refs))
    assert [(c.case_id, c.channel_paths, c.problem) for c in cases] == [("case_0000", (), None), ("case_0001", (), None)]


def test_predictions_are_never_taken_for_channel_files(tmp_path):
    preds = _touch(tmp_path / "preds", "A_0000.nii.gz", "A_0001.nii.gz")
    refs = _touch(tmp_path / "refs", "A.nii.gz")
    assert _problems(pair_cases(preds, refs)) == {
        "A": f"{refs / 'A.nii.gz'}: no prediction for case 'A' in {preds}",
        "A_0000": f"{preds / 'A_0000.nii.gz'}: no reference for case 'A_0000' in {refs}",
        "A_0001": f"{preds / 'A_0001.nii.gz'}: no reference for case 'A_0001' in {refs}"}


# -- nnU-Net raw datasets and Decathlon tasks -----------------------------------------------------
def _nnunet(root: Path, *files: str) -> Path:
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "T1w", "1": "t1gd"}, "labels": {"background": 0, "tumour": 1}, "file_ending": ".nii.gz"}))
    for f in files:
        _touch(root / Path(f).parent, Path(f).name)
    return root


def test_nnunet_layout_cases(tmp_path):
    root = _nnunet(tmp_path / "Dataset001", "imagesTs/A_0000.nii.gz", "imagesTs/A_0001.nii.gz",
                   "imagesTs/B_0000.nii.gz", "imagesTs/B_0001.nii.gz", "imagesTs/C_0000.nii.gz",
                   "imagesTs/loose.nii.gz", "labelsTs/A.nii.gz", "imagesTs/A_0000.nrrd")
    cases = {c.case_id: c for c in layout_cases(read_layout(root, "nnunet"), "test")}
    assert list(cases) == ["A", "B", "C", "loose"]
    assert cases["A"] == Case("A", str(root / "imagesTs/A_0000.nii.gz"), str(root / "labelsTs/A.nii.gz"),
                              channel_paths=(str(root / "imagesTs/A_0000.nii.gz"), str(root / "imagesTs/A_0001.nii.gz")),
                              channel_names=("T1w", "t1gd"))
    images, labels = root / "imagesTs", root / "labelsTs"
    assert _problems(cases.values()) == {
        "A": None,
        "B": f"{images / 'B_0000.nii.gz'}: no reference for case 'B' in {labels}",
        "C": f"{images / 'C_0001.nii.gz'}: channel 1 (t1gd) of case 'C' is missing",
        "loose": f"{images / 'loose.nii.gz'}: not named <case>_<XXXX>.nii.gz (nnU-Net channel files)",
    }
    shutil.rmtree(labels)  # a test split without references: no problem
    assert layout_cases(read_layout(root, "nnunet"), "test")[1].problem is None
    with pytest.raises(LayoutError, match=r"no imagesTr/ folder beside it for split 'train' \(set dataset.split: test"):
        layout_cases(read_layout(root, "nnunet"), "train")
    with pytest.raises(LayoutError, match="split 'val' is not one of train, test"):
        layout_cases(read_layout(root, "nnunet"), "val")


def test_decathlon_layout_cases(tmp_path):
    root = tmp_path / "Task01"
    _touch(root / "imagesTr", "a.nii.gz", "b.nii.gz")
    _touch(root / "labelsTr", "a.nii.gz")
    meta = {"modality": {"0": "FLAIR", "1": "T1w"}, "labels": {"0": "background", "1": "edema"},
            "training": [{"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"},
                         {"image": "./imagesTr/b.nii.gz", "label": "./labelsTr/b.nii.gz"},
                         {"image": "./imagesTr/gone.nii.gz", "label": "./labelsTr/gone.nii.gz"}]}
    (root / "dataset.json").write_text(json.dumps(meta))
    cases = {c.case_id: c for c in layout_cases(read_layout(root, "decathlon"), "train")}
    assert cases["a"] == Case("a", str(root / "imagesTr/a.nii.gz"), str(root / "labelsTr/a.nii.gz"),
                              channel_names=("FLAIR", "T1w"))
    json_path = root / "dataset.json"
    assert cases["b"].problem == f"{root / 'labelsTr/b.nii.gz'}: reference file not found ({json_path}: training[1].label)"
    assert cases["gone"].problem == f"{root / 'imagesTr/gone.nii.gz'}: image file not found ({json_path}: training[2].image)"
    meta["training"].append(meta["training"][0])
    json_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"config: dataset.decathlon: .*training\[3\]: case 'a' is listed twice"):
        find_cases(decathlon=str(root), split="train")


# -- manifests ------------------------------------------------------------------------------------
def test_manifest_cases(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,image,reference\nb,b_0000.nii.gz;b_0001.nii.gz,\na,/abs/a.nii.gz,lab/a.nii.gz\n")
    cases = find_cases(manifest=str(manifest))
    assert cases == [Case("a", "/abs/a.nii.gz", str(tmp_path / "lab/a.nii.gz")),
                     Case("b", str(tmp_path / "b_0000.nii.gz"), None,
                          channel_paths=(str(tmp_path / "b_0000.nii.gz"), str(tmp_path / "b_0001.nii.gz")))]
    assert [c.case_id for c in find_cases(manifest=str(manifest), max_cases=1)] == ["a"]


@pytest.mark.parametrize("text, message", [
    ("case_id,reference\nx,y\n", "manifest lacks column(s) ['image'] (needs case_id,image[,reference])"),
    ("case_id,image\nx,a.nii.gz\nx,b.nii.gz\n", ":3: case_id 'x' is empty or repeated"),
    ("case_id,image\n,a.nii.gz\n", ":2: case_id '' is empty or repeated"),
    ("case_id,image\nsub/x,a.nii.gz\n", ":2: case_id 'sub/x' cannot name the files written for the case"),
])
def test_bad_manifests_name_the_line(tmp_path, text, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(DatasetError) as err:
        find_cases(manifest=str(manifest))
    assert str(err.value).startswith(str(manifest)) and message in str(err.value)
    with pytest.raises(DatasetError, match="nope.csv: manifest not found"):
        find_cases(manifest=str(tmp_path / "nope.csv"))


def test_find_cases_needs_a_source(tmp_path):
    with pytest.raises(DatasetError, match="my.yaml: dataset: give image_dir"):
        find_cases(source="my.yaml")


# -- DICOM ----------------------------------------------------------------------------------------
def _ball(spec):
    z, y, x = np.meshgrid(*[np.arange(n) for n in spec.shape], indexing="ij")
    return {1: (z - 8) ** 2 / 16 + (y - 20) ** 2 / 80 + (x - 15) ** 2 / 50 <= 1}


def _uid(folder: Path) -> str:
    return str(pydicom.dcmread(next(folder.iterdir())).SeriesInstanceUID)


def test_pacs_folder_is_sorted_into_series_and_paired_by_uid(tmp_path):
    """Two patients' series, their SEG and RTSTRUCT and one orphan, all mixed in one folder."""
    staging = tmp_path / "staging"
    write_ct_series(staging / "a", AXIAL)
    write_ct_series(staging / "b", SeriesSpec(AXIAL.shape, AXIAL.spacing, patient_id="SYN002"), series_number=2)
    write_ct_series(staging / "c", AXIAL, series_number=3)
    uid = {k: _uid(staging / k) for k in "abc"}
    write_seg(staging / "seg.dcm", SeriesPath(staging / "a", uid["a"]), _ball(AXIAL))
    write_rtstruct(staging / "rt.dcm", SeriesPath(staging / "b", uid["b"]),
                   [("GTV", circle_contours(AXIAL, (20, 24), 5.0, [4]))])
    write_rtstruct(staging / "orphan.dcm", SeriesPath(staging / "b", uid["b"]),
                   [("GTV", circle_contours(AXIAL, (20, 24), 5.0, [4]))], series_uid="1.2.999")
    pacs = tmp_path / "pacs"
    pacs.mkdir()
    for i, p in enumerate(sorted(staging.rglob("*.dcm"), key=lambda p: zlib.crc32(str(p.relative_to(tmp_path)).encode()))):
        shutil.copy(p, pacs / f"f{i:04d}")
        if p.name == "orphan.dcm":
            orphan = f"f{i:04d}"
    cases = {c.case_id: c for c in find_cases(image_dir=str(pacs))}
    assert sorted(cases) == sorted([orphan, "pacs_1", "pacs_2", "pacs_3"])
    assert cases[orphan].problem == f"{pacs / orphan}: RTSTRUCT references series 1.2.999, which is not in the dataset"
    assert cases["pacs_3"].problem == (f"{pacs}: no SEG or RTSTRUCT referencing series {uid['c']} for case 'pacs_3' "
                                       f"in {pacs}")
    for cid, kind in (("pacs_1", "SEG"), ("pacs_2", "RTSTRUCT")):
        case = cases[cid]
        assert case.problem is None and case.ref_path.kind == kind
        image, ref = load_volume(case.image_path), load_volume(case.ref_path)
        check_same_grid(image, ref)
        assert ref.array.any()


def test_dicom_references_and_predictions_pair_by_the_series_they_reference(tmp_path):
    data, preds = tmp_path / "data", tmp_path / "preds"
    images, refs = data / "images", data / "refs"
    for i, name in enumerate(("one", "two", "three")):
        write_ct_series(images / name, AXIAL, series_number=i + 1)
    uid = {name: _uid(images / name) for name in ("one", "two", "three")}
    write_seg(refs / "r1.dcm", images / "one", _ball(AXIAL))
    write_seg(refs / "r1b.dcm", images / "one", _ball(AXIAL))
    write_seg(refs / "r2.dcm", images / "two", _ball(AXIAL))
    run = _problems(find_cases(image_dir=str(images), seg_dir=str(refs)))
    assert run == {"one": f"case 'one' has several files: {refs / 'r1.dcm'}, {refs / 'r1b.dcm'}", "two": None,
                   "three": f"{images / 'three'}: no SEG or RTSTRUCT referencing series {uid['three']} for case "
                            f"'three' in {refs}"}
    (refs / "r1b.dcm").unlink()
    write_seg(preds / "p2.dcm", images / "two", _ball(AXIAL))
    _touch(preds, "three.nii.gz")  # a label map named by the series' case id
    evaluate = {c.case_id: c for c in pair_cases(preds, data)}
    assert _problems(evaluate.values()) == {
        "one": f"{refs / 'r1.dcm'}: no prediction for case 'one' in {preds}", "two": None,
        "three": f"{preds / 'three.nii.gz'}: no reference for case 'three' in {data}"}
    assert evaluate["two"].pred_path == str(preds / "p2.dcm") and evaluate["two"].ref_path == str(refs / "r2.dcm")
    assert evaluate["two"].ref_path.kind == "SEG" and evaluate["two"].image_path is None
    assert pairing.dicom_pairs(preds, data, LabelRules()) == list(evaluate.values())
