"""Training fidelity, and its calibration: FBNetV3's early-stop calibration generalised.

FBNetV3 searched on a cheaper proxy (fewer classes, early stop) and kept the early-stop epoch
whose ranking of a first batch agreed with the full training's (rank correlation >= a
threshold). Here a cheaper setting is any :class:`Fidelity` (a fraction of the training
images, a lower training resolution, a width multiplier for training only) at any epoch; the
first batch is trained at full fidelity and at each candidate setting, and the cheapest
(setting, epoch) whose Kendall tau-b with the full final ranking passes the threshold is kept.
A setting below the threshold is refused whatever it saves.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Optional, Sequence

from ..coarse.calibration import RANK_METRIC, rank_correlation
from ..errors import UsageError
from ..trial import score_at


@dataclass(frozen=True)
class Fidelity:
    """How cheaply a candidate is trained: ``data`` = fraction of the training images,
    ``resolution`` = scale of its training resolution, ``width`` = channel multiplier of the
    model trained (the deployable model, its FLOPs and params are unchanged)."""

    data: float = 1.0
    resolution: float = 1.0
    width: float = 1.0

    def __post_init__(self):
        for name in ("data", "resolution", "width"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise UsageError(f"fidelity {name} must be a number in (0, 1], got {v!r}")

    @property
    def full(self) -> bool:
        return self == Fidelity()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[Mapping]) -> "Fidelity":
        d = dict(d or {})
        unknown = set(d) - {"data", "resolution", "width"}
        if unknown:
            raise UsageError(f"unknown fidelity setting(s) {', '.join(sorted(unknown))}; known: data, resolution, width")
        return cls(**{k: float(v) for k, v in d.items()})

    def label(self) -> str:
        parts = [f"{name} x{getattr(self, name):g}" for name in ("data", "resolution", "width")
                 if getattr(self, name) != 1.0]
        return ", ".join(parts) or "full"


def narrower(arch: dict, width: float, multiple: int = 8) -> dict:
    """``arch`` with every ``*_channels`` entry scaled by ``width`` (rounded to ``multiple``, at
    least ``multiple``): the model trained at a lower width fidelity."""
    if width == 1.0:
        return dict(arch)
    return {k: (max(multiple, int(round(v * width / multiple)) * multiple)
                if k.endswith("_channels") and isinstance(v, int) else v) for k, v in arch.items()}


def calibrate_fidelity(full: Sequence[dict], cheap: Sequence[dict], threshold: float) -> dict:
    """Choose the cheapest (fidelity, epoch) that ranks the first batch like full training.

    ``full``: one dict per first-batch trial trained at full fidelity, ``{"trial", "curve",
    "wall_time"}`` (finished trials only). ``cheap``: ``{"trial", "fidelity" (dict), "curve",
    "wall_time", "status"}`` per trial and cheaper setting. The reference ranking is the full
    final score; an option's cost is its measured seconds per epoch times epochs, relative to
    full training. Returns the record stored in the run: every option with its tau and cost,
    ``chosen`` (fidelity dict and epoch) and ``refused`` (options under the threshold)."""
    ref = {r["trial"]: score_at(r["curve"], len(r["curve"])) for r in full if r.get("curve")}
    full_seconds = sum(r["wall_time"] or 0.0 for r in full if r["trial"] in ref)
    full_epochs = max((len(r["curve"]) for r in full if r["trial"] in ref), default=0)
    groups: Dict[Fidelity, List[dict]] = {Fidelity(): [r for r in full if r["trial"] in ref]}
    for r in cheap:
        groups.setdefault(Fidelity.from_dict(r["fidelity"]), []).append(r)
    options = []
    for fid, runs in groups.items():
        by_trial = {r["trial"]: r for r in runs if r.get("status", "done") == "done" and r.get("curve")}
        seconds = sum(by_trial[t]["wall_time"] or 0.0 for t in ref if t in by_trial)
        for e in range(1, full_epochs + 1):
            # A trial this setting could not train (failed, diverged) ranks last: the setting
            # does not keep the ranking for it.
            scores = [score_at(by_trial[t]["curve"], e) if t in by_trial else -1.0 for t in ref]
            tau = rank_correlation(scores, [ref[t] for t in ref]) if len(ref) >= 3 else 0.0
            epochs_there = max(1, max((len(r["curve"]) for r in by_trial.values()), default=1))
            # measured seconds of the setting relative to full training, times the share of its epochs
            # (in that order: full training at its last epoch is exactly 1.0, however the seconds fell)
            cost = (seconds / full_seconds) * (min(e, epochs_there) / epochs_there) if full_seconds else 1.0
            options.append({"fidelity": fid.to_dict(), "label": fid.label(), "epoch": e, "tau": tau,
                            "relative_cost": cost, "trials": len(by_trial), "accepted": tau >= threshold - 1e-9})
    accepted = [o for o in options if o["accepted"]]
    last_full = {"fidelity": Fidelity().to_dict(), "label": "full", "epoch": full_epochs}
    chosen = min(accepted, key=lambda o: (o["relative_cost"], -o["tau"])) if accepted else last_full
    return {"metric": RANK_METRIC, "threshold": threshold, "n_trials": len(ref), "full_epochs": full_epochs,
            "options": options, "refused": [o for o in options if not o["accepted"]],
            "chosen": {k: chosen[k] for k in ("fidelity", "label", "epoch")},
            "chosen_cost": chosen.get("relative_cost", 1.0), "reached": bool(accepted)}
