"""Quasi-Monte-Carlo pool of candidates: scrambled Sobol points mapped onto a space."""
from __future__ import annotations

import math
from typing import List

import numpy as np
from scipy.stats import qmc

from .candidate import Candidate
from .space import Space, load_space


def unit_to_candidates(space: Space, u: np.ndarray) -> List[Candidate]:
    """Map rows of ``u`` (one column per dimension, values in [0, 1)) onto candidates."""
    dims = space.dims
    columns = [d.from_unit(u[:, j]) for j, d in enumerate(dims)]
    n_arch = len(space.arch)
    names = [d.name for d in dims]
    out = []
    for row in zip(*columns):
        out.append(Candidate(dict(zip(names[:n_arch], row[:n_arch])),
                             dict(zip(names[n_arch:], row[n_arch:])), space=space.name))
    return out


def sample_pool(space, n: int, seed: int = 0) -> List[Candidate]:
    """``n`` distinct candidates from a scrambled Sobol sequence; same seed -> same pool.

    Sobol points are drawn in a power-of-two block (keeping the sequence's balance
    properties, and scipy's warning about it away from users) and the first ``n`` distinct
    ones are kept.
    """
    space = load_space(space)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"pool size must be a positive integer, got {n!r}")
    sampler = qmc.Sobol(d=len(space.dims), scramble=True, seed=seed)
    pool: List[Candidate] = []
    seen = set()
    block = sampler.random_base2(max(0, math.ceil(math.log2(n))))
    while True:
        for c in unit_to_candidates(space, block):
            k = c.key()
            if k not in seen:
                seen.add(k)
                pool.append(c)
                if len(pool) == n:
                    return pool
        if sampler.num_generated > 64 * n + 1024:
            raise ValueError(f"space {space.name} has fewer than {n} distinct candidates")
        block = sampler.random(sampler.num_generated)  # doubling keeps the total a power of two
