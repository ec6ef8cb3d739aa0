"""What an architecture *is*: a :class:`ModelFamily` checks a space's arch dimensions, builds
the ``torch.nn.Module`` of an arch and says what the deployable model costs.

Costs are fvcore's counts (one multiply-add = one flop) of the *deployable* model that the
family's :class:`Deploy` settings describe, not of the model trained on a small task.
"""
from __future__ import annotations

import logging
import sys
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, List, Mapping, Optional, Sequence, Tuple

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


class ModelFamily(ABC):
    """A space's model family. The abstract methods are what every family must say; the others
    are capabilities with defaults, which a family overrides where it can do better.

    A family is made from a space file's ``family`` mapping by the factory registered under its
    name in :data:`jointnas.catalog.FAMILIES` (``factory(spec, where)``) and written back by
    :meth:`to_dict`.
    """

    name: str
    # Whether ``costs`` also takes columns (name -> array of values, e.g. ``columns.ArchColumns``):
    # the fine search then prices a whole batch in one call instead of per arch.
    vectorised_costs: ClassVar[bool] = False

    @abstractmethod
    def check_space(self, space) -> None:
        """SpaceError naming file and key unless the family can build every arch of ``space``."""

    @abstractmethod
    def to_dict(self) -> dict:
        """The ``family:`` mapping of a space file that recreates this family."""

    @abstractmethod
    def fingerprint_spec(self) -> dict:
        """What of the family changes costs or models (hashed into the space's fingerprint)."""

    # ---- cost
    @abstractmethod
    def cost(self, arch: Mapping) -> Cost:
        """FLOPs and params of the deployable model of ``arch``, as fvcore counts them."""

    def costs(self, archs: Sequence[Mapping], progress: bool = False) -> np.ndarray:
        """(n, 2) int64 [flops, params] of many archs (by default ``cost`` of each)."""
        out = np.empty((len(archs), 2), dtype=np.int64)
        for i, a in enumerate(_progress(archs, progress)):
            c = self.cost(a)
            out[i] = (c.flops, c.params)
        return out

    def cost_order(self, dim_name: str, dim) -> Optional[List]:
        """Values of an arch dimension from cheapest to costliest, None if it does not change
        cost or the family cannot say (the default): the fine search's repair steps along it."""
        return None

    def deployable(self, arch: Mapping) -> Tuple[Any, Tuple[int, ...]]:
        """The deployable model of ``arch`` (an untrained ``torch.nn.Module`` in eval mode) and
        the shape of its input for batch 1: what costs count and what export writes."""
        raise SpaceError(f"the {self.name} family does not build its deployable model")

    def deploy_input(self, arch: Mapping) -> Tuple[int, ...]:
        """The shape of the deployable model's input for batch 1 (by default :meth:`deployable`'s,
        which builds the model; a family that knows it without building says so)."""
        return tuple(self.deployable(arch)[1])

    def summary(self) -> str:
        """One line on the family's fixed settings for ``jointnas describe`` ('' for none)."""
        return ""

    def fvcore_cost(self, arch: Mapping) -> Cost:
        """The reference count: fvcore run on the :meth:`deployable` model (slow; tests pin
        ``cost`` to it)."""
        return fvcore_count(*self.deployable(arch))

    # ---- models
    @abstractmethod
    def build(self, arch: Mapping, *, num_classes: int, in_channels: int, input_size: int,
              dropout: float = 0.0, drop_path: float = 0.0):
        """The model of ``arch`` for a task (``torch.nn.Module``)."""

    @abstractmethod
    def input_size(self, arch: Mapping, task) -> int:
        """Training resolution of ``arch`` on ``task``."""

    def recipe_dims(self, space) -> tuple:
        """Recipe dimensions ``build`` acts on, of ``dropout`` (its ``dropout``) and
        ``stochastic_depth`` (its ``drop_path``); by default both."""
        return ("dropout", "stochastic_depth")

    def build_model_call(self, arch: Mapping) -> Optional[dict]:
        """The :func:`jointnas.build_model` call that rebuilds the deployable model of ``arch``
        (``function``, ``arch``, ``network``, ``num_classes``, ``in_channels``; the arch's
        ``resolution`` is the input side), which export writes as ``build.json`` and
        ``build_model.py``; None (the default) where the family's models are not built by it."""
        return None


def _progress(items: Sequence, progress: bool):
    if not progress:
        return items
    from tqdm import tqdm  # only when a bar is drawn: its import costs a command's start-up

    return tqdm(items, desc="proxies", unit="cand", file=sys.stderr, mininterval=0.5)


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


def fvcore_count(model, input_shape: Tuple[int, ...]) -> Cost:
    """fvcore's FlopCountAnalysis total and parameter_count of ``model`` (eval mode) on zeros of
    ``input_shape``."""
    import torch  # torch and fvcore: only where a model is counted, not for the closed forms
    from fvcore.nn import FlopCountAnalysis, parameter_count

    model = model.eval()
    x = torch.zeros(*input_shape)
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
