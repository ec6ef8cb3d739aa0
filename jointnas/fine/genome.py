"""Candidates of a space as rows of one array, and the genetic operators over those rows:
uniform sampling, per-dimension mutation, uniform crossover, budget repair, encoding for the
surrogate and a distance between candidates.

A row holds, per dimension (arch first, then recipe, in the space's order), the index of the
value for a discrete dimension and the value itself for a float one. Numeric categoricals are
indexed in sorted order so that neighbouring indices are similar values. Every operator takes
a ``numpy.random.Generator``, so a search is reproducible from its seed.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..families.columns import ArchColumns
from ..space.candidate import Candidate
from ..space.dims import round_6g

# Half of the mutated dimensions move to a neighbouring value (local refinement), the other
# half are resampled over their whole range (long jumps).
STEP_PROBABILITY = 0.5
# Width of a float step, as a fraction of the dimension's (log-)range.
FLOAT_STEP = 0.1


def _discrete_values(dim) -> Optional[list]:
    """The values of a discrete dimension in index order, or None for a float one."""
    if dim.kind == "float":
        return None
    if dim.kind == "bool":
        return [False, True]
    values = list(dim.choices)
    if dim.kind == "categorical" and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in values):
        values.sort()
    return values


def _value_key(v):
    return (isinstance(v, (bool, np.bool_)), v)  # True == 1, but a bool is not an int here


class Genome:
    """Row codec and variation operators for one space. ``cost_order(name, dim)`` gives an arch
    dimension's values cheapest first (or None when it does not change cost); repair steps
    those dimensions towards their cheapest value."""

    def __init__(self, space, cost_order: Optional[Callable] = None):
        self.space = space
        self.parts = ([("arch", n, d) for n, d in space.arch.items()]
                      + [("recipe", n, d) for n, d in space.recipe.items()])
        self.n_arch = len(space.arch)
        self.width = len(self.parts)
        self.values = [_discrete_values(d) for _, _, d in self.parts]
        self.is_float = np.array([v is None for v in self.values])
        self.k = np.array([len(v) if v is not None else 0 for v in self.values], dtype=np.int64)
        self.ordered = np.array([v is not None and d.kind in ("int", "categorical") and d.kind != "bool"
                                 and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in v)
                                 for v, (_, _, d) in zip(self.values, self.parts)])
        self.mutable = self.is_float | (self.k > 1)
        self.float_cols = np.nonzero(self.is_float)[0]
        self._index = [None if v is None else {_value_key(x): i for i, x in enumerate(v)} for v in self.values]
        self._build_encoding()
        self._build_cost_ranks(cost_order)
        self._build_arch_columns()

    # ---- encoding for the surrogate, straight from rows
    def _build_encoding(self) -> None:
        self.encoding_width = int(sum(d.width for _, _, d in self.parts))
        single_cols, single_genes, single_tables, onehot_cols, onehot_genes, other = [], [], [], [], [], []
        offset = 0
        for g, (_, _, dim) in enumerate(self.parts):
            w = dim.width
            if self.values[g] is not None:
                table = np.asarray(dim.encode(self.values[g]), dtype=np.float32).reshape(len(self.values[g]), w)
                if w == 1:
                    single_cols.append(offset), single_genes.append(g), single_tables.append(table[:, 0])
                elif np.array_equal(table, np.eye(w, dtype=np.float32)):
                    onehot_cols.append(offset), onehot_genes.append(g)
                else:
                    other.append((g, offset, w, table))
            offset += w
        self._single_cols, self._single_genes = np.array(single_cols, int), np.array(single_genes, int)
        starts = np.cumsum([0] + [len(t) for t in single_tables])
        self._single_table = np.concatenate(single_tables) if single_tables else np.zeros(0, np.float32)
        self._single_start = starts[:-1].astype(np.int64)
        self._onehot_cols, self._onehot_genes = np.array(onehot_cols, int), np.array(onehot_genes, int)
        self._other = other
        self._float_offsets = [int(sum(d.width for _, _, d in self.parts[:g])) for g in self.float_cols]

    def encode(self, G: np.ndarray) -> np.ndarray:
        """The surrogate's input rows for ``G``: equal to ``space.encode(self.decode(G))``."""
        n = len(G)
        X = np.zeros((n, self.encoding_width), dtype=np.float32)
        if len(self._single_genes):
            idx = G[:, self._single_genes].astype(np.int64) + self._single_start
            X[:, self._single_cols] = self._single_table[idx]
        if len(self._onehot_genes):
            X[np.arange(n)[:, None], self._onehot_cols + G[:, self._onehot_genes].astype(np.int64)] = 1.0
        for g, offset, w, table in self._other:
            X[:, offset:offset + w] = table[G[:, g].astype(np.int64)]
        for g, offset in zip(self.float_cols, self._float_offsets):
            X[:, offset] = np.asarray(self.parts[g][2].encode(G[:, g]), dtype=np.float32)[:, 0]
        return X

    # ---- rows <-> candidates
    def decode(self, G: np.ndarray, candidate_type=None) -> list:
        make = candidate_type or Candidate
        out = []
        for row in G:
            parts = {"arch": {}, "recipe": {}}
            for g, (part, name, _) in enumerate(self.parts):
                v = self.values[g]
                parts[part][name] = float(row[g]) if v is None else v[int(row[g])]
            out.append(make(parts["arch"], parts["recipe"], space=self.space.name))
        return out

    def from_candidates(self, candidates: Sequence) -> Tuple[np.ndarray, np.ndarray]:
        """(rows, mask of the candidates that lie in the space); rows only for those."""
        rows, ok = [], []
        for c in candidates:
            row = []
            try:
                for g, (part, name, dim) in enumerate(self.parts):
                    value = getattr(c, part)[name]
                    if self.values[g] is None:
                        if not dim.contains(value):
                            raise KeyError(name)
                        row.append(float(value))
                    else:
                        row.append(self._index[g][_value_key(value)])
            except (KeyError, TypeError):
                ok.append(False)
                continue
            ok.append(True)
            rows.append(row)
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), self.width), np.asarray(ok, dtype=bool)

    @staticmethod
    def keys(G: np.ndarray) -> List[bytes]:
        """One hashable identity per row."""
        G = np.ascontiguousarray(G, dtype=np.float64)
        return G.view(np.dtype((np.void, 8 * G.shape[1]))).ravel().tolist() if G.size else [b""] * len(G)

    # ---- sampling
    def _from_unit(self, U: np.ndarray, floats: bool = True) -> np.ndarray:
        G = np.minimum(np.floor(U * self.k), np.maximum(self.k - 1, 0)).astype(np.float64)
        for g in self.float_cols:
            G[:, g] = self.parts[g][2].from_unit(U[:, g]) if floats or g < self.n_arch else np.nan
        return G

    def random(self, n: int, rng: np.random.Generator, recipe_floats: bool = True) -> np.ndarray:
        """``n`` rows drawn uniformly over every dimension (not necessarily within a budget).
        With ``recipe_floats=False`` recipe float dimensions are left NaN for :meth:`fill` to
        draw later, once the rows that fit a budget are known (they do not change cost)."""
        return self._from_unit(rng.random((n, self.width)), floats=recipe_floats)

    def fill(self, G: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``G`` with its NaN (undrawn) float dimensions drawn uniformly."""
        for g in self.float_cols:
            rows = np.nonzero(np.isnan(G[:, g]))[0]
            if len(rows):
                G[rows, g] = self.parts[g][2].from_unit(rng.random(len(rows)))
        return G

    def _unit(self, G: np.ndarray, g: int) -> np.ndarray:
        return np.asarray(self.parts[g][2].encode(G[:, g]), dtype=np.float64)[:, 0]

    # ---- mutation and crossover
    def mutate(self, G: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
        """Each mutable dimension changes with probability ``rate``; at least one per row always does."""
        n = len(G)
        out = G.copy()
        if n == 0:
            return out
        mutable = np.nonzero(self.mutable)[0]
        hit = (rng.random((n, self.width)) < rate) & self.mutable
        none = np.nonzero(~hit.any(1))[0]
        hit[none, mutable[rng.integers(len(mutable), size=len(none))]] = True
        rows, cols = np.nonzero(hit & ~self.is_float)
        i = G[rows, cols].astype(np.int64)
        k = self.k[cols]
        u = rng.random((3, len(rows)))
        other = np.floor(u[0] * (k - 1)).astype(np.int64)  # any other value
        other += other >= i
        step = np.where(u[1] < 0.5, 1, -1)                  # or a neighbour, reflected at the ends
        j = i + step
        j = np.where((j < 0) | (j >= k), i - step, j)
        near = (u[2] < STEP_PROBABILITY) & self.ordered[cols]
        out[rows, cols] = np.where(near, j, other)
        moved, values = [], []
        for g in self.float_cols:
            rows = np.nonzero(hit[:, g])[0]
            if len(rows):
                x = self._unit(G[rows], g)
                local = rng.random(len(rows)) < STEP_PROBABILITY
                x = np.where(local, x + rng.normal(0.0, FLOAT_STEP, len(rows)), rng.random(len(rows)))
                x = np.where(x < 0, -x, np.where(x > 1, 2.0 - x, x))  # reflect into [0, 1]
                moved.append((rows, g))
                values.append(self.parts[g][2].unrounded(np.clip(x, 0.0, 1.0)))
        if moved:  # rounded as from_unit rounds, all columns in one call
            rounded = np.split(round_6g(np.concatenate(values)), np.cumsum([len(v) for v in values[:-1]]))
            for (rows, g), v in zip(moved, rounded):
                out[rows, g] = v
        return out

    def crossover(self, A: np.ndarray, B: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Uniform crossover, row by row: each dimension from either parent with equal chance."""
        return np.where(rng.random(A.shape) < 0.5, A, B)

    # ---- distance
    def features(self, G: np.ndarray) -> np.ndarray:
        """Rows in the units of :meth:`distance`: ordered dimensions as a fraction of their range,
        floats as their unit coordinate, other dimensions as their index."""
        F = np.where(self.ordered, G / np.maximum(self.k - 1, 1), G)
        for g in self.float_cols:
            F[:, g] = self._unit(G, g)
        return F

    def feature_distance(self, F: np.ndarray, f: np.ndarray) -> np.ndarray:
        """:meth:`distance` between rows given as :meth:`features`."""
        diff = np.abs(F - f)
        return np.where(self.ordered | self.is_float, diff, diff > 0).sum(1)

    def distance(self, A: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distance of each row of ``A`` to row ``b``, in dimensions' worth: a changed categorical or
        bool counts 1, an ordered or float dimension its change as a fraction of its range."""
        return self.feature_distance(self.features(A), self.features(b[None, :])[0])

    # ---- arch values as columns, for a family's vectorised cost
    def _build_arch_columns(self) -> None:
        numeric = [g for g in range(self.n_arch) if self.values[g] is None
                   or all(isinstance(v, (int, float, bool, np.number)) for v in self.values[g])]
        self._numeric_arch = np.array(numeric, dtype=np.int64)
        discrete = [g for g in numeric if self.values[g] is not None]
        tables = [np.asarray(self.values[g], dtype=np.float64) for g in discrete]
        self._arch_discrete = np.array(discrete, dtype=np.int64)
        self._arch_start = np.cumsum([0] + [len(x) for x in tables])[:-1].astype(np.int64)
        self._arch_flat = np.concatenate(tables) if tables else np.zeros(0)
        self._arch_pos = {g: i for i, g in enumerate(numeric)}
        self._arch_where = np.searchsorted(self._numeric_arch, self._arch_discrete)  # their columns
        self._arch_names = [self.parts[g][1] for g in numeric]
        self._arch_index = {n: i for i, n in enumerate(self._arch_names)}
        self._objects = {g: np.asarray(self.values[g], dtype=object) for g in range(self.n_arch) if g not in numeric}

    def arch_columns(self, G: np.ndarray) -> ArchColumns:
        """Arch values of the rows as columns (name -> array of values)."""
        values = G[:, self._numeric_arch].copy()
        if len(self._arch_discrete):
            values[:, self._arch_where] = self._arch_flat[G[:, self._arch_discrete].astype(np.int64) + self._arch_start]
        extra = {self.parts[g][1]: table[G[:, g].astype(np.int64)] for g, table in self._objects.items()}
        return ArchColumns(values, self._arch_index, extra)

    def arch_dicts(self, G: np.ndarray) -> List[dict]:
        """Arch values of the rows as dicts of plain Python values."""
        out = []
        for row in G[:, :self.n_arch]:
            out.append({name: float(row[g]) if self.values[g] is None else self.values[g][int(row[g])]
                        for g, (_, name, _) in enumerate(self.parts[:self.n_arch])})
        return out

    # ---- cost order and repair
    def _build_cost_ranks(self, cost_order) -> None:
        movable = []
        kmax = int(self.k[:self.n_arch].max(initial=1))
        to_rank = np.zeros((self.n_arch, kmax), dtype=np.int64)
        from_rank = np.zeros((self.n_arch, kmax), dtype=np.int64)
        for g in range(self.n_arch):
            _, name, dim = self.parts[g]
            order = cost_order(name, dim) if cost_order is not None and self.values[g] is not None else None
            if order is None or len(order) < 2:
                continue
            positions = [self._index[g][_value_key(v)] for v in order]
            to_rank[g, positions] = np.arange(len(positions))
            from_rank[g, :len(positions)] = positions
            movable.append(g)
        self._to_rank, self._from_rank = to_rank, from_rank
        self.cost_genes = np.array(movable, dtype=np.int64)

    def cheapest(self) -> np.ndarray:
        """The row whose arch dimensions all take their cheapest value (first values elsewhere)."""
        row = np.zeros(self.width)
        for g in self.float_cols:
            row[g] = self.parts[g][2].from_unit(np.array([0.5]))[0]
        row[self.cost_genes] = self._from_rank[self.cost_genes, 0]
        return row

    def dearest(self) -> np.ndarray:
        """:meth:`cheapest` with every cost-ordered arch dimension at its dearest value instead."""
        row = self.cheapest()
        row[self.cost_genes] = self._from_rank[self.cost_genes, self.k[self.cost_genes] - 1]
        return row

    def repair(self, G: np.ndarray, costs: np.ndarray, limit: np.ndarray, price: Callable,
               rng: np.random.Generator, protect: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Step randomly chosen cost-ordered arch dimensions one value cheaper until every row's
        costs are within ``limit`` (one bound per cost column, inf for none); ``price(rows)``
        costs rows. Dimensions marked in ``protect`` (a mutation's
        changes) are stepped only once no other can be, so that a repaired mutation becomes a trade
        rather than being undone. Rows far over the budget step several dimensions at once.
        Terminates: each step moves towards the cheapest value and costs never rise on the way.
        """
        G, costs = G.copy(), costs.copy()
        genes = self.cost_genes
        if protect is None:
            protect = np.zeros(G.shape, dtype=bool)
        fits = lambda c: (c <= limit).all(1)  # noqa: E731
        bad = np.nonzero(~fits(costs))[0]
        while len(bad):
            sub = G[bad][:, genes].astype(np.int64)
            rank = self._to_rank[genes, sub]
            can = rank > 0
            if not can.any(1).all():
                raise RuntimeError("budget below the cheapest candidate; check the budget first")
            free = can & ~protect[bad][:, genes]
            use = np.where(free.any(1)[:, None], free, can)
            over = (costs[bad] / limit).max(1)
            count = use.sum(1)
            steps = np.minimum(1 + (8 * (over - 1)).astype(np.int64), count)
            keys = np.where(use, rng.random(use.shape), -1.0)
            # each usable dimension with probability steps / count, and always the one of largest key
            chosen = use & (keys < (steps / count)[:, None])
            chosen[np.arange(len(bad)), keys.argmax(1)] = True
            rank = rank - chosen
            G[np.ix_(bad, genes)] = self._from_rank[genes, rank]
            costs[bad] = price(G[bad])
            bad = bad[~fits(costs[bad])]
        return G, costs
