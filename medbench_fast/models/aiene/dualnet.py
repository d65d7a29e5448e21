"""A DualNet-ENE-shaped architecture with random weights, saved as a Keras-2 ``.h5``.

Two channels-last inputs, the box crop ``(N, 32, 118, 118, 1)`` and the node crop
``(N, 32, 32, 32, 1)``, one sigmoid output ``(N, 2)`` = [P(nodal metastasis), P(ENE)],
about 48.3 M parameters, built from the layer types of the published model (Conv3D,
BatchNormalization, LeakyReLU 0.03, MaxPooling3D, AveragePooling3D, ZeroPadding3D,
Dense, Dropout, Concatenate). The layer widths are chosen to match the published
input/output shapes and parameter count; the weights are random, so its scores mean
nothing: it exists to benchmark the converter and runtime at full size.
"""

from __future__ import annotations

import os

from medbench_fast.models.aiene.builder import Keras2Builder

BOX_SHAPE = (32, 118, 118, 1)
NODE_SHAPE = (32, 32, 32, 1)
ALPHA = 0.03


def _block(b: Keras2Builder, x: str, filters: int, kernel, pool, *, kind: str = "max", pool_padding="valid") -> str:
    x = b.conv(x, filters, kernel, padding="same")
    x = b.batch_norm(x, epsilon=1e-3)
    x = b.leaky_relu(x, ALPHA)
    return b.pool(x, kind, pool, padding=pool_padding)


def dualnet_builder(seed: int = 0) -> tuple[Keras2Builder, str]:
    """The DualNet-ENE-shaped model as a :class:`Keras2Builder` and its output layer name."""
    b = Keras2Builder("dualnet_ene", seed=seed)
    box = b.input(BOX_SHAPE)
    node = b.input(NODE_SHAPE)

    x = _block(b, box, 32, (3, 5, 5), (1, 2, 2))                       # 32 x 59 x 59
    x = _block(b, x, 64, 3, 2)                                          # 16 x 29 x 29
    x = b.zero_padding(x, [(0, 0), (1, 0), (1, 0)])                     # 16 x 30 x 30
    x = _block(b, x, 128, 3, 2)                                         # 8 x 15 x 15
    x = _block(b, x, 128, 3, 2, kind="average", pool_padding="same")    # 4 x 8 x 8
    x = b.flatten(x)                                                    # 32768

    y = _block(b, node, 32, 3, 2)                                       # 16^3
    y = _block(b, y, 64, 3, 2)                                          # 8^3
    y = _block(b, y, 128, 3, 2, kind="average")                         # 4^3
    y = b.flatten(y)                                                    # 8192

    z = b.concatenate([x, y])                                           # 40960
    z = b.dense(z, 1148)
    z = b.batch_norm(z, epsilon=1e-3)
    z = b.leaky_relu(z, ALPHA)
    z = b.dropout(z, 0.5)
    z = b.dense(z, 256)
    z = b.leaky_relu(z, ALPHA)
    z = b.dropout(z, 0.5)
    z = b.dense(z, 2)
    return b, b.activation(z, "sigmoid")


def write_dualnet_h5(path: str | os.PathLike, *, seed: int = 0) -> int:
    """Write the random-weight DualNet-ENE model to ``path`` (Keras-2 HDF5); returns its parameter count."""
    b, out = dualnet_builder(seed)
    b.save(path, [out])
    return b.parameter_count()
