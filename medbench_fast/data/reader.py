"""Reading 3D volumes into ``(Z, Y, X)`` arrays with millimetre geometry.

NIfTI files are read by :mod:`~medbench_fast.data.nifti_read` where it reads them exactly as
SimpleITK does, everything else by SimpleITK.
Any format SimpleITK reads is accepted: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``,
``.nhdr``), MetaImage (``.mha``, ``.mhd``) and a folder holding one DICOM series.
Geometry is kept in array-axis order: ``spacing`` is ``(sz, sy, sx)`` in mm; ``origin`` is
``(oz, oy, ox)`` in mm; ``direction`` is the 3x3 direction-cosine matrix re-indexed to
``(Z, Y, X)`` (row-major tuple of 9).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medbench_fast.data import metaimage, nifti, nifti_read
from medbench_fast.data.errors import VolumeError

#: File-name endings recognised as images, longest first (so ``.nii.gz`` wins over ``.gz``).
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True)
class Volume:
    """A 3D image: voxel array in ``(Z, Y, X)`` plus geometry in millimetres.

    A multi-channel image holds ``(C, Z, Y, X)``: its channels on one grid, with
    ``meta["channel_names"]`` where the dataset names them. ``array`` may be a read-only
    memory mapping (from the volume cache); never write it.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    path: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The spatial shape ``(Z, Y, X)`` (without the channel axis)."""
        return tuple(int(s) for s in self.array.shape[-3:])  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        """Number of channels: 1 for a 3D array, ``C`` for ``(C, Z, Y, X)``."""
        return 1 if self.array.ndim == 3 else int(self.array.shape[0])


def case_id_from_path(path: str | os.PathLike) -> str:
    """The case id of an image file or DICOM folder: its name without the image extension."""
    name = Path(path).name
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name


def is_image_path(path: Path) -> bool:
    """True for files with an image extension and folders that hold DICOM files."""
    if path.is_dir():
        return _dicom_files(path) != ()
    return path.name.lower().endswith(IMAGE_EXTENSIONS)


def _dicom_files(folder: Path) -> tuple[str, ...]:
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        return ()
    if len(series) > 1:
        raise VolumeError(f"{folder}: holds {len(series)} DICOM series; put each series in its own folder")
    return tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))


def _reindex_zyx(values, dim: int) -> tuple[float, ...]:
    return tuple(float(v) for v in reversed(values[:dim]))


def read_sitk(path: str | os.PathLike):
    """Read ``path`` (file or DICOM folder) into a ``SimpleITK.Image``; errors name the file.

    NIfTI and compressed MetaImage files must hold every voxel their header announces (ITK
    would make up the missing ones); the checks run before decoding.
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.exists():
        raise VolumeError(f"{p}: file not found")
    try:
        if p.is_dir():
            files = _dicom_files(p)
            if not files:
                raise VolumeError(f"{p}: folder holds no DICOM series")
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(list(files))
            return reader.Execute()
        if p.stat().st_size == 0:
            raise VolumeError(f"{p}: file is empty (0 bytes)")
        if nifti.is_nifti(p):
            nifti.check_nifti(p)
        elif metaimage.is_metaimage(p):
            metaimage.check_metaimage(p)
        return sitk.ReadImage(str(p))
    except VolumeError:
        raise
    except RuntimeError as exc:  # SimpleITK reports every I/O failure as RuntimeError
        reason = str(exc).strip().splitlines()
        detail = next((ln for ln in reason if "rror" in ln or "nable" in ln), reason[-1] if reason else "")
        raise VolumeError(f"{p}: cannot be read as an image (truncated or corrupt?): {detail.strip()}") from None


def check_finite(volume: Volume, *, stored: bool = False) -> None:
    """Raise :class:`VolumeError` when a float volume holds NaN or infinite voxels.

    For a float NIfTI file decoded by ITK the raw voxels are checked too: ITK reads NaN and
    infinity there as 0, so only a decoded array without zeros is known to be clean.
    ``stored``: the array holds the file's own values (:mod:`~medbench_fast.data.nifti_read`).
    """
    array = volume.array
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    path = Path(volume.path) if volume.path else None
    if not bad and not stored and path is not None and nifti.is_nifti(path) and not np.all(array):
        header = nifti.check_nifti(path)
        bad = nifti.count_non_finite(path, header)
    if bad:
        raise VolumeError(f"{volume.path or '<image>'}: {bad} voxel value(s) are NaN or infinite; "
                          "expected finite numbers")


def decode_volume(path: str | os.PathLike, *, channels: bool = False, sha256: bool = False) -> Volume:
    """Decode a file or DICOM folder into a checked :class:`Volume` (``channels``: a 4D file
    is ``(C, Z, Y, X)``): NIfTI by :func:`~medbench_fast.data.nifti_read.read_nifti` where it
    reads the file, everything else (and every invalid file) with SimpleITK. ``sha256``: put
    the file's digest in ``meta["sha256"]`` where the bytes were read here anyway."""
    file = Path(path)
    volume = _nifti_volume(file, channels, sha256) if nifti.is_nifti(file) else None
    if volume is not None:
        check_finite(volume, stored=True)
        return volume
    volume = (sitk_to_channels if channels else sitk_to_volume)(read_sitk(path), path)
    check_finite(volume)
    return volume


