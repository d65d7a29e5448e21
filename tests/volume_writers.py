"""Writers of test volumes in every format the reader accepts."""

from __future__ import annotations

import locale
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medbench_fast.data.reader import Volume, volume_to_sitk


def write_dicom_series(volume: Volume, folder: Path) -> Path:
    """Write ``volume`` (int16) as one DICOM file per axial slice, with real geometry tags.

    GDCM's writer switches the process locale to "C" (text I/O would fall back to ASCII);
    the caller's locale is restored afterwards.
    """
    saved = locale.setlocale(locale.LC_ALL)
    try:
        return _write_dicom_series(volume, folder)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_series(volume: Volume, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image = volume_to_sitk(Volume(volume.array.astype(np.int16), volume.spacing, volume.origin, volume.direction))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1." + str(abs(hash(str(folder))) % 10**12)
    direction = image.GetDirection()
    for z in range(image.GetDepth()):
        sl = image[:, :, z]
        tags = {
            "0008|0060": "CT",
            "0020|000d": series_uid + ".0",
            "0020|000e": series_uid,
            "0020|0037": "\\".join(map(str, (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7]))),
            "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, z)))),
            "0020|0013": str(z + 1),
            "0018|0050": str(volume.spacing[0]),
            "0028|0030": f"{volume.spacing[1]}\\{volume.spacing[2]}",
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice_{z:04d}.dcm"))
        writer.Execute(sl)
    return folder
