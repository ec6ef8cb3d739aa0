"""Predictor checkpoints: one file of tensors and plain Python values, read with
``torch.load(weights_only=True)`` (no code runs on load), guarded by format version, the
space's fingerprint and a content checksum."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..errors import SpaceError
from ..space import SearchSpace
from .mlp_ensemble import Predictor, PredictorError
from .network import ProxyModel

FORMAT = "jointnas-predictor"
FORMAT_VERSION = 1


def _digest(obj, h) -> None:
    if isinstance(obj, torch.Tensor):
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


def predictor_state(p: Predictor) -> dict:
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


def save_predictor(p: Predictor, path) -> None:
    save_state(predictor_state(p), path)


def save_state(state: dict, path) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves any previous file at ``path``
    intact; a full disk is a StoreError naming the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        # torch reports a full disk as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos".
        from ..store import StoreError, no_space_message

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


def load_predictor(path, space=None) -> Predictor:
    path = Path(path)
    if not path.is_file():
        raise PredictorError(f"no predictor checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for damaged files
        if "weights_only" in str(e):
            # torch's safe unpickler refused it; its message suggests the unsafe way round (weights_only=False
            # runs the file's code), which is not passed on. What it refused is.
            lines = [ln.strip() for ln in str(e).splitlines()
                     if ln.strip() and not any(w in ln for w in ("weights_only", "Please file", "documentation"))]
            raise PredictorError(f"{path} is not a jointnas checkpoint ({(lines or ['not a tensor file'])[0][:120]}); "
                                 "it was refused without running any of its contents") from None
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PredictorError(f"{path} is not a readable predictor checkpoint (damaged, truncated or not a "
                             f"torch file): {reason[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
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
        from ..catalog import load_space  # a name or file at this public entry point

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
    try:
        p = Predictor(space, **state["config"])
        p.target_stats, p.cost_stats, p.info = state["target_stats"], state["cost_stats"], state["info"]
        if state["proxy_model"] is not None:
            p.proxy_model = ProxyModel(space.arch_width, p.config["hidden"], p.config["encoder_layers"])
            p.proxy_model.load_state_dict(state["proxy_model"])
            p.proxy_model.requires_grad_(False).eval()
        for sd in state["members"]:
            member = p._new_member()
            member.load_state_dict(sd)
            p.members.append(member.requires_grad_(False).eval())
    except (KeyError, TypeError, RuntimeError) as e:
        raise PredictorError(f"{path} is inconsistent with predictor format {FORMAT_VERSION} "
                             f"({type(e).__name__}: {str(e)[:200]}); retrain the predictor") from None
    return p
