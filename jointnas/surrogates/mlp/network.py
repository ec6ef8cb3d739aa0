"""The predictor's torch modules: an architecture encoder with a proxy head (FLOPs, params)
and an accuracy head over [architecture embedding, recipe encoding]."""
from __future__ import annotations

import torch
from torch import nn


def mlp(in_width: int, hidden: int, layers: int) -> nn.Sequential:
    """``layers`` Linear+ReLU blocks of width ``hidden``."""
    mods, width = [], in_width
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*mods)


class Encoder(nn.Module):
    """MLP over the architecture columns of an encoding (values in [0, 1])."""

    def __init__(self, arch_width: int, hidden: int, layers: int):
        super().__init__()
        self.body = mlp(arch_width, hidden, layers)

    def forward(self, arch):
        # Centred inputs: one-hot and range columns in [0, 1] become [-1, 1].
        return self.body(arch * 2.0 - 1.0)


class ProxyHead(nn.Module):
    """Embedding -> standardised (log-FLOPs, log-params)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.out = nn.Linear(hidden, 2)

    def forward(self, z):
        return self.out(z)


class AccuracyHead(nn.Module):
    """[embedding, recipe encoding] -> standardised accuracy."""

    def __init__(self, hidden: int, recipe_width: int, layers: int):
        super().__init__()
        self.body = mlp(hidden + recipe_width, hidden, layers)
        self.out = nn.Linear(hidden, 1)

    def forward(self, z, recipe):
        return self.out(self.body(torch.cat([z, recipe * 2.0 - 1.0], dim=1))).squeeze(1)


class Member(nn.Module):
    """One ensemble member: encoder + accuracy head, fed a full encoding row."""

    def __init__(self, arch_width: int, recipe_width: int, hidden: int, encoder_layers: int, head_layers: int):
        super().__init__()
        self.arch_width = arch_width
        self.encoder = Encoder(arch_width, hidden, encoder_layers)
        self.head = AccuracyHead(hidden, recipe_width, head_layers)

    def forward(self, x):
        return self.head(self.encoder(x[:, :self.arch_width]), x[:, self.arch_width:])


class ProxyModel(nn.Module):
    """Encoder + proxy head, the pair that pretraining fits."""

    def __init__(self, arch_width: int, hidden: int, encoder_layers: int):
        super().__init__()
        self.encoder = Encoder(arch_width, hidden, encoder_layers)
        self.proxy = ProxyHead(hidden)

    def forward(self, arch):
        return self.proxy(self.encoder(arch))
