"""What a run's store holds, read once for the report: :class:`RunView`, and the data its
plots and tables show (the accuracy-vs-FLOPs points, the predictors' held-out parity pairs).

The store may belong to a run that is still going or was interrupted, so every part may be
missing or partial."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..budget import parse_flops, parse_params
from ..coarse.calibration import read_calibration
from ..coarse.config import run_space
from ..coarse.ranking import best_trials, cheap_runs, score_at
from ..errors import JointnasError, UsageError
from ..store import RunStore, Trial
from ..catalog import load_surrogate
from ..surrogates.evaluate import ranking_metrics


def _space_of(store: RunStore):
    try:
        return run_space(store)
    except JointnasError:
        return None  # a run whose space cannot be rebuilt here: the report shows what needs no predictor


@dataclass
class RunView:
    """A snapshot of a run's store, read once."""

    run_dir: Path
    config: dict
    trials: List[Trial]
    calibration: Optional[dict]
    predictor_evals: List[dict]
    predictors: List[dict]
    fine: Optional[dict]
    finished: Optional[float] = None  # when the coarse loop last ran to its end
    pool_size: Optional[int] = None   # candidates kept in the pool (within the budget)
    space: Optional[object] = None     # the SearchSpace the run searched
    final: Optional[dict] = None       # the winner retrained at full fidelity, beside the baseline
    cheap: Dict[int, dict] = field(default_factory=dict)  # first-batch runs at the calibrated fidelity

    @classmethod
    def read(cls, run_dir) -> "RunView":
        with RunStore.open(run_dir) as store:
            fine = store.results("fine")
            calibration = store.results("calibration")
            return cls(run_dir=Path(run_dir), config=store.config or {}, trials=store.trials(),
                       calibration=calibration[-1] if calibration else None,
                       predictor_evals=store.results("predictor_eval"), predictors=store.predictors(),
                       fine=fine[-1] if fine else None, finished=store.get_meta("finished"),
                       pool_size=(store.pool_info() or {}).get("size"), space=_space_of(store),
                       final=(store.results("final") or [None])[-1],
                       cheap=cheap_runs(read_calibration(store), store.results("fidelity_trial")))

    @property
    def measured(self) -> List[Trial]:
        """Trials that finished training with an accuracy."""
        return [t for t in self.trials if t.status == "done" and t.final_acc is not None]

    @property
    def rank_epoch(self) -> Optional[int]:
        """The epoch at which trials are compared (:mod:`jointnas.coarse.ranking`)."""
        return (self.calibration or {}).get("chosen_epoch")

    @property
    def fidelity_label(self) -> str:
        return (self.calibration or {}).get("fidelity_label") or "full"

    def ranked(self, top: Optional[int] = None) -> List[Tuple[Trial, float]]:
        """(trial, accuracy at :attr:`rank_epoch`) of the measured trials, best first."""
        return best_trials(self.measured, self.rank_epoch, top, self.cheap)

    def counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out


def budget_of(config: dict) -> Tuple[Optional[int], Optional[int]]:
    """(max_flops, max_params) of a run config (numbers, or text such as "600MFLOPs"); None = no bound."""
    def read(value, parse):
        if value is None or isinstance(value, (int, float)):
            return None if value is None else int(value)
        try:
            return parse(value)
        except UsageError:
            return None

    return read(config.get("budget"), parse_flops), read(config.get("max_params"), parse_params)


def pareto_front(flops: Sequence[float], acc: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats on both fewer FLOPs and higher accuracy, by FLOPs."""
    order = np.lexsort((-np.asarray(acc, dtype=float), np.asarray(flops, dtype=float)))
    front, best = [], -np.inf
    for i in order:
        if acc[i] > best:
            front.append(i)
            best = acc[i]
    return np.asarray(front, dtype=int)


@dataclass
class Parity:
    iteration: int              # the predictor saved after this iteration
    measured: np.ndarray
    predicted: np.ndarray
    spread: np.ndarray
    metrics: dict


def diverged_score(config: dict) -> Optional[float]:
    if "diverged_score" in config:
        return config["diverged_score"]
    classes = config.get("num_classes")  # runs from before evaluators
    return 1.0 / classes if classes else None


def parity_data(view: RunView) -> Tuple[List[Parity], List[str]]:
    """Held-out (measured, predicted) pairs per fitted predictor, and why others have none.

    The predictor saved after iteration k chose the batch of iteration k+1 before any of it
    was trained, so that batch is held out from it: the same check as the run's "tau on its
    next batch". The last predictor has no later batch; the run's k-fold metrics cover it.
    """
    diverged = diverged_score(view.config)
    out, notes = [], []
    for entry in view.predictors:
        k, path = int(entry["iteration"]), Path(entry["path"])
        if k < 1:
            continue  # iteration 0 is the encoder pretrained on FLOPs/params; it predicts no accuracy
        # Measured = what the run fitted its predictors to: the one ranking rule's score.
        held_out = [(t, score_at(t, view.rank_epoch, view.cheap, diverged)) for t in view.trials
                    if t.iteration == k + 1]
        held_out = [(t, y) for t, y in held_out if y is not None]
        if len(held_out) < 2:
            if k >= int(view.config.get("iterations") or 0):
                notes.append(f"the predictor after iteration {k} is the run's last: no later batch checks it; "
                             "see its k-fold metrics below")
            else:
                notes.append(f"predictor after iteration {k}: the batch it chose (iteration {k + 1}) has "
                             f"{len(held_out)} measured trial(s) so far")
            continue
        if not path.is_file():
            notes.append(f"predictor after iteration {k}: checkpoint {path} is missing")
            continue
        mean, std = load_surrogate(path, view.space).predict([t.candidate for t, _ in held_out])
        measured = np.array([y for _, y in held_out], dtype=float)
        mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
        out.append(Parity(k, measured, mean, std, ranking_metrics(measured, mean)))
    return out, notes


def predictor_eval_rows(view: RunView) -> List[list]:
    """The run's own per-iteration predictor quality records, as table rows."""
    nxt = {int(e["iteration"]) - 1: e.get("next_batch_tau") for e in view.predictor_evals if "iteration" in e}
    rows = []
    for e in view.predictor_evals:
        it = e.get("iteration")
        rows.append([it, e.get("n_train", "?"), _fmt(e.get("kendall_tau")), _fmt(e.get("spearman_rho")),
                     _fmt(e.get("mae"), 100, ".1f"), _fmt(nxt.get(it))])
    return rows


def _fmt(value, scale: float = 1.0, spec: str = ".2f") -> str:
    return format(value * scale, spec) if isinstance(value, (int, float)) else "–"


def stopped_early(view: RunView, trial: Trial) -> bool:
    """Whether the early-stop epoch cut this trial short of the schedule iteration 1 trains."""
    if trial.target_epochs is None:
        return False
    full = int(trial.candidate.recipe.get("epochs", trial.target_epochs))
    cap = view.config.get("epoch_cap")
    return trial.target_epochs < (min(full, cap) if cap else full)


def accuracy_vs_flops(view: RunView) -> Tuple[List[Trial], np.ndarray, np.ndarray]:
    """(measured trials, their MFLOPs, their accuracy at the run's ranking epoch): one fidelity."""
    ranked = view.ranked()
    return ([t for t, _ in ranked], np.array([t.flops for t, _ in ranked], dtype=float) / 1e6,
            np.array([score for _, score in ranked], dtype=float))


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def counts_text(counts: Dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no trials"


def status_text(view: RunView) -> str:
    return "trials: " + counts_text(view.counts())


