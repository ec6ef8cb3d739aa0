"""What continuing a coarse run may change, and what it finds. A run's settings
(:class:`~jointnas.coarse.config.CoarseConfig`) define its trials and their numbers, so a resume
keeps every one of them but ``iterations``, which it may raise (:meth:`CoarseLoop.extend
<jointnas.coarse.loop.CoarseLoop.extend>`: a run is extended, never cut), and ``prior_pairs``, the
earlier pairs its surrogate is also fitted on from then on (:func:`change_prior_pairs`: a file
that moved or vanished need not end the run). How trials run (the executor, its workers, device
and retries) is not the run's and may change freely."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from ..catalog import load_space
from ..store import FINISHED
from ..surrogates.prior import check_prior_pairs
from .config import CoarseConfig

TRAINER_OPTIONS = ("data_root", "train_subset")   # the built-in trainer's options a run stores
MAY_CHANGE = ("iterations", "prior_pairs")


@dataclass(frozen=True)
class Conflict:
    """A setting asked for that differs from the run's."""

    setting: str
    asked: Any
    stored: Any


def stored_settings(config: CoarseConfig) -> Dict[str, Any]:
    """A run's settings as a resume compares them: its CoarseConfig fields, with its evaluator as
    the built-in trainer's ``data`` and options, or else as an ``objective`` spec."""
    out = config.to_dict()
    spec = config.evaluator or ""
    if spec.startswith("train:"):
        out["data"] = spec.split(":", 1)[1]
        out.update({k: config.evaluator_options.get(k) for k in TRAINER_OPTIONS})
    else:
        out["objective"] = config.evaluator
    return out


def conflicts(loop, asked: Mapping[str, Any]) -> List[Conflict]:
    """The settings in ``asked`` (as :func:`stored_settings` names them; ``space``: a name or file,
    compared by its fingerprint) that a resume of ``loop``'s run may not change."""
    stored = stored_settings(loop.config)
    out = [Conflict(k, v, stored.get(k)) for k, v in asked.items()
           if k not in MAY_CHANGE and k != "space" and v != stored.get(k)]
    if "space" in asked and load_space(asked["space"]).fingerprint() != loop.space.fingerprint():
        out.append(Conflict("space", asked["space"], loop.space.name))
    return out


def change_prior_pairs(loop, path: Optional[str]) -> Optional[str]:
    """Make ``path`` (None: none) the earlier pairs of ``loop``'s run from now on, read whole first
    (a UsageError, nothing changed, when it cannot be used); the change is stored in the run.
    Returns the line saying the change, or None when the run already had them."""
    if path is not None:
        check_prior_pairs(path, loop.space)
    was = loop.config.prior_pairs
    if path == was:
        return None
    loop.store.update_config(prior_pairs=path)
    loop.config.prior_pairs = path
    return f"earlier pairs: now {path or 'none'} (was {was or 'none'})"


def found_line(counts: Dict[str, int]) -> str:
    """What a resume finds: "4 finished (3 done, 1 failed), 2 re-queued (interrupted while training), 1 queued"
    (the trials a dead driver left running are the ones it re-queues)."""
    finished = {k: counts[k] for k in FINISHED if counts.get(k)}
    line = f"{sum(finished.values())} finished"
    if finished:
        line += " (" + ", ".join(f"{v} {k}" for k, v in finished.items()) + ")"
    line += f", {counts.get('running', 0)} re-queued (interrupted while training)"
    if counts.get("queued"):
        line += f", {counts['queued']} queued"
    return line
