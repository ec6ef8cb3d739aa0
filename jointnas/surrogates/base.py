"""What ranks untried candidates: the :class:`Surrogate` protocol, and reading any kind of
surrogate checkpoint back (:func:`load_surrogate`).

A surrogate checkpoint is a torch file readable with ``torch.load(weights_only=True)`` or
:mod:`jointnas.surrogates.tensorfile` (no code runs on load) whose top-level mapping names the surrogate's
``kind``; the catalog's ``SURROGATES`` entry of that kind says how it is read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

from ..errors import UsageError


class PredictorError(UsageError):
    """A predictor cannot be built, fitted, used or loaded as asked; the message says why."""


@runtime_checkable
class Surrogate(Protocol):
    kind: str                     # written into the checkpoint
    space: object                 # the SearchSpace it scores

    def pretrain(self, candidates: Sequence, costs: np.ndarray) -> "Surrogate":
        """Learn from the pool's (flops, params) before any trial is measured (may do nothing)."""

    def fit(self, candidates: Sequence, y: np.ndarray) -> "Surrogate":
        """Fit measured scores of candidates; returns self."""

    def predict(self, candidates: Sequence) -> Tuple[np.ndarray, np.ndarray]:
        """(mean, std) predicted score of candidates."""

    def predict_encoded(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(mean, std) of rows already encoded with ``space.encode``."""

    def save(self, path) -> None:
        """Write a checkpoint (atomically) that :func:`load_surrogate` reads back."""


def read_checkpoint(path, error=UsageError, what: str = "surrogate") -> dict:
    """The top-level mapping of a ``what`` checkpoint, tensors as numpy arrays, read without torch
    (:mod:`jointnas.surrogates.tensorfile`: no code in the file runs); any problem is an ``error`` naming the file."""
    from .tensorfile import Refused, TensorFileError, load

    path = Path(path)
    if not path.is_file():
        raise error(f"no {what} checkpoint at {path}")
    try:
        state = load(path)
    except Refused as e:
        raise error(f"{path} is not a jointnas checkpoint ({e.reason[:120]}); "
                    "it was refused without running any of its contents") from None
    except TensorFileError as e:
        raise error(f"{path} is not a readable {what} checkpoint (damaged, truncated or not a "
                    f"torch file): {e.reason[:200]}") from None
    if not isinstance(state, dict):
        raise error(f"{path} is a torch file but not a jointnas {what} checkpoint")
    return state


def encoded_rows(space, rows, arch_only_ok: bool = False) -> np.ndarray:
    """``rows`` (already encoded with ``space.encode``) as contiguous float32, or a PredictorError
    when they do not have the space's width (or, with ``arch_only_ok``, its arch part's)."""
    width = space.encoding_width
    ok = rows.ndim == 2 and (rows.shape[1] == width or (arch_only_ok and rows.shape[1] == space.arch_width))
    if not ok:
        raise PredictorError(f"encoded rows for space {space.name} must have shape (n, {width}), got {rows.shape}")
    return np.ascontiguousarray(rows, dtype=np.float32)


def checkpoint_kind(path) -> str:
    """The ``kind`` a surrogate checkpoint names (files from before kinds existed are ``mlp``)."""
    state = read_checkpoint(path)
    if "kind" in state:
        return str(state["kind"])
    if state.get("format") == "jointnas-predictor":
        return "mlp"
    raise UsageError(f"{path} is a torch file but not a jointnas surrogate checkpoint (it names no kind)")


def load_surrogate(path, space=None):
    """The surrogate saved at ``path``, checked against ``space`` (default: the one it names)."""
    from ..catalog import surrogate_loader

    return surrogate_loader(checkpoint_kind(path))(path, space)


def load_scorer(path, space=None):
    """What the fine stage needs of the surrogate saved at ``path``: ``predict_encoded`` (and
    ``predict``), without torch where its kind has a numpy scorer (the catalog's ``SCORER_LOADERS``)."""
    from ..catalog import scorer_loader

    return scorer_loader(checkpoint_kind(path))(path, space)
