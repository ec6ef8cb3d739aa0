"""The torch modules of the NAS-Bench-201 cell network (see ``cell.py`` for the structure)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, affine: bool = True):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(cout, affine=affine))


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


def make_op(name: str, c: int, affine: bool = True) -> nn.Module:
    """``affine=False``: batch norms without scale and shift, as one-shot supernets build their edges."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, affine=affine)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, affine=affine)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown cell op {name!r}")


class Cell(nn.Module):
    """Nodes 1..3, each the sum of ops on the edges from every earlier node; node 3 is the output."""

    def __init__(self, ops: Sequence[str], c: int):
        super().__init__()
        self.edges = nn.ModuleList(make_op(op, c) for op in ops)  # 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2

    def forward(self, x):
        nodes, e = [x], 0
        for i in (1, 2, 3):
            total = 0
            for j in range(i):
                total = total + self.edges[e](nodes[j])
                e += 1
            nodes.append(total)
        return nodes[3]


class Reduction(nn.Module):
    """Residual block that halves the resolution and doubles the channels."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, stride=2)
        self.conv_b = ReLUConvBN(cout, cout, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x):
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


def network_layers(make_cell: Callable[[int], nn.Module], channels: int, cells: int, in_channels: int):
    """(layers, width of the last stage): stem, 3 stages of ``make_cell(c)`` separated by reduction
    blocks, BN-ReLU-pool; shared by :class:`CellNet` and the one-shot supernet so their weights line up."""
    layers = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)]
    c = channels
    for stage in range(3):
        if stage:
            layers.append(Reduction(c, 2 * c))
            c *= 2
        layers.extend(make_cell(c) for _ in range(cells))
    layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return layers, c


class CellNet(nn.Module):
    def __init__(self, ops: Sequence[str], channels: int, cells: int, num_classes: int, in_channels: int,
                 dropout: float = 0.0):
        super().__init__()
        layers, c = network_layers(lambda width: Cell(ops, width), channels, cells, in_channels)
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))
