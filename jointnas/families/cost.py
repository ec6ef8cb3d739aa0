"""FLOPs and params of a space's deployable models, as fvcore counts them (one multiply-add =
one flop): the space's model family does the counting; these are the shortcuts everyone uses."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..errors import BudgetError
from ..space.candidate import Candidate
from .base import Cost

__all__ = ["Cost", "count_cost", "count_cost_fvcore", "count_costs"]


def require_family(space, what: str = "a FLOPs or parameter budget") -> None:
    if space.family is None:
        raise BudgetError(f"space {space.name} has no model family, so it has no FLOPs or params to bound; "
                          f"{what} does not apply to it")


def _arch_of(candidate) -> dict:
    return candidate.arch if isinstance(candidate, Candidate) else candidate


def count_cost(arch, space) -> Cost:
    """FLOPs and params of the deployable model for ``arch`` (a dict or a Candidate)."""
    require_family(space, "a cost")
    return space.family.cost(_arch_of(arch))


def count_costs(candidates: Iterable, space, progress: bool = False) -> np.ndarray:
    """``count_cost`` for many candidates (or arch dicts): an (n, 2) int64 array of [flops, params]."""
    require_family(space, "a cost")
    return space.family.costs([_arch_of(c) for c in candidates], progress=progress)


def count_cost_fvcore(arch, space) -> Cost:
    """The reference: fvcore itself run on the deployable model (slow; tests pin the fast path to it)."""
    require_family(space, "a cost")
    return space.family.fvcore_cost(_arch_of(arch))
