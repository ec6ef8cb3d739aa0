"""What ranks untried candidates: :class:`Surrogate`, the base class that declares every capability
the searches use (with defaults), and :class:`Scorer`, the part of it that scores rows (all the
fine stage and the batch policies need).

A new surrogate subclasses :class:`Surrogate`, sets ``kind``, and writes ``fit``, ``predict``,
``state`` and ``from_state``; saving and loading are the base's, in the one checkpoint file
(:mod:`jointnas.surrogates.checkpoint`). Register the class in ``jointnas.catalog.SURROGATES``
and every command can make it by name and read its checkpoints back.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, List, Optional, Sequence, Tuple, Type

import numpy as np

from ..errors import UsageError
from ..space import Candidate, SearchSpace
from ..space.dims import column_values
from ..space.pool import columns_to_candidates
from .checkpoint import Checkpoint, write

Prediction = Tuple[np.ndarray, np.ndarray]   # (mean, std), one entry per row


class PredictorError(UsageError):
    """A predictor cannot be built, fitted, used or loaded as asked; the message says why."""


class Scorer(ABC):
    """Scores rows encoded with ``space.encode``: ``predict_encoded(x) -> (mean, std)``."""

    kind: ClassVar[str] = ""
    # predict/predict_encoded use ``costs``, the rows' (n, 2) FLOPs/params, when the caller has
    # them (the fine stage prices every row anyway); otherwise they are not passed
    takes_costs: ClassVar[bool] = False
    # predict_members gives one prediction per member (a tree, a network) to draw from (Thompson)
    has_members: ClassVar[bool] = False
    space: SearchSpace

    @abstractmethod
    def predict_encoded(self, x: np.ndarray, costs: Optional[np.ndarray] = None) -> Prediction:
        """(mean, std) predicted score of rows encoded with ``space.encode``."""

    def predict(self, candidates: Sequence, costs: Optional[np.ndarray] = None) -> Prediction:
        """(mean, std) predicted score of candidates (Candidates or plain mappings)."""
        return self.predict_encoded(self.space.encode(list(candidates)), costs)

    def predict_members(self, x: np.ndarray, costs: Optional[np.ndarray] = None) -> np.ndarray:
        """(members, n) per-member predictions of encoded rows (``costs`` as in ``predict_encoded``).
        Default: the mean, as one member; a policy draws from members only where ``has_members``
        says they are worth drawing from."""
        return np.asarray(self.predict_encoded(x, costs)[0])[None, :]


class Surrogate(Scorer):
    """Learns scores of candidates and predicts them with a spread: what the coarse loop fits.

    ``kind`` is the name it is registered under in ``jointnas.catalog.SURROGATES`` and the one
    written into its checkpoints. ``state()`` returns plain values (None, bool, int, float, str),
    numpy arrays (or torch tensors), and dicts, lists and tuples of them; ``from_state`` builds
    the surrogate back from what ``state()`` returned, the arrays as numpy arrays.
    """

    kind: ClassVar[str]
    error: ClassVar[Type[UsageError]] = PredictorError   # what its fitting and loading raise

    @classmethod
    def create(cls, space: SearchSpace, *, seed: int = 0, ensemble: int = 5, score_bounds=(0.0, 1.0),
               **options) -> "Surrogate":
        """A new unfitted surrogate with a run's settings (the catalog's factory). Default:
        ``cls(space, seed=seed, **options)``; ``ensemble`` (members of an ensemble) and
        ``score_bounds`` (the range of a score) are for surrogates that use them."""
        return cls(space, seed=seed, **options)

    def pretrain(self, candidates: Sequence, costs: np.ndarray, *, progress: bool = False) -> "Surrogate":
        """Learn from the pool's (n, 2) FLOPs/params before any score is measured. Default: nothing."""
        return self

    def pretraining_note(self, n: int) -> str:
        """What :meth:`pretrain` did with the costs of ``n`` candidates, for the run's log."""
        return f"does not use the FLOPs/params of {n} candidates"

    @abstractmethod
    def fit(self, candidates: Sequence, y: np.ndarray, *, progress: bool = False) -> "Surrogate":
        """Fit measured scores ``y`` of candidates (or rows encoded with ``space.encode``); returns self."""

    def update(self, candidates: Sequence, y: np.ndarray, *, progress: bool = False) -> "Surrogate":
        """Fit again after rows were added: ``candidates`` and ``y`` are every row measured so far,
        earlier rows first, as :meth:`fit` takes them. A surrogate that can continue from its last
        weights (a warm start) does so here; the default fits from scratch."""
        return self.fit(candidates, y, progress=progress)

    @abstractmethod
    def predict(self, candidates: Sequence, costs: Optional[np.ndarray] = None) -> Prediction:
        """(mean, std) predicted score of candidates; ``costs`` as in ``predict_encoded``."""

    def predict_encoded(self, x: np.ndarray, costs: Optional[np.ndarray] = None) -> Prediction:
        """(mean, std) of rows encoded with ``space.encode``. Default: :meth:`predict` of the
        candidates the rows encode."""
        return self.predict(decode_rows(self.space, np.asarray(x)), costs)

    @abstractmethod
    def state(self) -> dict:
        """Everything :meth:`from_state` needs, as plain values and arrays (see the class)."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict, space: SearchSpace) -> "Surrogate":
        """The surrogate whose :meth:`state` was ``state``, scoring ``space``."""

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write the checkpoint (atomically) that :meth:`load` and ``jointnas.catalog.load_surrogate`` read."""
        write(path, self.kind, self.space, self.state(), self.error)

    @classmethod
    def load(cls, path, space: Optional[SearchSpace] = None) -> "Surrogate":
        """The surrogate of this class saved at ``path``, fitted on ``space``. The file is checked
        before anything is built (format, checksum, kind, the space's fingerprint); reading a
        file of any kind with the space it names is ``jointnas.catalog.load_surrogate``."""
        return cls.from_checkpoint(Checkpoint.read(path, cls.error), space)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, space: SearchSpace) -> "Surrogate":
        """The surrogate a checkpoint file holds, after every check of it."""
        state = checkpoint.state(cls.kind, space, cls.error)
        if not isinstance(space, SearchSpace):
            raise checkpoint.space_needed(cls.error)
        with checkpoint.consistent(cls.error):
            return cls.from_state(state, space)

    @classmethod
    def scorer_from_checkpoint(cls, checkpoint: Checkpoint, space: SearchSpace) -> Scorer:
        """What ``jointnas fine`` scores with. Default: the surrogate itself; a kind whose
        training needs heavy imports (the MLP's torch) returns a lighter scorer."""
        return cls.from_checkpoint(checkpoint, space)


