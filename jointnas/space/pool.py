"""Rows of values <-> candidates (the one row codec), and the quasi-Monte-Carlo pool."""
from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np

from ..errors import UsageError
from .candidate import Candidate
from .dims import column_values, value_column


def columns_to_candidates(space, columns: Sequence[list]) -> List[Candidate]:
    """One list of values per dimension (arch dims first, then recipe) -> candidates."""
    names = [d.name for d in space.dims]
    n_arch = len(space.arch)
    n = len(columns[0]) if columns else 0
    rows = zip(*columns) if columns else iter(() for _ in range(n))
    return [Candidate(dict(zip(names[:n_arch], row[:n_arch])), dict(zip(names[n_arch:], row[n_arch:])),
                      space=space.name) for row in rows]


def unit_to_candidates(space, u: np.ndarray) -> List[Candidate]:
    """Map rows of ``u`` (one column per dimension, values in [0, 1)) onto candidates."""
    return columns_to_candidates(space, [d.from_unit(u[:, j]) for j, d in enumerate(space.dims)])


def encode_values(space, candidates: Sequence[Candidate]) -> np.ndarray:
    """Candidates -> float64 array, one exact column per dimension (see ``dims.value_column``)."""
    n_arch = len(space.arch)
    out = np.empty((len(candidates), len(space.dims)), dtype=np.float64)
    for j, d in enumerate(space.dims):
        part = "arch" if j < n_arch else "recipe"
        out[:, j] = value_column(d, [getattr(c, part)[d.name] for c in candidates])
    return out


def decode_values(space, values: np.ndarray) -> List[Candidate]:
    """Inverse of :func:`encode_values`."""
    dims = space.dims
    if values.ndim != 2 or values.shape[1] != len(dims):
        raise UsageError(f"pool array has shape {values.shape}; space {space.name} has {len(dims)} dimensions")
    return columns_to_candidates(space, [column_values(d, values[:, j]) for j, d in enumerate(dims)])


def sample_pool(space, n: int, seed: int = 0) -> List[Candidate]:
    """``n`` distinct candidates from a scrambled Sobol sequence; same seed -> same pool.

    Sobol points are drawn in a power-of-two block (keeping the sequence's balance
    properties, and scipy's warning about it away from users) and the first ``n`` distinct
    ones are kept.
    """
    from scipy.stats import qmc  # scipy (about 1 s): loading a space (`jointnas --help`) needs none

    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise UsageError(f"pool size must be a positive integer, got {n!r}")
    sampler = qmc.Sobol(d=len(space.dims), scramble=True, seed=seed)
    pool: List[Candidate] = []
    seen = set()
    block = sampler.random_base2(max(0, math.ceil(math.log2(n))))
    while True:
        start = 0
        while start < len(block):  # rows in chunks of what is still missing: no candidate made in vain
            rows = block[start:start + n - len(pool)]
            start += len(rows)
            for c in unit_to_candidates(space, rows):
                k = c.key()
                if k not in seen:
                    seen.add(k)
                    pool.append(c)
            if len(pool) == n:
                return pool
        if sampler.num_generated > 64 * n + 1024:
            raise UsageError(f"space {space.name} has fewer than {n} distinct candidates; sample a smaller pool")
        block = sampler.random(sampler.num_generated)  # doubling keeps the total a power of two
