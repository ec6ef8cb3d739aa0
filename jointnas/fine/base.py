"""What a fine strategy is: :class:`Strategy`, the seam a new search method plugs into.

A strategy is registered by name in :data:`jointnas.catalog.STRATEGIES` and built there as
``cls(settings)``; :func:`jointnas.fine.search.fine_search` and ``jointnas fine`` then call its
:meth:`~Strategy.search` on a :class:`~jointnas.fine.problem.FineProblem`. It scores rows
through a :class:`~jointnas.fine.problem.Board` (the helpers of :mod:`jointnas.fine.sampling`
draw them) and hands the board to :func:`~jointnas.fine.problem.finish` for its result.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Optional, Sequence

from .problem import FineProblem, SearchResult, SearchSettings


class Strategy(ABC):
    """A fine search strategy with its own ``settings`` (validated when it is built)."""

    name: ClassVar[str]    # its name in the catalog, and ``SearchResult.strategy``
    label: ClassVar[str]   # what the output table calls it, e.g. "random search"

    def __init__(self, settings: Optional[SearchSettings] = None):
        self.settings = (settings or SearchSettings()).validate()

    @abstractmethod
    def search(self, problem: FineProblem, seeds: Sequence = (), *, seed: int = 0, top_k: int = 5,
               progress: bool = False) -> SearchResult:
        """The ``top_k`` best rows of ``problem`` it finds, reproducible from ``seed``; ``seeds``
        are measured candidates, best first, to start from (those outside the budget skipped)."""

    def describe(self, result: SearchResult) -> str:
        """What the search did, for the output table (by default its label)."""
        return self.label
