"""The ``darts`` family: the DARTS CNN space (Liu et al., ICLR 2019) as a searchable genotype.

An arch is a genotype: per cell kind (normal, reduce) and intermediate node 2..5, the two
distinct earlier nodes it reads and the op on each edge, one of the 7 ops other than ``none``
(dimensions in ``darts_genotypes``). The network (``darts_net``): a stem to ``3 * channels``,
``cells`` cells with reduction cells at 1/3 and 2/3 of the depth, global pooling, a linear
classifier; no auxiliary head (the trainer has no auxiliary loss). ``network:`` in the space file
sets ``channels`` (the released code's ``C``) and ``cells``: 16 and 8 by default (the search
network's size, trainable on a CPU); the papers' CIFAR-10 evaluation network is 36 and 20.
The recipe's ``stochastic_depth`` is the drop-path probability of every op but the identity (the
released code raises it linearly over training; the trainer keeps it fixed), ``dropout`` sits
before the classifier.

Cost: fvcore's count of the network at ``deploy:`` (by default CIFAR-10: 3 channels, 32 px, 10
classes) in closed form (``darts_cost``). Presets (``DARTS_V1``, ``DARTS_V2``, ``PC_DARTS``) are
in ``spaces/darts.yaml``, written from ``darts_genotypes.PRESETS``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import SpaceError
from .base import Cost, ModelFamily, check_spec_keys, parse_fixed
from .darts_cost import DartsCost
from .darts_genotypes import (DARTS_V1, DARTS_V2, OPS7, PC_DARTS, PRESETS, Genotype, arch_of, check_arch_dims,
                              genotype_of, reduction_cells)

# The genotype API, also reachable from the family's module.
__all__ = ["DARTS_V1", "DARTS_V2", "PC_DARTS", "PRESETS", "DartsDeploy", "DartsFamily", "DartsNetwork", "Genotype",
           "arch_of", "genotype_of"]

# From cheapest to costliest at any width above 5 channels (darts_cost): pooling and the identity
# cost nothing, a dilated conv is one depthwise-pointwise pair, a separable conv two.
_OP_COST_ORDER = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "dil_conv_3x3", "dil_conv_5x5",
                  "sep_conv_3x3", "sep_conv_5x5")


@dataclass(frozen=True)
class DartsNetwork:
    channels: int = 16   # the released code's C: the stem has 3 * C, each reduction cell doubles it
    cells: int = 8       # reduction cells at cells // 3 and 2 * cells // 3


@dataclass(frozen=True)
class DartsDeploy:
    """The deployable model that FLOPs/params refer to (the CIFAR-10 network by default)."""

    in_channels: int = 3
    num_classes: int = 10
    resolution: int = 32


@dataclass(frozen=True)
class DartsFamily(ModelFamily):
    network: DartsNetwork = field(default_factory=DartsNetwork)
    deploy: DartsDeploy = field(default_factory=DartsDeploy)
    name: str = "darts"

    @classmethod
    def from_spec(cls, spec: Mapping, where: str = "family") -> "DartsFamily":
        check_spec_keys(spec, "darts", ("network", "deploy"), where)
        fam = cls(parse_fixed(f"{where}.network", DartsNetwork, spec.get("network")),
                  parse_fixed(f"{where}.deploy", DartsDeploy, spec.get("deploy")))
        if fam.network.channels < 1 or fam.network.cells < 3:
            raise SpaceError(f"{where}.network: channels must be positive and cells at least 3 (two of them "
                             f"reduction cells), got channels {fam.network.channels}, cells {fam.network.cells}")
        d = fam.deploy
        if min(d.in_channels, d.num_classes, d.resolution) < 1:
            raise SpaceError(f"{where}.deploy: in_channels, num_classes and resolution must be positive")
        return fam

    def to_dict(self) -> dict:
        return {"name": self.name, "network": asdict(self.network), "deploy": asdict(self.deploy)}

    def fingerprint_spec(self) -> dict:
        return self.to_dict()

    def summary(self) -> str:
        n, d = self.network, self.deploy
        first, second = reduction_cells(n.cells)
        return (f"DARTS cell network, channels (C) {n.channels}, {n.cells} cells (reduction cells {first} and "
                f"{second}, counted from 0), no auxiliary head; costs are of the {d.in_channels}-channel "
                f"{d.resolution} px, {d.num_classes}-class network; genotype dims <normal|reduce>_n<node>_inputs "
                f"(node 3-5: the two distinct earlier nodes read, 'i,j') and _op1/_op2 (the op from i / from j)")

    def check_space(self, space) -> None:
        check_arch_dims(space)

    # ---- cost
    @cached_property
    def _cost(self) -> DartsCost:
        n, d = self.network, self.deploy
        return DartsCost(n.channels, n.cells, d.in_channels, d.num_classes, d.resolution)

    def cost(self, arch: Mapping) -> Cost:
        return Cost(*self._cost.of(arch))

    def costs(self, archs: Sequence[Mapping], progress: bool = False) -> np.ndarray:
        counter = self._cost
        return np.array([counter.of(a) for a in archs], dtype=np.int64).reshape(len(archs), 2)

    def cost_order(self, dim_name: str, dim) -> Optional[List]:
        """Ops from cheapest to costliest; which inputs a node reads barely changes cost (None)."""
        if dim.kind == "categorical" and set(dim.choices) <= set(OPS7):
            return sorted(dim.choices, key=_OP_COST_ORDER.index)
        return None

    def deploy_input(self, arch: Mapping) -> Tuple[int, ...]:
        d = self.deploy
        return (1, d.in_channels, d.resolution, d.resolution)

    def deployable(self, arch: Mapping) -> Tuple[object, Tuple[int, ...]]:
        d = self.deploy
        model = self.build(arch, num_classes=d.num_classes, in_channels=d.in_channels, input_size=d.resolution)
        return model.eval(), (1, d.in_channels, d.resolution, d.resolution)

    # ---- models
    def input_size(self, arch: Mapping, task) -> int:
        return self.deploy.resolution

    def build(self, arch: Mapping, *, num_classes: int, in_channels: int, input_size: int,
              dropout: float = 0.0, drop_path: float = 0.0):
        from .darts_net import Network  # torch: only where a model is built

        return Network(genotype_of(arch), self.network.channels, self.network.cells, num_classes, in_channels,
                       dropout, drop_path)

    def genotype(self, arch: Mapping) -> Genotype:
        return genotype_of(arch)
