"""The first batch's calibration: the early-stop epoch (the first at which the ranking of the
first batch by score agrees with its ranking by final score, Kendall tau-b >= a threshold) and,
FBNetV3's early stop generalised, the cheapest training :class:`~jointnas.evaluation.fidelity.Fidelity`
that ranks the first batch like full training; and :class:`Calibration`, the record of both a run
keeps (read with :func:`read_calibration`).

FBNetV3 searched on a cheaper proxy (fewer classes, early stop). Here a cheaper setting is any
fidelity (a fraction of the training images, a lower training resolution, a width multiplier for
training only) at any epoch: the first batch is trained at full fidelity and at each candidate
setting, and the cheapest (setting, epoch) whose Kendall tau-b with the full final ranking passes
the threshold is kept. A setting below the threshold is refused whatever it saves.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..evaluation.fidelity import Fidelity
from ..trial import score_at

RANK_METRIC = "kendall_tau_b"


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0  # a constant ranking says nothing about the other
    from scipy.stats import kendalltau  # a second to import: not on the path of `jointnas --help`

    tau = kendalltau(a, b).statistic
    return 0.0 if np.isnan(tau) else float(tau)


def calibrate(trials: Sequence, threshold: float) -> dict:
    """Smallest epoch whose score ranking of ``trials`` agrees with their final ranking at
    Kendall tau-b >= ``threshold``. A candidate whose schedule is shorter than an epoch counts
    with its final score there (it is finished)."""
    usable = [t for t in trials if t.status == "done" and t.curve and t.final_acc is not None]
    full = max((len(t.curve) for t in usable), default=0)
    out = {"metric": RANK_METRIC, "threshold": threshold, "n_trials": len(usable), "full_epochs": full,
           "epochs": list(range(1, full + 1)), "correlation": [], "chosen_epoch": full, "reached": False}
    if len(usable) < 3:
        out["note"] = f"only {len(usable)} finished trials: too few to rank, so later trials train the full schedule"
        return out
    final = [t.score_at(len(t.curve)) for t in usable]
    for e in out["epochs"]:
        out["correlation"].append(rank_correlation([t.score_at(e) for t in usable], final))
    for e, tau in zip(out["epochs"], out["correlation"]):
        if tau >= threshold - 1e-9:  # tau of n items is a ratio of integers; 0.8 must count as 0.8
            out["chosen_epoch"], out["reached"] = e, True
            break
    return out


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


def fidelity_lines(fc: Mapping) -> List[str]:
    """The log lines of a fidelity calibration (:func:`calibrate_fidelity`'s record): per setting
    its cheapest accepted option, else its best refused one."""
    lines = []
    for label in dict.fromkeys(o["label"] for o in fc["options"]):
        mine = [o for o in fc["options"] if o["label"] == label]
        ok = [o for o in mine if o["accepted"]]
        o = min(ok, key=lambda o: o["relative_cost"]) if ok else max(mine, key=lambda o: o["tau"])
        lines.append(f"  fidelity {label}: " + (f"accepted from epoch {o['epoch']}" if ok else "refused") +
                     f" (tau {o['tau']:.2f} at epoch {o['epoch']}, cost {o['relative_cost']:.2f}x of full)")
    return lines


# ---------------------------------------------------------------------- the record a run keeps
@dataclass(frozen=True)
class Calibration:
    """What the first batch calibrated (the run's ``calibration`` result): later trials train to
    ``chosen_epoch`` at ``fidelity``, and every trial is ranked there. Every field has a default,
    so that a partial record (an older run's) reads too."""

    chosen_epoch: Optional[int] = None   # the early-stop epoch (at the chosen fidelity)
    full_epochs: Optional[int] = None    # the longest curve of the first batch
    metric: str = RANK_METRIC
    threshold: Optional[float] = None
    n_trials: int = 0                    # first-batch trials it ranked
    epochs: List[int] = field(default_factory=list)
    correlation: List[float] = field(default_factory=list)   # rank correlation at each of ``epochs``
    reached: bool = False                # whether the threshold was reached before the last epoch
    note: Optional[str] = None           # why it could not rank (too few trials)
    fidelity: Optional[dict] = None      # the chosen cheaper setting (a Fidelity dict); None: full
    fidelity_label: str = "full"
    epoch_cost: float = 1.0              # an epoch at ``fidelity`` relative to a full-fidelity one (measured)
    fidelity_cost: Optional[float] = None   # the chosen (setting, epoch) relative to full training (None: not run)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Calibration":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for optional in ("note", "fidelity_cost"):   # written only when they say something
            if out[optional] is None:
                del out[optional]
        return out

    @property
    def cheaper_fidelity(self) -> Optional[dict]:
        """The chosen setting when it is cheaper than full training, else None."""
        fid = self.fidelity
        return fid if fid and any(v != 1.0 for v in fid.values()) else None

    def with_fidelity(self, fc: Mapping) -> "Calibration":
        """This early-stop record with a fidelity calibration's choice (:func:`calibrate_fidelity`)."""
        chosen = fc["chosen"]
        if chosen["label"] == "full":
            return replace(self, chosen_epoch=chosen["epoch"], fidelity_label="full", fidelity_cost=fc["chosen_cost"])
        return replace(self, chosen_epoch=chosen["epoch"], fidelity_label=chosen["label"], fidelity=chosen["fidelity"],
                       epoch_cost=fc["chosen_cost"] * fc["full_epochs"] / chosen["epoch"],
                       fidelity_cost=fc["chosen_cost"])

    def lines(self) -> List[str]:
        """The early-stop part's log lines."""
        curve = ", ".join(f"{e}:{c:.2f}" for e, c in zip(self.epochs, self.correlation))
        verdict = (f"reaches {self.threshold:g} at epoch {self.chosen_epoch}" if self.reached
                   else self.note or f"never reaches {self.threshold:g} before the last epoch")
        return [f"early-stop calibration ({self.metric} of score at epoch e vs final, {self.n_trials} trials): "
                f"{curve or 'n/a'}",
                f"early-stop epoch {self.chosen_epoch} of {self.full_epochs}: {verdict}"]


def read_calibration(store) -> Optional[Calibration]:
    """The run's calibration (its last ``calibration`` result), None before the first batch is calibrated."""
    found = store.results("calibration")
    return Calibration.from_dict(found[-1]) if found else None
