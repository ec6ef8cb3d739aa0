"""A search space: typed dimensions split into ``arch`` (what the model is) and ``recipe``
(how it is trained), and optionally the :class:`~jointnas.families.base.ModelFamily` that
builds and costs the arch part. It knows nothing of any particular model; YAML files become
spaces in :mod:`jointnas.catalog`."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import SpaceError
from .candidate import Candidate
from .dims import BoolDim, CategoricalDim, Dimension, dim_to_dict
from .pool import sample_pool


@dataclass
class SearchSpace:
    name: str
    arch: Dict[str, Dimension]
    recipe: Dict[str, Dimension]
    family: Optional[Any] = None            # a ModelFamily, or None for a user's own model
    presets: Dict[str, dict] = field(default_factory=dict)
    description: str = ""
    source: str = "<memory>"                # the file it was read from, for error messages
    # The FLOPs budget a search of this space runs under unless told otherwise (None: no limit):
    # a property of the space because its FLOPs are those of its own deployable model.
    budget: Optional[int] = None

    def __post_init__(self):
        dup = set(self.arch) & set(self.recipe)
        if dup:
            raise SpaceError(f"{self.source}: dimension name(s) {', '.join(sorted(dup))} used in both arch and recipe")
        if not self.arch and not self.recipe:
            raise SpaceError(f"{self.source}: a space needs at least one dimension")

    # ---- dimensions
    @property
    def dims(self) -> List[Dimension]:
        return list(self.arch.values()) + list(self.recipe.values())

    @property
    def arch_width(self) -> int:
        return sum(d.width for d in self.arch.values())

    @property
    def recipe_width(self) -> int:
        return sum(d.width for d in self.recipe.values())

    @property
    def encoding_width(self) -> int:
        return self.arch_width + self.recipe_width

    def fingerprint(self) -> str:
        """Stable hash of everything that affects encodings and costs."""
        spec = {
            "arch": [(d.name, d.kind, d.describe()) for d in self.arch.values()],
            "recipe": [(d.name, d.kind, d.describe()) for d in self.recipe.values()],
        }
        if self.family is not None:
            spec.update(self.family.fingerprint_spec())
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def encoding_schema(self) -> List[dict]:
        """Column layout of the encoding, for checkpoints and humans."""
        schema, offset = [], 0
        for part, dims in (("arch", self.arch), ("recipe", self.recipe)):
            for d in dims.values():
                schema.append({"name": d.name, "part": part, "kind": d.kind, "offset": offset,
                               "width": d.width, "range": d.describe()})
                offset += d.width
        return schema

    # ---- candidates
    def sample(self, n: int, seed: int = 0) -> List[Candidate]:
        """``n`` distinct candidates from a scrambled Sobol sequence; same seed -> same list."""
        return sample_pool(self, n, seed)

    def candidate(self, arch: Mapping, recipe: Mapping) -> Candidate:
        return Candidate(dict(arch), dict(recipe), space=self.name)

    def validate(self, arch, recipe: Optional[Mapping] = None, *, allow_outside: Sequence[str] = ()) -> None:
        """SpaceError unless ``arch`` + ``recipe`` (or one Candidate) is a point of this space."""
        if recipe is None and hasattr(arch, "arch"):
            arch, recipe = arch.arch, arch.recipe
        for part, dims, values in (("arch", self.arch, arch), ("recipe", self.recipe, recipe)):
            missing = [k for k in dims if k not in values]
            extra = [k for k in values if k not in dims]
            if missing:
                raise SpaceError(f"{part} of candidate lacks {', '.join(missing)} (space {self.name})")
            if extra:
                raise SpaceError(f"{part} of candidate has unknown key(s) {', '.join(extra)} (space {self.name})")
            for k, d in dims.items():
                if k not in allow_outside and not d.contains(values[k]):
                    raise SpaceError(f"{part}.{k}={values[k]!r} is outside space {self.name}: {d.describe()}")

    def encode(self, candidates: Sequence) -> np.ndarray:
        """Encode candidates as float32 rows: Candidates, or plain mappings, either
        ``{"arch": {...}, "recipe": {...}}`` or flat ``{dimension: value}``. A candidate that is
        not a point of the space is a SpaceError naming it and the offending key."""
        candidates = [self.as_candidate(c, i) if isinstance(c, Mapping) else c for i, c in enumerate(candidates)]
        if not candidates:
            return np.zeros((0, self.encoding_width), dtype=np.float32)
        cols = []
        try:
            for part, dims in (("arch", self.arch), ("recipe", self.recipe)):
                for k, d in dims.items():
                    cols.append(d.encode([getattr(c, part)[k] for c in candidates]))
        except (KeyError, AttributeError, TypeError, ValueError):
            for i, c in enumerate(candidates):  # say which candidate and key; checked only on failure
                self._check(c, i)
            raise
        if not cols:
            return np.zeros((len(candidates), 0), dtype=np.float32)
        return np.concatenate(cols, axis=1).astype(np.float32)

    def as_candidate(self, item: Mapping, index: int = 0) -> Candidate:
        """A plain mapping (nested ``arch``/``recipe``, or flat) as a validated Candidate."""
        if "arch" in item or "recipe" in item:
            extra = set(item) - {"arch", "recipe", "space", "meta"}
            if extra or not isinstance(item.get("arch"), Mapping) or not isinstance(item.get("recipe", {}), Mapping):
                raise SpaceError(f"candidate {index}: expected {{'arch': {{...}}, 'recipe': {{...}}}} or a flat "
                                 f"{{dimension: value}} mapping, got keys {', '.join(map(str, item))}")
            if item.get("space") and item["space"] != self.name:
                raise SpaceError(f"candidate {index} belongs to space {item['space']!r}, not {self.name!r}")
            arch, recipe = dict(item["arch"]), dict(item.get("recipe") or {})
        else:
            unknown = [k for k in item if k not in self.arch and k not in self.recipe]
            if unknown:
                raise SpaceError(f"candidate {index}: unknown key(s) {', '.join(map(str, unknown))} (space {self.name} "
                                 f"has arch {', '.join(self.arch)} and recipe {', '.join(self.recipe)})")
            arch = {k: v for k, v in item.items() if k in self.arch}
            recipe = {k: v for k, v in item.items() if k in self.recipe}
        cand = Candidate(arch, recipe, space=self.name)
        self._check(cand, index)
        return cand

    def _check(self, cand, index: int) -> None:
        if not hasattr(cand, "arch") or not hasattr(cand, "recipe"):
            raise SpaceError(f"candidate {index}: expected a Candidate or a mapping, got {type(cand).__name__}")
        try:
            self.validate(cand.arch, cand.recipe)
        except SpaceError as e:
            raise SpaceError(f"candidate {index}: {e}") from None

    def preset(self, name: str) -> Candidate:
        if name not in self.presets:
            raise SpaceError(f"space {self.name} has no preset {name!r}; known: {', '.join(self.presets) or 'none'}")
        p = self.presets[name]
        return Candidate(dict(p["arch"]), dict(p.get("recipe") or self.default_recipe()), space=self.name)

    def default_recipe(self) -> dict:
        """Mid-range recipe (first choice for categoricals, geometric mid for log floats)."""
        out = {}
        for k, d in self.recipe.items():
            if isinstance(d, CategoricalDim):
                out[k] = d.choices[0]
            elif isinstance(d, BoolDim):
                out[k] = False
            else:
                out[k] = d.from_unit(np.array([0.5]))[0]
        return out

    # ---- persistence
    def to_dict(self) -> dict:
        """The mapping :func:`jointnas.catalog.space_from_dict` reads back into an equal space (what a
        run stores, so that a space built in Python resumes)."""
        out = {"name": self.name, "description": self.description,
               "family": None if self.family is None else self.family.to_dict(),
               "arch": {k: dim_to_dict(d) for k, d in self.arch.items()},
               "recipe": {k: dim_to_dict(d) for k, d in self.recipe.items()}}
        if self.budget is not None:
            out["budget"] = int(self.budget)
        if self.presets:
            out["presets"] = {k: {kk: (list(vv) if kk == "outside" else vv) for kk, vv in p.items() if vv is not None}
                              for k, p in self.presets.items()}
        return out

    def __repr__(self):
        family = self.family.name if self.family is not None else None
        return (f"SearchSpace({self.name!r}, family={family!r}, arch={len(self.arch)} dims, "
                f"recipe={len(self.recipe)} dims)")