# ---------------------------------------------------------------------- measured scores
def checked_scores(y, n: int, bounds, *, noun: str = "scores", rows: str = "scored candidates") -> np.ndarray:
    """``y`` as a float64 vector, or a PredictorError unless it holds one finite value per each of
    the ``n`` rows (at least 3) within ``bounds`` ((low, high) or None). ``noun`` and ``rows`` are
    what the caller's messages call the values and the rows."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(y) != n:
        raise PredictorError(f"got {n} candidates but {len(y)} {noun}")
    if len(y) < 3:
        raise PredictorError(f"fitting needs at least 3 {rows}, got {len(y)}")
    if not np.all(np.isfinite(y)):
        raise PredictorError(f"{noun} contain NaN or infinity; drop failed trials before fitting")
    if bounds is not None and (y.min() < bounds[0] or y.max() > bounds[1]):
        hint = " (percentages? divide by 100)" if bounds == [0.0, 1.0] else ""
        raise PredictorError(f"scores must lie in [{bounds[0]:g}, {bounds[1]:g}], got {y.min():g}..{y.max():g}"
                             + hint)
    return y


# ---------------------------------------------------------------------- encoded rows
def encoded_rows(space: SearchSpace, rows: np.ndarray, arch_only_ok: bool = False) -> np.ndarray:
    """``rows`` (already encoded with ``space.encode``) as contiguous float32, or a PredictorError
    when they do not have the space's width (or, with ``arch_only_ok``, its arch part's)."""
    width = space.encoding_width
    ok = rows.ndim == 2 and (rows.shape[1] == width or (arch_only_ok and rows.shape[1] == space.arch_width))
    if not ok:
        raise PredictorError(f"encoded rows for space {space.name} must have shape (n, {width}), got {rows.shape}")
    return np.ascontiguousarray(rows, dtype=np.float32)


def decode_rows(space: SearchSpace, x: np.ndarray) -> List[Candidate]:
    """Candidates of rows encoded with ``space.encode`` (nearest value of each dimension)."""
    columns, offset = [], 0
    for dims in (space.arch, space.recipe):
        for dim in dims.values():
            block = x[:, offset:offset + dim.width].astype(np.float64)
            offset += dim.width
            columns.append(column_values(dim, _unencode(dim, block)))
    return columns_to_candidates(space, columns)


def _unencode(dim, block: np.ndarray) -> np.ndarray:
    """One dimension's encoded block -> its value column (choice index for a categorical)."""
    kind = dim.kind
    if kind == "categorical":
        if block.shape[1] > 1:
            return block.argmax(1).astype(np.float64)
        return np.rint(block[:, 0] * (len(dim.choices) - 1))
    v = block[:, 0]
    if kind == "bool":
        return (v >= 0.5).astype(np.float64)
    if kind == "int":
        return np.clip(dim.low + np.rint((v * max(dim.high - dim.low, 1)) / dim.step) * dim.step, dim.low, dim.high)
    if dim.log:
        return np.exp(np.log(dim.low) + v * (np.log(dim.high) - np.log(dim.low)))
    return dim.low + v * (dim.high - dim.low)
