"""The ``fixed`` family: one architecture of another family, held constant, so that a space
searches the recipe alone (AutoTrain). The space's arch part is empty; every candidate is
built, costed and sized as ``arch`` of the inner family.

In a space file: ``family: {name: fixed, family: {name: torchvision}, arch: {model: resnet18}}``.
Costs are the inner family's (fvcore's counts, one multiply-add = one flop), the same for
every candidate: they carry no signal for a predictor, which then learns from the recipe.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import SpaceError
from .base import Cost, ModelFamily, check_spec_keys


@dataclass(frozen=True)
class FixedArch(ModelFamily):
    family: ModelFamily                          # the inner family
    arch: Dict[str, Any] = field(default_factory=dict)
    name: str = "fixed"

    @classmethod
    def from_spec(cls, spec: Mapping, where: str,
                  make_family: Callable[[Any, str], Optional[ModelFamily]]) -> "FixedArch":
        """``make_family(spec, where)`` makes the inner family from its ``family`` value (the
        catalog's, which resolves its name)."""
        check_spec_keys(spec, "fixed", ("family", "arch"), where)
        if not isinstance(spec.get("arch"), dict) or not spec["arch"]:
            raise SpaceError(f"{where}.arch: the fixed architecture, a mapping of arch values")
        inner = make_family(spec.get("family"), f"{where}.family")
        if inner is None:
            raise SpaceError(f"{where}.family: name the family the fixed arch belongs to")
        return cls(inner, dict(spec["arch"]))

    def to_dict(self) -> dict:
        return {"name": self.name, "family": self.family.to_dict(), "arch": dict(self.arch)}

    def fingerprint_spec(self) -> dict:
        return {"family": self.to_dict()}

    def check_space(self, space) -> None:
        if space.arch:
            raise SpaceError(f"arch.{next(iter(space.arch))}: the fixed family holds the arch constant; "
                             "leave the arch part empty")

    def cost(self, arch: Mapping = None) -> Cost:
        return self.family.cost(self.arch)

    def costs(self, archs: Sequence[Mapping], progress: bool = False) -> np.ndarray:
        c = self.cost()
        return np.tile(np.array([[c.flops, c.params]], dtype=np.int64), (len(archs), 1))

    def build(self, arch: Mapping, *, num_classes: int, in_channels: int, input_size: int,
              dropout: float = 0.0, drop_path: float = 0.0):
        return self.family.build(self.arch, num_classes=num_classes, in_channels=in_channels,
                                 input_size=input_size, dropout=dropout, drop_path=drop_path)

    def input_size(self, arch: Mapping, task) -> int:
        return self.family.input_size(self.arch, task)

    def deployable(self, arch: Mapping = None) -> Tuple[object, Tuple[int, ...]]:
        return self.family.deployable(self.arch)
