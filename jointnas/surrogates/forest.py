"""A tree-ensemble surrogate: scikit-learn extra-trees or random forest; the mean and the spread
(standard deviation) of its trees' predictions play the roles of the MLP ensemble's.

``pretrain(candidates, costs)`` does not train anything: it makes log-FLOPs and log-params of
the family's deployable model two more input features (standardised on the pool), which trees
can split on directly. That is where proxies carry signal (NAS-Bench-201: accuracy rises with
the number of conv edges); with ``proxies=False`` they are left out. The trees then fit what a
linear trend on those two features (ridge, ``trend``) leaves: trees alone predict a constant
beyond the rows they saw, the trend carries on, and a search that ranks by the mean reaches the
larger models first where scores rise with them (BENCHMARKS.md, "The proxies' trend").

``update()`` regrows only the ``refresh`` fraction of trees fitted longest ago, all of them once
the rows grew by ``refit_growth`` since the last full fit, and the per-tree scores of the pool
last scored are kept: a suggestion in a 62,208-row pool traverses a few trees, not all (BENCHMARKS.md,
"The search's own cost"). The checkpoint stores the
fitted trees as plain arrays (``kind="forest"``), read as plain data by :mod:`jointnas.surrogates.tensorfile`
and scored by a vectorised traversal: no pickled scikit-learn object is ever read.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..space import SearchSpace
from .base import PredictorError, Surrogate, decode_rows
from .checkpoint import Checkpoint

KIND = "forest"
LEGACY_FORMAT = 1   # forest files from before the common checkpoint envelope


class ForestError(PredictorError):
    """A forest surrogate cannot be fitted, used or loaded as asked."""


class ForestSurrogate(Surrogate):
    kind = KIND
    error = ForestError
    takes_costs = True   # predict_encoded(x, costs) uses the caller's FLOPs/params
    has_members = True   # one prediction per tree

    # Defaults: the settings that found top configurations fastest in scripts/bench_search.py
    # (BENCHMARKS.md, "Search on recorded benchmarks").
    def __init__(self, space, *, trees: int = 30, method: str = "random", min_leaf: int = 2,
                 max_features: float = 1.0, proxies: bool = True, trend: Optional[float] = 1.0,
                 refresh: float = 0.1, refit_growth: float = 1.25, seed: int = 0):
        if method not in ("extra", "random"):
            raise ForestError(f"forest method must be 'extra' (extra-trees) or 'random' (random forest), "
                              f"got {method!r}")
        if not isinstance(trees, int) or trees < 2:
            raise ForestError(f"a forest needs at least 2 trees for a spread, got {trees!r}")
        if not 0.0 < max_features <= 1.0:
            raise ForestError(f"max_features must be a fraction in (0, 1], got {max_features!r}")
        if not 0.0 < refresh <= 1.0:
            raise ForestError(f"refresh must be the fraction of trees refitted per update, in (0, 1], got {refresh!r}")
        if trend is not None and not trend > 0.0:   # FLOPs and params can be collinear: a penalty is needed
            raise ForestError(f"trend must be the ridge penalty of the proxies' linear trend (> 0) or None (no "
                              f"trend), got {trend!r}")
        if not refit_growth >= 1.0:
            raise ForestError(f"refit_growth must be >= 1 (rows since the last full fit), got {refit_growth!r}")
        self.space = space
        self.config = dict(trees=int(trees), method=method, min_leaf=int(min_leaf),
                           max_features=float(max_features), proxies=bool(proxies),
                           trend=None if trend is None else float(trend), refresh=float(refresh),
                           refit_growth=float(refit_growth), seed=int(seed))
        self.cost_stats: Optional[dict] = None
        self.target_stats: Optional[dict] = None
        self.trend: Optional[list] = None   # [intercept, slope on log-FLOPs, on log-params] (standardised)
        self._model = None       # fitted scikit-learn ensemble (this process)
        self._arrays = None      # the same trees as arrays (after load, or for saving)
        self._cache = None       # (rows, their features): the last rows scored
        self._scales = None      # (trees, 2): each tree's (mean, std) of the scores it was fitted to
        self._age = None         # (trees,): the update at which each tree was last fitted
        self._rows = None        # {"full": rows at the last full fit, "updates": updates since}
        self._scored = None      # PoolPredictions of the last feature rows scored
        self._seen = None        # {id(candidate): (candidate, feature row)} of the last fit's rows
        self.info: dict = {}

    # ------------------------------------------------------------------ inputs
    @property
    def pretrained(self) -> bool:
        return self.cost_stats is not None

    @property
    def fitted(self) -> bool:
        return self._model is not None or self._arrays is not None

    def pretrain(self, candidates, costs, *, progress: bool = False) -> "ForestSurrogate":
        """Use log-FLOPs/log-params (standardised on ``candidates``, the pool) as features."""
        if not self.config["proxies"]:
            self.info["pretrain"] = "skipped: proxies=False"
            return self
        logs = np.log(np.asarray(costs, dtype=np.float64))
        if logs.ndim != 2 or logs.shape[1] != 2 or len(logs) != len(candidates) or not np.all(np.isfinite(logs)):
            raise ForestError(f"costs must be positive, finite and of shape ({len(candidates)}, 2)")
        self.cost_stats = {"mean": logs.mean(0).tolist(), "std": np.maximum(logs.std(0), 1e-8).tolist()}
        return self

    def pretraining_note(self, n: int) -> str:
        if not self.pretrained:
            return super().pretraining_note(n)
        return f"given as features the FLOPs/params of {n} candidates"

    def _encoded_features(self, x, costs=None) -> np.ndarray:
        """Feature rows of rows encoded with ``space.encode``: the proxies of their archs appended
        (``costs``, (n, 2) FLOPs/params, when the caller has them; else counted from the rows).
        The coarse loop scores the same pool arrays (rows and costs) every iteration, so the last
        feature rows are cached."""
        x = np.asarray(x)
        given = costs
        if self._cache is not None and self._cache[0] is x and self._cache[1] is given:
            return self._cache[2]
        if not self.pretrained:
            out = np.ascontiguousarray(x, dtype=np.float32)
        else:
            if costs is None:
                costs = self.space.family.costs([c.arch for c in decode_rows(self.space, x)])
            # float32 and contiguous, as the trees read them: a 62,208-row pool was copied twice per scoring
            out = np.ascontiguousarray(self._with_costs(x, costs), dtype=np.float32)
        self._cache = (x, given, out)
        return out

    def _with_costs(self, x, costs) -> np.ndarray:
        """``x`` with the standardised log FLOPs/params of its rows appended."""
        z = (np.log(np.asarray(costs, dtype=np.float64)) - self.cost_stats["mean"]) / self.cost_stats["std"]
        return np.concatenate([np.asarray(x, dtype=np.float64), z], axis=1)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = state["_scored"] = state["_seen"] = None
        return state

    def features(self, candidates, costs=None) -> np.ndarray:
        """Rows the trees see: the space's encoding, plus standardised log costs once pretrained
        (``costs`` as given, else the family's count)."""
        x = self.space.encode(list(candidates)).astype(np.float64)
        if not self.pretrained:
            return x
        if costs is None:
            costs = self.space.family.costs([c.arch for c in candidates])
        return self._with_costs(x, costs)

    def _training_rows(self, candidates, costs=None) -> np.ndarray:
        """:meth:`features` of the rows to fit, those of the candidates (the same objects) fitted
        last time taken from then: a refit encodes and prices only the rows added."""
        candidates = list(candidates)
        if costs is not None or not candidates:
            return self.features(candidates, costs)
        seen = self._seen or {}
        new = [c for c in candidates if id(c) not in seen]
        if new:
            seen = {**seen, **{id(c): (c, row) for c, row in zip(new, self.features(new))}}
        # each candidate is kept beside its row, so that its id cannot be reused meanwhile
        self._seen = {id(c): seen[id(c)] for c in candidates}
        return np.stack([seen[id(c)][1] for c in candidates])

    # ------------------------------------------------------------------ fitting
    def fit(self, candidates, y, costs=None, *, progress: bool = False) -> "ForestSurrogate":
        return self.fit_features(self._training_rows(candidates, costs), y)

    def fit_encoded(self, x, y) -> "ForestSurrogate":
        """Fit rows encoded with ``space.encode`` and their scores."""
        return self.fit_features(self._encoded_features(x), y)

    def fit_features(self, x, y) -> "ForestSurrogate":
        """Fit the trees to feature rows ``x`` (see :meth:`features`) and their scores ``y``.

        Trees are grown one by one (a random forest on a bootstrap resample of the rows,
        extra-trees on all of them) without scikit-learn's ensemble wrapper, whose per-tree
        overhead was most of a fit on a few hundred rows."""
        c = self.config
        x, z, n = self._targets(x, y)
        rng = np.random.default_rng([c["seed"] & 0xFFFFFFFF, n])
        self._model, self._arrays, self._scored = self._grown(x, z, rng, c["trees"]), None, None
        self._scales = np.tile(self._stats(), (c["trees"], 1))
        self._age, self._rows = np.zeros(c["trees"], dtype=np.int64), {"full": n, "updates": 0}
        self.info["fit"] = {"n": n, "kind": "full"}
        return self

    def update(self, candidates, y, *, progress: bool = False) -> "ForestSurrogate":
        """After rows were added: the ``refresh`` fraction of the trees fitted longest ago are grown
        again on every row, the others kept; all of them once the rows reached ``refit_growth``
        times those of the last full fit (or when these trees were loaded from a file). Scoring the
        same pool again then traverses only the trees grown anew."""
        n, c = len(y), self.config
        if self._model is None or self._rows is None or n >= c["refit_growth"] * self._rows["full"] or n < 2:
            return self.fit(candidates, y, progress=progress)
        x, z, n = self._targets(self._training_rows(candidates), y)
        self._rows["updates"] += 1
        rng = np.random.default_rng([c["seed"] & 0xFFFFFFFF, n, self._rows["updates"]])
        k = max(1, int(round(c["refresh"] * c["trees"])))
        redo = np.argsort(self._age, kind="stable")[:k]
        for t, tree in zip(redo, self._grown(x, z, rng, k)):
            self._model[t] = tree
        self._scales[redo] = self._stats()
        self._age[redo] = self._rows["updates"]
        self._arrays = None
        if self._scored is not None:
            self._scored.stale(redo)
        self.info["fit"] = {"n": n, "kind": "partial", "trees_refitted": int(k)}
        return self

    def _targets(self, x, y):
        """(feature rows as the trees read them, standardised scores left by the refitted trend,
        rows) of a fit; the trend and the target stats are set."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(x) != len(y) or len(y) < 2:
            raise ForestError(f"fitting needs at least 2 scored candidates and one score each, got {len(x)} / {len(y)}")
        if not np.all(np.isfinite(y)):
            raise ForestError("scores contain NaN or infinity; drop failed trials before fitting")
        self.trend = self._fit_trend(x, y)
        y = y - self._trend_of(x)
        mean, std = float(y.mean()), float(max(y.std(), 1e-12))
        self.target_stats = {"mean": mean, "std": std}
        return x, (y - mean) / std, len(y)

    def _stats(self) -> list:
        """[mean, std] of the scores the last fit standardised: a tree grown then is scaled back by them."""
        return [self.target_stats["mean"], self.target_stats["std"]]

    def _grown(self, x, z, rng, k: int) -> list:
        """``k`` trees grown on ``x`` and ``z``."""
        # scikit-learn on fitting only: scoring a saved forest (the fine stage) needs none
        import sklearn
        from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor

        # the arguments are checked here once, not by scikit-learn for every tree
        with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
            return [self._grow(x, z, rng, DecisionTreeRegressor, ExtraTreeRegressor) for _ in range(k)]

    def _fit_trend(self, x, y) -> Optional[list]:
        """The proxies' linear trend (ridge, the intercept not penalised) on feature rows ``x``, whose
        last two columns are the standardised log-FLOPs/params; None where there is none."""
        if self.config["trend"] is None or not self.pretrained:
            return None
        a = np.c_[np.ones(len(x)), np.asarray(x[:, -2:], dtype=np.float64)]
        coef = np.linalg.solve(a.T @ a + self.config["trend"] * np.diag([0.0, 1.0, 1.0]), a.T @ y)
        return [float(v) for v in coef]

    def _trend_of(self, x) -> np.ndarray:
        """The trend at feature rows ``x`` (zeros without one)."""
        if self.trend is None:
            return np.zeros(len(x))
        return self.trend[0] + np.asarray(x[:, -2:], dtype=np.float64) @ np.asarray(self.trend[1:])

    def _grow(self, x, z, rng, DecisionTreeRegressor, ExtraTreeRegressor):
        """One tree: extra-trees on every row, or a CART tree on a bootstrap resample."""
        c = self.config
        seed = int(rng.integers(2 ** 31))
        if c["method"] == "extra":
            tree = ExtraTreeRegressor(min_samples_leaf=c["min_leaf"], max_features=c["max_features"], random_state=seed)
            tree.fit(x, z, check_input=False)
        else:
            rows = rng.integers(len(z), size=len(z))
            tree = DecisionTreeRegressor(min_samples_leaf=c["min_leaf"], max_features=c["max_features"],
                                         random_state=seed)
            tree.fit(x[rows], z[rows], check_input=False)
        return tree.tree_

    # ------------------------------------------------------------------ scoring
    def predict_members(self, x, costs=None) -> np.ndarray:
        """(trees, n) per-tree predictions of rows encoded with ``space.encode`` (``costs`` as in
        :meth:`predict_encoded`)."""
        return self._members(self._encoded_features(x, costs))

    def _members(self, x) -> np.ndarray:
        """(trees, n) per-tree predictions of feature rows, in the scores' units."""
        if not self.fitted:
            raise ForestError("this forest is not fitted; call fit() first or load a fitted one")
        if self._model is None:
            z = _traverse(self._arrays, np.asarray(x, dtype=np.float32).astype(np.float64))
            return z * self.target_stats["std"] + self.target_stats["mean"] + self._trend_of(x)
        return self._pool(x).values + self._trend_of(x)

    def _tree_values(self, x32: np.ndarray, trees) -> np.ndarray:
        """(len(trees), n) predictions of the in-memory trees ``trees`` (indices), in the scores' units."""
        out = np.empty((len(trees), len(x32)))
        for i, t in enumerate(trees):
            tree = self._model[t]
            out[i] = tree.value[:, 0, 0][tree.apply(x32)] * self._scales[t, 1] + self._scales[t, 0]
        return out

    def _pool(self, x) -> "PoolPredictions":
        """The per-tree predictions of feature rows ``x``, kept while the same rows (the same
        array) are scored again, with the trees grown since traversed again."""
        scored = self._scored
        if scored is None or scored.rows is not x:
            x32 = np.ascontiguousarray(x, dtype=np.float32)
            scored = PoolPredictions(x, self._tree_values(x32, range(len(self._model))))
            self._scored = scored if x32 is x else None   # only arrays the trees read as they are
            return scored
        if scored.pending:
            scored.refresh(self._tree_values(x, scored.pending))
        return scored

    def predict_features(self, f):
        if self._model is None:
            z = self._members(f)
            return z.mean(0), z.std(0)
        mean, std = self._pool(f).moments()
        return mean + self._trend_of(f), std

    def predict_encoded(self, x, costs=None):
        """(mean, std) of rows encoded with ``space.encode`` (the spread is across trees);
        ``costs``: their (n, 2) FLOPs/params when known (the fine stage prices every row anyway),
        which spares decoding the rows to count them again."""
        return self.predict_features(self._encoded_features(x, costs))

    def predict(self, candidates, costs=None):
        return self.predict_features(self.features(candidates, costs))

    # ------------------------------------------------------------------ files
    def tree_arrays(self) -> dict:
        """The fitted trees as padded arrays (trees, nodes): left, right, feature, threshold, value."""
        if self._arrays is None:
            if self._model is None:
                raise ForestError("this forest is not fitted; nothing to save")
            trees = self._model
            n = max(t.node_count for t in trees)
            out = {"left": np.full((len(trees), n), -1, np.int64), "right": np.full((len(trees), n), -1, np.int64),
                   "feature": np.zeros((len(trees), n), np.int64), "threshold": np.zeros((len(trees), n)),
                   "value": np.zeros((len(trees), n))}
            for i, t in enumerate(trees):
                k = t.node_count
                out["left"][i, :k], out["right"][i, :k] = t.children_left, t.children_right
                out["feature"][i, :k] = np.maximum(t.feature, 0)
                # each tree's values in the units of the last fit's target stats (an updated
                # forest's trees were fitted to scores standardised at different times)
                value = t.value[:, 0, 0] * self._scales[i, 1] + self._scales[i, 0]
                out["threshold"][i, :k] = t.threshold
                out["value"][i, :k] = (value - self.target_stats["mean"]) / self.target_stats["std"]
            self._arrays = out
        return self._arrays

    def state(self) -> dict:
        trees = self.tree_arrays() if self.fitted else {}  # a pretrained-only forest has no trees yet
        return {"config": dict(self.config), "cost_stats": self.cost_stats, "target_stats": self.target_stats,
                "trend": self.trend,
                "info": self.info, "trees": trees}

    @classmethod
    def from_state(cls, state: dict, space) -> "ForestSurrogate":
        f = cls(space, **state["config"])
        f.cost_stats, f.target_stats, f.info = state["cost_stats"], state["target_stats"], dict(state["info"])
        f.trend = state.get("trend")   # files from before the trend have none
        f._arrays = {k: np.asarray(v) for k, v in state["trees"].items()} or None
        return f

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, space) -> "ForestSurrogate":
        data = checkpoint.data
        if data.get("format") != LEGACY_FORMAT:
            return super().from_checkpoint(checkpoint, space)
        if not isinstance(space, SearchSpace):
            raise checkpoint.space_needed(ForestError)
        if data.get("fingerprint") != space.fingerprint():
            raise ForestError(f"{checkpoint.path} was fitted on space {data.get('space')!r} with a different layout "
                              f"than space {space.name!r}; refit it on this space")
        with checkpoint.consistent(ForestError):
            return cls.from_state(data, space)

    def __repr__(self):
        c = self.config
        return (f"ForestSurrogate({c['method']}-trees x {c['trees']}, proxies={'on' if self.pretrained else 'off'}, "
                f"{'fitted' if self.fitted else 'unfitted'})")