def _nifti_volume(path: Path, channels: bool, sha256: bool) -> Volume | None:
    """A 3D NIfTI file (or 4D with ``channels``) read without SimpleITK; None for the rest,
    which SimpleITK reads or refuses with its message."""
    image = nifti_read.read_nifti(path, sha256=sha256)
    if image is None or not (image.array.ndim == 3 or (channels and image.array.ndim == 4)):
        return None
    return Volume(image.array, *_zyx_geometry(image.spacing, image.origin, image.direction), str(path),
                  {"sha256": image.sha256} if image.sha256 else {})


@functools.lru_cache(maxsize=256)
def _zyx_geometry(spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...]):
    """``(spacing, origin, direction)`` of a :class:`Volume` from ITK's ``(x, y, z[, t])``
    order (a row-major ``n x n`` direction); the files of one dataset mostly share it."""
    n = len(spacing)
    zyx = np.asarray(direction, dtype=np.float64).reshape(n, n)[:3, :3][::-1, ::-1]
    return _reindex_zyx(spacing, 3), _reindex_zyx(origin, 3), tuple(float(v) for v in zyx.ravel())


def sitk_to_volume(image, path: str | os.PathLike | None = None) -> Volume:
    """Convert a SimpleITK image to a :class:`Volume` (3D; trailing singleton axes dropped)."""
    import SimpleITK as sitk

    name = str(path) if path is not None else "<image>"
    dim = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(f"{name}: has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected a scalar volume")
    if dim == 4:
        size = image.GetSize()
        if size[3] != 1:
            raise VolumeError(f"{name}: is 4D with {size[3]} time points; expected a 3D volume")
        image = sitk.Extract(image, [size[0], size[1], size[2], 0], [0, 0, 0, 0])
        dim = 3
    if dim != 3:
        raise VolumeError(f"{name}: is {dim}D; expected a 3D volume")
    if 0 in image.GetSize():
        raise VolumeError(f"{name}: has no voxels (size {image.GetSize()})")
    array = sitk.GetArrayFromImage(image)  # (Z, Y, X)
    direction_xyz = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    direction_zyx = direction_xyz[::-1, ::-1]
    return Volume(
        array=array,
        spacing=_reindex_zyx(image.GetSpacing(), 3),  # type: ignore[arg-type]
        origin=_reindex_zyx(image.GetOrigin(), 3),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction_zyx.ravel()),
        path=None if path is None else str(path),
    )


def sitk_to_channels(image, path: str | os.PathLike | None = None) -> Volume:
    """Convert a 4D SimpleITK image whose fourth axis is the channel (Decathlon), or a 3D image
    of vectors (one channel per component), to a :class:`Volume` holding ``(C, Z, Y, X)``; a
    3D scalar image stays 3D (one channel)."""
    import SimpleITK as sitk

    name = str(path) if path is not None else "<image>"
    components = image.GetNumberOfComponentsPerPixel()
    if image.GetDimension() == 3 and components > 1:  # a 3D image of vectors: one channel per component
        first = sitk_to_volume(sitk.VectorIndexSelectionCast(image, 0), path)
        array = np.moveaxis(sitk.GetArrayFromImage(image), -1, 0)
        return Volume(np.ascontiguousarray(array), first.spacing, first.origin, first.direction, first.path)
    if image.GetDimension() != 4 or image.GetSize()[3] == 1:
        return sitk_to_volume(image, path)
    if components != 1:
        raise VolumeError(f"{name}: has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                          "expected a scalar 4D volume")
    size = image.GetSize()
    first = sitk_to_volume(sitk.Extract(image, [size[0], size[1], size[2], 0], [0, 0, 0, 0]), path)
    array = sitk.GetArrayFromImage(image)  # (C, Z, Y, X)
    return Volume(array, first.spacing, first.origin, first.direction, first.path)


def volume_to_sitk(volume: Volume):
    """Convert a :class:`Volume` back to a ``SimpleITK.Image`` with the same geometry."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    image.SetSpacing(tuple(reversed(volume.spacing)))
    image.SetOrigin(tuple(reversed(volume.origin)))
    image.SetDirection(tuple(np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)[::-1, ::-1].ravel()))
    return image


def write_volume(volume: Volume, path: str | os.PathLike) -> None:
    """Write ``volume`` to ``path`` in the format its extension names (compressed where possible)."""
    import SimpleITK as sitk

    sitk.WriteImage(volume_to_sitk(volume), str(path), useCompression=True)


def load_volume(path: str | os.PathLike, *, cache=None, channels: bool = False) -> Volume:
    """Load a volume, through ``cache`` (a :class:`~medbench_fast.data.cache.VolumeCache`) if given.

    Without a cache the file is decoded with SimpleITK each time. A DICOM series or a
    SEG / RTSTRUCT found by DICOM case discovery (:mod:`medbench_fast.data.dicom.paths`)
    is read by its own rules. ``channels``: the file may be 4D with the channel on its fourth
    axis (returned as ``(C, Z, Y, X)``).
    """
    from medbench_fast.data.dicom.paths import ObjectPath, SeriesPath, load_dicom_path

    if isinstance(path, (SeriesPath, ObjectPath)):
        return load_dicom_path(path, cache=cache)
    if cache is not None:
        return cache.load(path, channels=channels)
    return decode_volume(path, channels=channels)
