"""FBNetV3's predictor at a forest's speed (kind ``fbnetv3``): the ensemble of
:class:`~.ensemble.Predictor` (an encoder pretrained on the pool's FLOPs/params, an accuracy head
fine-tuned with Huber loss, first on the frozen encoder and then end to end) trained as ONE
stacked full-batch computation (:mod:`.batched`), with the rows' log-FLOPs/log-params also given
to the head, and refits that continue from the last weights as rows arrive.

Fitting, scoring and loading need numpy only (:mod:`.fullbatch`); saving writes the common
checkpoint file with torch.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

from ...errors import SpaceError
from ...space import SearchSpace
from ..base import PredictorError, Surrogate, checked_scores, decode_rows, encoded_rows
from . import batched, fullbatch
from .stacked import DEFAULT_SCORE_BOUNDS, ensemble_stats

PRETRAINING = ("auto", "on", "off")
# Below auto_from rows, "auto" pretrains where |tau(scores, log cost)| reaches this: at 16 rows it
# was .50 on average on NB201 (lowest .24 in 20 draws) and .18 on HPOBench vehicle/segment.
PROXY_TAU = 0.3


def _positive_int(name: str, value, low: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise PredictorError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class StackedPredictor(Surrogate):
    """Ranks candidates by predicted score, with the members' spread as the std.

    ``pretraining``: "on" starts every member from the encoder that :meth:`pretrain` fitted to
    the pool's proxies, "off" from random encoders, "auto" decides at each full fit from the
    data: from ``auto_from`` rows up, 3-fold out-of-fold Kendall tau with vs without (the
    better one, ties to pretrained); below that, pretrained where the measured scores follow
    the rows' log-FLOPs or log-params (|Kendall tau| >= ``PROXY_TAU``). Where the
    encoder is pretrained, the head also gets the rows' standardised log-FLOPs/log-params
    (``proxies=False``: never); where not, the proxies are not used at all. The choice is
    whether the pool's FLOPs/params carry signal: on NAS-Bench-201 they do (tau .33 -> .44 at
    16 rows), on digits' recorded pairs and HPOBench they cost tau (BENCHMARKS.md).

    :meth:`update` continues from the last weights for ``warm_steps`` end-to-end steps when
    rows were added, and fits from scratch once the rows reach ``refit_growth`` times those of
    the last full fit (the targets keep that fit's standardisation until then).
    """

    kind = "fbnetv3"
    takes_costs = True   # predict_encoded(x, costs) uses the caller's FLOPs/params
    has_members = True   # one prediction per ensemble member

    def __init__(self, space, *, hidden: int = 64, ensemble: int = 5, seed: int = 0, encoder_layers: int = 2,
                 head_layers: int = 2, lr: float = 1e-2, weight_decay: float = 1e-4, huber_delta: float = 1.0,
                 frozen_steps: int = 50, full_steps: int = 50, warm_steps: int = 5, refit_growth: float = 2.0,
                 pretraining: str = "auto", auto_from: int = 24, proxies: bool = True, pretrain_steps: int = 300,
                 pretrain_batch: int = 1024, score_bounds=DEFAULT_SCORE_BOUNDS):
        if not isinstance(space, SearchSpace):
            raise PredictorError(f"a predictor scores a SearchSpace, got {type(space).__name__} (a space file "
                                 "or name becomes one with jointnas.catalog.load_space)")
        if pretraining not in PRETRAINING:
            raise PredictorError(f"pretraining must be one of {', '.join(PRETRAINING)}, got {pretraining!r}")
        if not refit_growth > 1.0:
            raise PredictorError(f"refit_growth must be > 1 (rows relative to the last full fit), got {refit_growth!r}")
        if not lr > 0:
            raise PredictorError(f"lr must be > 0, got {lr!r}")
        if score_bounds is not None:
            lo, hi = (float(v) for v in score_bounds)
            if not lo < hi:
                raise PredictorError(f"score_bounds must be (low, high) with low < high, got {score_bounds!r}")
            score_bounds = [lo, hi]
        counts = {name: _positive_int(name, value) for name, value in
                  (("hidden", hidden), ("ensemble", ensemble), ("encoder_layers", encoder_layers),
                   ("head_layers", head_layers), ("auto_from", auto_from), ("pretrain_steps", pretrain_steps),
                   ("pretrain_batch", pretrain_batch))}
        steps = {name: _positive_int(name, value, 0) for name, value in
                 (("frozen_steps", frozen_steps), ("full_steps", full_steps), ("warm_steps", warm_steps))}
        if steps["frozen_steps"] + steps["full_steps"] == 0:
            raise PredictorError("frozen_steps and full_steps must not both be 0")
        self.space = space
        self.config = dict(counts, **steps, seed=int(seed), lr=float(lr), weight_decay=float(weight_decay),
                           huber_delta=float(huber_delta), refit_growth=float(refit_growth), pretraining=pretraining,
                           proxies=bool(proxies), score_bounds=score_bounds)
        self.cost_stats: Optional[dict] = None      # the pool's log-cost mean/std, once pretrained
        self.encoder: Optional[dict] = None         # the pretrained proxy model's weights (one member)
        self.weights: Optional[dict] = None         # the fitted ensemble's weights (numpy)
        self.target_stats: Optional[dict] = None
        self.rows = {"full": 0, "last": 0}          # rows at the last full fit and at the last (warm) fit
        self.info: dict = {}
        self._trainer = None                        # weights + optimizer moments of this process's last fit
        self._cache = None                          # (rows, their head inputs): the pool scored again

    @classmethod
    def create(cls, space, *, seed: int = 0, ensemble: int = 5, score_bounds=DEFAULT_SCORE_BOUNDS,
               **options) -> "StackedPredictor":
        return cls(space, ensemble=ensemble, seed=seed, score_bounds=score_bounds, **options)

    @property
    def pretrained(self) -> bool:
        return self.encoder is not None

    @property
    def fitted(self) -> bool:
        return self.weights is not None

    def __getstate__(self):   # deepcopy/pickle: a copy continues from the weights, not the optimizer
        state = dict(self.__dict__)
        state["_trainer"], state["_cache"] = None, None
        return state

    # ------------------------------------------------------------------ inputs
    def _encode(self, candidates):
        """(float32 rows, the candidates or None when rows were given)."""
        if isinstance(candidates, np.ndarray):
            return encoded_rows(self.space, candidates), None
        candidates = list(candidates)
        try:
            return self.space.encode(candidates).astype(np.float32), candidates
        except SpaceError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise PredictorError(f"cannot encode the candidates for space {self.space.name} ({type(e).__name__}: "
                                 f"{e}); check them with Candidate.validate()") from None

    @property
    def can_use_proxies(self) -> bool:
        """Whether the head can be given the rows' FLOPs/params (the pool's statistics are known)."""
        return self.config["proxies"] and self.cost_stats is not None

    @property
    def head_uses_proxies(self) -> bool:
        """Whether the fitted head takes the rows' FLOPs/params (its input width says)."""
        return self.fitted and self.weights["head0.wr"].shape[1] > self.space.recipe_width

    def _rest(self, x: np.ndarray, candidates=None, costs=None, proxies: bool = False) -> np.ndarray:
        """The head's inputs besides the embedding: the recipe columns centred, then with
        ``proxies`` the standardised log-FLOPs/params (``costs`` as given, else counted)."""
        recipe = x[:, self.space.arch_width:] * np.float32(2.0) - np.float32(1.0)
        if not proxies:
            return recipe
        if costs is None and candidates is None and self._cache is not None and self._cache[0] is x:
            return self._cache[1]
        if costs is None:
            cands = candidates if candidates is not None else decode_rows(self.space, x)
            costs = self.space.family.costs([c.arch for c in cands])
        logs = np.log(np.asarray(costs, dtype=np.float64))
        z = ((logs - self.cost_stats["mean"]) / self.cost_stats["std"]).astype(np.float32)
        out = np.concatenate([recipe, z], axis=1)
        if candidates is None:
            self._cache = (x, out)
        return out

    # ------------------------------------------------------------------ pretraining
    def pretrain(self, candidates, costs, *, progress: bool = False) -> "StackedPredictor":
        """Fit the encoder and a proxy layer to the pool's standardised log-FLOPs/log-params and keep
        their statistics for the head's proxy inputs (with ``pretraining="off"``, nothing)."""
        x, _ = self._encode(candidates)
        logs = np.log(np.asarray(costs, dtype=np.float64))
        if logs.shape != (len(x), 2) or not np.all(np.isfinite(logs)):
            raise PredictorError(f"costs must be positive, finite and of shape ({len(x)}, 2) (flops, params)")
        if len(x) < 2:
            raise PredictorError("pretraining needs at least 2 candidates")
        mean, std = logs.mean(0), np.maximum(logs.std(0), 1e-8)
        self.cost_stats = {"mean": mean.tolist(), "std": std.tolist()}
        if self.config["pretraining"] == "off":
            self.cost_stats = None
            self.info["pretrain"] = {"n": len(x), "encoder": "not pretrained: pretraining='off'"}
            return self
        c = self.config
        rng = np.random.default_rng([c["seed"] & 0xFFFFFFFF, 1])
        start = time.process_time()
        init = batched.init_proxy(rng, self.space.arch_width, c["hidden"], c["encoder_layers"])
        self.encoder, mse = fullbatch.pretrain_proxies(
            init, np.ascontiguousarray(x[:, :self.space.arch_width]), ((logs - mean) / std).astype(np.float32),
            c["pretrain_steps"], c["pretrain_batch"], 1e-2, c["seed"])
        self.info["pretrain"] = {"n": len(x), "steps": c["pretrain_steps"], "final_mse": mse,
                                 "cpu_s": time.process_time() - start}
        return self

    def pretraining_note(self, n: int) -> str:
        feats = "; where used, the head also gets the FLOPs/params of each row" if self.can_use_proxies else ""
        if not self.pretrained:
            return f"does not use the FLOPs/params of {n} candidates (pretraining={self.config['pretraining']!r})"
        when = ("used or not as 3-fold Kendall tau decides from "
                f"{self.config['auto_from']} measured rows up (below: as the scores follow FLOPs/params)"
                if self.config["pretraining"] == "auto" else "always used")
        return f"encoder pretrained on FLOPs/params of {n} candidates, {when}{feats}"

    # ------------------------------------------------------------------ fitting
    def _checked(self, candidates, y, costs=None, proxies: bool = False):
        x, cands = self._encode(candidates)
        y = checked_scores(y, len(x), self.config["score_bounds"])
        return x, self._rest(x, cands, costs, proxies), y

    def fit(self, candidates, y, costs=None, *, progress: bool = False) -> "StackedPredictor":
        """Fit the ensemble from scratch (from the pretrained encoder where it is used)."""
        x, rest, y = self._checked(candidates, y, costs, self.can_use_proxies)
        start = time.process_time()
        arch = np.ascontiguousarray(x[:, :self.space.arch_width])
        use, why = self._choose_pretraining(arch, rest, y)
        rest = self._head_inputs(rest, use)
        self.target_stats = {"mean": float(y.mean()), "std": float(max(y.std(), 1e-6))}
        self.info["pretraining"] = {"used": use, "why": why}
        self._trainer = fullbatch.Trainer(self._initial(use), self.config)
        self._trainer.fit(arch, rest, self._standardised(y))
        self.weights = self._trainer.arrays()
        self.rows = {"full": len(y), "last": len(y)}
        self.info["fit"] = {"n": len(y), "kind": "full", "cpu_s": time.process_time() - start}
        return self

    def update(self, candidates, y, *, progress: bool = False) -> "StackedPredictor":
        """After rows were added (earlier rows first): a few steps from the last weights, or a
        full fit once the rows reached ``refit_growth`` times those of the last full fit."""
        n = len(y)
        if not self.fitted or n <= self.rows["last"] or n >= self.config["refit_growth"] * self.rows["full"]:
            return self.fit(candidates, y, progress=progress)
        x, rest, y = self._checked(candidates, y, proxies=self.head_uses_proxies)
        start = time.process_time()
        if self._trainer is None:   # loaded from a file, or a copy: continue from the weights
            self._trainer = fullbatch.Trainer(self.weights, self.config)
        self._trainer.warm(np.ascontiguousarray(x[:, :self.space.arch_width]), rest, self._standardised(y))
        self.weights = self._trainer.arrays()
        self.rows["last"] = n
        self.info["fit"] = {"n": n, "kind": "warm", "cpu_s": time.process_time() - start}
        return self

    def _head_inputs(self, rest: np.ndarray, pretrained: bool) -> np.ndarray:
        """The proxies go with the pretraining: given to the head only where the encoder is pretrained."""
        return rest if pretrained else rest[:, :self.space.recipe_width]

    def _standardised(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.target_stats["mean"]) / self.target_stats["std"]).astype(np.float32)

    def _initial(self, pretrained: bool) -> dict:
        """Fresh members: every head random (its own draw per member), every encoder the
        pretrained one or random."""
        c, m = self.config, self.config["ensemble"]
        rng = np.random.default_rng([c["seed"] & 0xFFFFFFFF, 4])
        rest_width = self.space.recipe_width + (2 if pretrained and self.can_use_proxies else 0)
        weights = batched.init_encoder(rng, m, self.space.arch_width, c["hidden"], c["encoder_layers"])
        if pretrained:
            weights = {k: np.repeat(v, m, axis=0) for k, v in self.encoder.items() if k.startswith("enc")}
        weights.update(batched.init_head(rng, m, c["hidden"], rest_width, c["head_layers"]))
        return weights

    def _choose_pretraining(self, arch, rest, y) -> tuple:
        """(use the pretrained encoder?, why), by the ``pretraining`` setting and the data."""
        mode = self.config["pretraining"]
        if not self.pretrained:
            return False, "no pretrained encoder" if mode != "off" else "pretraining='off'"
        if mode != "auto":
            return mode == "on", f"pretraining={mode!r}"
        if len(y) < self.config["auto_from"]:
            if not self.can_use_proxies:
                return True, f"fewer than {self.config['auto_from']} rows to compare"
            return self._proxy_signal(rest, y)
        taus = {use: self._fold_tau(use, arch, rest, y) for use in (True, False)}
        why = f"3-fold Kendall tau {taus[True]:.3f} pretrained vs {taus[False]:.3f} not"
        return taus[True] >= taus[False], why

    def _proxy_signal(self, rest, y) -> tuple:
        """Too few rows for folds: pretrained where the rows' scores follow their log-FLOPs or
        log-params (the last two head inputs), |Kendall tau| >= PROXY_TAU."""
        from scipy.stats import kendalltau  # on fitting only

        taus = [kendalltau(y, rest[:, -j])[0] for j in (2, 1)]
        tau = max((abs(t) for t in taus if not np.isnan(t)), default=0.0)
        return bool(tau >= PROXY_TAU), (f"fewer than {self.config['auto_from']} rows to compare; scores follow "
                                        f"FLOPs/params with |Kendall tau| {tau:.2f} (threshold {PROXY_TAU})")

    def _fold_tau(self, pretrained: bool, arch, rest, y) -> float:
        from scipy.stats import kendalltau  # on fitting only

        rest = self._head_inputs(rest, pretrained)
        order = np.random.default_rng([self.config["seed"] & 0xFFFFFFFF, 8, len(y)]).permutation(len(y))
        oof = np.empty(len(y))
        for fold in np.array_split(order, 3):
            train = np.setdiff1d(order, fold)
            t = y[train]
            stats = (t.mean(), max(t.std(), 1e-6))
            trainer = fullbatch.Trainer(self._initial(pretrained), self.config)
            trainer.fit(arch[train], rest[train], ((t - stats[0]) / stats[1]).astype(np.float32))
            oof[fold] = batched.scores(trainer.arrays(), arch[fold], rest[fold]).mean(0)
        tau = kendalltau(y, oof)[0]
        return 0.0 if np.isnan(tau) else float(tau)

    # ------------------------------------------------------------------ scoring
    def _outputs(self, x, costs) -> np.ndarray:
        if not self.fitted:
            raise PredictorError("this predictor is not fitted; call fit() on scored candidates first")
        x = encoded_rows(self.space, np.asarray(x))
        return batched.scores(self.weights, np.ascontiguousarray(x[:, :self.space.arch_width]),
                              self._rest(x, costs=costs, proxies=self.head_uses_proxies))

    def predict_encoded(self, x, costs=None):
        """(mean, std) of encoded rows; std is the members' spread, each member clipped to the
        score bounds first. ``costs``: the rows' (n, 2) FLOPs/params when the caller has them."""
        return ensemble_stats(self._outputs(x, costs), self.target_stats, self.config["score_bounds"])

    def predict_members(self, x, costs=None) -> np.ndarray:
        """(members, n) each member's predicted score of encoded rows, clipped to the score bounds."""
        acc = self._outputs(x, costs).astype(np.float64) * self.target_stats["std"] + self.target_stats["mean"]
        bounds = self.config["score_bounds"]
        return acc if bounds is None else np.clip(acc, bounds[0], bounds[1])

    def predict(self, candidates, costs=None):
        x, cands = self._encode(candidates)
        if costs is None and cands is not None and self.head_uses_proxies:
            costs = self.space.family.costs([c.arch for c in cands])
        return self.predict_encoded(x, costs)

    # ------------------------------------------------------------------ files
    def state(self) -> dict:
        return {"config": dict(self.config), "cost_stats": self.cost_stats, "encoder": self.encoder,
                "weights": self.weights, "target_stats": self.target_stats, "rows": dict(self.rows),
                "info": self.info}

    @classmethod
    def from_state(cls, state: dict, space) -> "StackedPredictor":
        p = cls(space, **state["config"])
        as_arrays = lambda w: None if w is None else {k: np.asarray(v, np.float32) for k, v in w.items()}  # noqa: E731
        p.cost_stats, p.target_stats, p.info = state["cost_stats"], state["target_stats"], dict(state["info"])
        p.encoder, p.weights = as_arrays(state["encoder"]), as_arrays(state["weights"])
        p.rows = {k: int(v) for k, v in state["rows"].items()}
        return p

    def __repr__(self):
        return (f"StackedPredictor(space={self.space.name!r}, ensemble={self.config['ensemble']}, "
                f"{'pretrained, ' if self.pretrained else ''}{'fitted' if self.fitted else 'unfitted'})")
