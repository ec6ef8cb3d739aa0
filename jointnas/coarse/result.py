"""The result of a coarse run: its winner trained again at full fidelity for its recipe's whole
schedule (no epoch cap), scored on the test split, its weights kept in ``RUN/winner/``
(:mod:`jointnas.evaluation.saved_model`); beside it the space's default (its first preset, or the one
named, with the space's default recipe) trained for as many epochs, so that the search is
judged against what a user gets without it at the same cost.

The winner is the best trial by :mod:`jointnas.coarse.ranking`, or, when the run has earlier pairs
trained to the end of their schedules, the measured trial whose score there
:mod:`jointnas.coarse.extrapolate` expects highest (an early score favours short schedules)."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..execution.local import Job
from .ranking import best_trials
from ..space import Candidate

WINNER_DIR = "winner"
WINNER_ID, BASELINE_ID = -1, -2


def baseline_of(space, name: Optional[str]) -> Optional[tuple]:
    """(name, candidate) of the space's default, or None when the space has no preset."""
    name = name or next(iter(space.presets), None)
    return (name, space.preset(name)) if name else None


def same_schedule(candidate: Candidate, epochs: Optional[int]) -> Candidate:
    """``candidate`` with its recipe's schedule set to ``epochs`` (same training cost as the winner)."""
    if epochs is None or "epochs" not in candidate.recipe:
        return candidate
    return Candidate(dict(candidate.arch), {**candidate.recipe, "epochs": int(epochs)},
                     space=getattr(candidate, "space", None))


def choose(search) -> Optional[Tuple[object, Optional[float]]]:
    """(trial, expected final score) to retrain: by the extrapolator when the run has one, else the
    ranking's first (expected None); None before any trial is measured. Ties keep the ranking's order."""
    ranked = best_trials(search.store.trials(), (search.calibration() or {}).get("chosen_epoch"),
                         cheap=search.cheap_runs())
    if not ranked:
        return None
    extrapolator = search.extrapolator()
    if extrapolator is None:
        return ranked[0][0], None
    expected = extrapolator.predict([t.candidate for t, _ in ranked], [s for _, s in ranked])
    best = int(np.argmax(expected))
    return ranked[best][0], float(expected[best])


def pending(search) -> Optional[tuple]:
    """:func:`choose`'s (trial, expected) when the stored result is missing or is of another trial (a
    run continued with more iterations may have a new winner); None when there is nothing to do."""
    chosen = choose(search)
    if chosen is None:
        return None
    done = search.store.results("final")
    return None if done and done[-1]["trial"] == chosen[0].id else chosen


def retrain_winner(search, trial, expected: Optional[float] = None) -> dict:
    """Train ``trial``'s candidate at full fidelity beside the baseline; the stored record
    (``expected``: the extrapolated final score that chose it)."""
    winner = trial.candidate
    epochs = winner.recipe.get("epochs")
    save_to = str(search.store.run_dir / WINNER_DIR)
    # Only the end of these trainings is reported, so they validate once (BENCHMARKS.md, "Small-map paths", part 3).
    jobs = [Job(WINNER_ID, winner.to_dict(), search.space, search.evaluator, epochs, search.config.seed, test=True,
                save_to=save_to, validate_every_epoch=False)]
    base = baseline_of(search.space, search.config.baseline)
    if base is not None:
        jobs.append(Job(BASELINE_ID, same_schedule(base[1], epochs).to_dict(), search.space, search.evaluator, epochs,
                        search.config.seed, test=True, validate_every_epoch=False))
    predicted = None
    if search.final_surrogate_path() is not None:
        predicted = float(search.final_surrogate().predict([winner])[0][0])
    extrapolator = search.extrapolator() if expected is not None else None
    if extrapolator is not None:
        search.log(f"result: the winner is the trial expected to end its schedule best: trial {trial.id}, "
                   f"{_pct(expected)} ({extrapolator.describe()})")
    search.log(f"result: training the winner (trial {trial.id}) again at full fidelity for its whole schedule "
               f"({epochs or 'its'} epochs)" + (f", beside the baseline {base[0]} (the space's default recipe, "
                                                 "same epochs)" if base else ""))
    names = {WINNER_ID: "winner", BASELINE_ID: "baseline"}
    results = search.run_jobs(jobs, "result", lambda job, r: f"  {names[job.trial_id]}: {r.get('status')}, "
                              f"validation {_pct(r.get('final_acc'))}, test {_pct(r.get('test_score'))}")
    cal = search.calibration() or {}
    record = {"trial": trial.id, "key": trial.key, "predicted": predicted,
              "searched_score": search.score(trial, cal.get("chosen_epoch")),
              "fidelity_label": cal.get("fidelity_label", "full"), "epoch": cal.get("chosen_epoch"),
              "expected_final": expected,
              "chosen_by": extrapolator.describe() if extrapolator is not None else "the ranking"}
    for job in jobs:
        r = results.get(job.trial_id, {})
        record[names[job.trial_id]] = {"candidate": job.candidate, "epochs": r.get("epochs_run"),
                                       **{k: r.get(k) for k in ("status", "final_acc", "test_score", "wall_time",
                                                                "error")}}
    if base is not None:
        record["baseline"]["name"] = base[0]
    if results.get(WINNER_ID, {}).get("saved"):
        record["winner"]["weights"] = save_to
    search.store.save_result("final", record)
    return record


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"
