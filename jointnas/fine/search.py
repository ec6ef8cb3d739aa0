"""The fine stage in one call: a surrogate, a space and a budget in, a :class:`SearchResult` out."""
from __future__ import annotations

from typing import Optional, Sequence

from ..budget import Budget
from .base import Strategy
from .evolution import Evolution
from .problem import FineProblem, SearchResult, SearchSettings


def fine_search(surrogate, space, budget: Optional[Budget], seeds: Sequence = (),
                settings: Optional[SearchSettings] = None, progress: bool = False,
                strategy: Optional[Strategy] = None) -> SearchResult:
    """Search ``space`` for the candidates ``surrogate`` scores best within ``budget``.

    ``seeds`` are measured candidates, best first (infeasible ones are skipped); ``strategy``
    (a built :class:`Strategy`; :func:`jointnas.catalog.make_strategy` makes one from its name)
    defaults to the adaptive GA built from ``settings``. Reproducible from ``settings.seed``.
    """
    settings = (settings or SearchSettings()).validate()
    problem = FineProblem(space, surrogate, budget, risk=settings.risk, min_distance=settings.min_distance)
    strategy = strategy or Evolution(settings)
    return strategy.search(problem, seeds, seed=settings.seed, top_k=settings.top_k, progress=progress)
