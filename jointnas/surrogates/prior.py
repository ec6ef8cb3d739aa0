"""Warm start from pairs measured before: a surrogate fitted on a run's trials *and* earlier
trained pairs of the same space (a JSONL table such as ``data/fbnetv3_digits_pairs.jsonl``).
Cross-validation holds out only the run's own trials; the earlier pairs are always trained on."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..errors import UsageError
from ..space import Candidate
from ..trial import measured_score
from .base import PredictorError, Surrogate


def read_prior_rows(path, space) -> List[Tuple[object, str, list]]:
    """(candidate, status, curve) of each row of a pair table (rows: candidate, status, curve);
    rows of another space, or whose candidate the space refuses, are skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise UsageError(f"cannot read the earlier pairs {path}: {e.strerror or e}") from None
    rows = []
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        cand = Candidate.from_dict(row["candidate"])
        if row["candidate"].get("space") not in (None, space.name):
            continue
        try:
            space.validate(cand.arch, cand.recipe)
        except Exception:  # noqa: BLE001 - a row from another version of the space
            continue
        rows.append((cand, row.get("status", "failed"), row.get("curve") or []))
    return rows


def load_prior_pairs(path, space, epoch: int, diverged_score: Optional[float],
                     exclude=()) -> Tuple[List, np.ndarray]:
    """Candidates and their scores at ``epoch`` from a pair table (see :func:`read_prior_rows`),
    less those whose key is in ``exclude`` (a run's own trials: measured again, they count once)."""
    exclude = set(exclude)
    cands, scores = [], []
    for cand, status, curve in read_prior_rows(path, space):
        if cand.key() in exclude:
            continue
        score = measured_score(status, curve, epoch, diverged_score)
        if score is not None:
            cands.append(cand)
            scores.append(score)
    return cands, np.asarray(scores, dtype=np.float64)


class WithPrior(Surrogate):
    """``inner`` fitted on (candidates + prior) each time; in all else it is ``inner``: it predicts,
    saves (a checkpoint of ``inner``'s kind) and copies like it."""

    def __init__(self, inner: Surrogate, candidates, scores):
        self.inner, self.prior, self.prior_y = inner, list(candidates), np.asarray(scores, dtype=np.float64)

    # what the inner surrogate declares, per instance
    kind = property(lambda self: self.inner.kind)
    takes_costs = property(lambda self: self.inner.takes_costs)
    has_members = property(lambda self: self.inner.has_members)
    error = property(lambda self: self.inner.error)
    space = property(lambda self: self.inner.space)

    def pretrain(self, candidates, costs, *, progress: bool = False) -> "WithPrior":
        self.inner.pretrain(candidates, costs, progress=progress)
        return self

    def pretraining_note(self, n: int) -> str:
        return self.inner.pretraining_note(n)

    def fit(self, candidates, y, **options) -> "WithPrior":
        if isinstance(candidates, np.ndarray):
            candidates = np.concatenate([candidates, self.inner.space.encode(self.prior)])
        else:
            candidates = list(candidates) + self.prior
        self.inner.fit(candidates, np.concatenate([np.asarray(y, dtype=np.float64), self.prior_y]), **options)
        return self

    def predict(self, candidates, costs=None):
        return self.inner.predict(candidates, costs)

    def predict_encoded(self, x, costs=None):
        return self.inner.predict_encoded(x, costs)

    def predict_members(self, x):
        return self.inner.predict_members(x)

    def state(self) -> dict:
        return self.inner.state()

    @classmethod
    def from_state(cls, state: dict, space) -> "WithPrior":
        raise PredictorError("a warm-started surrogate is saved as its inner surrogate; load that kind")
