"""AI-ENE preprocessing: one (box crop, node crop) pair per lymph node.

Per node (a connected component of the node label in the mask), following the public
DualNet-ENE code:

1. resample CT (linear) and node mask (nearest) to ``spacing`` = 3 x 1 x 1 mm (Z, Y, X);
2. dilate the node mask with a 1 x 5 x 5 (Z, Y, X) box structure, twice;
3. crop ``box_size`` = 32 x 118 x 118 (Z, Y, X) around the centre of the node mask's
   bounding box (CT padded with -1024 HU, mask with 0);
4. clip HU to ``window`` = [-175, 275] and min-max scale to [0, 1] within the crop;
5. box input = CT x dilated mask;
6. node input = the dilated mask's bounding box in the crop, zoomed to ``node_size`` =
   32^3 (linear for the image, nearest for the mask), image x mask;
7. both inputs: ``x + 0.001`` clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medbench_fast.models.transforms import resize


@dataclass(frozen=True)
class NodeObject:
    """One node: ``object_id`` (1-based, by size then position), voxel count and centroid
    in the input grid (voxel indices, ``(z, y, x)``), and its model inputs (no channel axis)."""

    object_id: int
    voxels: int
    centroid_zyx: tuple[float, float, float]
    box: np.ndarray
    node: np.ndarray


def label_components(mask: np.ndarray, label: int, *, connectivity: int = 26,
                     min_voxels: int = 1) -> tuple[np.ndarray, list[int]]:
    """Connected components of ``mask == label``: ``(labels int32, kept component ids)``.

    Components are numbered by decreasing size (SimpleITK's relabel order); those with
    fewer than ``min_voxels`` voxels are dropped (set to 0).
    """
    import SimpleITK as sitk

    binary = sitk.GetImageFromArray((np.asarray(mask) == label).astype(np.uint8))
    cc = sitk.ConnectedComponent(binary, connectivity == 26)
    cc = sitk.RelabelComponent(cc, minimumObjectSize=int(min_voxels), sortByObjectSize=True)
    labels = sitk.GetArrayFromImage(cc).astype(np.int32)
    return labels, list(range(1, int(labels.max(initial=0)) + 1))


def dilate(mask: np.ndarray, structure=(1, 5, 5), iterations: int = 2) -> np.ndarray:
    """Binary dilation with a box ``structure`` (odd sizes, ``(Z, Y, X)``), ``iterations`` times."""
    out = np.asarray(mask, dtype=bool)
    for _ in range(iterations):
        for axis, k in enumerate(structure):
            r = k // 2
            if r == 0:
                continue
            padded = np.pad(out, [(r, r) if a == axis else (0, 0) for a in range(out.ndim)])
            n = out.shape[axis]
            acc = np.zeros_like(out)
            for shift in range(k):
                acc |= np.take(padded, np.arange(shift, shift + n), axis=axis)
            out = acc
    return out


def bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` inclusive corner indices of the non-zero voxels of ``mask``."""
    idx = np.nonzero(mask)
    return np.array([i.min() for i in idx]), np.array([i.max() for i in idx])


def crop_around(array: np.ndarray, center, size, fill) -> np.ndarray:
    """The ``size`` box whose voxel ``size // 2`` is ``center``, padded with ``fill`` outside ``array``."""
    start = np.asarray(center, dtype=np.int64) - np.asarray(size, dtype=np.int64) // 2
    out = np.full(tuple(size), fill, dtype=array.dtype)
    src = tuple(slice(max(s, 0), min(s + n, dim)) for s, n, dim in zip(start, size, array.shape))
    dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start))
    out[dst] = array[src]
    return out


def window_minmax(image: np.ndarray, window) -> np.ndarray:
    """Clip to ``window`` (HU) and min-max scale to [0, 1] (all zeros if the crop is constant)."""
    x = np.clip(image.astype(np.float32), window[0], window[1])
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def node_inputs(image: np.ndarray, labels: np.ndarray, object_ids: list[int], spacing, *,
                target_spacing=(3.0, 1.0, 1.0), box_size=(32, 118, 118), node_size=(32, 32, 32),
                window=(-175.0, 275.0), structure=(1, 5, 5), iterations: int = 2,
                pad_hu: float = -1024.0, epsilon: float = 0.001) -> list[NodeObject]:
    """Model inputs for each ``object_ids`` component of ``labels`` (both in the CT's grid)."""
    grid = tuple(max(int(round(n * s / t)), 1) for n, s, t in zip(image.shape, spacing, target_spacing))
    ct = resize(image, grid, order=1)
    labels_grid = resize(labels, grid, order=0)
    out = []
    for object_id in object_ids:
        in_grid = labels == object_id
        voxels = int(in_grid.sum())
        centroid = tuple(float(c.mean()) for c in np.nonzero(in_grid))
        mask = labels_grid == object_id
        if not mask.any():  # a node thinner than the target grid: keep its nearest voxel
            mask[tuple(min(int(c * n_out / n_in), n_out - 1) for c, n_in, n_out in zip(centroid, image.shape, grid))] = True
        lo, hi = bbox(mask)
        center = (lo + hi + 1) // 2
        ct_crop = crop_around(ct, center, box_size, np.float32(pad_hu))
        margin = np.asarray(structure) // 2 * iterations  # dilate a slightly larger crop, then trim it
        wide = crop_around(mask, center, np.asarray(box_size) + 2 * margin, False)
        mask_crop = dilate(wide, structure, iterations)[tuple(slice(m, m + n) for m, n in zip(margin, box_size))]
        ct_crop = window_minmax(ct_crop, window)
        box = ct_crop * mask_crop
        lo, hi = bbox(mask_crop)
        region = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
        node = resize(ct_crop[region], node_size, order=1) * resize(mask_crop[region], node_size, order=0)
        out.append(NodeObject(object_id=object_id, voxels=voxels, centroid_zyx=centroid,
                              box=np.clip(box + epsilon, 0.0, 1.0).astype(np.float32),
                              node=np.clip(node + epsilon, 0.0, 1.0).astype(np.float32)))
    return out
