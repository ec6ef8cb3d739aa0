"""Forest checkpoints: tensors and plain values only, written with ``torch.save`` and read without
torch by :mod:`jointnas.surrogates.tensorfile` (no code in the file runs)."""
from __future__ import annotations

from .forest import KIND, ForestError, ForestSurrogate

FORMAT = 1


def save_forest(forest: ForestSurrogate, path) -> None:
    from .mlp.checkpoint import save_state

    state = forest.state()
    state.update(format=FORMAT, space=forest.space.name, fingerprint=forest.space.fingerprint())
    save_state(state, path)


def load_forest(path, space) -> ForestSurrogate:
    from .base import read_checkpoint

    state = read_checkpoint(path, ForestError)
    if state.get("kind") != KIND:
        raise ForestError(f"{path} holds a surrogate of kind {state.get('kind')!r}, not {KIND!r}")
    if space is None or isinstance(space, str):
        from ..catalog import load_space

        space = load_space(space or state.get("space"))
    if state.get("fingerprint") != space.fingerprint():
        raise ForestError(f"{path} was fitted on space {state.get('space')!r} with a different layout than "
                          f"space {space.name!r}; refit it on this space")
    return ForestSurrogate.from_state(state, space)
