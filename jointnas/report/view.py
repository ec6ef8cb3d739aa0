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
from ..coarse.result import baseline_of, choose
from ..coarse.run import CoarseRun
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
class Winner:
    """The run's one winner, as every part of the report shows it: the trial the result stage
    retrained (the stored final record's), or, before that stage, the one it would retrain
    (:func:`jointnas.coarse.result.choose`)."""

    trial: Trial
    expected: Optional[float]   # the extrapolated end-of-schedule score that chose it; None: chosen by the ranking
    chosen_by: str              # how: the extrapolator's description, or "the ranking"
    retrained: bool             # whether the final record is of this trial


def _choice(store: RunStore, space, final: Optional[dict]) -> Tuple[Optional[Winner], Dict[int, float]]:
    """(the winner, each measured trial's expected end-of-schedule score when the run extrapolates)."""
    trials = store.trials()
    cal = read_calibration(store)
    ranked = best_trials(trials, cal.chosen_epoch if cal else None, None,
                         cheap_runs(cal, store.results("fidelity_trial")))
    chosen, how, expected = ((ranked[0][0], None) if ranked else None), "the ranking", {}
    if space is not None and ranked:
        try:
            run = CoarseRun(store, space, evaluator=None)  # read only: the report trains nothing
            extrapolator = run.extrapolator()
            chosen = choose(run)
        except JointnasError:
            extrapolator = None  # e.g. its surrogate's plug-in is not installed here: the ranking's first
        if extrapolator is not None:
            values = extrapolator.predict([t.candidate for t, _ in ranked], [s for _, s in ranked])
            expected = {t.id: float(v) for (t, _), v in zip(ranked, values)}
            how = extrapolator.describe()
    by_id = {t.id: t for t in trials}
    if final is not None and final.get("trial") in by_id:
        return Winner(by_id[final["trial"]], final.get("expected_final"), final.get("chosen_by") or "the ranking",
                      True), expected
    if chosen is None:
        return None, expected
    return Winner(chosen[0], chosen[1], how if chosen[1] is not None else "the ranking", False), expected


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
    winner: Optional[Winner] = None    # the one winner every part of the report marks
    expected: Dict[int, float] = field(default_factory=dict)  # trial id -> extrapolated end-of-schedule score

    @classmethod
    def read(cls, run_dir) -> "RunView":
        with RunStore.open(run_dir) as store:
            fine = store.results("fine")
            calibration = store.results("calibration")
            space, final = _space_of(store), (store.results("final") or [None])[-1]
            winner, expected = _choice(store, space, final)
            return cls(run_dir=Path(run_dir), config=store.config or {}, trials=store.trials(),
                       calibration=calibration[-1] if calibration else None,
                       predictor_evals=store.results("predictor_eval"), predictors=store.predictors(),
                       fine=fine[-1] if fine else None, finished=store.get_meta("finished"),
                       pool_size=(store.pool_info() or {}).get("size"), space=space, final=final,
                       cheap=cheap_runs(read_calibration(store), store.results("fidelity_trial")),
                       winner=winner, expected=expected)

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


def score_bounds(config: dict) -> Optional[Tuple[float, float]]:
    """The scores a trial can have (e.g. 0 to 1 for accuracies), or None for any finite score."""
    bounds = config.get("score_bounds")
    return (float(bounds[0]), float(bounds[1])) if bounds else None


def parity_bars(p: "Parity", bounds: Optional[Tuple[float, float]]) -> Tuple[np.ndarray, np.ndarray]:
    """(low, high) ends of each prediction's ±1-spread bar, cut at the scores a trial can have: a
    spread past 100 % accuracy says the predictor is unsure, not that such a score exists."""
    low, high = p.predicted - p.spread, p.predicted + p.spread
    if bounds is not None:
        low, high = np.clip(low, *bounds), np.clip(high, *bounds)
    return np.minimum(low, p.predicted), np.maximum(high, p.predicted)


def parity_limits(p: "Parity", low: np.ndarray, high: np.ndarray) -> Tuple[float, float]:
    """One (lo, hi) range for both axes of a parity panel: every point and every bar, with a small margin."""
    lo = float(min(p.measured.min(), low.min()))
    hi = float(max(p.measured.max(), high.max()))
    pad = 0.03 * (hi - lo) + 0.002
    return lo - pad, hi + pad


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


def predicted_before(view: RunView, trial: Trial) -> Optional[Tuple[float, float, int]]:
    """What the predictor that chose ``trial`` expected of it before it was trained, at the run's
    ranking epoch and fidelity: (mean, spread, that predictor's iteration); None for a trial of the
    first batch (no accuracy predictor chose it) or when the checkpoint cannot be read here."""
    k = trial.iteration - 1
    path = next((Path(p["path"]) for p in view.predictors if int(p["iteration"]) == k), None)
    if k < 1 or path is None or view.space is None or not path.is_file():
        return None
    try:
        mean, std = load_surrogate(path, view.space).predict([trial.candidate])
    except UsageError:
        return None  # a damaged or foreign checkpoint: the page shows what needs none
    return float(np.asarray(mean)[0]), float(np.asarray(std)[0]), k


def baseline_text(view: RunView) -> str:
    """The baseline the result stage trains beside the winner, by name and where it comes from."""
    named = view.config.get("baseline")
    if named:
        return f"{named} (a preset of the space, named for this run)"
    name = ((view.final or {}).get("baseline") or {}).get("name")
    if name is None and view.space is None:
        return "the space's first preset"  # a space that cannot be rebuilt here: its presets are unknown
    if name is None:
        name = (baseline_of(view.space, None) or (None,))[0]
    return f"{name} (the space's first preset)" if name else "none (the space has no preset)"


def human(value, indent: str = "") -> str:
    """A config value as a person reads it: no Python reprs (``None``, ``[]``, ``{...}``, ``True``)."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return ", ".join(human(v, indent) for v in value) if value else "none"
    if isinstance(value, dict):
        if not value:
            return "none"
        return "\n".join(f"{indent}{k}:\n{human(v, indent + '  ')}" if isinstance(v, dict) and v
                         else f"{indent}{k}: {human(v, indent + '  ')}" for k, v in value.items())
    return str(value)
