"""Predictor checkpoints: one file of tensors and plain Python values, written with ``torch.save``
and read without torch by :mod:`jointnas.surrogates.tensorfile` (no code in the file runs), guarded by
format version, the space's fingerprint and a content checksum. :func:`load_predictor` gives
the torch predictor (to fit again); :func:`load_scorer` only its numpy scoring (the fine stage,
which then never imports torch)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ...errors import SpaceError
from ...space import SearchSpace
from ..base import PredictorError

FORMAT = "jointnas-predictor"
FORMAT_VERSION = 1


def _digest(obj, h) -> None:
    if isinstance(obj, np.ndarray):  # a tensor read back by jointnas.surrogates.tensorfile: the same bytes
        from ..tensorfile import TORCH_DTYPE_NAMES

        t = np.ascontiguousarray(obj)
        h.update(f"T{TORCH_DTYPE_NAMES[t.dtype]}{tuple(t.shape)}".encode())
        h.update(t.tobytes())
    elif hasattr(obj, "detach"):  # a torch tensor
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            h.update(repr(k).encode())
            _digest(obj[k], h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _digest(v, h)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def checksum(state: dict) -> str:
    h = hashlib.sha256()
    _digest({k: v for k, v in state.items() if k != "checksum"}, h)
    return h.hexdigest()


def _plain_state_dict(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def predictor_state(p) -> dict:
    space = p.space
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": p.kind,
        "space": {"name": space.name, "fingerprint": space.fingerprint(), "encoding_schema": space.encoding_schema(),
                  "arch_width": space.arch_width, "recipe_width": space.recipe_width},
        "config": dict(p.config),
        "target_stats": dict(p.target_stats) if p.target_stats else None,
        "cost_stats": dict(p.cost_stats) if p.cost_stats else None,
        "proxy_model": _plain_state_dict(p.proxy_model) if p.pretrained else None,
        "members": [_plain_state_dict(m) for m in p.members],
        "info": p.info,
    }
    state["checksum"] = checksum(state)
    return state


def save_predictor(p, path) -> None:
    save_state(predictor_state(p), path)


def save_state(state: dict, path) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves any previous file at ``path``
    intact; a full disk is a StoreError naming the file."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        # torch reports a full disk as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos".
        from ...store.run_store import StoreError, no_space_message

        raise StoreError(no_space_message(path, str(e) if isinstance(e, OSError) else "write failed")) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _schema_difference(saved: list, current: list) -> str:
    for a, b in zip(saved, current):
        if a != b:
            return (f"column {a.get('name')!r} was {a.get('part')} {a.get('range')} at offset {a.get('offset')}, "
                    f"now {b.get('name')!r} {b.get('part')} {b.get('range')} at offset {b.get('offset')}")
    if len(saved) != len(current):
        return f"{len(saved)} encoded dimensions then, {len(current)} now"
    return "same encoding, but the network or deploy settings (what FLOPs and params refer to) differ"


def checked_state(path, space=None):
    """(state, space) of the predictor checkpoint at ``path``, tensors as numpy arrays, after every
    check: a jointnas predictor, this format version, an intact checksum, ``space``'s fingerprint
    (default: the space the file names)."""
    from ..base import read_checkpoint

    state = read_checkpoint(path, PredictorError, "predictor")
    if state.get("format") != FORMAT:
        raise PredictorError(f"{path} is a torch file but not a jointnas predictor checkpoint")
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise PredictorError(f"{path} has predictor format version {version!r}; this jointnas reads version "
                             f"{FORMAT_VERSION}: retrain the predictor, or load it with the jointnas that wrote it")
    if state.get("checksum") != checksum(state):
        raise PredictorError(f"{path} is damaged: its contents do not match the checksum stored in it; "
                             "copy it again or retrain it")
    saved = state["space"]
    if not isinstance(space, SearchSpace):
        from ...catalog import load_space  # a name or file at this public entry point

        try:
            space = load_space(space or saved["name"])
        except SpaceError:
            if space is not None:
                raise
            raise PredictorError(f"{path} was trained on space {saved['name']!r}, which is not available here; "
                                 "pass that space (space=...)") from None
    if space.fingerprint() != saved["fingerprint"]:
        raise PredictorError(
            f"{path} was trained on space {saved['name']!r} (fingerprint {saved['fingerprint']}) and cannot score "
            f"space {space.name!r} (fingerprint {space.fingerprint()}): "
            f"{_schema_difference(saved['encoding_schema'], space.encoding_schema())}; "
            "use the space it was trained on, or retrain the predictor")
    return state, space


def _inconsistent(path, e: Exception) -> PredictorError:
    return PredictorError(f"{path} is inconsistent with predictor format {FORMAT_VERSION} "
                          f"({type(e).__name__}: {str(e)[:200]}); retrain the predictor")


def load_predictor(path, space=None):
    """The torch :class:`~jointnas.surrogates.Predictor` saved at ``path`` (to score or fit again)."""
    import torch

    from .ensemble import Predictor
    from .network import ProxyModel

    state, space = checked_state(path, space)

    def tensors(sd):
        return {k: torch.from_numpy(v) for k, v in sd.items()}

    try:
        p = Predictor(space, **state["config"])
        p.target_stats, p.cost_stats, p.info = state["target_stats"], state["cost_stats"], state["info"]
        if state["proxy_model"] is not None:
            p.proxy_model = ProxyModel(space.arch_width, p.config["hidden"], p.config["encoder_layers"])
            p.proxy_model.load_state_dict(tensors(state["proxy_model"]))
            p.proxy_model.requires_grad_(False).eval()
        for sd in state["members"]:
            member = p._new_member()
            member.load_state_dict(tensors(sd))
            p.members.append(member.requires_grad_(False).eval())
    except (KeyError, TypeError, RuntimeError) as e:
        raise _inconsistent(path, e) from None
    return p


def load_scorer(path, space=None):
    """The scoring of the predictor saved at ``path`` in numpy only (:class:`~.stacked.StackedScorer`)."""
    from .stacked import StackedScorer

    state, space = checked_state(path, space)
    try:
        return StackedScorer(space, state["config"], state["target_stats"], state["members"], state["info"])
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise _inconsistent(path, e) from None
