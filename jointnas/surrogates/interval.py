"""Prediction intervals calibrated to measured error: split conformal over out-of-fold residuals.

A surrogate's spread (the std of its trees or ensemble members) says how much its members
disagree, not how far its predictions fall from what training then measures: on digits the
forest's spread was about 2 points while its k-fold error was 12. The interval here is built
from the errors measured on held-out trials instead. Each residual is taken relative to the
spread plus the mean spread (so a candidate the members disagree on gets a wider interval, and a
zero spread still gets one); the interval is ``mean +- q (spread + mean spread)`` with ``q`` the
``ceil((n + 1) level)``-th smallest of the ``n`` scaled residuals, which covers a new trial drawn
like the held-out ones with probability >= ``level`` (split conformal prediction; with k-fold
residuals, as here, the guarantee is the CV+ one, about ``level`` in practice). Candidates chosen
for a high prediction (the fine stage's top) are not drawn like them: their interval is a
statement about the typical error, not a promise about the best.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

LEVEL = 0.8   # the share of held-out trials an interval is meant to cover


@dataclass(frozen=True)
class CalibratedInterval:
    """``mean +- scale * (spread + offset)`` covers about ``level`` of trials like the ``n`` it was built on."""

    level: float
    scale: float
    offset: float
    n: int

    @classmethod
    def from_out_of_fold(cls, truth: Sequence[float], predicted: Sequence[float],
                         spread: Optional[Sequence[float]] = None, level: float = LEVEL) -> Optional["CalibratedInterval"]:
        """From held-out trials' measured scores, out-of-fold predictions and spreads (None: the
        surrogate has none); None when there are too few trials for ``level`` (n < level / (1 - level))."""
        y, mu = np.asarray(truth, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
        s = np.zeros_like(y) if spread is None else np.nan_to_num(np.asarray(spread, dtype=np.float64))
        n = len(y)
        rank = math.ceil((n + 1) * level)
        if n == 0 or rank > n:
            return None
        offset = float(s.mean()) if s.mean() > 0 else 1.0   # no spread at all: plain absolute residuals
        scaled = np.sort(np.abs(y - mu) / (s + offset))
        return cls(float(level), float(scaled[rank - 1]), offset, n)

    @classmethod
    def from_record(cls, record: Optional[dict], level: float = LEVEL) -> Optional["CalibratedInterval"]:
        """From a coarse run's ``predictor_eval`` record (its ``out_of_fold`` part); None without one."""
        oof = (record or {}).get("out_of_fold")
        if not oof:
            return None
        return cls.from_out_of_fold(oof["truth"], oof["predicted"], oof.get("spread"), level)

    def half_width(self, spread) -> np.ndarray:
        s = np.zeros(np.shape(spread)) if spread is None else np.nan_to_num(np.asarray(spread, dtype=np.float64))
        return self.scale * (s + self.offset)

    def bounds(self, mean, spread) -> Tuple[np.ndarray, np.ndarray]:
        """(low, high) of the interval around ``mean`` with the surrogate's ``spread``."""
        mean = np.asarray(mean, dtype=np.float64)
        half = self.half_width(spread if spread is not None else np.zeros_like(mean))
        return mean - half, mean + half

    def describe(self) -> str:
        return (f"{100 * self.level:.0f} % interval: split conformal on the out-of-fold errors of {self.n} "
                "held-out trials")
