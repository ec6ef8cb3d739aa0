"""The DARTS CNN supernet: the ``darts`` family's network with a mixed op on each of a cell's 14 edges.

Stem, cell input preprocessing and head are the family's own modules (``darts_net``), with the same
names as in the discrete :class:`~jointnas.families.darts_net.Network`, so a discrete network takes
its weights from the supernet: the pair of a genotype on edge ``e`` with op ``k`` is
``cells.<i>.edges.<e>.ops.<k>`` (``...edges.<e>.mixed.ops.<k>`` with partial channels). Two sets of
alphas, ``normal`` and ``reduce`` (14 edges x 8 ops), shared by the cells of each kind; the edges'
and preprocessing's batch norms have no affine parameters and, as in the reference, each pooling op
is followed by one (``pool_batchnorm``).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from ..families.darts_genotypes import CONCAT, NODES
from ..families.darts_net import CellInputs, CellSpec, Head, Stem, cell_plan
from ..families.darts_ops import OPS, PRIMITIVES
from .discretise import darts_node_edges
from .mixed import mixed_op, normalised_betas

NODE_EDGES = darts_node_edges(len(NODES), 2)
EDGE_COUNT = sum(len(e) for e in NODE_EDGES)


def edge_op(name: str, c: int, stride: int, pool_batchnorm: bool) -> nn.Module:
    op = OPS[name](c, stride, False)
    if pool_batchnorm and "pool" in name:
        op = nn.Sequential(op, nn.BatchNorm2d(c, affine=False))
    return op


class SearchCell(nn.Module):
    def __init__(self, spec: CellSpec, k: int, pool_batchnorm: bool):
        super().__init__()
        self.inputs = CellInputs(spec, affine=False)
        self.reduction = spec.reduction
        edges = []
        for node_edges in NODE_EDGES:
            for j in range(len(node_edges)):  # inputs 0, 1, then the earlier nodes
                stride = 2 if spec.reduction and j < 2 else 1
                edges.append(mixed_op([edge_op(name, spec.c // k, stride, pool_batchnorm) for name in PRIMITIVES],
                                      k, stride))
        self.edges = nn.ModuleList(edges)

    def forward(self, s0, s1, weights: torch.Tensor, betas: Optional[torch.Tensor]):
        states = self.inputs(s0, s1)
        for node_edges in NODE_EDGES:
            total = 0
            for j, e in enumerate(node_edges):
                out = self.edges[e](states[j], weights[e])
                total = total + (out if betas is None else betas[e] * out)
            states.append(total)
        return torch.cat([states[n] for n in CONCAT], dim=1)


class DartsSupernet(nn.Module):
    def __init__(self, channels: int, cells: int, num_classes: int, in_channels: int, k: int = 1,
                 edge_normalisation: bool = False, pool_batchnorm: bool = True):
        super().__init__()
        self.stem = Stem(in_channels, channels)
        plan = cell_plan(channels, cells)
        self.cells = nn.ModuleList(SearchCell(spec, k, pool_batchnorm) for spec in plan)
        self.head = Head(len(CONCAT) * plan[-1].c, num_classes)
        self.edge_normalisation = edge_normalisation

    def arch_shapes(self) -> Dict[str, tuple]:
        shapes = {"normal": (EDGE_COUNT, len(PRIMITIVES)), "reduce": (EDGE_COUNT, len(PRIMITIVES))}
        if self.edge_normalisation:
            shapes.update(normal_beta=(EDGE_COUNT,), reduce_beta=(EDGE_COUNT,))
        return shapes

    def forward(self, x: torch.Tensor, arch: Dict[str, torch.Tensor]) -> torch.Tensor:
        weights = {kind: torch.softmax(arch[kind], dim=-1) for kind in ("normal", "reduce")}
        betas = {kind: normalised_betas(arch[f"{kind}_beta"], NODE_EDGES) if self.edge_normalisation else None
                 for kind in ("normal", "reduce")}
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, weights[kind], betas[kind])
        return self.head(s1)
