"""The rows a fine strategy starts from and draws: measured seeds within the budget, and
uniform random rows within it (rejection sampling, then repair)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .problem import Board, FineProblem

# Blocks of rejection sampling before over-budget draws are repaired instead (random_rows).
REPAIR_AFTER = 4


def seed_rows(problem: FineProblem, seeds: Sequence, limit: int, board: Board):
    """Rows of up to ``limit`` measured ``seeds`` (best first) that lie in the space, fit the
    budget and are distinct; with their costs."""
    G, _ = problem.genome.from_candidates(list(seeds))
    if len(G) == 0 or limit == 0:
        return G[:0], np.zeros((0, 2), dtype=np.int64)
    costs = problem.costs(G)
    keep = problem.fits(costs) & board.fresh(G)
    idx = np.nonzero(keep)[0][:limit]
    return G[idx], costs[idx]


def filled(problem: FineProblem, G: np.ndarray, costs: np.ndarray, size: int, rng: np.random.Generator,
           board: Board):
    """``G`` (with its ``costs``) completed to ``size`` rows by :func:`random_rows`, none of them a
    row of ``G``: a search's first population after its seeds."""
    fill_G, fill_c = random_rows(problem, size - len(G), rng, board, exclude=problem.genome.keys(G))
    return np.concatenate([G, fill_G]), np.concatenate([costs, fill_c])


def random_rows(problem: FineProblem, n: int, rng: np.random.Generator, board: Board, exclude=None,
                repair: bool = True, max_blocks: int = 100, block: Optional[int] = None):
    """Up to ``n`` distinct fresh rows within the budget by rejection sampling: uniform draws that
    fit, for at most ``max_blocks`` blocks of ``block`` draws; with ``repair``, after
    ``REPAIR_AFTER`` blocks the rest are over-budget draws of the last block, repaired (repair is
    slower than drawing, and bends the sample towards the budget's edge). ``exclude`` is a set of
    row keys to avoid as well."""
    taken = set(exclude or ())
    parts, got, block = [], 0, block or max(256, 4 * n)
    genome = problem.genome
    for b in range(REPAIR_AFTER if repair else max_blocks):
        if got >= n:
            break
        G = genome.random(block, rng, recipe_floats=False)
        costs = problem.costs(G)
        ok = np.nonzero(problem.fits(costs))[0][:2 * (n - got)]
        fitting = genome.fill(G[ok], rng)
        new = np.nonzero(board.fresh(fitting))[0]
        idx = _take(genome.keys(fitting[new]), new, taken, n - got)
        parts.append((fitting[idx], costs[ok][idx]))
        got += len(idx)
        if repair and got < n and b == REPAIR_AFTER - 1:
            rest = np.nonzero(~problem.fits(costs))[0][:(n - got) + (n - got) // 4 + 1]
            fixed, fixed_c = problem.repair(G[rest], costs[rest], rng)
            fixed = genome.fill(fixed, rng)
            keep = np.nonzero(board.fresh(fixed))[0]
            idx = _take(genome.keys(fixed[keep]), keep, taken, n - got)
            parts.append((fixed[idx], fixed_c[idx]))
            got += len(idx)
    width = problem.genome.width
    if not parts:
        return np.zeros((0, width)), np.zeros((0, 2), dtype=np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]).astype(np.int64)


def _take(keys, index, taken: set, limit: int) -> list:
    """Up to ``limit`` of ``index`` whose key is not yet in ``taken`` (which is updated)."""
    out = []
    for i, k in zip(index, keys):
        if len(out) >= limit:
            break
        if k not in taken:
            taken.add(k)
            out.append(int(i))
    return out
