"""A rank blend of FBNetV3's predictor and the forest (kind ``blend``): both are fitted on the
same rows, and a row's blended rank is the average of its ranks under the two.

On NAS-Bench-201 and HPOBench the average of the two rankings ranked held-out rows better than
either alone at most sizes (issue 23; BENCHMARKS.md, "FBNetV3's predictor, stacked"): the trees
are right early and where proxies carry no signal, the MLP from a few dozen rows on.

The blended mean is in score units (the average rank mapped onto the sorted averages of the two
means), so it orders the rows scored together by their average rank; a row's value depends on
the rows scored with it, as a rank does. The std combines both spreads and their disagreement:
sqrt((std_mlp^2 + std_forest^2) / 2 + ((mean_mlp - mean_forest) / 2)^2), for UCB.
"""
from __future__ import annotations

import numpy as np

from .base import PredictorError, Surrogate
from .forest import ForestSurrogate
from .mlp.fbnetv3 import StackedPredictor
from .mlp.stacked import DEFAULT_SCORE_BOUNDS


def average_ranks(values: np.ndarray) -> np.ndarray:
    """0-based ranks of ``values``, ties sharing their average rank (a forest predicts many ties)."""
    order = np.argsort(values, kind="stable")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts - 1) / 2.0, counts)
    return ranks


def blend(forest: tuple, mlp: tuple) -> tuple:
    """(mean, std) of the rank blend of two (mean, std) predictions of the same rows."""
    (mf, sf), (mm, sm) = (tuple(np.asarray(v, dtype=np.float64) for v in p) for p in (forest, mlp))
    both = (mf + mm) / 2.0
    rank = (average_ranks(mf) + average_ranks(mm)) / 2.0
    mean = np.interp(rank, np.arange(len(both)), np.sort(both))
    std = np.sqrt((sf ** 2 + sm ** 2) / 2.0 + ((mm - mf) / 2.0) ** 2)
    return mean, std


class BlendSurrogate(Surrogate):
    """FBNetV3's stacked predictor and the forest, ranked together (see the module).
    ``forest`` and ``mlp`` are the two parts' options (``ForestSurrogate`` and
    ``StackedPredictor`` keywords)."""

    kind = "blend"
    takes_costs = True

    def __init__(self, space, *, seed: int = 0, ensemble: int = 5, score_bounds=DEFAULT_SCORE_BOUNDS,
                 forest: dict = None, mlp: dict = None):
        for name, options in (("forest", forest), ("mlp", mlp)):
            if options is not None and not isinstance(options, dict):
                raise PredictorError(f"blend option {name} must be a dict of that part's options, got {options!r}")
        self.space = space
        self.config = {"seed": int(seed), "ensemble": int(ensemble),
                       "score_bounds": None if score_bounds is None else [float(v) for v in score_bounds],
                       "forest": dict(forest or {}), "mlp": dict(mlp or {})}
        self.forest = ForestSurrogate(space, seed=int(seed), **self.config["forest"])
        self.mlp = StackedPredictor(space, seed=int(seed), ensemble=int(ensemble), score_bounds=score_bounds,
                                    **self.config["mlp"])

    @property
    def fitted(self) -> bool:
        return self.forest.fitted and self.mlp.fitted

    def pretrain(self, candidates, costs, *, progress: bool = False) -> "BlendSurrogate":
        candidates = candidates if isinstance(candidates, np.ndarray) else list(candidates)
        self.forest.pretrain(candidates, costs)
        self.mlp.pretrain(candidates, costs)
        return self

    def pretraining_note(self, n: int) -> str:
        return f"blend of the forest ({self.forest.pretraining_note(n)}) and the MLP ({self.mlp.pretraining_note(n)})"

    def _fit_forest(self, candidates, y, costs) -> None:
        if isinstance(candidates, np.ndarray):
            self.forest.fit_encoded(candidates, y)
        else:
            self.forest.fit(candidates, y, costs)

    def fit(self, candidates, y, costs=None, *, progress: bool = False) -> "BlendSurrogate":
        candidates = candidates if isinstance(candidates, np.ndarray) else list(candidates)
        self._fit_forest(candidates, y, costs)
        self.mlp.fit(candidates, y, costs)
        return self

    def update(self, candidates, y, *, progress: bool = False) -> "BlendSurrogate":
        """The forest refitted (trees take no warm start), the MLP warm (see StackedPredictor.update)."""
        candidates = candidates if isinstance(candidates, np.ndarray) else list(candidates)
        self._fit_forest(candidates, y, None)
        self.mlp.update(candidates, y)
        return self

    def predict_encoded(self, x, costs=None):
        return blend(self.forest.predict_encoded(x, costs), self.mlp.predict_encoded(x, costs))

    def predict(self, candidates, costs=None):
        candidates = list(candidates)
        return blend(self.forest.predict(candidates, costs), self.mlp.predict(candidates, costs))

    def state(self) -> dict:
        return {"config": dict(self.config), "forest": self.forest.state(), "mlp": self.mlp.state()}

    @classmethod
    def from_state(cls, state: dict, space) -> "BlendSurrogate":
        b = cls(space, **state["config"])
        b.forest = ForestSurrogate.from_state(state["forest"], space)
        b.mlp = StackedPredictor.from_state(state["mlp"], space)
        return b

    def __repr__(self):
        return f"BlendSurrogate({self.forest!r}, {self.mlp!r})"
