"""The optimisation a recipe sets up: its optimizer over two parameter groups (weight decay on
conv/linear weights only), the learning rate of each step (warmup, then cosine) and the
exponential moving average of the weights."""
from __future__ import annotations

import copy
import math
from typing import List, Mapping

import torch
from torch import nn

from ..errors import UsageError
from .recipe import OPTIMIZERS, full_recipe


def param_groups(model: nn.Module, weight_decay: float) -> List[dict]:
    """Two groups: conv/linear weights get ``weight_decay``; BN parameters and biases (1-d) get none."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, recipe: Mapping) -> torch.optim.Optimizer:
    recipe = full_recipe(recipe)
    groups = param_groups(model, float(recipe["weight_decay"]))
    lr, name, momentum = float(recipe["lr"]), recipe["optimizer"], float(recipe["momentum"])
    # One fused kernel over all parameters instead of a Python loop over tensors: on a CPU an
    # AdamW step of FBNetV3_A takes 9 ms instead of 50 (BENCHMARKS.md, "Small-map paths", part 4).
    # torch has no fused RMSprop.
    fused = {"fused": True} if _fusable(model) else {}
    if name in ("sgd", "sgd_plain"):  # Nesterov needs a momentum; without one both are plain SGD
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=name == "sgd" and momentum > 0, **fused)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=0.0316, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, **fused)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, **fused)
    raise UsageError(f"unknown optimizer {name!r}; the trainer knows {', '.join(OPTIMIZERS)}")


def _fusable(model: nn.Module) -> bool:
    """Whether torch's fused optimizers take these parameters (floating point, on a CPU or GPU; torch >= 2.4)."""
    params = list(model.parameters())
    return (tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4) and bool(params)
            and all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params))


def lr_at(step: int, base_lr: float, steps_per_epoch: int, epochs: int, warmup_epochs: float) -> float:
    """Learning rate of optimisation step ``step`` (0-based): linear warmup, then cosine to 0."""
    total = max(1, epochs * steps_per_epoch)
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total - 1)
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def ema_decay(steps_per_epoch: int) -> float:
    """EMA decay whose time constant is one epoch of steps (see :mod:`jointnas.evaluation.trainer`)."""
    return 1.0 - 1.0 / max(2, steps_per_epoch)


class ModelEma:
    """Exponential moving average of a model's floating-point parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
        self._float = [(e, m) for e, m in pairs if e.dtype.is_floating_point]
        self._other = [(e, m) for e, m in pairs if not e.dtype.is_floating_point]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current weights (the model given at creation)."""
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        torch._foreach_lerp_([e for e, _ in self._float], [m for _, m in self._float], 1.0 - d)
        for e, m in self._other:
            e.copy_(m)
