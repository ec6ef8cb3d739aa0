"""A recipe file: a named training recipe written down (``recipes/*.yaml``), checked against a
space's recipe dimensions the way a space file is checked, and written back atomically.

The file is a YAML mapping::

    name: torchvision-reference
    description: one line on what it is
    source: where its values come from
    spaces: [fbnetv3, autotrain]     # optional: the space(s) it was written for (informational)
    outside: [epochs]                # optional: keys whose values may leave the space's range
    recipe: {optimizer: sgd_plain, lr: 0.1, epochs: 90, ...}

Against a space (:meth:`RecipeFile.for_space`) a value is checked by its dimension's type and
range; a value outside the range is accepted only for a key listed under ``outside``, and then
only a value the trainer can run (:func:`~jointnas.evaluation.recipe.runnable_problem`): a search
range is what a search samples, a recipe that one trains may go past it (torchvision's 90 epochs).
A key the space has no dimension for is accepted when training in that space does exactly what
the file says without it: its value is what the trainer uses when a space leaves the key out
(:data:`~jointnas.evaluation.recipe.RECIPE_DEFAULTS`), or it is ``epochs`` in a space that holds
the schedule outside the recipe (the caller gives the schedule; :attr:`RecipeFile.epochs`).
Any other key is refused, naming the file and the key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import yaml

from ..errors import RecipeError
from ..io import atomic_write_text
from ..space.dims import BoolDim, CategoricalDim, Dimension, FloatDim, IntDim
from .recipe import RECIPE_DEFAULTS, RECIPE_KEYS, runnable_problem

TOP_KEYS = ("name", "description", "source", "spaces", "outside", "recipe")


@dataclass(frozen=True)
class RecipeFile:
    name: str
    values: Dict[str, Any]
    description: str = ""
    source: str = ""
    spaces: Tuple[str, ...] = ()
    outside: Tuple[str, ...] = ()
    where: str = "<memory>"           # the file it was read from, for messages

    @property
    def epochs(self) -> Optional[int]:
        """The schedule length the file gives, if any (what a space without an ``epochs`` dimension
        leaves to the caller)."""
        return self.values.get("epochs")

    def for_space(self, space) -> dict:
        """The recipe as a point of ``space``'s recipe part: the file's values, checked, and the space's
        default (:meth:`SearchSpace.default_recipe`) for every dimension the file leaves out."""
        out = space.default_recipe()
        for key, value in self.values.items():
            if key in space.recipe:
                out[key] = self._checked(key, value, space.recipe[key], space.name)
            elif not _honoured_without(key, value, space):
                if key in RECIPE_KEYS:
                    raise RecipeError(f"{self.where}: recipe.{key}={value!r}: space {space.name} has no {key} "
                                      f"dimension, so training in it would use {RECIPE_DEFAULTS.get(key)!r}; use a "
                                      f"space that has one, or drop the key")
                raise RecipeError(f"{self.where}: recipe.{key}: unknown key; space {space.name}'s recipe has "
                                  f"{', '.join(space.recipe) or 'no dimensions'}")
        return out

    def _checked(self, key: str, value, dim: Dimension, space_name: str):
        where = f"{self.where}: recipe.{key}={value!r}"
        if not _type_fits(value, dim):
            raise RecipeError(f"{where}: not a value of its dimension in space {space_name} ({dim.describe()})")
        value = float(value) if isinstance(dim, FloatDim) else value
        if dim.contains(value):
            return value
        if key not in self.outside:
            raise RecipeError(f"{where}: outside space {space_name}'s range ({dim.describe()}); list {key} under "
                              "'outside:' in the file to train it anyway")
        problem = runnable_problem(key, value)
        if problem is not None:
            raise RecipeError(f"{where}: {problem}")
        return value

    def to_dict(self) -> dict:
        doc: Dict[str, Any] = {"name": self.name, "description": self.description, "source": self.source}
        if self.spaces:
            doc["spaces"] = list(self.spaces)
        if self.outside:
            doc["outside"] = list(self.outside)
        doc["recipe"] = dict(self.values)
        return doc


def _honoured_without(key: str, value, space) -> bool:
    """Whether training in ``space``, which has no ``key`` dimension, does what ``key: value`` says."""
    if key == "epochs":
        return True
    return key in RECIPE_DEFAULTS and type(value) is type(RECIPE_DEFAULTS[key]) and value == RECIPE_DEFAULTS[key]


def _type_fits(value, dim: Dimension) -> bool:
    if isinstance(dim, BoolDim):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return isinstance(dim, CategoricalDim) and any(isinstance(c, bool) for c in dim.choices)
    if isinstance(dim, IntDim):
        return isinstance(value, int)
    if isinstance(dim, FloatDim):
        return isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(dim, CategoricalDim):  # a value of the choices' kind: a string among strings, a number among numbers
        return any(isinstance(value, str) == isinstance(c, str) and not isinstance(c, bool) for c in dim.choices)
    return True


def recipe_from_dict(doc, where: str = "<memory>") -> RecipeFile:
    """A :class:`RecipeFile` from its parsed mapping; RecipeError naming ``where`` and the key."""
    if not isinstance(doc, dict):
        raise RecipeError(f"{where}: a recipe file must be a YAML mapping with {', '.join(TOP_KEYS)}")
    unknown = [str(k) for k in doc if k not in TOP_KEYS]
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; a recipe file has {', '.join(TOP_KEYS)} "
                          "(the recipe's values go under 'recipe:')")
    for key in ("name", "recipe"):
        if key not in doc:
            raise RecipeError(f"{where}: missing key {key!r}")
    for key in ("name", "description", "source"):
        if key in doc and not isinstance(doc[key], str):
            raise RecipeError(f"{where}: {key}: expected text, got {doc[key]!r}")
    values = doc["recipe"]
    if not isinstance(values, dict) or not values:
        raise RecipeError(f"{where}: recipe: expected a mapping of recipe values (optimizer: sgd, lr: 0.1, ...)")
    bad = [k for k, v in values.items() if not isinstance(k, str) or not _plain(v)]
    if bad:
        raise RecipeError(f"{where}: recipe.{bad[0]}: expected a plain value (number, text or true/false)")
    lists = {}
    for key in ("spaces", "outside"):
        items = doc.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise RecipeError(f"{where}: {key}: expected a list of names")
        lists[key] = tuple(items)
    stray = [k for k in lists["outside"] if k not in values]
    if stray:
        raise RecipeError(f"{where}: outside: {', '.join(stray)} not set under 'recipe:'")
    return RecipeFile(doc["name"], dict(values), doc.get("description") or "", doc.get("source") or "",
                      lists["spaces"], lists["outside"], where)


def _plain(value) -> bool:
    return isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


def write_recipe_file(path, recipe: Mapping, space, *, name: Optional[str] = None, description: str = "",
                      source: str = "", spaces: Optional[Sequence[str]] = None,
                      outside: Sequence[str] = ()) -> RecipeFile:
    """Write ``recipe`` as a recipe file at ``path`` (atomically), after checking that it loads back
    against ``space`` as it is; returns what was written. ``name`` defaults to the file's stem,
    ``spaces`` to ``space``'s name."""
    path = Path(path)
    values = {k: (v.item() if hasattr(v, "item") else v) for k, v in recipe.items()}  # numpy scalars
    made = recipe_from_dict({"name": name or path.stem, "description": description, "source": source,
                             "spaces": list(spaces if spaces is not None else [space.name]),
                             "outside": list(outside), "recipe": values}, str(path))
    made.for_space(space)
    atomic_write_text(path, yaml.safe_dump(made.to_dict(), sort_keys=False, allow_unicode=True))
    return made

