"""The Result block at the top of the report: the winner and why it won, its test and validation
accuracy beside the baseline's, what the predictors expected of it beside a measured number of
the same kind (same fidelity and epoch), and where its weights are with the call that loads them.

Every line is short enough to read without scrolling; the winner is :attr:`RunView.winner`, the
one every other part of the page marks."""
from __future__ import annotations

from typing import List, Optional, Tuple

from ..coarse.result import WINNER_DIR
from .autotrain import comparison_lines, comparison_of
from .view import RunView, baseline_text, predicted_before

Rows = List[Tuple[str, List[str]]]


def pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def winner_score(view: RunView) -> Optional[float]:
    """The winner's score at the run's ranking epoch and fidelity (what its predictors were fitted to)."""
    w = view.winner
    return next((s for t, s in view.ranked() if w is not None and t.id == w.trial.id), None)


def _at(view: RunView) -> str:
    epoch, fid = view.rank_epoch, view.fidelity_label
    return (f"epoch {epoch}" if epoch else "the end of its run") + (f", fidelity {fid}" if fid != "full" else "")


def _winner(view: RunView) -> List[str]:
    t = view.winner.trial
    recipe, arch = t.candidate.recipe, t.candidate.arch
    size = f"{t.flops / 1e6:.1f} MFLOPs, {t.params / 1e6:.2f} M params" if t.flops else "cost not measured"
    line = [f"trial {t.id} of iteration {t.iteration} (key {t.key}): {size}"]
    details = [f"resolution {arch['resolution']}" if "resolution" in arch else "",
               f"{recipe['optimizer']} optimizer" if "optimizer" in recipe else "",
               f"lr {recipe['lr']:.3g}" if isinstance(recipe.get("lr"), float) else "",
               f"{recipe['epochs']}-epoch schedule" if "epochs" in recipe else ""]
    details = [d for d in details if d]
    return line + ([", ".join(details)] if details else [])


def _why(view: RunView) -> List[str]:
    w = view.winner
    score = winner_score(view)
    if w.expected is None:
        return [f"first by the ranking: {pct(score)} validation accuracy at {_at(view)}",
                f"the run ranks its {len(view.ranked())} measured trials there, one fidelity for all"]
    lines = [f"highest expected validation accuracy at the end of its schedule: {pct(w.expected)}"]
    others = sorted(((v, i) for i, v in view.expected.items() if i != w.trial.id), reverse=True)
    if others:
        lines.append(f"runner-up: trial {others[0][1]}, expected {pct(others[0][0])}")
    ranked = view.ranked(top=1)
    if ranked and ranked[0][0].id != w.trial.id:
        first = ranked[0][0].id
        lines.append(f"trial {first} was first at {_at(view)} ({pct(ranked[0][1])}, the winner {pct(score)})"
                     + (f" but is expected {pct(view.expected[first])} at its end" if first in view.expected else ""))
    return lines + [part[0].upper() + part[1:] for part in w.chosen_by.split("; ")]


def _retrained(view: RunView) -> Optional[dict]:
    """The final record's winner entry when it is of :attr:`RunView.winner`."""
    return (view.final or {}).get("winner") if view.winner.retrained else None


def _measured(view: RunView) -> List[str]:
    r = _retrained(view)
    if r is None:
        return ["not retrained yet: the result stage retrains the winner for its whole schedule when the "
                "coarse search ends"]
    if r.get("status") != "done":
        return [f"retraining {r.get('status')}" + (f": {r['error']}" if r.get("error") else "")]
    return [f"test {pct(r.get('test_score'))}, validation {pct(r.get('final_acc'))}",
            f"retrained at full fidelity for its whole schedule ({r.get('epochs')} epochs)"]


def _baseline(view: RunView) -> List[str]:
    lines = [baseline_text(view)]
    b = (view.final or {}).get("baseline") if view.winner.retrained else None
    if b is None:
        return lines + (["trained beside the winner, for as many epochs, when the coarse search ends"]
                        if view.final is None else [])
    if b.get("status") != "done":
        return lines + [f"training {b.get('status')}" + (f": {b['error']}" if b.get("error") else "")]
    return lines + [f"test {pct(b.get('test_score'))}, validation {pct(b.get('final_acc'))}",
                    f"the space's default recipe, {b.get('epochs')} epochs (the winner's training cost)"]


def _predicted(view: RunView) -> List[str]:
    """Each prediction beside the measured number of its kind: the score at the ranking epoch and
    fidelity, then the end of the schedule."""
    w, score = view.winner, winner_score(view)
    lines = []
    before = predicted_before(view, w.trial)
    if before is not None:
        mean, spread, k = before
        lines.append(f"before training, the predictor of iteration {k} expected {pct(mean)} ± {100 * spread:.1f} pts")
    final = view.final if w.retrained else None
    if final and final.get("predicted") is not None:
        lines.append(_held_out_line(final))
    if lines:
        lines.insert(0, f"at {_at(view)}: measured {pct(score)}")
    if w.expected is not None:
        r = _retrained(view) or {}
        measured = (f"measured validation {pct(r['final_acc'])} after {r.get('epochs')} epochs"
                    if r.get("final_acc") is not None else "measured when the winner is retrained")
        lines.append(f"at the end of its schedule: extrapolated {pct(w.expected)}; {measured}")
    return lines or [f"no prediction: trial {w.trial.id} was in the first batch, chosen before any accuracy "
                     "predictor was fitted"]


def _held_out_line(final: dict) -> str:
    """The result record's prediction for the winner: out of fold (fitted without it, with its
    calibrated interval) in runs that store how it was made, the last refit's in older runs."""
    if not final.get("predicted_how"):
        return f"the run's last predictor (fitted on this measurement too) gives {pct(final['predicted'])}"
    line = f"held out (the predictor fitted without it) expected {pct(final['predicted'])}"
    interval = final.get("predicted_interval")
    if interval:
        low, high, level = interval
        line += f", {100 * level:.0f} % interval {pct(low)} to {pct(high)}"
    return line


def _weights(view: RunView) -> List[str]:
    r = _retrained(view)
    folder = view.run_dir / WINNER_DIR
    if r is None:
        return [f"{folder}/ once the winner is retrained"]
    if not r.get("weights"):
        return ["not kept: this run's evaluator saves no weights"]
    if not (folder / "weights.pt").is_file():
        return [f"{folder / 'weights.pt'} is missing (moved or deleted since the run)"]
    return [f"{folder / 'weights.pt'}", f"model, candidate = jointnas.catalog.load_trained({str(folder)!r})"]


def result_rows(view: RunView) -> Rows:
    """(label, lines) of the Result block; [] before any trial is measured."""
    if view.winner is None:
        return []
    rows = [("Winner" if view.winner.retrained else "Winner so far", _winner(view)), ("Why it won", _why(view)),
            ("Winner measured", _measured(view)), ("Baseline", _baseline(view)),
            ("Predicted vs measured", _predicted(view)), ("Weights", _weights(view))]
    record = comparison_of(view.run_dir)  # an autotrain run: its answer against the baseline recipe comes first
    if record:
        rows.insert(0, ("AutoTrain vs baseline", [line.strip() for line in comparison_lines(record)]))
    return rows

