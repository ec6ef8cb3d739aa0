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
from ..trial import STATUSES, measured_score
from .base import PredictorError, Surrogate


class PriorPairsError(UsageError):
    """A pair table that cannot be used; ``problem`` says what is wrong, the message adds what to do."""

    def __init__(self, problem: str):
        super().__init__(f"{problem}; give a JSON-lines file of pairs of this space, or none")
        self.problem = problem


def read_prior_rows(path, space) -> List[Tuple[object, str, list]]:
    """(candidate, status, curve) of each row of a pair table: JSON lines, each an object with a
    ``candidate`` (arch, recipe, optionally space) of ``space``, a ``status`` and a ``curve`` (one
    mapping per epoch with a ``score`` or ``val_acc``). The whole file is read and checked: a
    missing or unreadable file, one that is not UTF-8 text, a line that is not such a pair, or a
    candidate of another space is a :class:`PriorPairsError` naming the file and line."""
    where = f"the earlier pairs {path}"
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except IsADirectoryError:
        raise PriorPairsError(f"{where} is a directory") from None
    except OSError as e:
        raise PriorPairsError(f"cannot read {where}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise PriorPairsError(f"{where} is not UTF-8 text (byte {e.start} is not)") from None
    rows = [_row(line, space, f"{where}, line {n}") for n, line in enumerate(text.splitlines(), start=1)
            if line.strip()]
    if not rows:
        raise PriorPairsError(f"{where} holds no pairs")
    return rows


def _row(line: str, space, where: str) -> Tuple[object, str, list]:
    try:
        row = json.loads(line)
    except ValueError as e:
        raise PriorPairsError(f"{where} is not JSON ({e})") from None
    if not isinstance(row, dict) or not isinstance(row.get("candidate"), dict):
        raise PriorPairsError(f"{where} is not a pair (an object with a 'candidate' object, a 'status', a 'curve')")
    named = row["candidate"].get("space")
    if named not in (None, "", space.name):
        raise PriorPairsError(f"{where} is a candidate of space {named!r}, not {space.name!r}")
    try:
        cand = Candidate.from_dict(row["candidate"])
        space.validate(cand.arch, cand.recipe)
    except (ValueError, TypeError) as e:  # SpaceError is a ValueError
        raise PriorPairsError(f"{where} is not a candidate of space {space.name} ({e})") from None
    status, curve = row.get("status", "failed"), row.get("curve") or []
    if status not in STATUSES:
        raise PriorPairsError(f"{where}: status {status!r} is none of {', '.join(STATUSES)}")
    if not isinstance(curve, list) or not all(_is_epoch(e) for e in curve):
        raise PriorPairsError(f"{where}: its 'curve' is not a list of epochs, each an object with a numeric "
                              "'score' or 'val_acc'")
    return cand, status, curve


def _is_epoch(entry) -> bool:
    if not isinstance(entry, dict):
        return False
    score = entry.get("score", entry.get("val_acc"))
    return isinstance(score, (int, float)) and not isinstance(score, bool)


def check_prior_pairs(path, space) -> int:
    """How many pairs the table at ``path`` holds for ``space``; a :class:`PriorPairsError` (see
    :func:`read_prior_rows`) when it cannot be used. Call it before any work that will use it."""
    return len(read_prior_rows(path, space))


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
        self.inner.fit(*self._with_prior(candidates, y), **options)
        return self

    def update(self, candidates, y, *, progress: bool = False) -> "WithPrior":
        """The inner surrogate's update (a warm start where it has one) on the rows and the prior."""
        self.inner.update(*self._with_prior(candidates, y), progress=progress)
        return self

    def _with_prior(self, candidates, y) -> tuple:
        if isinstance(candidates, np.ndarray):
            candidates = np.concatenate([candidates, self.inner.space.encode(self.prior)])
        else:
            candidates = list(candidates) + self.prior
        return candidates, np.concatenate([np.asarray(y, dtype=np.float64), self.prior_y])

    def predict(self, candidates, costs=None):
        return self.inner.predict(candidates, costs)

    def predict_encoded(self, x, costs=None):
        return self.inner.predict_encoded(x, costs)

    def predict_members(self, x, costs=None):
        return self.inner.predict_members(x, costs)

    def state(self) -> dict:
        return self.inner.state()

    @classmethod
    def from_state(cls, state: dict, space) -> "WithPrior":
        raise PredictorError("a warm-started surrogate is saved as its inner surrogate; load that kind")
