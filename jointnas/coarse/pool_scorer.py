"""The run's pool as the batch policies score it: the fitted surrogate with the pool's FLOPs/params
at hand, and which pool rows are still untried.

A policy scores the whole encoded pool every iteration. A surrogate that takes the rows' costs
(``takes_costs``: the forest's proxy features) would otherwise decode every row and count its
costs again; the loop already holds them. The untried rows are a mask kept beside the pool and
updated as trials are queued, so that no iteration hashes every pool key again.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from ..surrogates.base import Prediction, Scorer


class PoolScorer(Scorer):
    """``surrogate`` scoring rows of the encoded pool ``x`` with the pool's ``costs`` ((n, 2)
    FLOPs/params) where it takes them; any other rows as the surrogate scores them."""

    def __init__(self, surrogate: Scorer, x: np.ndarray, costs: np.ndarray):
        self.surrogate, self.x, self.costs, self.space = surrogate, x, costs, surrogate.space

    @property
    def has_members(self) -> bool:
        return self.surrogate.has_members

    def _costs_of(self, x: np.ndarray, costs: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if costs is None and x is self.x and self.surrogate.takes_costs:
            return self.costs
        return costs

    def predict_encoded(self, x: np.ndarray, costs: Optional[np.ndarray] = None) -> Prediction:
        return self.surrogate.predict_encoded(x, self._costs_of(x, costs))

    def predict_members(self, x: np.ndarray, costs: Optional[np.ndarray] = None) -> np.ndarray:
        return self.surrogate.predict_members(x, self._costs_of(x, costs))


def untried_mask(size: int, tried_rows: Iterable[Optional[int]]) -> np.ndarray:
    """A mask over ``size`` pool rows, False at every row in ``tried_rows`` (None: not a pool row)."""
    mask = np.ones(size, dtype=bool)
    rows = [r for r in tried_rows if r is not None]
    mask[np.asarray(rows, dtype=np.int64)] = False
    return mask
