"""The NAS-Bench-201 supernet: the ``cell`` family's network with a mixed op on every edge.

Layers line up with :class:`jointnas.families.cell_net.CellNet` (same ``features.<i>`` indices and
the same stem, reduction blocks and classifier), so a discrete cell net takes its weights from the
supernet: edge ``e`` of cell ``i`` with op ``k`` is ``features.<i>.edges.<e>.ops.<k>``. One set of
alphas (6 edges x 5 ops) is shared by every cell, as in NAS-Bench-201's DARTS; the edges' batch
norms have no affine parameters, as in the reference searches.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from ..families.cell import EDGES, OPS, edge_nodes
from ..families.cell_net import make_op, network_layers
from .mixed import mixed_op, normalised_betas

ARCH_SHAPES = {"normal": (len(EDGES), len(OPS))}
BETA_SHAPES = {"normal_beta": (len(EDGES),)}
# the edges into node i, as index ranges of EDGES (1<-0 | 2<-0, 2<-1 | 3<-0, 3<-1, 3<-2)
NODE_EDGES = tuple(tuple(e for e, name in enumerate(EDGES) if edge_nodes(name)[0] == i) for i in (1, 2, 3))


class SearchCell(nn.Module):
    def __init__(self, c: int, k: int):
        super().__init__()
        self.edges = nn.ModuleList(mixed_op([make_op(op, c // k, affine=False) for op in OPS], k) for _ in EDGES)

    def forward(self, x, weights: torch.Tensor, betas: Optional[torch.Tensor]):
        nodes, e = [x], 0
        for i in (1, 2, 3):
            total = 0
            for j in range(i):
                out = self.edges[e](nodes[j], weights[e])
                total = total + (out if betas is None else betas[e] * out)
                e += 1
            nodes.append(total)
        return nodes[3]


class NB201Supernet(nn.Module):
    def __init__(self, channels: int, cells: int, num_classes: int, in_channels: int, k: int = 1,
                 edge_normalisation: bool = False):
        super().__init__()
        layers, c = network_layers(lambda width: SearchCell(width, k), channels, cells, in_channels)
        self.features = nn.ModuleList(layers)
        self.classifier = nn.Linear(c, num_classes)
        self.edge_normalisation = edge_normalisation

    def arch_shapes(self) -> Dict[str, tuple]:
        return {**ARCH_SHAPES, **(BETA_SHAPES if self.edge_normalisation else {})}

    def forward(self, x: torch.Tensor, arch: Dict[str, torch.Tensor]) -> torch.Tensor:
        weights = torch.softmax(arch["normal"], dim=-1)
        betas = normalised_betas(arch["normal_beta"], NODE_EDGES) if self.edge_normalisation else None
        for layer in self.features:
            x = layer(x, weights, betas) if isinstance(layer, SearchCell) else layer(x)
        return self.classifier(x)
