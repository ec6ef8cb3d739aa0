"""A candidate is one (architecture, training recipe) pair of a search space."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np


_PYTHON_SCALARS = frozenset((int, float, bool, str, type(None)))


def _plain(v: Any) -> Any:
    """numpy scalars -> Python scalars, so JSON and hashing see one spelling of a value."""
    if type(v) in _PYTHON_SCALARS:  # the common case, first: a pool makes millions of these
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


@dataclass
class Candidate:
    arch: Dict[str, Any]
    recipe: Dict[str, Any]
    space: str = ""           # name of the space it belongs to (part of its key)
    meta: Dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        self.arch = {k: _plain(v) for k, v in self.arch.items()}
        self.recipe = {k: _plain(v) for k, v in self.recipe.items()}

    # ---- identity
    def to_dict(self) -> dict:
        out = {"space": self.space, "arch": dict(self.arch), "recipe": dict(self.recipe)}
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    def key(self) -> str:
        """Stable content hash (independent of dict order and of ``meta``) for de-duplication."""
        body = json.dumps({"space": self.space, "arch": self.arch, "recipe": self.recipe}, sort_keys=True)
        return hashlib.sha1(body.encode()).hexdigest()[:16]

    def arch_key(self) -> str:
        body = json.dumps({"space": self.space, "arch": self.arch}, sort_keys=True)
        return hashlib.sha1(body.encode()).hexdigest()[:16]

    def __hash__(self):
        return hash(self.key())

    # ---- JSON
    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, **kw)

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        if not isinstance(d, dict) or "arch" not in d or "recipe" not in d:
            raise ValueError("a candidate needs 'arch' and 'recipe' mappings")
        return cls(dict(d["arch"]), dict(d["recipe"]), d.get("space", ""), dict(d.get("meta") or {}))

    @classmethod
    def from_json(cls, text: str) -> "Candidate":
        return cls.from_dict(json.loads(text))

    def validate(self, space) -> "Candidate":
        """SpaceError unless this candidate is a point of ``space`` (a :class:`SearchSpace`)."""
        space.validate(self)
        return self
