"""Training of the stacked predictor (:mod:`.batched`): all members at once, full batch, AdamW.

Every weight of every member lives in one flat float32 buffer (the dict of named arrays are
views of it), encoder first: AdamW is then a handful of vector operations per step, and the
frozen-encoder phase updates the head's contiguous tail only. The loss is the sum of the
members' mean Huber losses, so each member's gradient, and (AdamW being elementwise) each
member's update, is what training it alone on the same rows would give.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from . import batched

BETAS, EPS = (0.9, 0.999), 1e-8   # torch.optim.AdamW's defaults


class Flat:
    """Named arrays as views of one flat buffer (``keys`` order, encoder first)."""

    def __init__(self, arrays: Dict[str, np.ndarray]):
        keys = sorted(arrays, key=lambda k: (not k.startswith("enc"), list(arrays).index(k)))
        self.buffer = np.concatenate([np.asarray(arrays[k], np.float32).ravel() for k in keys])
        self.views, offset = {}, 0
        for k in keys:
            size = int(np.prod(arrays[k].shape))
            self.views[k] = self.buffer[offset:offset + size].reshape(arrays[k].shape)
            offset += size
        self.encoder_size = sum(v.size for k, v in self.views.items() if k.startswith("enc"))

    def like(self) -> "Flat":
        return Flat({k: np.zeros_like(v) for k, v in self.views.items()})

    def arrays(self) -> Dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.views.items()}


class AdamW:
    """torch.optim.AdamW's update (decoupled weight decay, bias-corrected moments) on a slice of
    a flat buffer; its moments persist between calls (what a warm refit continues from)."""

    def __init__(self, params: np.ndarray, lr: float, weight_decay: float):
        self.p, self.lr, self.wd = params, lr, weight_decay
        self.m, self.v, self.t = np.zeros_like(params), np.zeros_like(params), 0
        self._tmp = np.empty_like(params)

    def step(self, g: np.ndarray) -> None:
        (b1, b2), tmp = BETAS, self._tmp
        self.t += 1
        self.p *= np.float32(1.0 - self.lr * self.wd)
        self.m *= np.float32(b1)
        np.multiply(g, np.float32(1.0 - b1), out=tmp)
        self.m += tmp
        self.v *= np.float32(b2)
        np.multiply(g, g, out=tmp)
        tmp *= np.float32(1.0 - b2)
        self.v += tmp
        np.multiply(self.v, np.float32(1.0 / (1.0 - b2 ** self.t)), out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += np.float32(EPS)
        np.divide(self.m, tmp, out=tmp)
        tmp *= np.float32(self.lr / (1.0 - b1 ** self.t))
        self.p -= tmp


def huber_grad(out: np.ndarray, target: np.ndarray, delta: float) -> np.ndarray:
    """d(sum over members of the mean Huber loss)/d(outputs): (M, n, 1)."""
    return np.clip(out - target[None, :, None], -delta, delta) / np.float32(out.shape[1])


def huber_loss(out: np.ndarray, target: np.ndarray, delta: float) -> float:
    r = np.abs(out[..., 0] - target[None, :])
    per = np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))
    return float(per.mean(1).sum())


class Trainer:
    """The ensemble being fitted and its end-to-end optimizer, kept in memory between a full
    fit and the warm refits after it."""

    def __init__(self, weights: Dict[str, np.ndarray], config: dict):
        self.config = config
        self.params = Flat(weights)
        self.grads = self.params.like()
        self.full: Optional[AdamW] = None

    def _steps(self, opt: AdamW, arch, rest, z, count: int, encoder: bool) -> None:
        w, g, delta = self.params.views, self.grads.views, self.config["huber_delta"]
        a0 = batched.centred(arch)
        tail = slice(0 if encoder else self.params.encoder_size, None)
        enc_acts: list = []
        if not encoder:   # the frozen encoder's embedding is the same every step
            batched.embed(w, a0, enc_acts)
        for _ in range(count):
            if encoder:
                enc_acts = []
                batched.embed(w, a0, enc_acts)
            head_acts: list = []
            out = batched.head(w, enc_acts[-1], rest, head_acts)
            batched.backward(w, g, a0, rest, enc_acts, head_acts, huber_grad(out, z, delta), encoder)
            opt.step(self.grads.buffer[tail])

    def _optimizer(self, encoder: bool) -> AdamW:
        tail = slice(0 if encoder else self.params.encoder_size, None)
        return AdamW(self.params.buffer[tail], self.config["lr"], self.config["weight_decay"])

    def fit(self, arch: np.ndarray, rest: np.ndarray, z: np.ndarray) -> None:
        """The paper's two phases: the head alone on a frozen encoder, then end to end."""
        c = self.config
        if c["frozen_steps"]:
            self._steps(self._optimizer(False), arch, rest, z, c["frozen_steps"], encoder=False)
        self.full = self._optimizer(True)
        self._steps(self.full, arch, rest, z, c["full_steps"], encoder=True)

    def warm(self, arch: np.ndarray, rest: np.ndarray, z: np.ndarray) -> None:
        """``warm_steps`` more end-to-end steps on every row (the new ones included)."""
        if self.full is None:
            self.full = self._optimizer(True)
        self._steps(self.full, arch, rest, z, self.config["warm_steps"], encoder=True)

    def arrays(self) -> Dict[str, np.ndarray]:
        return self.params.arrays()


def pretrain_proxies(weights: Dict[str, np.ndarray], arch: np.ndarray, targets: np.ndarray, steps: int,
                     batch_size: int, lr: float, seed: int) -> tuple:
    """The proxy model (one encoder + proxy layer) fitted to standardised log-costs ``targets``
    (n, 2) of ``arch`` rows with MSE on random batches of ``batch_size`` rows, the learning rate
    annealed linearly to 0; (weights, final mse on all rows)."""
    params = Flat(weights)
    grads = params.like()
    w, g = params.views, grads.views
    opt = AdamW(params.buffer, lr, 0.0)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 1])
    targets = targets.astype(np.float32)
    for s in range(steps):
        idx = rng.integers(len(arch), size=batch_size) if len(arch) > batch_size else slice(None)
        a0 = batched.centred(arch[idx])
        acts: list = []
        z = batched.embed(w, a0, acts)
        d = (z @ w["proxy.w"] + w["proxy.b"] - targets[idx][None]) * np.float32(2.0 / targets[idx].size)
        batched.linear_grads(g, "proxy", z, d)
        batched.encoder_backward(w, g, a0, acts, batched.back_through(d, w["proxy.w"], z))
        opt.lr = lr * (1.0 - s / steps)
        opt.step(grads.buffer)
    mse = float(np.mean((batched.proxies(w, arch) - targets) ** 2))
    return params.arrays(), mse
