"""The scenes' random numbers: ``_uniform_block`` (NumPy's seeding done for a whole batch at
once) must hand every image exactly the stream of ``default_rng([seed, group, split, index])``,
the per-image generator the module docstring promises (and the frozen digests were recorded
with)."""

from __future__ import annotations

import numpy as np
import pytest

from zfcore.data.scenes import _uniform_block


def _reference(seed, g, s, indices, n):
    return np.stack([np.random.default_rng([seed, g, s, int(i)]).random(n) for i in indices])


@pytest.mark.parametrize("seed,g,s", [(0, 0, 0), (3, 0, 1), (12345, 1, 2), (2**32 - 1, 1, 0)])
def test_matches_default_rng_per_image(seed, g, s):
    rng = np.random.default_rng(7)
    idx = np.r_[np.arange(40), [2**32 - 1], rng.integers(0, 2**32, 40)]
    got = _uniform_block(seed, g, s, idx, 400)
    assert got.shape == (len(idx), 400)
    np.testing.assert_array_equal(got, _reference(seed, g, s, idx, 400))


def test_numbers_of_several_words_fall_back_to_numpy():
    idx = np.array([2**32, 2**40 + 3, 5])
    np.testing.assert_array_equal(_uniform_block(1, 0, 2, idx, 17), _reference(1, 0, 2, idx, 17))
    np.testing.assert_array_equal(
        _uniform_block(2**33, 1, 1, np.arange(3), 9), _reference(2**33, 1, 1, np.arange(3), 9)
    )


def test_rows_do_not_depend_on_the_batch():
    idx = np.array([9, 2, 700, 2])
    whole = _uniform_block(0, 0, 0, idx, 50)
    for j, i in enumerate(idx):
        np.testing.assert_array_equal(whole[j], _uniform_block(0, 0, 0, [i], 50)[0])


def test_empty_batch():
    assert _uniform_block(0, 0, 0, np.array([], dtype=np.int64), 400).shape == (0, 400)
