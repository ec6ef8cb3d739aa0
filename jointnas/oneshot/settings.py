"""The settings of a one-shot search, in one place: the reference values of the released DARTS and
PC-DARTS code (and NAS-Bench-201's DARTS setting for the ``nb201`` space), plus a ``quick`` CPU preset.

``OneShotSettings.for_strategy(strategy, space, quick)`` gives the defaults; ``dataclasses.replace``
(or :meth:`OneShotSettings.override`) changes any of them.

Reference values (facts in ``shared/oneshot_facts.md``):

- DARTS (quark0/darts ``train_search.py``): 8 cells, C = 16, 50 epochs, batch 64; w by SGD lr 0.025
  cosine to 0.001, momentum 0.9, weight decay 3e-4, gradient clip 5; alpha by Adam lr 3e-4, betas
  (0.5, 0.999), weight decay 1e-3; second order: unrolled step with r = 0.01 / ||grad||.
- PC-DARTS (yuhuixu1993/PC-DARTS): as DARTS but K = 4 partial channels, edge normalisation, batch 256,
  w lr 0.1 cosine to 0, alpha lr 6e-4, alpha updates from epoch 15.
- NAS-Bench-201's DARTS setting: C = 16, 5 cells per stage, 50 epochs, batch 64, SGD 0.025 cosine to
  0.001, weight decay 5e-4, Nesterov; alpha as DARTS. PC-DARTS on ``nb201`` keeps this network and
  weight decay and takes PC-DARTS's own changes (K, betas, batch, learning rates, warm-up).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Mapping, Optional, Tuple

from ..errors import UsageError

STRATEGIES = ("darts", "darts-2nd", "pc-darts")
SPACES = ("nb201", "darts")
REMEDIES = ("none", "early-stop", "skip-cap")


@dataclass(frozen=True)
class OneShotSettings:
    strategy: str = "darts"
    space: str = "nb201"
    # the supernet
    channels: int = 16              # C of the stem / first stage
    cells: int = 5                  # nb201: cells per stage; darts: cells in total
    partial_channels: int = 1       # K: 1/K of the channels go through the mixed op (PC-DARTS: 4)
    edge_normalisation: bool = False  # PC-DARTS betas over the incoming edges of each node
    pool_batchnorm: bool = True     # darts space: a BN without affine after the pooling ops, as the reference
    # the schedule
    epochs: int = 50
    batch_size: int = 64
    train_examples: Optional[int] = None  # examples of the training split used (None: all); half for w, half for alpha
    # w: SGD, cosine annealing per epoch
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    w_nesterov: bool = False
    grad_clip: float = 5.0
    # alpha (and beta): Adam
    alpha_lr: float = 3e-4
    alpha_betas: Tuple[float, float] = (0.5, 0.999)
    alpha_weight_decay: float = 1e-3
    second_order: bool = False
    unrolled_r: float = 0.01        # finite-difference step r / ||grad|| of the Hessian-vector product
    warmup_epochs: int = 0          # epochs of w training before alpha updates start
    # collapse monitor and remedy
    max_skips: int = 2              # skip connections allowed in the derived normal cell
    remedy: str = "none"            # "early-stop": stop once the argmax cell holds more; "skip-cap": keep at most max_skips

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown one-shot strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.space not in SPACES:
            raise UsageError(f"unknown one-shot space {self.space!r}; choose one of {', '.join(SPACES)}")
        if self.remedy not in REMEDIES:
            raise UsageError(f"unknown collapse remedy {self.remedy!r}; choose one of {', '.join(REMEDIES)}")
        for name in ("channels", "cells", "partial_channels", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"one-shot setting {name} must be at least 1, got {getattr(self, name)}")
        if self.channels % self.partial_channels:
            raise UsageError(f"one-shot setting channels ({self.channels}) must be a multiple of "
                             f"partial_channels ({self.partial_channels})")
        if self.space == "darts" and self.cells < 3:
            raise UsageError(f"the darts supernet needs at least 3 cells (two of them reduction cells), got {self.cells}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise UsageError(f"one-shot setting warmup_epochs must be between 0 and epochs ({self.epochs}), "
                             f"got {self.warmup_epochs}")
        if self.train_examples is not None and self.train_examples < 2:
            raise UsageError(f"one-shot setting train_examples must be at least 2 (half for w, half for alpha), "
                             f"got {self.train_examples}")
        if self.max_skips < 0 or self.unrolled_r <= 0 or self.w_lr <= 0 or self.alpha_lr <= 0:
            raise UsageError("one-shot settings max_skips must be >= 0 and unrolled_r, w_lr, alpha_lr positive")

    @classmethod
    def for_strategy(cls, strategy: str, space: str, quick: bool = False) -> "OneShotSettings":
        """The reference settings of ``strategy`` on ``space``; ``quick``: sized for a ~15-minute CPU search."""
        if strategy not in STRATEGIES:
            raise UsageError(f"unknown one-shot strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if space not in SPACES:
            raise UsageError(f"unknown one-shot space {space!r}; choose one of {', '.join(SPACES)}")
        values = dict(strategy=strategy, space=space, second_order=strategy == "darts-2nd")
        if space == "nb201":
            values.update(cells=5, w_weight_decay=5e-4, w_nesterov=True)
        else:
            values.update(cells=8)
        if strategy == "pc-darts":
            values.update(partial_channels=4, edge_normalisation=True, batch_size=256, w_lr=0.1, w_lr_min=0.0,
                          alpha_lr=6e-4, warmup_epochs=15)
        if quick:
            values.update(_QUICK[space])
            # PC-DARTS keeps its warm-up share of the epochs (15 of 50)
            values["warmup_epochs"] = round(values["epochs"] * 15 / 50) if strategy == "pc-darts" else 0
            values["batch_size"] = 64
        return cls(**values)

    def override(self, changes: Mapping) -> "OneShotSettings":
        """A copy with ``changes`` applied; unknown names are refused with the known ones listed."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise UsageError(f"unknown one-shot setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **dict(changes))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["alpha_betas"] = list(self.alpha_betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "OneShotSettings":
        d = dict(d)
        if "alpha_betas" in d:
            d["alpha_betas"] = tuple(d["alpha_betas"])
        return cls().override(d)


# Sized for about 15 minutes on a 2-core CPU at 28x28 inputs, second order the slowest (BENCHMARKS.md,
# "One-shot supernets: memory and time"): nb201 at C = 8, one cell per stage measured 0.63 / 1.71 / 0.32 s
# per step of 64 (DARTS / 2nd order / PC-DARTS), so 10 epochs of 40 steps; the darts supernet at C = 8,
# 5 cells took 8.6 / 24.3 / 3.9 s, and at C = 4 the second order 16.3 s, so C = 4 and 5 epochs of 12 steps.
_QUICK = {
    "nb201": dict(channels=8, cells=1, epochs=10, train_examples=5120),
    "darts": dict(channels=4, cells=5, epochs=5, train_examples=1536),
}
