"""The Pareto fine stage: one search for the front of predicted accuracy against FLOPs (or params).

NSGA-II (Deb et al., 2002) over the rows of a :class:`~jointnas.fine.problem.FineProblem`: each
generation ranks parents and children by non-domination (score up, cost down) and crowding
distance (in log cost and score), keeps the best ``population``, and breeds the next children
from binary-tournament winners with the adaptive GA's operators
(:meth:`jointnas.fine.evolution.Evolution.children`: crossover, mutation, budget repair). Every
row ever scored feeds an archive of the non-dominated ones; the search stops once the archive's
hypervolume has gained less than ``tolerance`` for ``patience`` generations. From the archive
(the front) a family of ``top_k`` candidates is chosen spread evenly in log cost, like
FBNetV3's A-G; each member's cost is recounted by the family's exact count
(:func:`jointnas.families.cost.count_cost`) before it is reported.

Hand-written rather than pymoo's NSGA2: on the shipped predictor it reached a larger hypervolume
per second (BENCHMARKS.md, "Pareto fine stage"), and it reuses the genome's operators and repair.
"""
from __future__ import annotations

import bisect
import string
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from ..budget import Budget
from ..errors import UsageError
from ..families.cost import count_cost, require_family
from ..io import FLOPS_NOTE
from .evolution import Evolution, adapted_rate, progress_bar
from .problem import Board, FineProblem, Scored, SearchSettings
from .sampling import filled, seed_rows

# What a front can be drawn against: the column of a board's stats (score, mean, std, flops, params).
OBJECTIVES = {"flops": 3, "params": 4}


