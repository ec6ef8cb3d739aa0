"""Arch values of many candidates as columns: what a family with ``vectorised_costs`` prices in
one call (the fine search's rows give them, :meth:`jointnas.fine.genome.Genome.arch_columns`)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

import numpy as np


class ArchColumns(Mapping):
    """Arch values of many rows: a mapping name -> column, backed by one float64 matrix for the
    numeric dimensions; ``stack(names)`` takes several columns at once as an (n, k) matrix."""

    def __init__(self, values: np.ndarray, index: dict, extra: dict):
        self.values, self.extra = values, extra
        self.index = index  # name -> column of values (shared, not to be changed)

    def __getitem__(self, name):
        if name in self.index:
            return self.values[:, self.index[name]]
        return self.extra[name]

    def __contains__(self, name):
        return name in self.index or name in self.extra

    def __iter__(self):
        return iter(list(self.index) + list(self.extra))

    def __len__(self):
        return len(self.index) + len(self.extra)

    def stack(self, names: Sequence[str]) -> np.ndarray:
        return self.values[:, [self.index[n] for n in names]]