class PoolPredictions:
    """Per-tree predictions of one array of feature rows, with running sums for their mean and
    spread: after an update only the regrown trees (``pending``) are traversed again."""

    def __init__(self, rows: np.ndarray, values: np.ndarray):
        self.rows, self.values = rows, values
        self.sum, self.sumsq = values.sum(0), np.square(values).sum(0)
        self.pending: list = []

    def stale(self, trees) -> None:
        self.pending = sorted(set(self.pending) | {int(t) for t in trees})

    def refresh(self, new: np.ndarray) -> None:
        old = self.values[self.pending]
        self.sum += new.sum(0) - old.sum(0)
        self.sumsq += np.square(new).sum(0) - np.square(old).sum(0)
        self.values[self.pending] = new
        self.pending = []

    def moments(self):
        m = len(self.values)
        mean = self.sum / m
        return mean, np.sqrt(np.maximum(self.sumsq / m - mean * mean, 0.0))


def _traverse(arrays: dict, x: np.ndarray) -> np.ndarray:
    """Per-tree leaf values of rows ``x``, all trees at once."""
    left, right, feat, thr, val = (arrays[k] for k in ("left", "right", "feature", "threshold", "value"))
    t = np.arange(len(left))[:, None]
    node = np.zeros((len(left), len(x)), dtype=np.int64)
    rows = np.arange(len(x))[None, :]
    while True:
        inner = left[t, node] >= 0
        if not inner.any():
            return val[t, node]
        go_left = x[rows, feat[t, node]] <= thr[t, node]
        node = np.where(inner, np.where(go_left, left[t, node], right[t, node]), node)
