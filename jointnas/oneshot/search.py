"""``OneShotSearch``: a supernet, its alphas (and PC-DARTS betas), the w and alpha optimizers, one
epoch of bilevel training at a time, the derived cell and the collapse monitor.

The caller brings the data: per epoch, an iterable of w batches (one half of the training split) and
one of alpha batches (the other half), ``(x, y)`` tensor pairs, zipped step by step as in the
reference code. Each step updates alpha first (from epoch ``warmup_epochs`` on), then w.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UsageError
from .architect import Architect
from .settings import OneShotSettings
from .spaces import SearchSpace, search_space


class OneShotSearch:
    def __init__(self, space: str, settings: OneShotSettings, num_classes: int, in_channels: int,
                 resolution: int, device="cpu", seed: int = 0):
        if settings.space != space:
            raise UsageError(f"the one-shot settings are for the {settings.space!r} space, not {space!r}; "
                             f"take them from OneShotSettings.for_strategy(strategy, {space!r})")
        self.settings, self.device = settings, torch.device(device)
        self.space: SearchSpace = search_space(space)
        self.space.check_input(resolution)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = self.space.supernet(settings, num_classes, in_channels).to(self.device)
            self.arch = {name: nn.Parameter(1e-3 * torch.randn(shape).to(self.device))
                         for name, shape in self.net.arch_shapes().items()}
        s = settings
        self.w_optimizer = torch.optim.SGD(self.net.parameters(), lr=s.w_lr, momentum=s.w_momentum,
                                           weight_decay=s.w_weight_decay, nesterov=s.w_nesterov)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_optimizer, T_max=s.epochs,
                                                                    eta_min=s.w_lr_min)
        self.architect = Architect(self.net, self.arch, self.w_optimizer, s.alpha_lr, s.alpha_betas,
                                   s.alpha_weight_decay, s.second_order, s.unrolled_r)
        self.epochs_done = 0

    # ---- training
    def train_epoch(self, w_batches: Iterable, a_batches: Iterable, epoch: int,
                    on_step: Optional[Callable[[int], None]] = None) -> Dict[str, float]:
        """One epoch; ``on_step(steps_done)`` after every step. Returns the mean train loss/accuracy on
        the w batches and validation loss/accuracy on the alpha batches (at w before that step's update)."""
        if epoch != self.epochs_done:
            raise UsageError(f"epoch {epoch} does not follow the {self.epochs_done} epoch(s) this search has done; "
                             f"load the state saved after epoch {epoch - 1} first")
        eta = self.scheduler.get_last_lr()[0]
        update_alpha = epoch >= self.settings.warmup_epochs
        totals = np.zeros(6)  # train loss sum, correct, count; valid loss sum, correct, count
        self.net.train()
        for step, ((xt, yt), (xv, yv)) in enumerate(zip(w_batches, a_batches), 1):
            xt, yt, xv, yv = (t.to(self.device) for t in (xt, yt, xv, yv))
            logits_v = self.architect.step(xt, yt, xv, yv, eta) if update_alpha else None
            if logits_v is None:
                with torch.no_grad():
                    logits_v = self.net(xv, self._fixed_arch())
            totals[3:] += _sums(logits_v, yv)
            self.w_optimizer.zero_grad(set_to_none=True)
            logits = self.net(xt, self._fixed_arch())
            F.cross_entropy(logits, yt).backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.grad_clip)
            self.w_optimizer.step()
            totals[:3] += _sums(logits.detach(), yt)
            if on_step is not None:
                on_step(step)
        self.scheduler.step()
        self.epochs_done += 1
        n_t, n_v = max(totals[2], 1), max(totals[5], 1)
        return {"train_loss": float(totals[0] / n_t), "train_acc": float(totals[1] / n_t),
                "valid_loss": float(totals[3] / n_v), "valid_acc": float(totals[4] / n_v)}

    def _fixed_arch(self) -> Dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.arch.items()}

    # ---- the architecture
    def alphas(self) -> Dict[str, np.ndarray]:
        """Softmaxed op weights per edge (``normal``, ``reduce``) and normalised betas (``normal_beta``, ...)."""
        return self.space.weights(self._fixed_arch())

    def derive(self) -> dict:
        """The derived cell as the family's arch values (the skip cap applied when it is the remedy)."""
        cap = self.settings.max_skips if self.settings.remedy == "skip-cap" else None
        return self.space.derive(self.alphas(), cap)

    def skip_count(self) -> int:
        """Skip connections in the normal cell derived without any cap: the collapse monitor."""
        return self.space.skip_count(self.alphas())

    def collapsed(self) -> bool:
        """The early-stop remedy's rule: the normal cell's argmax holds more than ``max_skips`` skips."""
        return self.settings.remedy == "early-stop" and self.skip_count() > self.settings.max_skips

    # ---- resume
    def state_dict(self) -> dict:
        """Everything a resumed search needs, as tensors, numbers and strings (``weights_only`` loads it)."""
        return {"settings": self.settings.to_dict(), "epochs_done": self.epochs_done,
                "net": self.net.state_dict(), "arch": {k: v.detach().clone() for k, v in self.arch.items()},
                "w_optimizer": self.w_optimizer.state_dict(), "a_optimizer": self.architect.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        saved = OneShotSettings.from_dict(sd["settings"])
        if saved != self.settings:
            diff = sorted(k for k, v in saved.to_dict().items() if self.settings.to_dict()[k] != v)
            raise UsageError(f"the saved one-shot state has other settings ({', '.join(diff)}); "
                             f"resume with the settings it was saved with")
        self.net.load_state_dict(sd["net"])
        with torch.no_grad():
            for k, v in self.arch.items():
                v.copy_(sd["arch"][k])
        self.w_optimizer.load_state_dict(sd["w_optimizer"])
        self.architect.load_state_dict(sd["a_optimizer"])
        self.scheduler.load_state_dict(sd["scheduler"])
        self.epochs_done = int(sd["epochs_done"])


def _sums(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    loss = F.cross_entropy(logits, y, reduction="sum").item()
    return np.array([loss, (logits.argmax(1) == y).sum().item(), len(y)], dtype=float)
