"""The training recipe's keys: which ones the trainer acts on (:mod:`jointnas.evaluation.trainer`
says how), what an optional key is when a space leaves it out (the dimension off), and the checks
a recipe or a space's recipe dimensions must pass. Free of torch, so a space is checked without it.
"""
from __future__ import annotations

from typing import Mapping, Optional

from ..errors import SpaceError, UsageError

OPTIMIZERS = ("sgd", "sgd_plain", "rmsprop", "adam", "adamw")
REQUIRED_RECIPE_KEYS = ("optimizer", "lr")
# What an optional recipe key is when a space leaves it out: the dimension switched off.
RECIPE_DEFAULTS = {"weight_decay": 0.0, "momentum": 0.9, "batch_size": None, "label_smoothing": 0.0,
                   "mixup_alpha": 0.0, "cutout": 0, "grad_clip": 0.0, "dropout": 0.0, "stochastic_depth": 0.0,
                   "ema": False, "warmup_epochs": 0, "epochs": None}
RECIPE_KEYS = frozenset(REQUIRED_RECIPE_KEYS) | frozenset(RECIPE_DEFAULTS)  # every key the trainer acts on
# Recipe keys that reach the model through its family's build (``ModelFamily.recipe_dims``).
MODEL_RECIPE_DIMS = ("dropout", "stochastic_depth")


def full_recipe(recipe: Mapping) -> dict:
    """``recipe`` with every optional key it lacks set to its default (off); refuses unknown keys."""
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise UsageError(f"recipe key(s) {', '.join(unknown)} are not acted on by the trainer; "
                         f"it knows {', '.join(sorted(RECIPE_KEYS))}")
    missing = [k for k in REQUIRED_RECIPE_KEYS if k not in recipe]
    if missing:
        raise UsageError(f"recipe lacks {', '.join(missing)} (the trainer requires {', '.join(REQUIRED_RECIPE_KEYS)})")
    return {**RECIPE_DEFAULTS, **recipe}

# The values the trainer can run, whatever a space's search range: key -> (lowest, whether the lowest
# itself is refused, highest or None, whether the highest itself is refused).
RUNNABLE = {"lr": (0, True, None, False), "weight_decay": (0, False, None, False), "momentum": (0, False, 1, True),
            "batch_size": (1, False, None, False), "epochs": (1, False, None, False),
            "warmup_epochs": (0, False, None, False), "label_smoothing": (0, False, 1, True),
            "mixup_alpha": (0, False, None, False), "cutout": (0, False, 1, False),
            "grad_clip": (0, False, None, False), "dropout": (0, False, 1, True),
            "stochastic_depth": (0, False, 1, True)}


def runnable_problem(key: str, value) -> Optional[str]:
    """Why the trainer cannot run ``key = value`` (None when it can, or when the trainer does not
    know ``key``: a user objective's recipe). Types are the space's to check."""
    if key == "optimizer":
        return None if value in OPTIMIZERS else f"the trainer knows {', '.join(OPTIMIZERS)}"
    if key not in RUNNABLE or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    low, low_open, high, high_open = RUNNABLE[key]
    if value < low or (low_open and value == low):
        return f"the trainer needs a value {'above' if low_open else 'at least'} {low}"
    if high is not None and (value > high or (high_open and value == high)):
        return f"the trainer needs a value {'below' if high_open else 'at most'} {high}"
    return None


def check_recipe_dims(recipe_dims: Mapping, source: str) -> None:
    """Refuse a space whose recipe the trainer cannot act on, naming ``source`` (its file) and the key:
    unknown keys, missing required ones, optimizer choices it does not know, negative sizes."""
    for key in recipe_dims:
        if key not in RECIPE_KEYS:
            raise SpaceError(f"{source}: recipe.{key}: the trainer does not act on this key; "
                             f"it knows {', '.join(sorted(RECIPE_KEYS))}")
    for key in REQUIRED_RECIPE_KEYS:
        if key not in recipe_dims:
            raise SpaceError(f"{source}: recipe.{key}: required by the trainer but missing")
    unknown = sorted(set(_choices(recipe_dims["optimizer"])) - set(OPTIMIZERS))
    if unknown:
        raise SpaceError(f"{source}: recipe.optimizer: unknown choice(s) {', '.join(map(str, unknown))}; "
                         f"the trainer knows {', '.join(OPTIMIZERS)}")
    for key, low in (("batch_size", 1), ("epochs", 1), ("cutout", 0), ("grad_clip", 0), ("momentum", 0),
                     ("warmup_epochs", 0), ("lr", 0)):
        if key in recipe_dims and _low(recipe_dims[key]) < low:
            raise SpaceError(f"{source}: recipe.{key}: values must be at least {low}")
    if "momentum" in recipe_dims and _high(recipe_dims["momentum"]) >= 1:
        raise SpaceError(f"{source}: recipe.momentum: values must be below 1")
    if "cutout" in recipe_dims and _high(recipe_dims["cutout"]) > 1:
        raise SpaceError(f"{source}: recipe.cutout: values must be at most 1 (the square's side as a fraction of "
                         "the image's side, e.g. 0.25; not pixels)")


def _choices(dim) -> list:
    choices = getattr(dim, "choices", None)
    return list(choices() if callable(choices) else choices) if choices is not None else []


def _numbers(dim) -> list:
    if hasattr(dim, "low"):
        return [dim.low, dim.high]
    return [v for v in _choices(dim) if isinstance(v, (int, float)) and not isinstance(v, bool)] or [0]


def _low(dim) -> float:
    return min(_numbers(dim))


def _high(dim) -> float:
    return max(_numbers(dim))
