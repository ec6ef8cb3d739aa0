"""What differs between the one-shot spaces: which supernet, how its alphas read as op weights, how
a cell is derived from them (as the family's arch values) and how skips are counted."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, Optional

import numpy as np
import torch

from ..errors import UsageError
from ..families.cell import EDGES, OPS
from .discretise import SKIP, argmax_edges, cap_skips
from .nb201_supernet import NB201Supernet, normalised_betas


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
            out["normal_beta"] = normalised_betas(arch["normal_beta"]).cpu().numpy()
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


_SPACES = {"nb201": NB201Space}


def search_space(name: str) -> SearchSpace:
    if name not in _SPACES:
        raise UsageError(f"unknown one-shot space {name!r}; choose one of {', '.join(_SPACES)}")
    return _SPACES[name]()
