"""Fine search: an adaptive genetic search over (arch, recipe) pairs scored by the accuracy
predictor, where every individual fits the FLOPs (and optional params) budget exactly.

The initial population is the best measured candidates of a coarse run plus random feasible
ones. Each generation keeps the best quarter as parents and fills the rest with children,
half by per-dimension mutation and half by uniform crossover; an over-budget child is drawn
again a few times and otherwise repaired by stepping arch dimensions cheaper. The mutation
rate grows while the best score stalls (to jump out of a local optimum) and shrinks back
when it improves; the search stops once the best score has gained less than ``tolerance``
for ``patience`` generations in a row, or after ``generations``.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from .budget import Budget, check_budget
from .space import Candidate, SearchSpace as Space

if TYPE_CHECKING:
    from .evolution import Variation
    from .cost import Cost

# An over-budget child is drawn again this many times before it is repaired instead.
REJECTION_TRIES = 3
# Mutation-rate adaptation: multiplied by this on a stalled generation, divided on progress.
RATE_GROWTH = 1.5


@dataclass
class SearchSettings:
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

    def validate(self) -> "SearchSettings":
        from .errors import UsageError

        checks = [
            (self.population >= 4, "--population must be at least 4"),
            (self.generations >= 0, "--generations must be >= 0"),
            (0 < self.parent_fraction < 1, "parent fraction must lie in (0, 1)"),
            (0 <= self.crossover_fraction <= 1, "crossover fraction must lie in [0, 1]"),
            (0 < self.mutation_rate <= self.max_mutation_rate <= 1,
             "need 0 < --mutation-rate <= maximum mutation rate <= 1"),
            (self.patience >= 1, "--patience must be at least 1"),
            (self.tolerance >= 0, "--tolerance must be >= 0"),
            (self.risk >= 0, "--risk must be >= 0 (it weighs the ensemble's spread against its mean)"),
            (self.init_best >= 0, "--init-best must be >= 0"),
            (self.top_k >= 1, "--top-k must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        return self


@dataclass
class Scored:
    candidate: Candidate
    mean: float
    std: float
    score: float
    flops: int
    params: int
    ident: tuple = field(default=(), repr=False, compare=False)  # Variation.ident: cheap, hashable, ordered

    def sort_key(self):
        return (-self.score, self.ident)

    def to_dict(self) -> dict:
        return {"key": self.candidate.key(), "predicted_acc": self.mean, "predicted_std": self.std,
                "score": self.score, "flops": self.flops, "params": self.params,
                "resolution": self.candidate.arch.get("resolution"), "candidate": self.candidate.to_dict()}


@dataclass
class SearchResult:
    top: List[Scored]
    population: List[Scored]
    best: Scored
    initial_best: Scored
    history: List[dict]
    scored: int
    generations: int
    wall_time: float
    stop_reason: str
    settings: SearchSettings
    budget: Budget
    seeded: int = 0
    minimum: Optional[Cost] = None

    @property
    def scored_per_second(self) -> float:
        return self.scored / max(self.wall_time, 1e-9)

    def to_dict(self) -> dict:
        return {
            "budget": {"max_flops": self.budget.max_flops, "max_params": self.budget.max_params},
            "settings": asdict(self.settings),
            "search": {"generations": self.generations, "seeded_from_run": self.seeded, "scored": self.scored,
                       "wall_time": self.wall_time, "scored_per_second": self.scored_per_second,
                       "stop_reason": self.stop_reason, "initial_best_score": self.initial_best.score,
                       "best_score": self.best.score, "history": self.history},
            "top": [dict(s.to_dict(), rank=i + 1) for i, s in enumerate(self.top)],
        }


class _Scorer:
    """Scores candidates in one predictor batch; remembers what it scored and the best per architecture."""

    def __init__(self, predictor, variation: Variation, risk: float, top_k: int):
        self.predictor, self.variation, self.risk, self.top_k = predictor, variation, risk, top_k
        self.seen: set = set()
        self.top: Dict[tuple, Scored] = {}  # arch ident -> best Scored, for the top_k best architectures

    def __call__(self, items: Sequence[Tuple[Candidate, Cost]]) -> List[Scored]:
        if not items:
            return []
        encoded = self.variation.space.encode([c for c, _ in items])
        mean, std = self.predictor.predict_encoded(encoded)
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        out = []
        for (c, cost), m, s in zip(items, mean, std):
            ident = self.variation.ident(c)
            scored = Scored(c, float(m), float(s), float(m - self.risk * s), int(cost.flops), int(cost.params), ident)
            self.seen.add(ident)
            self._offer(scored)
            out.append(scored)
        return out

    def _offer(self, s: Scored) -> None:
        arch = s.ident[0]
        held = self.top.get(arch)
        if held is not None:
            if s.sort_key() < held.sort_key():
                self.top[arch] = s
            return
        if len(self.top) < self.top_k:
            self.top[arch] = s
            return
        worst = max(self.top, key=lambda a: self.top[a].sort_key())
        if s.sort_key() < self.top[worst].sort_key():
            del self.top[worst]
            self.top[arch] = s

    def best_distinct(self) -> List[Scored]:
        """The ``top_k`` best candidates with distinct architectures (each with its best recipe)."""
        return sorted(self.top.values(), key=Scored.sort_key)


def random_feasible(variation: Variation, n: int, rng: np.random.Generator, repair: bool = True,
                    exclude: Iterable[tuple] = (), max_blocks: int = 100) -> List[Tuple[Candidate, Cost]]:
    """Up to ``n`` distinct feasible candidates (none whose ``Variation.ident`` is in ``exclude``):
    feasible Sobol draws first, then repaired ones. With ``repair=False`` it is plain rejection
    sampling, which gives up after ``max_blocks`` blocks of ``max(256, 4 n)`` draws."""
    seen, out, over = set(exclude), [], []
    block = max(256, 4 * n)
    for _ in range(max_blocks):
        for c in variation.random(block, rng):
            k = variation.ident(c)
            if k in seen:
                continue
            cost = variation.cost(c)
            if variation.feasible(cost):
                seen.add(k)
                out.append((c, cost))
                if len(out) == n:
                    return out
            elif repair:
                over.append((c, cost))
        if repair:
            break
    for c, cost in over:
        c, cost = variation.repair(c, cost, rng)
        k = variation.ident(c)
        if k not in seen:
            seen.add(k)
            out.append((c, cost))
            if len(out) == n:
                break
    return out


def _initial_population(variation: Variation, seeds: Sequence[Candidate], settings: SearchSettings,
                        rng: np.random.Generator) -> Tuple[List[Tuple[Candidate, Cost]], int]:
    members, seen = [], set()
    for c in seeds:
        if len(members) >= min(settings.init_best, settings.population):
            break
        cost, k = variation.cost(c), variation.ident(c)
        if variation.feasible(cost) and k not in seen:
            seen.add(k)
            members.append((c, cost))
    n_seeded = len(members)
    members += random_feasible(variation, settings.population - n_seeded, rng, exclude=seen)
    return members, n_seeded


def fine_search(predictor, space: Space, budget: Budget, seeds: Sequence[Candidate] = (),
                settings: Optional[SearchSettings] = None, progress: bool = False) -> SearchResult:
    """Search for the best-scored candidates within ``budget``.

    ``predictor`` needs ``predict_encoded(X) -> (mean, std)``; ``seeds`` are measured candidates,
    best first (infeasible ones are skipped). The result is reproducible from ``settings.seed``.
    """
    from .evolution import Variation

    settings = (settings or SearchSettings()).validate()
    minimum = check_budget(space, budget)
    start = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    variation = Variation(space, budget)
    score = _Scorer(predictor, variation, settings.risk, settings.top_k)

    members, n_seeded = _initial_population(variation, seeds, settings, rng)
    population = sorted(score(members), key=Scored.sort_key)
    initial_best = population[0]
    n_parents = max(2, int(round(settings.parent_fraction * settings.population)))
    rate, stalled, stop_reason = settings.mutation_rate, 0, "generation limit reached"
    history = [_record(0, population, rate, score)]

    bar = tqdm(total=settings.generations, desc="fine", unit="gen", file=sys.stderr, disable=not progress,
               mininterval=0.5)
    generation = 0
    for generation in range(1, settings.generations + 1):
        parents = population[:n_parents]
        children = _children(variation, [p.candidate for p in parents], settings, rate, score.seen, rng)
        new_population = sorted(parents + score(children), key=Scored.sort_key)
        gain = new_population[0].score - population[0].score
        population = new_population
        if gain < settings.tolerance:
            stalled += 1
            rate = min(rate * RATE_GROWTH, settings.max_mutation_rate)
        else:
            stalled = 0
            rate = max(rate / RATE_GROWTH, settings.mutation_rate)
        history.append(_record(generation, population, rate, score))
        bar.update(1)
        bar.set_postfix(best=f"{population[0].score:.4f}", rate=f"{rate:.2f}", refresh=False)
        if stalled >= settings.patience:
            stop_reason = f"converged: best score gained < {settings.tolerance:g} for {settings.patience} generations"
            break
        if not children:
            stop_reason = "no new feasible candidates left to try"
            break
    bar.close()

    return SearchResult(top=score.best_distinct(), population=population, best=population[0],
                        initial_best=initial_best, history=history, scored=len(score.seen), generations=generation,
                        wall_time=time.perf_counter() - start, stop_reason=stop_reason,
                        settings=settings, budget=budget, seeded=n_seeded, minimum=minimum)


def _children(variation: Variation, parents: List[Candidate], settings: SearchSettings, rate: float,
              scored: set, rng: np.random.Generator) -> List[Tuple[Candidate, Cost]]:
    """Up to ``population - parents`` new feasible children, none of them ``scored`` before."""
    n = settings.population - len(parents)
    n_cross = int(round(n * settings.crossover_fraction))
    out, seen = [], set(scored)

    def by_crossover():
        i, j = rng.choice(len(parents), size=2, replace=False)
        child = variation.crossover(parents[i], parents[j], rng)
        # Parents that have converged onto one another mostly recombine into themselves.
        return (variation.mutate(child, rate, rng), child) if variation.ident(child) in seen else (child, child)

    def by_mutation():
        parent = parents[int(rng.integers(len(parents)))]
        return variation.mutate(parent, rate, rng), parent

    for _ in range(10 * n):
        if len(out) == n:
            break
        child, cost = _feasible(variation, by_crossover if len(out) < n_cross else by_mutation, rng)
        key = variation.ident(child)
        if key not in seen:
            seen.add(key)
            out.append((child, cost))
    return out


def _feasible(variation: Variation, make: Callable[[], Tuple[Candidate, Candidate]], rng) -> Tuple[Candidate, Cost]:
    """A child of ``make()`` (which returns (child, the parent it came from)) that fits the budget."""
    for _ in range(REJECTION_TRIES):
        child, parent = make()
        cost = variation.cost(child)
        if variation.feasible(cost):
            return child, cost
    changed = [k for k, v in child.arch.items() if parent.arch[k] != v]
    return variation.repair(child, cost, rng, protect=changed)


def _record(generation: int, population: List[Scored], rate: float, score: _Scorer) -> dict:
    return {"generation": generation, "best_score": population[0].score, "best_acc": population[0].mean,
            "mean_score": float(np.mean([p.score for p in population])), "mutation_rate": rate,
            "scored": len(score.seen)}
