"""What differs between the one-shot spaces: which supernet, how its alphas read as op weights, how
a cell is derived from them (as the family's arch values) and how skips are counted."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, Optional

import numpy as np
import torch

from ..errors import UsageError
from ..families.cell import EDGES, OPS
from .discretise import SKIP, argmax_edges, cap_skips, top2_genotype
from .mixed import normalised_betas
from .nb201_supernet import NODE_EDGES, NB201Supernet


class SearchSpace(ABC):
    name: str

    @abstractmethod
    def supernet(self, settings, num_classes: int, in_channels: int) -> torch.nn.Module:
        """The supernet, called as ``net(x, arch)``; ``net.arch_shapes()`` names the alphas (and betas)."""

    def check_input(self, resolution: int) -> None:
        """Refuse an input size the supernet cannot take (default: any)."""

    @abstractmethod
    def weights(self, arch: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
        """Softmaxed alphas per edge and normalised betas, as numpy arrays."""

    @abstractmethod
    def derive(self, weights: Dict[str, np.ndarray], skip_cap: Optional[int] = None) -> dict:
        """The family's arch values of the derived cell; ``skip_cap``: at most that many skips in the normal cell."""

    @abstractmethod
    def skip_count(self, weights: Dict[str, np.ndarray]) -> int:
        """Skip connections in the normal cell derived without a cap."""


class NB201Space(SearchSpace):
    """The ``cell`` family's NAS-Bench-201 cell; every edge keeps its argmax op."""

    name = "nb201"

    def supernet(self, settings, num_classes, in_channels):
        return NB201Supernet(settings.channels, settings.cells, num_classes, in_channels,
                             settings.partial_channels, settings.edge_normalisation)

    def check_input(self, resolution):
        if resolution % 4:
            raise UsageError(f"the nb201 supernet needs an input size that is a multiple of 4 (two stride-2 "
                             f"reductions), got {resolution}")

    def weights(self, arch):
        out = {"normal": torch.softmax(arch["normal"], dim=-1).cpu().numpy()}
        if "normal_beta" in arch:
            out["normal_beta"] = normalised_betas(arch["normal_beta"], NODE_EDGES).cpu().numpy()
        return out

    def derive(self, weights, skip_cap=None):
        # betas scale whole edges; the argmax per edge does not change with them
        def cell(w):
            return argmax_edges(w, OPS)

        ops = cell(weights["normal"]) if skip_cap is None else cap_skips(
            weights["normal"], list(OPS), cell, lambda c: [e for e, op in enumerate(c) if op == SKIP], skip_cap)
        return dict(zip(EDGES, ops))

    def skip_count(self, weights):
        return sum(op == SKIP for op in argmax_edges(weights["normal"], OPS))


class DartsSpace(SearchSpace):
    """The ``darts`` family's normal and reduction cells; every node keeps its top-2 inputs."""

    name = "darts"

    def supernet(self, settings, num_classes, in_channels):
        from .darts_supernet import DartsSupernet  # the darts family's modules only where they are used

        return DartsSupernet(settings.channels, settings.cells, num_classes, in_channels,
                             settings.partial_channels, settings.edge_normalisation, settings.pool_batchnorm)

    def check_input(self, resolution):
        if resolution < 4:
            raise UsageError(f"the darts supernet halves the input twice; it needs at least 4 pixels, got {resolution}")

    def weights(self, arch):
        from .darts_supernet import NODE_EDGES

        out = {kind: torch.softmax(arch[kind], dim=-1).cpu().numpy() for kind in ("normal", "reduce")}
        for kind in ("normal", "reduce"):
            if f"{kind}_beta" in arch:
                out[f"{kind}_beta"] = normalised_betas(arch[f"{kind}_beta"], NODE_EDGES).cpu().numpy()
        return out

    def _cell(self, weights, kind, skip_cap=None):
        from ..families.darts_ops import PRIMITIVES
        from .darts_supernet import NODE_EDGES

        betas = weights.get(f"{kind}_beta")

        def cell(w):
            return top2_genotype(w, PRIMITIVES, betas, NODE_EDGES)

        def skip_edges(pairs):
            return [NODE_EDGES[p // 2][i] for p, (op, i) in enumerate(pairs) if op == SKIP]

        if skip_cap is None:
            return cell(weights[kind])
        return cap_skips(weights[kind], list(PRIMITIVES), cell, skip_edges, skip_cap)

    def genotype(self, weights, skip_cap=None):
        from ..families.darts_genotypes import Genotype

        return Genotype(self._cell(weights, "normal", skip_cap), self._cell(weights, "reduce"))

    def derive(self, weights, skip_cap=None):
        from ..families.darts_genotypes import arch_of

        return arch_of(self.genotype(weights, skip_cap))

    def skip_count(self, weights):
        return sum(op == SKIP for op, _ in self._cell(weights, "normal"))


_SPACES = {"nb201": NB201Space, "darts": DartsSpace}


def search_space(name: str) -> SearchSpace:
    if name not in _SPACES:
        raise UsageError(f"unknown one-shot space {name!r}; choose one of {', '.join(_SPACES)}")
    return _SPACES[name]()
