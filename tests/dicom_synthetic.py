"""Synthetic DICOM data for tests and benchmarks: CT series, DICOM-SEG and RTSTRUCT files.

Lives with the tests (``bench/`` puts ``tests/`` on ``sys.path``); the runtime package never
imports it.

Everything is written with pydicom (SEG with highdicom), on any grid: anisotropic spacing,
any orientation (``axes``: rows are the unit vectors of array axes X, Y, Z in patient
space), files named in shuffled order.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class SeriesSpec:
    """Geometry and identity of a synthetic series."""

    shape: tuple[int, int, int]  # (Z, Y, X)
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.8)  # (sz, sy, sx) mm
    origin: tuple[float, float, float] = (-100.0, -120.0, -50.0)  # first voxel, patient x, y, z mm
    axes: tuple = ((1, 0, 0), (0, 1, 0), (0, 0, 1))  # rows: X, Y, Z axes in patient space
    patient_id: str = "SYN001"
    seed: int = 0

    def point(self, ijk) -> np.ndarray:
        """Patient coordinates (mm) of continuous voxel indices ``(i, j, k)``."""
        steps = np.array([self.spacing[2], self.spacing[1], self.spacing[0]])
        return np.asarray(self.origin) + (np.asarray(ijk, dtype=np.float64) * steps) @ np.asarray(self.axes, dtype=np.float64)


def _uid(rng: np.random.Generator) -> str:
    return "2.25." + str(int.from_bytes(rng.bytes(15), "big"))


def _base(spec: SeriesSpec, sop_class: str, modality: str, study_uid: str, series_uid: str, sop_uid: str):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, sop_uid, modality
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Synthetic^Case", spec.patient_id, "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20260101", "120000", "1", "", ""
    ds.Manufacturer = "medbench-fast synthetic"
    return ds


def write_ct_series(folder: str | os.PathLike, spec: SeriesSpec, image: np.ndarray | None = None, *,
                    study_uid: str | None = None, frame_uid: str | None = None, series_number: int = 1,
                    shuffle: bool = True) -> dict:
    """Write a CT series (one file per slice; file names and InstanceNumbers in shuffled order); return its UIDs.

    ``image``: int16 HU ``(Z, Y, X)`` (default: a smooth phantom).
    """
    folder = Path(folder)
    rng = np.random.default_rng([spec.seed, series_number, zlib.crc32(str(folder.resolve()).encode())])
    folder.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = spec.shape
    if image is None:
        z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in spec.shape], indexing="ij", sparse=True)
        image = np.where(x ** 2 + y ** 2 < 0.8, 40, -1000).astype(np.int16) + (z * 10).astype(np.int16)
    uids = {"study": study_uid or _uid(rng), "series": _uid(rng), "frame": frame_uid or _uid(rng)}
    axes = np.asarray(spec.axes, dtype=np.float64)
    names = rng.permutation(nz) if shuffle else np.arange(nz)
    instances = rng.permutation(nz) if shuffle else np.arange(nz)
    for k in range(nz):
        ds = _base(spec, CT_SOP_CLASS, "CT", uids["study"], uids["series"], _uid(rng))
        ds.SeriesNumber, ds.InstanceNumber = series_number, int(instances[k]) + 1
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = uids["frame"], ""
        ds.ImagePositionPatient = [f"{v:.6f}" for v in spec.point((0, 0, k))]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.concatenate([axes[0], axes[1]])]
        ds.PixelSpacing = [f"{spec.spacing[1]:.6f}", f"{spec.spacing[2]:.6f}"]
        ds.SliceThickness = f"{spec.spacing[0]:.6f}"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelData = np.ascontiguousarray(image[k], dtype="<i2").tobytes()
        ds.save_as(folder / f"IM{int(names[k]):05d}.dcm", enforce_file_format=True)
    return uids


def write_seg(path: str | os.PathLike, series_folder: str | os.PathLike, masks: dict[int, np.ndarray], *,
              names: dict[int, str] | None = None, fractional: bool = False, omit_empty: bool = True) -> None:
    """Write masks ``{segment number: bool (Z, Y, X)}`` as a DICOM-SEG on the series (highdicom)."""
    import highdicom as hd
    from highdicom.sr import CodedConcept

    from medbench_fast.data.dicom.paths import SeriesPath, series_grid

    import pydicom
    from pydicom.sr.codedict import codes

    files = sorted(Path(series_folder).glob("*.dcm"))
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    _, headers = series_grid(SeriesPath(series_folder, uid))
    numbers = sorted(masks)
    stack = np.stack([masks[n] for n in numbers], axis=-1)  # (Z, Y, X, S)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=(names or {}).get(n, f"segment {n}"),
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=CodedConcept(str(1000 + n), "99MEDBENCH", f"structure {n}"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL) for n in numbers]
    seg = hd.seg.Segmentation(
        source_images=headers, pixel_array=stack.astype(np.float32 if fractional else bool),
        segmentation_type="FRACTIONAL" if fractional else "BINARY", segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=99, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="medbench-fast synthetic", manufacturer_model_name="synthetic", software_versions="0",
        device_serial_number="0", omit_empty_frames=omit_empty)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)


def write_rtstruct(path: str | os.PathLike, series_folder: str | os.PathLike,
                   rois: list[tuple[str, list[np.ndarray]]], *, frame_uid: str | None = None,
                   series_uid: str | None = None) -> None:
    """Write an RTSTRUCT with pydicom: ``rois`` are ``(name, contours)``, each contour ``(N, 3)``
    patient points in mm (ROI numbers 1, 2, ... in order). ``frame_uid`` / ``series_uid``
    override the referenced UIDs (to write broken files)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    files = sorted(Path(series_folder).glob("*.dcm"))
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    first = headers[0]
    rng = np.random.default_rng([len(rois), zlib.crc32(str(Path(path).resolve()).encode())])
    spec = SeriesSpec((1, 1, 1), patient_id=str(first.PatientID))
    ds = _base(spec, "1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT", str(first.StudyInstanceUID), _uid(rng), _uid(rng))
    ds.SeriesNumber, ds.InstanceNumber = 98, 1
    ds.StructureSetLabel, ds.StructureSetDate, ds.StructureSetTime = "synthetic", "20260101", "120000"
    frame = frame_uid or str(first.FrameOfReferenceUID)
    series = Dataset()
    series.SeriesInstanceUID = series_uid or str(first.SeriesInstanceUID)
    series.ContourImageSequence = Sequence([_image_ref(h) for h in headers])
    study = Dataset()
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", str(first.StudyInstanceUID)
    study.RTReferencedSeriesSequence = Sequence([series])
    ref_frame = Dataset()
    ref_frame.FrameOfReferenceUID = frame
    ref_frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref_frame])
    roi_items, contour_items, observations = [], [], []
    for number, (name, contours) in enumerate(rois, start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, frame, name
        roi.ROIGenerationAlgorithm = "MANUAL"
        roi_items.append(roi)
        item = Dataset()
        item.ReferencedROINumber, item.ROIDisplayColor = number, [255, 0, 0]
        seq = []
        for points in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(points)
            c.ContourData = [f"{v:.4f}" for v in np.asarray(points, dtype=np.float64).ravel()]
            seq.append(c)
        item.ContourSequence = Sequence(seq)
        contour_items.append(item)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber, obs.RTROIInterpretedType, obs.ROIInterpreter = number, number, "ORGAN", ""
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(roi_items)
    ds.ROIContourSequence = Sequence(contour_items)
    ds.RTROIObservationsSequence = Sequence(observations)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _image_ref(header):
    from pydicom.dataset import Dataset

    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = str(header.SOPClassUID), str(header.SOPInstanceUID)
    return ref


def circle_contours(spec: SeriesSpec, centre_ijk, radius_mm: float, slices, n_points: int = 96) -> list[np.ndarray]:
    """Closed circular contours (patient mm) of radius ``radius_mm`` around ``centre_ijk`` on ``slices``."""
    t = np.linspace(0, 2 * np.pi, n_points, endpoint=False)
    out = []
    for k in slices:
        ijk = np.column_stack([centre_ijk[0] + radius_mm / spec.spacing[2] * np.cos(t),
                               centre_ijk[1] + radius_mm / spec.spacing[1] * np.sin(t), np.full(n_points, float(k))])
        out.append(spec.point(ijk))
    return out
