"""Genetic operators over candidates of a space: random sampling, per-dimension mutation,
uniform crossover, and repair onto a cost budget.

Every operator takes a ``numpy.random.Generator`` so that a search is reproducible from its seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
from scipy.stats import qmc

from .budget import Budget, cost_ordered_values
from .cost import Cost, count_cost
from .space import Candidate, SearchSpace as Space
from .space.pool import unit_to_candidates

# Half of the mutated dimensions move to a neighbouring value (local refinement), the other
# half are resampled over their whole range (long jumps).
STEP_PROBABILITY = 0.5
# Width of a float step, as a fraction of the dimension's (log-)range.
FLOAT_STEP = 0.1


@dataclass(frozen=True)
class _Gene:
    part: str                       # "arch" or "recipe"
    name: str
    dim: object
    ordered: Optional[List] = None  # discrete values in an order where neighbours are similar


def _genes(space: Space) -> List[_Gene]:
    genes = []
    for part, dims in (("arch", space.arch), ("recipe", space.recipe)):
        for name, dim in dims.items():
            ordered = None
            if dim.kind == "int":
                ordered = list(dim.choices)
            elif dim.kind == "categorical" and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                   for c in dim.choices):
                ordered = sorted(dim.choices)
            genes.append(_Gene(part, name, dim, ordered))
    return genes


class Variation:
    """Sampling, mutation, crossover and budget repair for one space and one budget."""

    def __init__(self, space: Space, budget: Budget):
        self.space = space
        self.budget = budget
        self.genes = _genes(space)
        # Arch dimensions that change cost, with their values cheapest first (for repair).
        self.cost_orders = {name: order for name, dim in space.arch.items()
                            if (order := cost_ordered_values(space, name)) is not None and len(order) > 1}
        self._arch_names = list(space.arch)
        self._recipe_names = list(space.recipe)
        self._costs: Dict[tuple, Cost] = {}

    def ident(self, cand: Candidate) -> tuple:
        """(arch values, recipe values) in the space's order: a hashable, orderable identity that is
        much cheaper to compute than ``Candidate.key()``."""
        return (tuple(cand.arch[n] for n in self._arch_names), tuple(cand.recipe[n] for n in self._recipe_names))

    # ---- cost
    def arch_cost(self, arch: dict) -> Cost:
        """``count_cost`` memoised: children often share their parent's architecture."""
        key = tuple(arch[n] for n in self._arch_names)  # same as ident()[0]
        cost = self._costs.get(key)
        if cost is None:
            cost = self._costs[key] = count_cost(arch, self.space)
        return cost

    def cost(self, cand: Candidate) -> Cost:
        return self.arch_cost(cand.arch)

    def feasible(self, cost: Cost) -> bool:
        return self.budget.allows(cost.flops, cost.params)

    # ---- sampling
    def random(self, n: int, rng: np.random.Generator) -> List[Candidate]:
        """``n`` scrambled-Sobol candidates (not necessarily feasible)."""
        sobol = qmc.Sobol(d=len(self.space.dims), scramble=True, seed=rng)
        m = max(1, int(np.ceil(np.log2(max(n, 1)))))
        return unit_to_candidates(self.space, sobol.random_base2(m))[:n]

    # ---- mutation
    def _mutate_gene(self, gene: _Gene, value, rng: np.random.Generator):
        dim = gene.dim
        if dim.kind == "bool":
            return not value
        if dim.kind == "float":
            u = float(dim.encode([value])[0, 0])
            if rng.random() < STEP_PROBABILITY:
                u = u + rng.normal(0.0, FLOAT_STEP)
                u = abs(u) if u < 0 else (2.0 - u if u > 1 else u)  # reflect into [0, 1]
            else:
                u = rng.random()
            return dim.from_unit(np.array([min(max(u, 0.0), 1.0)]))[0]
        values = gene.ordered if gene.ordered is not None else list(dim.choices)
        i = values.index(value)
        if gene.ordered is not None and rng.random() < STEP_PROBABILITY:
            j = i + (1 if rng.random() < 0.5 else -1)
            if not 0 <= j < len(values):
                j = i - (j - i)
            return values[j]
        j = int(rng.integers(len(values) - 1))
        return values[j if j < i else j + 1]  # any other value

    def mutate(self, cand: Candidate, rate: float, rng: np.random.Generator) -> Candidate:
        """Each dimension changes with probability ``rate``; at least one always does."""
        hit = rng.random(len(self.genes)) < rate
        if not hit.any():
            hit[rng.integers(len(self.genes))] = True
        parts = {"arch": dict(cand.arch), "recipe": dict(cand.recipe)}
        for gene, h in zip(self.genes, hit):
            if h:
                parts[gene.part][gene.name] = self._mutate_gene(gene, parts[gene.part][gene.name], rng)
        return Candidate(parts["arch"], parts["recipe"], space=cand.space)

    # ---- crossover
    def crossover(self, a: Candidate, b: Candidate, rng: np.random.Generator) -> Candidate:
        """Uniform crossover: each dimension from either parent with equal chance."""
        take_a = rng.random(len(self.genes)) < 0.5
        parts = {"arch": {}, "recipe": {}}
        for gene, ta in zip(self.genes, take_a):
            parts[gene.part][gene.name] = getattr(a if ta else b, gene.part)[gene.name]
        return Candidate(parts["arch"], parts["recipe"], space=a.space)

    # ---- repair
    def repair(self, cand: Candidate, cost: Cost, rng: np.random.Generator,
               protect: Iterable[str] = ()) -> Tuple[Candidate, Cost]:
        """Step randomly chosen arch dimensions one value cheaper until ``cand`` fits the budget.

        Dimensions in ``protect`` (a mutation's changes) are stepped only once no other one can
        be, so that a repaired mutation becomes a trade rather than being undone. Terminates:
        each step moves one dimension towards its cheapest value (costs never rise on the way),
        and the all-cheapest arch fits once ``budget.check_budget`` has passed.
        """
        arch = dict(cand.arch)
        protect = set(protect)
        while not self.feasible(cost):
            movable = [n for n, order in self.cost_orders.items() if order.index(arch[n]) > 0]
            if not movable:
                raise RuntimeError("budget below the cheapest candidate; call budget.check_budget first")
            free = [n for n in movable if n not in protect]
            movable = free or movable
            name = movable[int(rng.integers(len(movable)))]
            order = self.cost_orders[name]
            arch[name] = order[order.index(arch[name]) - 1]
            cost = self.arch_cost(arch)
        return Candidate(arch, dict(cand.recipe), space=cand.space), cost
