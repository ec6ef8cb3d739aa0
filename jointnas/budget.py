"""Parse resource budgets: ``600MFLOPs``, ``600M``, ``0.6GFLOPs``, ``6e8``; ``5M`` params.

FLOPs are fvcore's count of the deployable model, where one multiply-add counts as one flop.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import List, Optional

from .errors import BudgetError, UsageError
from .families.cost import require_family
from .io import FLOPS_NOTE

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_NUMBER = r"(\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)"
_FLOPS = re.compile(rf"^\s*{_NUMBER}\s*([kmgt]?)\s*(flops?)?\s*$", re.IGNORECASE)
_COUNT = re.compile(rf"^\s*{_NUMBER}\s*([kmgt]?)\s*(params?)?\s*$", re.IGNORECASE)

FLOPS_FORMS = f"600MFLOPs, 600M, 0.6GFLOPs, 6e8 ({FLOPS_NOTE})"
PARAMS_FORMS = "5M, 5.5M, 500K, 5e6"


def _parse(text, pattern, what: str, forms: str) -> int:
    m = pattern.match(str(text))
    if not m:
        raise UsageError(f"cannot read {what} {text!r}; accepted forms: {forms}")
    value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{what} must be positive, got {text!r}; accepted forms: {forms}")
    return int(round(value))


def parse_flops(text) -> int:
    """``"600MFLOPs"`` -> 600_000_000 (case-insensitive)."""
    return _parse(text, _FLOPS, "FLOPs budget", FLOPS_FORMS)


def parse_params(text) -> int:
    """``"5M"`` -> 5_000_000."""
    return _parse(text, _COUNT, "parameter budget", PARAMS_FORMS)


def format_flops(flops: float) -> str:
    return f"{flops / 1e6:.1f} MFLOPs"


def flops_flag(flops: int) -> str:
    """A FLOPs count as a budget is written on the command line: 600000000 -> ``600MFLOPs``."""
    return f"{flops // 10**6}MFLOPs" if flops % 10**6 == 0 else str(int(flops))


def format_params(params: float) -> str:
    return f"{params / 1e6:.2f} M params"


@dataclass(frozen=True)
class Budget:
    """Upper bounds on the deployable model's cost; ``max_params=None`` means no bound."""

    max_flops: int
    max_params: Optional[int] = None

    def allows(self, flops: int, params: int) -> bool:
        return flops <= self.max_flops and (self.max_params is None or params <= self.max_params)

    def describe(self) -> str:
        text = f"<= {format_flops(self.max_flops)}"
        return text + (f", <= {format_params(self.max_params)}" if self.max_params is not None else "")


# --------------------------------------------------------------------------- the cheapest arch
def cost_ordered_values(space, name: str) -> Optional[List]:
    """The values of arch dimension ``name`` from cheapest to costliest (the family's order), or
    None if it does not change cost."""
    return space.family.cost_order(name, space.arch[name])


def cheapest_arch(space) -> dict:
    """The arch with the fewest FLOPs and params: every dimension at its cheapest value."""
    arch = {}
    for name, dim in space.arch.items():
        order = cost_ordered_values(space, name)
        arch[name] = order[0] if order is not None else dim.choices[0]
    return arch


def check_budget(space, budget: Budget):
    """BudgetError unless the space's cheapest candidate fits ``budget``; returns its Cost."""
    require_family(space)
    least = space.family.cost(cheapest_arch(space))
    if budget.max_flops < least.flops:
        raise BudgetError(f"FLOPs budget {format_flops(budget.max_flops)} is below the cheapest candidate of "
                          f"space {space.name} ({format_flops(least.flops)}, {least.flops} flops); "
                          f"allow {math.ceil(least.flops / 1e6)}MFLOPs or more", needed=("flops", least.flops))
    if budget.max_params is not None and budget.max_params < least.params:
        raise BudgetError(f"parameter budget {format_params(budget.max_params)} is below the smallest candidate "
                          f"of space {space.name} ({format_params(least.params)}, {least.params} params); "
                          f"allow {math.ceil(least.params / 1e4) / 100:g}M or more", needed=("params", least.params))
    return least
