"""Alpha (and beta) updates: first order (the validation gradient at the current w) and second order
(DARTS's unrolled step: a virtual SGD step of w, then the finite-difference Hessian-vector product).

The supernet is called as ``net(x, arch)``; the virtual step evaluates it at other weights with
``torch.func.functional_call`` instead of copying the network, on copies of its batch-norm buffers
so that the virtual model leaves the real one's running statistics alone (as the reference's copy does).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F


def _grads(loss, inputs) -> List[torch.Tensor]:
    grads = torch.autograd.grad(loss, list(inputs), allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


class Architect:
    def __init__(self, net: nn.Module, arch: Mapping[str, nn.Parameter], w_optimizer: torch.optim.SGD,
                 lr: float, betas, weight_decay: float, second_order: bool, r: float):
        self.net, self.arch, self.w_optimizer = net, dict(arch), w_optimizer
        self.optimizer = torch.optim.Adam(self.arch.values(), lr=lr, betas=tuple(betas), weight_decay=weight_decay)
        self.second_order, self.r = second_order, r

    def step(self, xt, yt, xv, yv, eta: float) -> Optional[torch.Tensor]:
        """One alpha update; returns the validation logits at the current w when they were computed
        (first order), else None."""
        grads, logits = self.alpha_gradients(xt, yt, xv, yv, eta)
        self.optimizer.zero_grad(set_to_none=True)
        for p, g in zip(self.arch.values(), grads):
            p.grad = g
        self.optimizer.step()
        return logits

    def alpha_gradients(self, xt, yt, xv, yv, eta: float):
        """(gradients in the order of ``arch``, validation logits or None)."""
        alphas = list(self.arch.values())
        if not self.second_order:
            logits = self.net(xv, self.arch)
            return _grads(F.cross_entropy(logits, yv), alphas), logits.detach()
        return self._unrolled_gradients(xt, yt, xv, yv, eta), None

    def _loss(self, params: Dict[str, torch.Tensor], buffers, x, y) -> torch.Tensor:
        return F.cross_entropy(functional_call(self.net, ({**params, **buffers},), (x, self.arch)), y)

    def _unrolled_gradients(self, xt, yt, xv, yv, eta: float) -> List[torch.Tensor]:
        alphas = list(self.arch.values())
        params = dict(self.net.named_parameters())
        buffers = {k: v.clone() for k, v in self.net.named_buffers()}
        # the virtual step: w' = w - eta * (momentum * buffer + dL_train/dw + weight_decay * w)
        group = self.w_optimizer.param_groups[0]
        g = _grads(self._loss(params, buffers, xt, yt), params.values())
        unrolled = {}
        with torch.no_grad():
            for (name, p), gp in zip(params.items(), g):
                buf = self.w_optimizer.state.get(p, {}).get("momentum_buffer")
                moment = group["momentum"] * buf if buf is not None else 0.0
                unrolled[name] = (p - eta * (moment + gp + group["weight_decay"] * p)).requires_grad_(True)
        grads = _grads(self._loss(unrolled, buffers, xv, yv), alphas + list(unrolled.values()))
        dalpha, vector = grads[:len(alphas)], grads[len(alphas):]
        hessian = self._hessian_vector(vector, params, xt, yt)
        return [da - eta * h for da, h in zip(dalpha, hessian)]

    def _hessian_vector(self, vector, params, xt, yt) -> List[torch.Tensor]:
        """d/dalpha of dL_train/dw . vector, by central differences at w +- R * vector, R = r / ||vector||."""
        alphas = list(self.arch.values())
        R = self.r / torch.cat([v.reshape(-1) for v in vector]).norm()
        out = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                moved = {n: p + sign * R * v for (n, p), v in zip(params.items(), vector)}
            buffers = {k: b.clone() for k, b in self.net.named_buffers()}
            out.append(_grads(self._loss(moved, buffers, xt, yt), alphas))
        return [(gp - gn) / (2 * R) for gp, gn in zip(*out)]

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, sd: dict) -> None:
        self.optimizer.load_state_dict(sd)
