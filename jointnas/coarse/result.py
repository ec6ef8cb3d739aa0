"""The result of a coarse run: its winner trained again at full fidelity for its recipe's whole
schedule (no epoch cap), scored on the test split, its weights kept in ``RUN/winner/``
(:mod:`jointnas.evaluation.saved_model`); beside it the space's default (its first preset, or the one
named, with the space's default recipe) trained for as many epochs, so that the search is
judged against what a user gets without it at the same cost.

The winner is the best trial by :mod:`jointnas.coarse.ranking`, or, when the run has earlier pairs
trained to the end of their schedules, the measured trial whose score there
:mod:`jointnas.coarse.extrapolate` expects highest (an early score favours short schedules)."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..evaluation.base import TrialRequest
from ..space import Candidate
from ..surrogates.interval import CalibratedInterval
from .held_out import out_of_fold
from .loop import Task
from .run import CoarseRun

WINNER_DIR = "winner"
WINNER_ID, BASELINE_ID = -1, -2
# Trains tasks on an executor: ``train(tasks, desc, line) -> {task id: result}``, ``line(task, result)``
# logging each.
Train = Callable[[List[Task], str, Callable[[Task, dict], str]], Dict[int, dict]]


def baseline_of(space, name: Optional[str]) -> Optional[tuple]:
    """(name, candidate) of the space's default, or None when the space has no preset."""
    name = name or next(iter(space.presets), None)
    return (name, space.preset(name)) if name else None


def same_schedule(candidate: Candidate, epochs: Optional[int]) -> Candidate:
    """``candidate`` with its recipe's schedule set to ``epochs`` (same training cost as the winner)."""
    if epochs is None or "epochs" not in candidate.recipe:
        return candidate
    return Candidate(dict(candidate.arch), {**candidate.recipe, "epochs": int(epochs)}, space=candidate.space)


def choose(run: CoarseRun) -> Optional[Tuple[object, Optional[float]]]:
    """(trial, expected final score) to retrain: by the extrapolator when the run has one, else the
    ranking's first (expected None); None before any trial is measured. Ties keep the ranking's order."""
    ranked = run.ranked()
    if not ranked:
        return None
    extrapolator = run.extrapolator()
    if extrapolator is None:
        return ranked[0][0], None
    expected = extrapolator.predict([t.candidate for t, _ in ranked], [s for _, s in ranked])
    best = int(np.argmax(expected))
    return ranked[best][0], float(expected[best])


HELD_OUT_HOW = "k-fold out-of-fold: predicted by the predictor fitted without this trial"


def held_out_estimate(run: CoarseRun, trial) -> Tuple[Optional[float], Optional[list]]:
    """What the predictor expected ``trial`` to score at the searched epoch and fidelity without having
    seen it (its out-of-fold prediction at the last fit), and that prediction's calibrated interval
    ([low, high, level], :mod:`jointnas.surrogates.interval`); (None, None) when not measured."""
    evals = sorted(run.store.results("predictor_eval"), key=lambda e: e["iteration"])
    record = evals[-1] if evals else None
    found = out_of_fold(record, trial.id)
    if found is None:
        return None, None
    mean, spread = found
    calibrated = CalibratedInterval.from_record(record)
    if calibrated is None:
        return mean, None
    low, high = calibrated.bounds([mean], [spread])
    return mean, [float(low[0]), float(high[0]), calibrated.level]


def pending(run: CoarseRun) -> Optional[tuple]:
    """:func:`choose`'s (trial, expected) when the stored result is missing or is of another trial (a
    run continued with more iterations may have a new winner); None when there is nothing to do."""
    chosen = choose(run)
    if chosen is None:
        return None
    done = run.store.results("final")
    return None if done and done[-1]["trial"] == chosen[0].id else chosen


def retrain_winner(run: CoarseRun, trial, expected: Optional[float], train: Train) -> dict:
    """Train ``trial``'s candidate at full fidelity beside the baseline (with ``train``); the
    stored record (``expected``: the extrapolated final score that chose it)."""
    winner = trial.candidate
    epochs = winner.recipe.get("epochs")
    save_to = str(run.store.run_dir / WINNER_DIR)
    seed = run.config.seed
    # Only the end of these trainings is reported, so they validate once (BENCHMARKS.md, "Small-map paths", part 3).
    tasks = [Task(WINNER_ID, winner,
                  TrialRequest(epochs, seed, test=True, save_to=save_to, validate_every_epoch=False))]
    base = baseline_of(run.space, run.config.baseline)
    if base is not None:
        tasks.append(Task(BASELINE_ID, same_schedule(base[1], epochs),
                        TrialRequest(epochs, seed, test=True, validate_every_epoch=False)))
    predicted, interval = held_out_estimate(run, trial)
    extrapolator = run.extrapolator() if expected is not None else None
    if extrapolator is not None:
        run.log(f"result: the winner is the trial expected to end its schedule best: trial {trial.id}, "
                 f"{format_score(expected, run.config.score_bounds == [0.0, 1.0])} ({extrapolator.describe()})")
    run.log(f"result: training the winner (trial {trial.id}) again at full fidelity for its whole schedule "
             f"({epochs or 'its'} epochs)" + (f", beside the baseline {base[0]} (the space's default recipe, "
                                               "same epochs)" if base else ""))
    names = {WINNER_ID: "winner", BASELINE_ID: "baseline"}
    accuracy = run.config.score_bounds == [0.0, 1.0]
    results = train(tasks, "result", lambda task, r: f"  {names[task.id]}: {r.get('status')}, validation "
                    f"{format_score(r.get('final_acc'), accuracy)}, test {format_score(r.get('test_score'), accuracy)}")
    cal = run.calibration()
    record = {"trial": trial.id, "key": trial.key, "predicted": predicted, "predicted_interval": interval,
              "predicted_how": HELD_OUT_HOW if predicted is not None else None, "searched_score": run.score(trial),
              "fidelity_label": cal.fidelity_label if cal else "full", "epoch": cal.chosen_epoch if cal else None,
              "expected_final": expected,
              "chosen_by": extrapolator.describe() if extrapolator is not None else "the ranking"}
    for task in tasks:
        r = results.get(task.id, {})
        record[names[task.id]] = {"candidate": task.candidate.to_dict(), "epochs": r.get("epochs_run"),
                                 **{k: r.get(k) for k in ("status", "final_acc", "test_score", "wall_time", "error")}}
    if base is not None:
        record["baseline"]["name"] = base[0]
    if results.get(WINNER_ID, {}).get("saved"):
        record["winner"]["weights"] = save_to
    run.store.save_result("final", record)
    return record


def format_score(v, accuracy: bool = True) -> str:
    """An accuracy as a percentage; any other score as the number it is."""
    if v is None:
        return "-"
    return f"{100 * v:.2f} %" if accuracy else f"{v:.4g}"
