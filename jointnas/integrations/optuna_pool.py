"""An Optuna study's search space as jointnas searches it: a :class:`~jointnas.space.SearchSpace`
whose encoding the surrogate learns from, and a pool of points (a scrambled Sobol sample, plus
every point a trial evaluated outside it) held as Optuna's internal values.

Each point is one row of floats in Optuna's internal representation (a categorical's choice
index, an int or float's value), one column per parameter in name order; a row's tuple is its
key in the pool's index, which is built once and grown as trials add points.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ..errors import UsageError
from ..space import Candidate, CategoricalDim, FloatDim, IntDim, SearchSpace
from ..space.dims import Dimension

SPACE_NAME = "optuna-study"


def _dimension(name: str, dist: BaseDistribution) -> Dimension:
    """The jointnas dimension that encodes ``dist``'s internal values for the surrogate: one-hot
    choice indices, an int grid, or a float range on its own scale (log ints on a log scale)."""
    if isinstance(dist, CategoricalDistribution):
        return CategoricalDim(name, tuple(range(len(dist.choices))))
    if isinstance(dist, IntDistribution) and not dist.log:
        return IntDim(name, int(dist.low), int(dist.high), int(dist.step))
    if isinstance(dist, (IntDistribution, FloatDistribution)):
        return FloatDim(name, float(dist.low), float(dist.high), bool(dist.log))
    raise UsageError(f"parameter {name!r} has a distribution jointnas cannot search ({type(dist).__name__}); "
                     "use suggest_float, suggest_int or suggest_categorical")


def _from_unit(dist: BaseDistribution, u: np.ndarray) -> np.ndarray:
    """Internal values of ``dist`` at quasi-random numbers ``u`` in [0, 1), every one inside it."""
    if isinstance(dist, CategoricalDistribution):
        n = len(dist.choices)
        return np.minimum(np.floor(u * n), n - 1)
    low, high = float(dist.low), float(dist.high)
    step = dist.step
    if dist.log:
        if isinstance(dist, IntDistribution):  # each int gets the log-width of [v - 0.5, v + 0.5]
            lo, hi = math.log(low - 0.5), math.log(high + 0.5)
            return np.clip(np.rint(np.exp(lo + u * (hi - lo))), low, high)
        return np.clip(np.exp(math.log(low) + u * (math.log(high) - math.log(low))), low, high)
    if step is None:
        return np.clip(low + u * (high - low), low, high)
    n = int(round((high - low) / step)) + 1
    return np.clip(low + np.minimum(np.floor(u * n), n - 1) * step, low, high)


class StudyPool:
    """The points jointnas chooses from for one relative search space (``distributions``)."""

    def __init__(self, distributions: Mapping[str, BaseDistribution], size: int, seed: int):
        from scipy.stats import qmc

        self.names: List[str] = sorted(distributions)
        self.distributions = [distributions[n] for n in self.names]
        self.space = SearchSpace(SPACE_NAME, {n: _dimension(n, d) for n, d in zip(self.names, self.distributions)},
                                 {}, source="the study's search space")
        self._integral = [not isinstance(d, FloatDim) for d in self.space.dims]
        unit = qmc.Sobol(d=len(self.names), scramble=True, seed=seed).random_base2(max(0, math.ceil(math.log2(size))))
        rows = np.stack([_from_unit(d, unit[:, j]) for j, d in enumerate(self.distributions)], axis=1)
        self.index: Dict[Tuple[float, ...], int] = {}
        keep = []
        for i, row in enumerate(rows[:size]):   # Sobol order, the first of each distinct point kept
            key = tuple(row.tolist())
            if key not in self.index:
                self.index[key] = len(keep)
                keep.append(i)
        self.values = rows[keep]
        self.x = self.space.encode(self.candidates(self.values))
        self.sobol = len(keep)   # rows from here on were added by trials

    def __len__(self) -> int:
        return len(self.values)

    def candidates(self, rows: np.ndarray) -> List[Candidate]:
        """The rows as candidates of :attr:`space` (the surrogate's input)."""
        return [Candidate({n: (int(v) if whole else float(v)) for n, v, whole in zip(self.names, row, self._integral)},
                          {}, space=SPACE_NAME) for row in rows.tolist()]

    def row_of(self, params: Mapping, distributions: Mapping[str, BaseDistribution]) -> Optional[np.ndarray]:
        """A trial's point (``params`` in Optuna's external form, with their ``distributions``) as
        a row; None where it lacks a parameter of this space or has it with another distribution."""
        row = []
        for name, dist in zip(self.names, self.distributions):
            if name not in params or distributions.get(name) != dist:
                return None
            row.append(dist.to_internal_repr(params[name]))
        return np.asarray(row, dtype=np.float64)

    def row_of_internal(self, values: Mapping) -> Optional[np.ndarray]:
        """A row from ``{name: internal value}`` (what the sampler records on a trial); None where
        it is not a point of this space."""
        if not isinstance(values, Mapping) or set(values) != set(self.names):
            return None
        row = np.asarray([values[n] for n in self.names], dtype=np.float64)
        ok = all(d._contains(v) for d, v in zip(self.distributions, row.tolist()))
        return row if ok else None

    def find(self, row: np.ndarray) -> Optional[int]:
        return self.index.get(tuple(row.tolist()))

    def add(self, row: np.ndarray) -> int:
        """The index of ``row``, appended to the pool (and its encoding) if it is not in it."""
        i = self.find(row)
        if i is None:
            i = len(self.values)
            self.index[tuple(row.tolist())] = i
            self.values = np.vstack([self.values, row[None, :]])
            self.x = np.vstack([self.x, self.space.encode(self.candidates(row[None, :]))])
        return i

    def params(self, i: int) -> dict:
        """Row ``i`` as the parameters a trial is given (Optuna's external form)."""
        return {n: d.to_external_repr(v) for n, d, v in zip(self.names, self.distributions, self.values[i].tolist())}

    def internal(self, i: int) -> dict:
        return dict(zip(self.names, self.values[i].tolist()))
