"""Predictor: an architecture encoder pretrained on proxies (FLOPs, params), an accuracy head
fine-tuned with Huber loss on trained pairs, and an ensemble for mean and spread."""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from typing import List, Optional

import numpy as np
import torch
from torch.nn import functional as F

from ...errors import SpaceError
from ...space import SearchSpace
from ..base import PredictorError, encoded_rows
from .network import Member, ProxyModel
from .stacked import DEFAULT_SCORE_BOUNDS, StackedMembers, ensemble_stats


class Predictor:
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
            from ...catalog import load_space  # a name or file at this public entry point

            space = load_space(space)
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
        self.proxy_model: Optional[ProxyModel] = None
        self.cost_stats: Optional[dict] = None
        self.members: List[Member] = []
        self.target_stats: Optional[dict] = None
        self.info: dict = {}
        self._stacked: Optional[StackedMembers] = None  # the members as of the last scoring

    # ------------------------------------------------------------------ inputs
    @property
    def pretrained(self) -> bool:
        return self.proxy_model is not None

    @property
    def fitted(self) -> bool:
        return bool(self.members)

    def encode(self, candidates, *, arch_only_ok: bool = False) -> np.ndarray:
        """Candidates, or already-encoded rows (numpy/torch, ``space.encoding_width`` columns), as float32."""
        if isinstance(candidates, torch.Tensor):
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

    @contextmanager
    def _training(self, *salt: int):
        """Deterministic torch RNG for one piece of training, leaving the caller's RNG as it was.

        Training runs on one thread: its small batches gain nothing from more, and on a shared
        CPU extra threads spin-waiting for each other made a fit over 20 times slower.
        """
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(np.random.SeedSequence([self.config["seed"] & 0xFFFFFFFF, *salt])
                                      .generate_state(1)[0]))
                yield
        finally:
            torch.set_num_threads(threads)

    # ------------------------------------------------------------------ pretraining
    def pretrain(self, candidates, costs, epochs: int = 30, batch_size: int = 256, lr: float = 1e-3,
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
        x = torch.from_numpy(arch)
        t = torch.from_numpy(((logs - mean) / std).astype(np.float32))
        c = self.config
        with self._training(1):
            model = ProxyModel(self.space.arch_width, c["hidden"], c["encoder_layers"])
            opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
            steps = epochs * math.ceil(len(x) / batch_size)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
            loss_sum = float("nan")
            epoch_iter = range(epochs)
            if progress:
                from tqdm import tqdm
                epoch_iter = tqdm(epoch_iter, desc="pretrain encoder on proxies", unit="epoch")
            for _ in epoch_iter:
                order, loss_sum = torch.randperm(len(x)), 0.0
                for s in range(0, len(x), batch_size):
                    idx = order[s:s + batch_size]
                    loss = F.mse_loss(model(x[idx]), t[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    loss_sum += loss.item() * len(idx)
                loss_sum /= len(x)
        model.requires_grad_(False).eval()
        self.proxy_model = model
        self.cost_stats = {"mean": mean.tolist(), "std": std.tolist()}
        self.info["pretrain"] = {"n": int(len(x)), "epochs": int(epochs), "final_mse": float(loss_sum)}
        return self

    def predict_costs(self, candidates) -> np.ndarray:
        """The proxy head's (flops, params) estimates, shape (n, 2); needs ``pretrain`` first."""
        if not self.pretrained:
            raise PredictorError("this predictor was not pretrained on proxies; call pretrain() first")
        arch = self.encode(candidates, arch_only_ok=True)[:, :self.space.arch_width]
        with torch.inference_mode():
            z = self.proxy_model(torch.from_numpy(arch)).numpy().astype(np.float64)
        return np.exp(z * np.array(self.cost_stats["std"]) + np.array(self.cost_stats["mean"]))

    # ------------------------------------------------------------------ fine-tuning
    def fit(self, candidates, accuracies, frozen_epochs: int = 50, full_epochs: int = 50,
            progress: bool = False) -> "Predictor":
        """Fit the ensemble to trained pairs (accuracies are fractions in [0, 1]); returns self."""
        x = self.encode(candidates)
        y = np.asarray(accuracies, dtype=np.float64).reshape(-1)
        if len(y) != len(x):
            raise PredictorError(f"got {len(x)} candidates but {len(y)} accuracies")
        if len(y) < 3:
            raise PredictorError(f"fitting needs at least 3 trained pairs, got {len(y)}")
        if not np.all(np.isfinite(y)):
            raise PredictorError("accuracies contain NaN or infinity; drop failed trials before fitting")
        bounds = self.config["score_bounds"]
        if bounds is not None and (y.min() < bounds[0] or y.max() > bounds[1]):
            hint = " (percentages? divide by 100)" if bounds == [0.0, 1.0] else ""
            raise PredictorError(f"scores must lie in [{bounds[0]:g}, {bounds[1]:g}], got {y.min():g}..{y.max():g}"
                                 + hint)
        if frozen_epochs < 0 or full_epochs < 0 or frozen_epochs + full_epochs == 0:
            raise PredictorError("frozen_epochs and full_epochs must be >= 0 and not both 0")
        mean, std = float(y.mean()), float(max(y.std(), 1e-6))
        z = ((y - mean) / std).astype(np.float32)
        start = time.perf_counter()
        members, val_losses = [], []
        member_iter = range(self.config["ensemble"])
        if progress:
            from tqdm import tqdm
            member_iter = tqdm(member_iter, desc="fit predictor ensemble", unit="member")
        for m in member_iter:
            member, val = self._fit_member(m, x, z, frozen_epochs, full_epochs)
            members.append(member)
            val_losses.append(val)
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

    def _new_member(self) -> Member:
        c = self.config
        return Member(self.space.arch_width, self.space.recipe_width, c["hidden"], c["encoder_layers"],
                      c["head_layers"])

    def _fit_member(self, m: int, x: np.ndarray, z: np.ndarray, frozen_epochs: int, full_epochs: int):
        c = self.config
        train_idx, val_idx = self._member_split(m, len(x))
        xt, zt = torch.from_numpy(x[train_idx]), torch.from_numpy(z[train_idx])
        xv, zv = torch.from_numpy(x[val_idx]), torch.from_numpy(z[val_idx])
        huber = lambda pred, target: F.huber_loss(pred, target, delta=c["huber_delta"])  # noqa: E731
        with self._training(3, m):
            member = self._new_member()
            if self.pretrained:
                member.encoder.load_state_dict(self.proxy_model.encoder.state_dict())
            best, best_state = math.inf, None
            for phase, epochs in (("frozen", frozen_epochs), ("full", full_epochs)):
                if epochs == 0:
                    continue
                member.encoder.requires_grad_(phase == "full")
                params = member.parameters() if phase == "full" else member.head.parameters()
                opt = torch.optim.AdamW(params, lr=c["lr"], weight_decay=c["weight_decay"])
                stale = 0
                for _ in range(epochs):
                    member.train()
                    order = torch.randperm(len(xt))
                    for s in range(0, len(xt), c["batch_size"]):
                        idx = order[s:s + c["batch_size"]]
                        loss = huber(member(xt[idx]), zt[idx])
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                    if len(xv):
                        member.eval()
                        with torch.no_grad():
                            val = float(huber(member(xv), zv))
                        if val < best - 1e-6:
                            best, best_state, stale = val, copy.deepcopy(member.state_dict()), 0
                        else:
                            stale += 1
                            if stale >= c["patience"]:
                                break
            if best_state is not None:
                member.load_state_dict(best_state)
        member.requires_grad_(False).eval()
        return member, (best if best_state is not None else None)

    # ------------------------------------------------------------------ scoring
    def _require_fitted(self):
        if not self.fitted:
            raise PredictorError("this predictor is not fitted; call fit() on trained pairs or Predictor.load()")

    def _stacked_members(self) -> StackedMembers:
        """The members as one numpy computation, rebuilt when a member or weight changed."""
        if self._stacked is None or not self._stacked.current(self.members):
            self._stacked = StackedMembers(self.members)
        return self._stacked

    def predict_encoded(self, x, batch_size: int = 65536):
        """(mean, std) predicted accuracy of encoded rows, scored in batches; std is the ensemble
        spread. Each member's prediction is clipped to the score bounds first."""
        self._require_fitted()
        x = self.encode(x)
        stacked = self._stacked_members()
        out = np.empty((len(self.members), len(x)), dtype=np.float32)
        for s in range(0, len(x), batch_size):
            out[:, s:s + batch_size] = stacked.outputs(x[s:s + batch_size])
        return ensemble_stats(out, self.target_stats, self.config["score_bounds"])

    def predict(self, candidates, batch_size: int = 65536):
        """(mean, std) predicted accuracy of candidates (or encoded rows)."""
        return self.predict_encoded(self.encode(candidates), batch_size=batch_size)

    def rank(self, candidates, explore: float = 0.0) -> np.ndarray:
        """Indices of ``candidates`` best first by ``mean + explore * std`` (ties keep input order)."""
        mean, std = self.predict(candidates)
        return np.argsort(-(mean + explore * std), kind="stable")

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        from .checkpoint import save_predictor

        save_predictor(self, path)

    @classmethod
    def load(cls, path, space=None) -> "Predictor":
        from .checkpoint import load_predictor

        return load_predictor(path, space)

    def __repr__(self):
        state = "fitted" if self.fitted else "unfitted"
        return (f"Predictor(space={self.space.name!r}, ensemble={self.config['ensemble']}, "
                f"hidden={self.config['hidden']}, {'pretrained, ' if self.pretrained else ''}{state})")


def make(space, *, seed: int = 0, ensemble: int = 5, score_bounds=(0.0, 1.0), **options) -> Predictor:
    """The catalog's ``mlp`` surrogate factory."""
    return Predictor(space, ensemble=ensemble, seed=seed, score_bounds=score_bounds, **options)


def load(path, space=None) -> Predictor:
    """The catalog's ``mlp`` checkpoint loader."""
    return Predictor.load(path, space)
