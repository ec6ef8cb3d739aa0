"""Predictor: an architecture encoder pretrained on proxies (FLOPs, params), an accuracy head
fine-tuned with Huber loss on trained pairs, and an ensemble for mean and spread.

Importing this module costs no torch: training and the torch modules live in :mod:`.training`,
loaded when the predictor first trains or is rebuilt from a checkpoint; scoring runs the members
in numpy (:mod:`.stacked`), and :meth:`Predictor.scorer_from_checkpoint` gives that scoring alone
(the fine stage)."""
from __future__ import annotations

import sys
import time
from typing import Optional

import numpy as np

from ...errors import SpaceError
from ...space import SearchSpace
from ..base import PredictorError, Surrogate, checked_scores, encoded_rows
from ..checkpoint import Checkpoint
from .stacked import DEFAULT_SCORE_BOUNDS, StackedMembers, StackedScorer, ensemble_stats


def _torch_half():
    from . import training  # torch, on first training or rebuilding: scoring a saved predictor needs none

    return training


class Predictor(Surrogate):
    """Ranks (architecture, recipe) candidates of one space by predicted accuracy.

    ``pretrain`` fits the encoder and proxy head on a pool's FLOPs and params; ``fit``
    trains ``ensemble`` members, each starting from that encoder, first with the encoder
    frozen (``frozen_epochs``) and then end to end (``full_epochs``). Without pretraining
    the same schedule runs on a random encoder: its frozen phase fits the head on random
    features, which generalised better from few pairs than training end to end from the
    start (measured on synthetic targets).

    Each member has its own seed; from ``early_stopping_from`` pairs up it also has its own
    internal validation split (``val_fraction`` of the pairs) for early stopping with
    ``patience``. Below that the split is too small to choose an epoch: on the first 50 real
    digits pairs, a 20 % split (8 pairs per fold) stopped members early enough to cut the
    5-fold Kendall tau from 0.34 to 0.11 (BENCHMARKS.md), so small fits train every epoch on
    every pair. With ``bootstrap`` each member also trains on a bootstrap resample (off by
    default: it cost accuracy with few pairs).
    One "epoch" is a pass over a member's training rows in mini-batches of ``batch_size``.
    Targets are standardised accuracies; the loss is Huber.
    """


    kind = "mlp"

    def __init__(self, space, hidden: int = 64, ensemble: int = 5, seed: int = 0, *,
                 encoder_layers: int = 2, head_layers: int = 2, lr: float = 1e-3,
                 weight_decay: float = 1e-4, batch_size: int = 16, val_fraction: float = 0.2,
                 patience: int = 20, bootstrap: bool = False, huber_delta: float = 1.0,
                 early_stopping_from: int = 100, score_bounds=DEFAULT_SCORE_BOUNDS):
        if not isinstance(space, SearchSpace):
            raise PredictorError(f"a predictor scores a SearchSpace, got {type(space).__name__} (a space file "
                                 "or name becomes one with jointnas.catalog.load_space)")
        self.space = space
        if score_bounds is not None:
            lo, hi = (float(v) for v in score_bounds)
            if not lo < hi:
                raise PredictorError(f"score_bounds must be (low, high) with low < high, got {score_bounds!r}")
            score_bounds = [lo, hi]
        for name, value in (("hidden", hidden), ("ensemble", ensemble), ("encoder_layers", encoder_layers),
                            ("head_layers", head_layers), ("batch_size", batch_size), ("patience", patience),
                            ("early_stopping_from", early_stopping_from)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise PredictorError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= val_fraction < 0.9:
            raise PredictorError(f"val_fraction must be in [0, 0.9), got {val_fraction!r}")
        self.config = dict(hidden=int(hidden), ensemble=int(ensemble), seed=int(seed),
                           encoder_layers=int(encoder_layers), head_layers=int(head_layers), lr=float(lr),
                           weight_decay=float(weight_decay), batch_size=int(batch_size),
                           val_fraction=float(val_fraction), patience=int(patience), bootstrap=bool(bootstrap),
                           huber_delta=float(huber_delta), early_stopping_from=int(early_stopping_from),
                           score_bounds=score_bounds)
        self.proxy_model = None       # torch: encoder + proxy head, once pretrained
        self.cost_stats: Optional[dict] = None
        self.members: list = []         # torch: the fitted ensemble members
        self.target_stats: Optional[dict] = None
        self.info: dict = {}
        self._stacked: Optional[StackedMembers] = None  # the members as of the last scoring

    @classmethod
    def create(cls, space, *, seed: int = 0, ensemble: int = 5, score_bounds=DEFAULT_SCORE_BOUNDS,
               **options) -> "Predictor":
        return cls(space, ensemble=ensemble, seed=seed, score_bounds=score_bounds, **options)

    # ------------------------------------------------------------------ inputs
    @property
    def pretrained(self) -> bool:
        return self.proxy_model is not None

    @property
    def fitted(self) -> bool:
        return bool(self.members)

    def encode(self, candidates, *, arch_only_ok: bool = False) -> np.ndarray:
        """Candidates, or already-encoded rows (numpy/torch, ``space.encoding_width`` columns), as float32."""
        torch = sys.modules.get("torch")  # a torch tensor exists only once torch is imported
        if torch is not None and isinstance(candidates, torch.Tensor):
            candidates = candidates.detach().cpu().numpy()
        if isinstance(candidates, np.ndarray):
            return encoded_rows(self.space, candidates, arch_only_ok)
        try:
            return self.space.encode(list(candidates))
        except SpaceError:
            raise  # it names the candidate and the key
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise PredictorError(f"cannot encode the candidates for space {self.space.name} ({type(e).__name__}: "
                                 f"{e}); check them with Candidate.validate()") from None

    def _training(self, *salt: int):
        """Deterministic torch RNG for one piece of training (see :func:`.training.seeded`)."""
        return _torch_half().seeded(self.config["seed"], *salt)

    # ------------------------------------------------------------------ pretraining
    def pretrain(self, candidates, costs, epochs: int = 30, batch_size: int = 256, lr: float = 1e-3, *,
                 progress: bool = False) -> "Predictor":
        """Fit encoder + proxy head to standardised log-FLOPs and log-params of ``candidates``."""
        arch = self.encode(candidates, arch_only_ok=True)[:, :self.space.arch_width]
        costs = np.asarray(costs, dtype=np.float64)
        if costs.ndim != 2 or costs.shape != (len(arch), 2):
            raise PredictorError(f"costs must have shape ({len(arch)}, 2) (flops, params), got {costs.shape}")
        if not np.all(np.isfinite(costs)) or np.any(costs <= 0):
            raise PredictorError("costs must be positive and finite (flops, params per candidate)")
        if len(arch) < 2:
            raise PredictorError("pretraining needs at least 2 candidates")
        logs = np.log(costs)
        mean, std = logs.mean(0), np.maximum(logs.std(0), 1e-8)
        model, loss = _torch_half().pretrain_proxy(self.space, self.config, arch, (logs - mean) / std, epochs,
                                                   batch_size, lr, progress)
        self.proxy_model = model
        self.cost_stats = {"mean": mean.tolist(), "std": std.tolist()}
        self.info["pretrain"] = {"n": int(len(arch)), "epochs": int(epochs), "final_mse": float(loss)}
        return self

    def pretraining_note(self, n: int) -> str:
        if not self.pretrained:
            return super().pretraining_note(n)
        return f"encoder pretrained on FLOPs/params of {n} candidates"

    def predict_costs(self, candidates) -> np.ndarray:
        """The proxy head's (flops, params) estimates, shape (n, 2); needs ``pretrain`` first."""
        if not self.pretrained:
            raise PredictorError("this predictor was not pretrained on proxies; call pretrain() first")
        arch = self.encode(candidates, arch_only_ok=True)[:, :self.space.arch_width]
        z = _torch_half().proxy_outputs(self.proxy_model, arch)
        return np.exp(z * np.array(self.cost_stats["std"]) + np.array(self.cost_stats["mean"]))

    # ------------------------------------------------------------------ fine-tuning
    def fit(self, candidates, accuracies, frozen_epochs: int = 50, full_epochs: int = 50, *,
            progress: bool = False) -> "Predictor":
        """Fit the ensemble to trained pairs (accuracies are fractions in [0, 1]); returns self."""
        x = self.encode(candidates)
        y = checked_scores(accuracies, len(x), self.config["score_bounds"], noun="accuracies", rows="trained pairs")
        if frozen_epochs < 0 or full_epochs < 0 or frozen_epochs + full_epochs == 0:
            raise PredictorError("frozen_epochs and full_epochs must be >= 0 and not both 0")
        mean, std = float(y.mean()), float(max(y.std(), 1e-6))
        z = ((y - mean) / std).astype(np.float32)
        start = time.perf_counter()
        splits = [self._member_split(m, len(x)) for m in range(self.config["ensemble"])]
        encoder = self.proxy_model.encoder if self.pretrained else None
        members, val_losses = _torch_half().fit_members(self.space, self.config, encoder, x, z, splits,
                                                        frozen_epochs, full_epochs, progress)
        self.members, self.target_stats = members, {"mean": mean, "std": std}
        self.info["fit"] = {"n": int(len(y)), "frozen_epochs": int(frozen_epochs), "full_epochs": int(full_epochs),
                            "pretrained": self.pretrained, "seconds": time.perf_counter() - start,
                            "val_loss": val_losses}
        return self

    def _member_split(self, m: int, n: int):
        c = self.config
        rng = np.random.default_rng([c["seed"] & 0xFFFFFFFF, 2, m])
        n_val = int(round(c["val_fraction"] * n)) if n >= max(10, c["early_stopping_from"]) else 0
        order = rng.permutation(n)
        val_idx, train_idx = order[:n_val], order[n_val:]
        if c["bootstrap"] and c["ensemble"] > 1:
            train_idx = rng.choice(train_idx, size=len(train_idx), replace=True)
        return train_idx, val_idx

    def _new_member(self):
        return _torch_half().new_member(self.space, self.config)

    # ------------------------------------------------------------------ scoring
    def _require_fitted(self):
        if not self.fitted:
            raise PredictorError("this predictor is not fitted; call fit() on trained pairs or Predictor.load()")

    def _stacked_members(self) -> StackedMembers:
        """The members as one numpy computation, rebuilt when a member or weight changed."""
        if self._stacked is None or not self._stacked.current(self.members):
            self._stacked = StackedMembers(self.members)
        return self._stacked

    def predict_encoded(self, x, costs=None, *, batch_size: int = 65536):
        """(mean, std) predicted accuracy of encoded rows, scored in batches; std is the ensemble
        spread. Each member's prediction is clipped to the score bounds first. ``costs`` are not used."""
        self._require_fitted()
        x = self.encode(x)
        stacked = self._stacked_members()
        out = np.empty((len(self.members), len(x)), dtype=np.float32)
        for s in range(0, len(x), batch_size):
            out[:, s:s + batch_size] = stacked.outputs(x[s:s + batch_size])
        return ensemble_stats(out, self.target_stats, self.config["score_bounds"])

    def predict(self, candidates, costs=None, *, batch_size: int = 65536):
        """(mean, std) predicted accuracy of candidates (or encoded rows)."""
        return self.predict_encoded(self.encode(candidates), batch_size=batch_size)

    def rank(self, candidates, explore: float = 0.0) -> np.ndarray:
        """Indices of ``candidates`` best first by ``mean + explore * std`` (ties keep input order)."""
        mean, std = self.predict(candidates)
        return np.argsort(-(mean + explore * std), kind="stable")

    # ------------------------------------------------------------------ files
    def state(self) -> dict:
        plain = _torch_half().plain_state_dict if self.pretrained or self.members else None
        return {"config": dict(self.config),
                "target_stats": dict(self.target_stats) if self.target_stats else None,
                "cost_stats": dict(self.cost_stats) if self.cost_stats else None,
                "proxy_model": plain(self.proxy_model) if self.pretrained else None,
                "members": [plain(m) for m in self.members],
                "info": self.info}

    @classmethod
    def from_state(cls, state: dict, space) -> "Predictor":
        p = cls(space, **state["config"])
        p.target_stats, p.cost_stats, p.info = state["target_stats"], state["cost_stats"], state["info"]
        if state["proxy_model"] is not None or state["members"]:
            torch_half = _torch_half()
            if state["proxy_model"] is not None:
                p.proxy_model = torch_half.restored(torch_half.new_proxy_model(space, p.config), state["proxy_model"])
            p.members = [torch_half.restored(p._new_member(), sd) for sd in state["members"]]
        return p

    @classmethod
    def scorer_from_checkpoint(cls, checkpoint: Checkpoint, space) -> StackedScorer:
        """The predictor's scoring in numpy only (no torch import): what the fine stage uses."""
        state = checkpoint.state(cls.kind, space, cls.error)
        with checkpoint.consistent(cls.error):
            return StackedScorer(space, state["config"], state["target_stats"], state["members"], state["info"])

    def __repr__(self):
        state = "fitted" if self.fitted else "unfitted"
        return (f"Predictor(space={self.space.name!r}, ensemble={self.config['ensemble']}, "
                f"hidden={self.config['hidden']}, {'pretrained, ' if self.pretrained else ''}{state})")
