"""Multi-channel images: a case's channels on one grid, as one ``(C, Z, Y, X)`` volume."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medbench_fast.data.checks import check_same_grid
from medbench_fast.data.reader import Volume, VolumeError, load_volume


def load_channel_files(paths: Sequence[str], names: Sequence[str] = (), *, cache=None) -> Volume:
    """One file per channel (nnU-Net), in channel order, as ``(C, Z, Y, X)``.

    Every channel must lie on the first channel's grid (shape, spacing, origin, direction);
    otherwise :class:`VolumeError` names the channel file. A single file is returned as
    the 3D volume itself. ``names`` (optional) go to ``meta["channel_names"]``.
    """
    if names and len(names) != len(paths):
        raise ValueError(f"{len(names)} channel names for {len(paths)} channel files")
    volumes = [load_volume(p, cache=cache) for p in paths]
    first = volumes[0]
    for other in volumes[1:]:
        check_same_grid(first, other, ref_role="first channel")
    array = first.array if len(volumes) == 1 else np.stack([v.array for v in volumes])
    return _with_names(first, array, names)


def load_channels_file(path: str, names: Sequence[str] = (), *, cache=None) -> Volume:
    """One 4D file whose fourth axis is the channel (Decathlon) as ``(C, Z, Y, X)``.

    With ``names``, the file must hold exactly ``len(names)`` channels (a 3D file is one
    channel); otherwise :class:`VolumeError` names the file and both counts.
    """
    volume = load_volume(path, cache=cache, channels=True)
    if names and volume.channels != len(names):
        raise VolumeError(f"{path}: holds {volume.channels} channel(s); the dataset's modality lists "
                          f"{len(names)} ({', '.join(names)})")
    return _with_names(volume, volume.array, names)


def _with_names(base: Volume, array: np.ndarray, names: Sequence[str]) -> Volume:
    meta = {**base.meta, "channel_names": tuple(names)} if names else dict(base.meta)
    return Volume(array, base.spacing, base.origin, base.direction, base.path, meta)
