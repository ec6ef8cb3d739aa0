"""The discrete DARTS network of a genotype (the released code's evaluation network, without the
auxiliary head), and its fixed parts, which a supernet shares.

Structure: a stem (3x3 conv to ``3 * C`` channels, BN), then ``cells`` cells; the cells at
``cells // 3`` and ``2 * cells // 3`` are reduction cells (they double ``C`` and halve the
resolution). Each cell first preprocesses its two inputs to ``C`` channels (:class:`CellInputs`:
a 1x1 ReLU-conv-BN, or a FactorizedReduce for the input from two cells back when the previous
cell reduced), runs nodes 2..5 and concatenates them (``4 * C`` channels out). Then global
average pooling, dropout and a linear classifier (:class:`Head`).

``cell_plan`` (in ``darts_genotypes``, re-exported here) says which cell has which widths.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn

from .darts_genotypes import CONCAT, NODES, STEM_MULTIPLIER, CellSpec, Genotype, cell_plan, reduction_cells
from .darts_ops import OPS, FactorizedReduce, ReLUConvBN
from .mbconv_net import DropPath

__all__ = ["CellSpec", "Cell", "CellInputs", "Head", "Network", "Stem", "cell_plan", "reduction_cells"]


class Stem(nn.Sequential):
    def __init__(self, in_channels: int, channels: int):
        super().__init__(nn.Conv2d(in_channels, STEM_MULTIPLIER * channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(STEM_MULTIPLIER * channels))


class CellInputs(nn.Module):
    """A cell's preprocessing: both inputs to ``spec.c`` channels at input 1's resolution."""

    def __init__(self, spec: CellSpec, affine: bool = True):
        super().__init__()
        self.preprocess0 = (FactorizedReduce(spec.c_prev_prev, spec.c, affine) if spec.reduction_prev
                            else ReLUConvBN(spec.c_prev_prev, spec.c, 1, 1, 0, affine))
        self.preprocess1 = ReLUConvBN(spec.c_prev, spec.c, 1, 1, 0, affine)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> List[torch.Tensor]:
        return [self.preprocess0(s0), self.preprocess1(s1)]


class Head(nn.Module):
    """Global average pooling, dropout, linear classifier."""

    def __init__(self, c_in: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(x).flatten(1)))


class Cell(nn.Module):
    """A discrete cell: ``pairs`` are the genotype's 8 (op, input) pairs of this cell's kind.

    ``drop_path`` drops each op's output but the identity's (as the released code does)."""

    def __init__(self, pairs: Sequence[Tuple[str, int]], spec: CellSpec, drop_path: float = 0.0):
        super().__init__()
        self.inputs = CellInputs(spec)
        self.indices = [int(i) for _, i in pairs]
        self.ops = nn.ModuleList()
        for op, i in pairs:
            stride = 2 if spec.reduction and int(i) < 2 else 1
            built = OPS[op](spec.c, stride, True)
            drop = drop_path > 0 and not isinstance(built, nn.Identity)
            self.ops.append(nn.Sequential(built, DropPath(drop_path)) if drop else built)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = self.inputs(s0, s1)
        for k in range(len(NODES)):
            a, b = 2 * k, 2 * k + 1
            states.append(self.ops[a](states[self.indices[a]]) + self.ops[b](states[self.indices[b]]))
        return torch.cat([states[n] for n in CONCAT], dim=1)


class Network(nn.Module):
    """The DARTS network of ``genotype`` with ``channels`` initial channels and ``cells`` cells."""

    def __init__(self, genotype: Genotype, channels: int, cells: int, num_classes: int, in_channels: int = 3,
                 dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.stem = Stem(in_channels, channels)
        plan = cell_plan(channels, cells)
        self.cells = nn.ModuleList(Cell(genotype.reduce if s.reduction else genotype.normal, s, drop_path)
                                   for s in plan)
        self.head = Head(len(CONCAT) * plan[-1].c, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.head(s1)
