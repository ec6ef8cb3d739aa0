"""Mixed operations: the weighted sum of an edge's candidate ops (DARTS), and its partial-channel
version with channel shuffle (PC-DARTS)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class MixedOp(nn.Module):
    """``sum_k weights[k] * ops[k](x)``; ``ops`` keep the order of the space's op names."""

    def __init__(self, ops: Sequence[nn.Module]):
        super().__init__()
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` equal channel groups (ShuffleNet): channel ``g * n + i`` moves to ``i * groups + g``."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class PartialMixedOp(nn.Module):
    """PC-DARTS: the first ``1/k`` of the channels go through the mixed op (built at that width), the rest
    bypass it (max-pooled 2x2 where the edge has stride 2) and are concatenated back, then the channels
    are shuffled in ``k`` groups so that another part goes through the ops at the next edge."""

    def __init__(self, ops: Sequence[nn.Module], k: int, stride: int = 1):
        super().__init__()
        self.mixed = MixedOp(ops)
        self.k = k
        # ceil_mode: on an odd side the bypass matches the strided ops' ceil(side / 2)
        self.bypass = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        part = x.shape[1] // self.k
        out = torch.cat([self.mixed(x[:, :part], weights), self.bypass(x[:, part:])], dim=1)
        return channel_shuffle(out, self.k)


def mixed_op(ops: Sequence[nn.Module], k: int, stride: int = 1) -> nn.Module:
    """A plain mixed op for ``k == 1``, else the partial-channel one (``ops`` built at ``C // k`` channels)."""
    return MixedOp(ops) if k == 1 else PartialMixedOp(ops, k, stride)


def normalised_betas(betas: torch.Tensor, node_edges: Sequence[Sequence[int]]) -> torch.Tensor:
    """PC-DARTS edge normalisation: a softmax over the incoming edges of each node (``node_edges``:
    the edge indices into each node)."""
    out = torch.empty_like(betas)
    for idx in node_edges:
        out[list(idx)] = torch.softmax(betas[list(idx)], dim=-1)
    return out
