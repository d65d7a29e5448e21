"""The channel argmax kernel against ``np.argmax(axis=1)``, ties and one-channel outputs included."""

from __future__ import annotations

import numpy as np
import pytest

from medbench_fast.kernels.argmax import channel_argmax


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [2, 3, 6, 17])
def test_matches_numpy_including_ties(dtype, channels):
    rng = np.random.default_rng(channels)
    scores = rng.integers(0, 4, (3, channels, 7 * 5)).astype(dtype)  # many ties
    out = np.empty((3, 35), np.uint8)
    channel_argmax(scores, out)
    np.testing.assert_array_equal(out, np.argmax(scores, axis=1))


def test_wide_outputs_use_uint16():
    scores = np.zeros((1, 300, 4), np.float32)
    scores[0, 299, 2] = 1.0
    out = np.empty((1, 4), np.uint16)
    channel_argmax(scores, out)
    assert out.tolist() == [[0, 0, 299, 0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_never_wins_in_any_channel(dtype):
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(2, 4, 50)).astype(dtype)
    scores[rng.random(scores.shape) < 0.3] = np.nan  # NaN in channel 0 too
    scores[1, :, 0] = np.nan  # every channel NaN
    out = np.empty((2, 50), np.uint8)
    channel_argmax(scores, out)
    expected = np.argmax(np.where(np.isnan(scores), -np.inf, scores), axis=1)
    expected[1, 0] = 0
    assert np.isnan(scores[:, 0]).any()
    np.testing.assert_array_equal(out, expected)
