"""Predicted label maps out as DICOM-SEG referencing the source series (highdicom).

Label ``l`` becomes segment number ``l`` (segments ``1..max label`` are described, so
reading the file back with no label rules gives the same label map); the segment label is
the dataset's label name where one is given. Frames of empty slices are omitted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medbench_fast.data.dicom.paths import SeriesPath, series_grid
from medbench_fast.data.reader import VolumeError
from medbench_fast.files import atomic_write


def write_prediction_seg(label_map: np.ndarray, series: SeriesPath, path: str | os.PathLike, *, model: str,
                         label_names: dict[int, str] | None = None) -> Path:
    """Write ``label_map`` ``(Z, Y, X)`` (on ``series``' grid) as a DICOM-SEG at ``path``."""
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    from medbench_fast import __version__

    grid, headers = series_grid(series)
    labels = np.asarray(label_map)
    if labels.shape != grid.shape:
        raise VolumeError(f"{series}: prediction of model {model!r} has shape {labels.shape}; the series is {grid.shape}")
    top = int(labels.max(initial=0))
    algorithm = hd.AlgorithmIdentificationSequence(name=model, version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=(label_names or {}).get(n, f"label {n}"),
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=CodedConcept(str(n), "99MEDBENCH", (label_names or {}).get(n, f"label {n}")),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
        for n in range(1, max(top, 1) + 1)]
    seg = hd.seg.Segmentation(
        source_images=headers, pixel_array=labels.astype(np.uint16 if top > 255 else np.uint8, copy=False),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="medbench-fast", manufacturer_model_name=model, software_versions=__version__,
        device_serial_number="0", series_description=f"{model} segmentation", omit_empty_frames=top > 0)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, seg.save_as)
    return out
