"""The fine stage's problem: search a space for the candidates a surrogate scores best within a
cost budget.

A :class:`FineProblem` is what every fine strategy solves: the space as rows of value indices
(:class:`jointnas.fine.genome.Genome`), its family's cost of a batch of rows, the
budget, and the surrogate's score ``mean - risk * spread``. A strategy
(:class:`jointnas.fine.base.Strategy`; the adaptive GA in ``evolution.py``, random search in
``random.py``) scores rows through a :class:`Board`, which remembers what was scored and keeps
the best rows. The reported top-k are choices, not clones: candidates at least ``min_distance``
apart, best first, where scores within ``TIE`` of each other are ties broken by lower spread,
then fewer FLOPs and params.
FLOPs are fvcore's count of the deployable model: one multiply-add is one flop.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import List, Optional, Sequence

import numpy as np

from ..budget import Budget, check_budget, require_family
from ..errors import UsageError
from ..surrogates.base import Scorer
from .genome import Genome

# Scores closer than this are ties (predicted accuracies are shown to 0.01 %).
TIE = 1e-4
TIE_RULE = (f"scores within {TIE:g} of each other tie; ties go to the lower spread, then fewer FLOPs, then "
            "fewer params")
# Bounds on sizes: beyond these a search would exhaust memory or never finish.
MAX_POPULATION = 100_000
MAX_GENERATIONS = 100_000
MAX_EVALUATIONS = 100_000_000
MAX_TOP_K = 1_000


@dataclass
class SearchSettings:
    """Settings of a fine search. ``evaluations`` caps the candidates scored (random search
    scores exactly that many; default 20,000 there, no cap for the GA). ``min_distance`` is
    the least distance between two reported candidates, as a fraction of the space's
    dimensions (see ``Genome.distance``); 0 reports the best distinct rows."""

    # Population 300 rather than Once-for-All's 100: with 100, runs in this 76-dimension space
    # stop in a different, lower local optimum per seed (BENCHMARKS.md, "Fine search").
    population: int = 300
    generations: int = 200
    parent_fraction: float = 0.25
    crossover_fraction: float = 0.5
    mutation_rate: float = 0.04
    max_mutation_rate: float = 0.25
    patience: int = 20
    tolerance: float = 1e-4
    risk: float = 0.0
    init_best: int = 25
    top_k: int = 5
    seed: int = 0
    evaluations: Optional[int] = None
    min_distance: float = 0.1

    def validate(self) -> "SearchSettings":
        checks = [
            (4 <= self.population <= MAX_POPULATION, f"population must lie in 4..{MAX_POPULATION}"),
            (0 <= self.generations <= MAX_GENERATIONS, f"generations must lie in 0..{MAX_GENERATIONS}"),
            (0 < self.parent_fraction < 1, "parent fraction must lie in (0, 1)"),
            (0 <= self.crossover_fraction <= 1, "crossover fraction must lie in [0, 1]"),
            (0 < self.mutation_rate <= self.max_mutation_rate <= 1,
             "need 0 < mutation rate <= maximum mutation rate <= 1"),
            (self.patience >= 1, "patience must be at least 1"),
            (self.tolerance >= 0, "tolerance must be >= 0"),
            (self.risk >= 0, "risk must be >= 0 (it weighs the ensemble's spread against its mean)"),
            (self.init_best >= 0, "the number of measured seeds must be >= 0"),
            (1 <= self.top_k <= MAX_TOP_K, f"top-k must lie in 1..{MAX_TOP_K}"),
            (self.evaluations is None or 1 <= self.evaluations <= MAX_EVALUATIONS,
             f"evaluations must lie in 1..{MAX_EVALUATIONS}"),
            (0 <= self.min_distance <= 1, "minimum distance must lie in [0, 1] (a fraction of the dimensions)"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        return self


@dataclass
class Scored:
    candidate: object
    mean: float
    std: float
    score: float
    flops: Optional[int]
    params: Optional[int]

    def to_dict(self) -> dict:
        return {"key": self.candidate.key(), "predicted_acc": self.mean, "predicted_std": self.std,
                "score": self.score, "flops": self.flops, "params": self.params,
                "resolution": self.candidate.arch.get("resolution"), "candidate": self.candidate.to_dict()}


def _pricer(space, genome):
    """A function from rows to their (n, 2) int64 [flops, params], or None without a family.

    A family whose ``costs`` takes columns (``ModelFamily.vectorised_costs``: name -> array,
    like the mbconv family's closed form) prices a whole batch in one call; any other family's
    ``costs`` gets the arch dicts of the distinct archs it has not priced before (its own cost
    may be slow, e.g. fvcore run on a torchvision model)."""
    family = space.family
    if family is None:
        return None
    if family.vectorised_costs:
        return lambda G: np.asarray(family.costs(genome.arch_columns(G)), dtype=np.int64)
    memo: dict = {}

    def price(G):
        keys = genome.keys(G[:, :genome.n_arch])
        todo = {k: i for i, k in enumerate(keys) if k not in memo}
        if todo:
            fresh = np.asarray(family.costs(genome.arch_dicts(G[list(todo.values())])), dtype=np.int64)
            memo.update(zip(todo, fresh.reshape(len(todo), 2)))
        return np.array([memo[k] for k in keys], dtype=np.int64).reshape(len(G), 2)

    return price


class FineProblem:
    """What a fine strategy solves: ``space`` searched as rows, priced by its family, limited by
    ``budget`` (None: no budget), scored by ``surrogate.predict_encoded`` as ``mean - risk * spread``."""

    def __init__(self, space, surrogate, budget: Optional[Budget] = None, *, risk: float = 0.0,
                 min_distance: float = 0.1):
        self.space, self.surrogate, self.budget = space, surrogate, budget
        self.risk, self.min_distance = float(risk), float(min_distance)
        family = space.family
        self.genome = Genome(space, family.cost_order if family is not None else None)
        self._price = _pricer(space, self.genome)
        if budget is not None:
            require_family(space, "a FLOPs or parameter budget")
        self.limit = None if budget is None else np.array(
            [budget.max_flops, np.inf if budget.max_params is None else budget.max_params], dtype=np.float64)
        self.minimum = self.check_budget() if budget is not None else None

    @property
    def priced(self) -> bool:
        return self._price is not None

    def costs(self, G: np.ndarray) -> np.ndarray:
        """(n, 2) int64 [flops, params] of the rows; zeros without a family."""
        if self._price is None:
            return np.zeros((len(G), 2), dtype=np.int64)
        return self._price(G)

    def fits(self, costs: np.ndarray) -> np.ndarray:
        if self.limit is None:
            return np.ones(len(costs), dtype=bool)
        return (costs <= self.limit).all(1)

    def repair(self, G, costs, rng, protect=None):
        if self.limit is None:
            return G, costs
        return self.genome.repair(G, costs, self.limit, self.costs, rng, protect)

    def check_budget(self):
        """The cheapest arch's Cost; BudgetError when even it exceeds the budget."""
        return check_budget(self.space, self.budget)

    def predict(self, G: np.ndarray, costs: Optional[np.ndarray] = None):
        """(mean, std, score) of rows ``G``; ``costs`` (their prices) go to a surrogate that
        takes them (a forest's proxy features) instead of being counted again."""
        if costs is not None and self.priced and isinstance(self.surrogate, Scorer) and self.surrogate.takes_costs:
            mean, std = self.surrogate.predict_encoded(self.genome.encode(G), costs=costs)
        else:
            mean, std = self.surrogate.predict_encoded(self.genome.encode(G))
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        return mean, std, mean - self.risk * std


def ranking(stats: np.ndarray) -> np.ndarray:
    """Indices of rows of ``stats`` (columns score, mean, std, flops, params) best first:
    score rounded to ``TIE``, then lower spread, fewer FLOPs, fewer params, then input order."""
    return np.lexsort((stats[:, 4], stats[:, 3], stats[:, 2], -np.round(stats[:, 0] / TIE)))


class Board:
    """What a search has scored: a count, every row's identity (nothing is scored twice), and
    the ``keep`` best rows with their statistics, for choosing a diverse top-k at the end."""

    def __init__(self, problem: FineProblem, keep: int = 2000):
        self.problem, self.keep = problem, int(keep)
        self.seen: set = set()
        self.scored = 0
        # The kept rows and their stats (score, mean, std, flops, params) fill the first _n rows of
        # buffers that grow by doubling: appending a generation copies only the generation.
        self._rows = np.zeros((0, problem.genome.width))
        self._stats = np.zeros((0, 5))
        self._n = 0

    @property
    def rows(self) -> np.ndarray:
        return self._rows[:self._n]

    @property
    def stats(self) -> np.ndarray:
        return self._stats[:self._n]

    def _append(self, G: np.ndarray, stats: np.ndarray) -> None:
        n, m = self._n, len(G)
        if n + m > len(self._rows):
            size = max(2 * len(self._rows), n + m)
            self._rows = np.concatenate([self.rows, np.empty((size - n, self._rows.shape[1]))])
            self._stats = np.concatenate([self.stats, np.empty((size - n, 5))])
        self._rows[n:n + m], self._stats[n:n + m] = G, stats
        self._n = n + m

    def fresh(self, G: np.ndarray) -> np.ndarray:
        """Mask of rows neither scored before nor repeating an earlier row of ``G``."""
        seen, batch, out = self.seen, set(), np.zeros(len(G), dtype=bool)
        for i, k in enumerate(self.problem.genome.keys(G)):
            if k not in seen and k not in batch:
                batch.add(k)
                out[i] = True
        return out

    def claim(self, keys: Sequence[bytes], claimed: set) -> np.ndarray:
        """Mask of ``keys`` neither scored nor in ``claimed``; those are added to ``claimed``."""
        seen, out = self.seen, np.zeros(len(keys), dtype=bool)
        for i, k in enumerate(keys):
            if k not in seen and k not in claimed:
                claimed.add(k)
                out[i] = True
        return out

    def score(self, G: np.ndarray, costs: np.ndarray, keys: Optional[Sequence[bytes]] = None) -> np.ndarray:
        """Score rows (all fresh; ``keys`` are theirs if known) and remember them; returns their stats."""
        if len(G) == 0:
            return np.zeros((0, 5))
        mean, std, score = self.problem.predict(G, costs)
        stats = np.column_stack([score, mean, std, costs[:, 0], costs[:, 1]]).astype(np.float64)
        self.seen.update(self.problem.genome.keys(G) if keys is None else keys)
        self.scored += len(G)
        self._append(G, stats)
        if self._n > 2 * self.keep:
            best = ranking(self.stats)[:self.keep]
            best.sort()  # keep arrival order among the kept, so ties stay reproducible
            self._rows[:len(best)], self._stats[:len(best)] = self.rows[best], self.stats[best]
            self._n = len(best)
        return stats

    def scored_list(self, G: np.ndarray, stats: np.ndarray) -> List[Scored]:
        priced = self.problem.priced
        return [Scored(c, float(s[1]), float(s[2]), float(s[0]), int(s[3]) if priced else None,
                       int(s[4]) if priced else None)
                for c, s in zip(self.problem.genome.decode(G), stats)]

    def best(self) -> Scored:
        i = ranking(self.stats)[0]
        return self.scored_list(self.rows[i:i + 1], self.stats[i:i + 1])[0]

    def top(self, k: int) -> List[Scored]:
        """The ``k`` best rows pairwise at least ``min_distance`` x dimensions apart, best first."""
        order = ranking(self.stats)
        threshold = max(self.problem.min_distance * self.problem.genome.width, 1e-12)
        genome = self.problem.genome
        F = genome.features(self.rows)
        nearest = np.full(len(F), np.inf)  # distance of each row to the closest one chosen so far
        chosen: List[int] = []
        for i in order:
            if len(chosen) == k:
                break
            if nearest[i] >= threshold:
                chosen.append(int(i))
                nearest = np.minimum(nearest, genome.feature_distance(F, F[i]))
        return self.scored_list(self.rows[chosen], self.stats[chosen])


@dataclass
class SearchResult:
    strategy: str
    top: List[Scored]
    best: Scored
    initial_best: Scored
    history: List[dict]
    scored: int
    generations: int
    wall_time: float
    stop_reason: str
    settings: SearchSettings
    budget: Optional[Budget]
    seeded: int = 0
    minimum: Optional[object] = None
    min_distance: float = 0.0
    population_rows: Optional[np.ndarray] = field(default=None, repr=False)
    population_stats: Optional[np.ndarray] = field(default=None, repr=False)
    board: Optional[Board] = field(default=None, repr=False)

    @property
    def scored_per_second(self) -> float:
        return self.scored / max(self.wall_time, 1e-9)

    @cached_property
    def population(self) -> List[Scored]:
        """The final population, best first (empty for strategies without one)."""
        if self.population_rows is None:
            return []
        return self.board.scored_list(self.population_rows, self.population_stats)

    def ties(self) -> str:
        """A sentence on ties among the reported top, or ''."""
        scores = np.round(np.array([s.score for s in self.top]) / TIE)
        tied = int(np.sum(scores == scores[0])) if len(scores) else 0
        if tied < 2:
            return ""
        return (f"{tied} of the top {len(self.top)} tie at score {self.top[0].score:.4f}: "
                "ordered by lower spread, then fewer FLOPs, then fewer params")

    def to_dict(self) -> dict:
        budget = None if self.budget is None else {"max_flops": self.budget.max_flops,
                                                  "max_params": self.budget.max_params}
        return {
            "strategy": self.strategy,
            "budget": budget,
            "settings": asdict(self.settings),
            "search": {"strategy": self.strategy, "generations": self.generations, "seeded_from_run": self.seeded,
                       "scored": self.scored, "wall_time": self.wall_time,
                       "scored_per_second": self.scored_per_second, "stop_reason": self.stop_reason,
                       "initial_best_score": self.initial_best.score, "best_score": self.best.score,
                       "history": self.history},
            "selection": {"min_distance": self.min_distance, "rule": TIE_RULE,
                          "distance": "dimensions' worth: 1 per changed categorical or bool, the change as a "
                                      "fraction of the range per ordered or float dimension",
                          "ties": self.ties()},
            "top": [dict(s.to_dict(), rank=i + 1) for i, s in enumerate(self.top)],
        }


def finish(problem: FineProblem, board: Board, *, strategy: str, settings: SearchSettings, start: float,
           initial_best: Scored, history: List[dict], generations: int, stop_reason: str, seeded: int,
           population=None) -> SearchResult:
    """The SearchResult of a strategy's run: the diverse top-k and the figures."""
    rows, stats = population if population is not None else (None, None)
    return SearchResult(strategy=strategy, top=board.top(settings.top_k), best=board.best(),
                        initial_best=initial_best, history=history, scored=board.scored,
                        generations=generations, wall_time=time.perf_counter() - start, stop_reason=stop_reason,
                        settings=settings, budget=problem.budget, seeded=seeded, minimum=problem.minimum,
                        min_distance=problem.min_distance, population_rows=rows, population_stats=stats,
                        board=board)
