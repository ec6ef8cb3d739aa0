"""What an architecture *is*: a :class:`ModelFamily` checks a space's arch dimensions, builds
the ``torch.nn.Module`` of an arch and says what the deployable model costs.

Costs are fvcore's counts (one multiply-add = one flop) of the *deployable* model that the
family's :class:`Deploy` settings describe, not of the model trained on a small task.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import SpaceError


@dataclass(frozen=True)
class Cost:
    flops: int
    params: int


@dataclass(frozen=True)
class Deploy:
    """The deployable model that budgets (FLOPs, params) refer to."""

    in_channels: int = 3
    num_classes: int = 1000
    reference_resolution: int = 224   # a task's training resolution scales with resolution / this


@runtime_checkable
class ModelFamily(Protocol):
    name: str

    def check_space(self, space) -> None:
        """SpaceError naming file and key unless the family can build every arch of ``space``."""

    def cost(self, arch: Mapping) -> Cost:
        """FLOPs and params of the deployable model of ``arch``, as fvcore counts them."""

    def costs(self, archs: Sequence[Mapping], progress: bool = False) -> np.ndarray:
        """(n, 2) int64 [flops, params] of many archs."""

    def cost_order(self, dim_name: str, dim) -> Optional[List]:
        """Values of an arch dimension from cheapest to costliest, None if it does not change cost."""

    def build(self, arch: Mapping, *, num_classes: int, in_channels: int, input_size: int,
              dropout: float = 0.0, drop_path: float = 0.0):
        """The model of ``arch`` for a task (``torch.nn.Module``)."""

    def input_size(self, arch: Mapping, task) -> int:
        """Training resolution of ``arch`` on ``task``."""

    def recipe_dims(self, space) -> tuple:
        """Recipe dimensions ``build`` acts on (of ``dropout``, ``stochastic_depth``); optional."""

    def to_dict(self) -> dict:
        """The ``family:`` mapping of a space file that recreates this family."""

    def fingerprint_spec(self) -> dict:
        """What of the family changes costs or models (hashed into the space's fingerprint)."""


def parse_fixed(where: str, cls, spec) -> Any:
    """A frozen dataclass from a YAML mapping, refusing unknown keys (SpaceError naming them)."""
    spec = spec or {}
    if not isinstance(spec, dict):
        raise SpaceError(f"{where}: expected a mapping")
    allowed = set(cls.__dataclass_fields__)
    unknown = set(spec) - allowed
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    try:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()})
    except (TypeError, ValueError) as e:
        raise SpaceError(f"{where}: {e}") from None


def scaled_resolution(arch_resolution: int, task, deploy: Deploy) -> int:
    """A task's training resolution for an arch resolution meant for the deployable model."""
    return int(round(task.base_resolution * arch_resolution / deploy.reference_resolution))


def fvcore_cost(model, in_channels: int, resolution: int) -> Cost:
    """fvcore's FlopCountAnalysis total and parameter_count of ``model`` (eval mode, batch 1)."""
    import logging
    import warnings

    import torch
    from fvcore.nn import FlopCountAnalysis, parameter_count

    model = model.eval()
    x = torch.zeros(1, in_channels, resolution, resolution)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = int(analysis.total())
    return Cost(flops, int(parameter_count(model)[""]))


def check_spec_keys(spec, family: str, allowed, where: str) -> None:
    """SpaceError naming ``where`` unless the family mapping holds only ``name`` and ``allowed`` keys."""
    unknown = set(spec) - {"name", *allowed}
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} for family {family}; "
                         f"allowed: {', '.join(allowed)}")
