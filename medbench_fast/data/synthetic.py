"""Seeded synthetic head-and-neck-like CT cases with known ground truth.

Each case is an axial CT volume in Hounsfield units (air -1000, fat about -100, soft tissue
30-60, bone 700+) on an anisotropic grid, with a reference label map of the body, a
vertebra, the spinal cord, the airway and several lymph nodes, plus a case-level
extranodal-extension (ENE) target per node. Geometry is exact (ellipsoids and elliptic
cylinders in millimetres), so tests know every structure's true extent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LABEL_NAMES = {1: "body", 2: "vertebra", 3: "spinal_cord", 4: "airway", 5: "lymph_node"}
#: Default grid (Z, Y, X) and spacing (mm): thick axial slices, fine in-plane resolution.
DEFAULT_SHAPE = (48, 160, 160)
DEFAULT_SPACING = (2.5, 1.0, 1.0)


@dataclass
class SyntheticCase:
    case_id: str
    image: np.ndarray  # int16 HU, (Z, Y, X)
    labels: np.ndarray  # uint8 label map, values of LABEL_NAMES
    spacing: tuple[float, float, float]
    nodes: list[dict] = field(default_factory=list)  # per node: id, centre_mm, radii_mm, ene (0/1), metastasis (0/1)


def _grid_mm(shape, spacing):
    return np.meshgrid(*[np.arange(n, dtype=np.float32) * s for n, s in zip(shape, spacing)], indexing="ij", sparse=True)


def _ellipsoid(grid, centre, radii):
    z, y, x = grid
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2 <= 1


def _cylinder(grid, centre_yx, radii_yx, z_range):
    z, y, x = grid
    inside = ((y - centre_yx[0]) / radii_yx[0]) ** 2 + ((x - centre_yx[1]) / radii_yx[1]) ** 2 <= 1
    return inside & (z >= z_range[0]) & (z <= z_range[1])


def make_case(index: int, *, seed: int = 0, shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING, n_nodes: int = 4) -> SyntheticCase:
    """Build case ``index`` of the dataset seeded by ``seed`` (same inputs, same case)."""
    rng = np.random.default_rng([seed, index])
    grid = _grid_mm(shape, spacing)
    extent = [n * s for n, s in zip(shape, spacing)]
    cy, cx = extent[1] / 2 + rng.normal(0, 3), extent[2] / 2 + rng.normal(0, 3)
    z_all = (0.0, extent[0])
    body = _cylinder(grid, (cy, cx), (extent[1] * 0.36 * rng.uniform(0.9, 1.05), extent[2] * 0.42 * rng.uniform(0.9, 1.05)), z_all)
    vertebra = _cylinder(grid, (cy + extent[1] * 0.14, cx), (11 * rng.uniform(0.9, 1.1), 13 * rng.uniform(0.9, 1.1)), z_all)
    cord = _cylinder(grid, (cy + extent[1] * 0.14 + 17, cx), (5.0, 6.0), z_all)
    airway = _cylinder(grid, (cy - extent[1] * 0.15, cx + rng.normal(0, 2)), (7 * rng.uniform(0.8, 1.2), 9 * rng.uniform(0.8, 1.2)), z_all)
    labels = np.zeros(shape, np.uint8)
    labels[body] = 1
    labels[vertebra] = 2
    labels[cord & ~vertebra] = 3
    labels[airway] = 4
    image = np.where(body, 40, -1000).astype(np.float32)
    image[body & (rng.random(shape, dtype=np.float32) < 0.15)] = -100  # speckled fat
    image[vertebra] = 750
    image[cord & ~vertebra] = 35
    image[airway] = -950
    nodes = []
    for k in range(n_nodes):
        side = 1 if k % 2 == 0 else -1
        centre = (rng.uniform(0.2, 0.8) * extent[0], cy + rng.uniform(-0.1, 0.12) * extent[1],
                  cx + side * rng.uniform(0.22, 0.3) * extent[2])
        radii = (rng.uniform(4, 9), rng.uniform(3, 8), rng.uniform(3, 8))
        node = _ellipsoid(grid, centre, radii) & body & (labels == 1)
        if not node.any():
            continue
        ene = int(rng.random() < 0.4)
        labels[node] = 5
        image[node] = 55 + (25 if ene else 0) * rng.random(np.count_nonzero(node), dtype=np.float32)
        nodes.append({"id": len(nodes) + 1, "centre_mm": [float(c) for c in centre], "radii_mm": [float(r) for r in radii],
                      "ene": ene, "metastasis": int(ene or rng.random() < 0.5)})
    image += rng.normal(0, 12, shape).astype(np.float32)
    return SyntheticCase(f"case_{index:03d}", np.clip(image, -1024, 3071).astype(np.int16), labels, tuple(spacing), nodes)


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(1, None), slice(None, -1)
        out[tuple(lo)] |= mask[tuple(hi)]
        out[tuple(hi)] |= mask[tuple(lo)]
    return out


def perturb(labels: np.ndarray, *, seed: int) -> np.ndarray:
    """A plausible imperfect prediction of ``labels``: per-label shifts, grown or shrunk
    borders, a missed lymph node now and then and a small false-positive blob."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(labels)
    for label in (1, 2, 3, 4, 5):
        mask = labels == label
        if not mask.any():
            continue
        shift = tuple(int(s) for s in rng.integers(-1, 2, 3))
        mask = np.roll(mask, shift, axis=(0, 1, 2))
        if rng.random() < 0.5:
            mask = _dilate(mask)
        elif rng.random() < 0.5:
            mask = ~_dilate(~mask)
        out[mask] = label
    nodes = np.argwhere(labels == 5)
    if len(nodes) and rng.random() < 0.3:  # miss one node: clear a box around a node voxel
        z, y, x = nodes[rng.integers(len(nodes))]
        region = out[max(z - 4, 0): z + 5, max(y - 10, 0): y + 11, max(x - 10, 0): x + 11]
        region[region == 5] = 1
    z, y, x = (int(rng.integers(2, n - 4)) for n in labels.shape)
    blob = out[z: z + 2, y: y + 3, x: x + 3]
    blob[blob == 1] = 5
    return out