def nondominated(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats (cost <= and score >=, one of them strictly),
    cheapest first; of points equal in both, the first."""
    order = np.lexsort((-score, cost))
    s = score[order]
    best_before = np.maximum.accumulate(np.concatenate([[-np.inf], s[:-1]]))
    return order[s > best_before]


def front_ranks(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Each point's non-domination rank (0: not dominated; k: dominated only by ranks < k).

    Two objectives need no pairwise comparison: taken cheapest first, a point joins the first
    front whose best score so far is below its own (those best scores fall from front to front,
    so a bisection finds it)."""
    rank = np.empty(len(cost), dtype=np.int64)
    neg_best: List[float] = []  # minus each front's best score so far: non-decreasing
    for i in np.lexsort((-score, cost)):
        k = bisect.bisect_right(neg_best, -score[i])
        if k == len(neg_best):
            neg_best.append(-score[i])
        else:
            neg_best[k] = -score[i]
        rank[i] = k
    return rank


def crowding(x: np.ndarray, y: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point within its front (ends: infinite)."""
    out = np.zeros(len(x))
    for r in np.unique(rank):
        idx = np.nonzero(rank == r)[0]
        if len(idx) <= 2:
            out[idx] = np.inf
            continue
        for v in (x, y):
            o = idx[np.argsort(v[idx], kind="stable")]
            span = v[o[-1]] - v[o[0]]
            out[o[[0, -1]]] = np.inf
            if span > 0:
                out[o[1:-1]] += (v[o[2:]] - v[o[:-2]]) / span
    return out


def hypervolume(cost: np.ndarray, score: np.ndarray, low: float, high: float) -> float:
    """The share of the box log(cost) in [log low, log high] x score in [0, 1] that the points
    dominate (1: a score of 1 at cost ``low``)."""
    i = nondominated(np.asarray(cost, dtype=np.float64), np.asarray(score, dtype=np.float64))
    c, s = np.asarray(cost, dtype=np.float64)[i], np.clip(np.asarray(score, dtype=np.float64)[i], 0.0, 1.0)
    x = np.clip((np.log(c) - np.log(low)) / max(np.log(high) - np.log(low), 1e-12), 0.0, 1.0)
    return float(np.sum(np.diff(np.append(x, 1.0)) * s))


def spread_members(cost: np.ndarray, k: int) -> np.ndarray:
    """Indices of up to ``k`` points of a front (sorted cheapest first, so best scoring last)
    spread evenly in log cost: for each of ``k`` costs from the cheapest to the dearest, the
    front's best point at or under it; always the first and the last."""
    if len(cost) <= k:
        return np.arange(len(cost))
    targets = np.geomspace(cost[0], cost[-1], k)
    picked = np.searchsorted(cost, targets * (1 + 1e-12), side="right") - 1
    return np.unique(np.clip(picked, 0, len(cost) - 1))


def member_names(n: int) -> List[str]:
    """A, B, C... like FBNetV3's family (numbers past Z)."""
    letters = string.ascii_uppercase
    return [letters[i] if n <= len(letters) else str(i + 1) for i in range(n)]


@dataclass
class ParetoResult:
    """A Pareto search's front and its chosen family, both cheapest first."""

    objective: str
    members: List[Scored]
    front: List[Scored]
    hypervolume: float
    box: tuple                 # (low, high) cost of the hypervolume box
    history: List[dict]
    scored: int
    generations: int
    wall_time: float
    stop_reason: str
    settings: SearchSettings
    budget: Optional[Budget]
    seeded: int = 0
    recounted: int = 0         # front rows whose search-time cost differed from the exact count
    names: List[str] = field(default_factory=list)

    @property
    def scored_per_second(self) -> float:
        return self.scored / max(self.wall_time, 1e-9)

    def cost(self, s: Scored) -> int:
        return s.flops if self.objective == "flops" else s.params

    def best_under(self, limit: float) -> Optional[Scored]:
        """The front's best-scoring candidate whose objective cost is at most ``limit``."""
        fits = [s for s in self.front if self.cost(s) <= limit]
        return max(fits, key=lambda s: s.score) if fits else None

    def to_dict(self) -> dict:
        budget = None if self.budget is None else {"max_flops": self.budget.max_flops,
                                                  "max_params": self.budget.max_params}
        return {
            "strategy": "pareto",
            "objective": self.objective,
            "flops_counting": FLOPS_NOTE,
            "budget": budget,
            "settings": asdict(self.settings),
            "search": {"generations": self.generations, "scored": self.scored, "wall_time": self.wall_time,
                       "scored_per_second": self.scored_per_second, "stop_reason": self.stop_reason,
                       "hypervolume": self.hypervolume, "hypervolume_box": list(self.box),
                       "history": self.history},
            "check": {"rule": "every member's FLOPs and params are the exact count (count_cost) of its arch",
                      "recounted": self.recounted},
            "members": [dict(s.to_dict(), name=n) for n, s in zip(self.names, self.members)],
            "front": [{"key": s.candidate.key(), "predicted_acc": s.mean, "predicted_std": s.std, "score": s.score,
                       "flops": s.flops, "params": s.params} for s in self.front],
        }


def pareto_search(surrogate, space, *, objective: str = "flops", budget: Optional[Budget] = None,
                  seeds: Sequence = (), settings: Optional[SearchSettings] = None,
                  progress: bool = False) -> ParetoResult:
    """The front of ``surrogate``'s score against ``objective`` ("flops" or "params") over ``space``,
    and ``settings.top_k`` members spread along it (FBNetV3's family A-G is 7); ``budget``
    (optional) caps the front. ``seeds`` are measured candidates, best first, to start from.
    Reproducible from ``settings.seed``."""
    if objective not in OBJECTIVES:
        raise UsageError(f"objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    require_family(space, "a front of accuracy against FLOPs or params")
    st = (settings or SearchSettings()).validate()
    problem = FineProblem(space, surrogate, budget, risk=st.risk, min_distance=0.0)
    return _Run(problem, objective, st, progress).search(seeds, st.top_k)


class _Run:
    """One Pareto search's state: the population, the archive and the stop rule."""

    def __init__(self, problem: FineProblem, objective: str, st: SearchSettings, progress: bool):
        self.problem, self.objective, self.st, self.progress = problem, objective, st, progress
        self.col = OBJECTIVES[objective]
        ends = problem.costs(np.stack([problem.genome.cheapest(), problem.genome.dearest()]))[:, self.col - 3]
        high = float(ends.max())
        if problem.limit is not None:
            high = min(high, float(problem.limit[self.col - 3]))
        self.box = (float(max(ends.min(), 1)), max(high, float(ends.min()) + 1.0))
        self.archive_rows = np.zeros((0, problem.genome.width))
        self.archive_stats = np.zeros((0, 5))

    def _archive(self, G: np.ndarray, stats: np.ndarray) -> float:
        rows, allstats = np.concatenate([self.archive_rows, G]), np.concatenate([self.archive_stats, stats])
        keep = nondominated(allstats[:, self.col], allstats[:, 0])
        self.archive_rows, self.archive_stats = rows[keep], allstats[keep]
        return hypervolume(self.archive_stats[:, self.col], self.archive_stats[:, 0], *self.box)

    def _order(self, stats: np.ndarray):
        """(rank, crowding) of rows and the indices best first by them."""
        cost = stats[:, self.col]
        rank = front_ranks(cost, stats[:, 0])
        crowd = crowding(np.log(np.maximum(cost, 1.0)), stats[:, 0], rank)
        return rank, crowd, np.lexsort((-crowd, rank))

    def search(self, seeds: Sequence, n_members: int) -> ParetoResult:
        st, problem = self.st, self.problem
        start = time.perf_counter()
        rng = np.random.default_rng(st.seed)
        board = Board(problem, keep=1)  # only its memory of what was scored is used
        breeder = Evolution(st)
        cap = st.evaluations or np.inf

        G, costs = seed_rows(problem, seeds, min(st.init_best, st.population), board)
        n_seeded = len(G)
        cheap = problem.genome.cheapest()[None]  # the front's cheap end, from the start
        cheap_c = problem.costs(cheap)
        if problem.fits(cheap_c)[0] and board.fresh(cheap)[0] and problem.genome.keys(cheap)[0] not in set(
                problem.genome.keys(G)):
            G, costs = np.concatenate([G, cheap]), np.concatenate([costs, cheap_c])
        G, costs = filled(problem, G, costs, st.population, rng, board)
        stats = board.score(G, costs)
        hv = self._archive(G, stats)
        rank, crowd, order = self._order(stats)
        history = [{"generation": 0, "hypervolume": hv, "front": len(self.archive_rows), "scored": board.scored}]
        rate, stalled, stop_reason = st.mutation_rate, 0, "generation limit reached"
        bar = progress_bar(self.progress, st.generations)
        generation = 0
        for generation in range(1, st.generations + 1):
            if board.scored >= cap:
                generation -= 1
                stop_reason = f"evaluation limit reached ({board.scored} scored)"
                break
            # binary tournaments: the lower rank wins, then the larger crowding distance
            a, b = rng.integers(len(G), size=(2, len(G)))
            a_wins = (rank[a] < rank[b]) | ((rank[a] == rank[b]) & (crowd[a] >= crowd[b]))
            pool = G[np.where(a_wins, a, b)]
            want = int(min(st.population, cap - board.scored))
            child_G, child_c, child_keys = breeder.children(problem, pool, want, rate, board, rng)
            child_stats = board.score(child_G, child_c, child_keys)
            gain = self._archive(child_G, child_stats) - hv
            hv += gain
            all_G, all_stats = np.concatenate([G, child_G]), np.concatenate([stats, child_stats])
            rank, crowd, order = self._order(all_stats)
            keep = order[:st.population]
            G, stats, rank, crowd = all_G[keep], all_stats[keep], rank[keep], crowd[keep]
            rate, stalled = adapted_rate(gain, rate, stalled, st)
            history.append({"generation": generation, "hypervolume": hv, "front": len(self.archive_rows),
                            "scored": board.scored, "mutation_rate": rate})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(hv=f"{hv:.4f}", front=len(self.archive_rows), refresh=False)
            if stalled >= st.patience:
                stop_reason = (f"converged: hypervolume gained < {st.tolerance:g} for {st.patience} generations")
                break
            if len(child_G) == 0:
                stop_reason = "no new candidates left to try"
                break
        if bar is not None:
            bar.close()
        front, recounted = self._exact_front(board)
        cost = np.array([s.flops if self.objective == "flops" else s.params for s in front], dtype=np.float64)
        members = [front[i] for i in spread_members(cost, n_members)]
        return ParetoResult(objective=self.objective, members=members, front=front,
                            hypervolume=hypervolume(cost, np.array([s.score for s in front]), *self.box),
                            box=self.box, history=history, scored=board.scored, generations=generation,
                            wall_time=time.perf_counter() - start, stop_reason=stop_reason,
                            settings=st, budget=problem.budget, seeded=n_seeded,
                            recounted=recounted, names=member_names(len(members)))

    def _exact_front(self, board: Board):
        """The archive as Scored, cheapest first, every cost recounted by the exact count where the
        search priced rows with the family's batch count; the front again if a count moved."""
        front = board.scored_list(self.archive_rows, self.archive_stats)
        recounted = 0
        space = self.problem.space
        if not space.family.vectorised_costs:  # then the search priced every row by the exact count itself
            return front, recounted
        for s in front:
            exact = count_cost(s.candidate, space)
            if (exact.flops, exact.params) != (s.flops, s.params):
                recounted += 1
                s.flops, s.params = int(exact.flops), int(exact.params)
        if recounted:
            front = [s for s in front if self.problem.fits(np.array([[s.flops, s.params]]))[0]]
            cost = np.array([s.flops if self.objective == "flops" else s.params for s in front], dtype=np.float64)
            front = [front[i] for i in nondominated(cost, np.array([s.score for s in front]))]
        return front, recounted
