"""Early-stop calibration: the first epoch at which the ranking of the first batch by score
agrees with its ranking by final score (Kendall tau-b >= a threshold)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

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
