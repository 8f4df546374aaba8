"""Segment -> clip aggregation (``src.train.aggregate``) against hand-computed values.

``logmean`` must be the geometric mean of a clip's segment probabilities (renormalised), not their
product: the two agree only when every clip has the same number of segments and symmetric values,
so these cases use unequal segment counts and asymmetric probabilities.
"""
from __future__ import annotations

import numpy as np
import pytest

from src.train import aggregate

# clip 0: two segments, clip 1: three segments, clip 2: none (gets ``fill``), clip 3: one segment
PRED = np.array([[0.9, 0.1], [0.5, 0.5],
                 [0.8, 0.2], [0.8, 0.2], [0.2, 0.8],
                 [0.3, 0.7]], dtype=np.float32)
ROW = np.array([0, 0, 1, 1, 1, 3])
FILL = np.array([0.25, 0.75], dtype=np.float32)


def test_logmean_is_the_renormalised_geometric_mean():
    out = aggregate(PRED, ROW, 4, FILL, "logmean")
    # clip 0: sqrt(0.9 * 0.5) = 0.670820, sqrt(0.1 * 0.5) = 0.223607 -> 0.75, 0.25 (a product gives 0.9, 0.1)
    # clip 1: (0.8 * 0.8 * 0.2) ** (1/3) = 0.50397, (0.2 * 0.2 * 0.8) ** (1/3) = 0.31748 -> 0.61351, 0.38649
    #         (a product gives 0.128 / (0.128 + 0.032) = 0.8)
    c1 = np.array([0.128 ** (1 / 3), 0.032 ** (1 / 3)])
    want = np.array([[0.75, 0.25], c1 / c1.sum(), FILL, [0.3, 0.7]])
    np.testing.assert_allclose(out, want, atol=1e-6)
    assert out[1, 0] == pytest.approx(0.613512, abs=1e-6)


def test_mean_and_max_hand_computed():
    np.testing.assert_allclose(aggregate(PRED, ROW, 4, FILL, "mean"),
                               [[0.7, 0.3], [0.6, 0.4], FILL, [0.3, 0.7]], atol=1e-6)
    # max per class, renormalised: clip 0 max (0.9, 0.5) -> 0.642857, 0.357143; clip 1 (0.8, 0.8) -> 0.5, 0.5
    np.testing.assert_allclose(aggregate(PRED, ROW, 4, FILL, "max"),
                               [[0.9 / 1.4, 0.5 / 1.4], [0.5, 0.5], FILL, [0.3, 0.7]], atol=1e-6)
    with pytest.raises(ValueError, match=r"mean \| max \| logmean"):
        aggregate(PRED, ROW, 4, FILL, "median")
