"""Forest checkpoints: tensors and plain values only, read with ``torch.load(weights_only=True)``."""
from __future__ import annotations

from .forest import KIND, ForestError, ForestSurrogate

FORMAT = 1


def save_forest(forest: ForestSurrogate, path) -> None:
    from .checkpoint import save_state

    state = forest.state()
    state.update(format=FORMAT, space=forest.space.name, fingerprint=forest.space.fingerprint())
    save_state(state, path)


def load_forest(path, space) -> ForestSurrogate:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ForestError(f"no surrogate checkpoint at {path}") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise ForestError(f"{path} is not a readable surrogate checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise ForestError(f"{path} holds a surrogate of kind {state.get('kind') if isinstance(state, dict) else None!r}, "
                          f"not {KIND!r}")
    if space is None or isinstance(space, str):
        from ..catalog import load_space

        space = load_space(space or state.get("space"))
    if state.get("fingerprint") != space.fingerprint():
        raise ForestError(f"{path} was fitted on space {state.get('space')!r} with a different layout than "
                          f"space {space.name!r}; refit it on this space")
    return ForestSurrogate.from_state(state, space)
