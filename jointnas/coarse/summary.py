"""The summary of a coarse run (:func:`summary`, what ``CoarseSearch.run`` returns) and its
one-screen text (:func:`format_summary`, what ``jointnas coarse`` prints at the end)."""
from __future__ import annotations

from ..budget import flops_flag, format_flops, format_params
from ..io import FLOPS_NOTE
from .ranking import rule
from .result import choose, format_score
from .run import CoarseRun


def summary(run: CoarseRun, top: int = 5) -> dict:
    """A coarse run as plain values: settings, calibration, counts, its ``top`` trials by the
    ranking rule (the report ranks by the same), the winner (the stored result's trial, else
    :func:`jointnas.coarse.result.choose`'s) with why it won, each predictor's held-out measure
    and the result stage's record."""
    store, cal = run.store, run.calibration()
    trials = store.trials()
    ranked = run.ranked()
    extrapolator = run.extrapolator()
    expected = (extrapolator.predict([t.candidate for t, _ in ranked], [v for _, v in ranked])
                if extrapolator is not None and ranked else [None] * len(ranked))
    rows = [_row(t, s, e, rank) for rank, ((t, s), e) in enumerate(zip(ranked, expected), 1)]
    final = (store.results("final") or [None])[-1]
    winner = None
    if final is not None:
        winner = final["trial"]
    elif ranked:
        winner = choose(run)[0].id
    for row in rows:
        row["winner"] = row["trial"] == winner
    won = next((r for r in rows if r["winner"]), None)
    return {"run": str(store.run_dir), "config": store.config, "calibration": cal.to_dict() if cal else {},
            "counts": store.counts(), "iterations": sorted({t.iteration for t in trials}),
            "best": rows[:top],
            "winner": None if won is None else dict(won, chosen_by=(
                "expected_final" if won["expected_final"] is not None else "ranking"),
                how=extrapolator.describe() if extrapolator is not None else None),
            "predictor_eval": sorted(store.results("predictor_eval"), key=lambda e: e["iteration"]),
            "predictor": str(run.final_predictor),
            "final": final, "stopped": store.get_meta("stopped")}


def _row(t, score: float, expected, rank: int) -> dict:
    return {"trial": t.id, "iteration": t.iteration, "score": score, "rank": rank, "final_acc": t.final_acc,
            "epochs_run": t.epochs_run, "schedule": t.candidate.recipe.get("epochs"),
            "expected_final": None if expected is None else float(expected), "flops": t.flops, "params": t.params,
            "key": t.key}


def format_summary(s: dict) -> str:
    cfg, cal = s["config"], s["calibration"]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(s["counts"].items()))
    accuracy = cfg.get("score_bounds") == [0.0, 1.0]   # else a score of the objective's own, shown as it is
    lines = [f"coarse search {s['run']}: {sum(s['counts'].values())} trials ({counts}) "
             f"over {len(s['iterations'])} iteration(s)"]
    if s.get("stopped"):
        reason = s["stopped"].get("reason")
        lines.append(f"stopped by the objective{f' ({reason})' if reason else ''}; run it again to continue")
    if cfg.get("budget") is not None or cfg.get("max_params") is not None:
        lines.append(f"budget: {_budget(cfg)} per candidate ({FLOPS_NOTE}); every trained candidate fits it")
    schedule = "full schedule = each recipe's epochs"
    if cfg.get("epoch_cap"):
        schedule += (f", capped at {cfg['epoch_cap']} epochs of that schedule "
                     "(the learning-rate schedule is not compressed)")
    lines.append(schedule)
    epoch = cal.get("chosen_epoch")
    if cal:
        lines.append(f"early stop: epoch {epoch} of {cal['full_epochs']} "
                     f"({cal['metric']} >= {cal['threshold']:g}: {'yes' if cal['reached'] else 'no'})")
    fid = cal.get("fidelity_label") or "full"
    if cal.get("fidelity_cost") is not None:
        lines.append(f"fidelity: {fid} at epoch {epoch} ({cal['fidelity_cost']:.2f}x the cost of full training; "
                     "cheaper settings under the threshold were refused)")
    lines += [""] + _table(s, epoch, fid, accuracy)
    lines += ["", "predictor per iteration (held-out = k-fold out-of-fold Kendall tau):",
              f"  {'iter':>4} {'trained':>7} {'held-out tau':>12} {'tau on its next batch':>22}"]
    evals = s["predictor_eval"]
    next_tau = {e["iteration"] - 1: e.get("next_batch_tau") for e in evals}
    shown = [e for e in evals if e["kendall_tau"] is not None or next_tau.get(e["iteration"]) is not None]
    for e in shown:
        tau, nxt = e["kendall_tau"], next_tau.get(e["iteration"])
        lines.append(f"  {e['iteration']:>4} {e['n_train']:>7} {'-' if tau is None else f'{tau:.2f}':>12} "
                     f"{'-' if nxt is None else f'{nxt:.2f}':>22}")
    if len(shown) < len(evals):
        lines.append(f"  ({len(evals) - len(shown)} fit(s) with neither measure not shown)")
    lines.append(f"final predictor: {s['predictor']}")
    if s.get("final"):
        lines += [""] + format_final(s["final"], accuracy)
    run = s["run"]
    budget = f" --budget {flops_flag(cfg['budget'])}" if cfg.get("budget") is not None else ""
    lines += ["", f"continue: jointnas fine --run {run}{budget} (predictor-scored search of the same "
              + ("budget" if budget else "space") + f"), jointnas report {run} "
              f"(plots), or jointnas coarse --run {run} --iterations {cfg.get('iterations', 0) + 2} (more trials)"]
    return "\n".join(lines)


def _budget(cfg: dict) -> str:
    parts = ([f"<= {format_flops(cfg['budget'])}"] if cfg.get("budget") is not None else []) + (
        [f"<= {format_params(cfg['max_params'])}"] if cfg.get("max_params") is not None else [])
    return ", ".join(parts)


def _table(s: dict, epoch, fid: str, accuracy: bool = True) -> list:
    """The best measured candidates with the winner marked (its row added when it ranks lower), and why it won."""
    rows, winner = list(s["best"]), s.get("winner")
    if winner is not None and not any(r["winner"] for r in rows):
        rows.append(winner)
    expect = any(r.get("expected_final") is not None for r in rows)
    acc = ("acc" if accuracy else "score") + (f"@{epoch}" if epoch else "")
    lines = [f"best measured candidates ({rule(epoch, 'score', fid)}); * = the winner:",
             f"  {' ':1} {'trial':>5} {'iter':>4} {acc:>7} {'epochs':>6} "
             + (f"{'schedule':>8} {'expected acc@end':>16} " if expect else "")
             + f"{'MFLOPs':>8} {'Mparams':>7}  key"]
    for r in rows:
        if r is winner:
            lines.append(f"  {'...':>7}")
        lines.append(f"  {'*' if r['winner'] else ' '} {r['trial']:>5} {r['iteration']:>4} {r['score']:>7.3f} "
                     f"{r['epochs_run']:>6} "
                     + (f"{r.get('schedule') or '-':>8} {_ratio(r.get('expected_final')):>16} " if expect else "")
                     + f"{r['flops'] / 1e6:>8.1f} {r['params'] / 1e6:>7.2f}  {r['key']}")
    if expect:
        lines.append(f"  {acc}: measured validation accuracy; expected acc@end: predicted, at the end of the "
                     "recipe's whole schedule (measured for the winner only, in the result below)")
    if winner is not None:
        lines.append("  " + why_won(winner, epoch, accuracy))
    return lines


def why_won(w: dict, epoch, accuracy: bool = True) -> str:
    """Why the winner won, in one line (the rule :func:`jointnas.coarse.result.choose` applied)."""
    at = (f"acc@{epoch}" if epoch else "final accuracy") if accuracy else (f"score@{epoch}" if epoch else "score")
    if w.get("chosen_by") == "expected_final":
        place = "also the best" if w["rank"] == 1 else f"{_ordinal(w['rank'])}"
        return (f"* winner: trial {w['trial']}, the highest expected accuracy at the end of its schedule "
                f"({_ratio(w['expected_final'])}; {w.get('how')}); {place} by measured {at} "
                f"({w['score']:.3f}), which favours short schedules")
    return (f"* winner: trial {w['trial']}, the best measured {at} ({w['score']:.3f}): the ranking's first, with no "
            "earlier whole curves to extrapolate its schedule's end from")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_final(f: dict, accuracy: bool = True) -> list:
    """The winner retrained at full fidelity: its test score beside the baseline's, and each predicted
    number beside the measured one of the same kind (same epoch and fidelity); ``accuracy``: the
    scores are accuracies (percentages), else shown as the numbers they are."""
    def show(v) -> str:
        return format_score(v, accuracy)

    w, b = f.get("winner") or {}, f.get("baseline")
    epochs, epoch, fid = w.get("epochs"), f.get("epoch"), f.get("fidelity_label") or "full"
    lines = [f"result: winner trial {f['trial']} ({f['key']}) retrained at full fidelity for its whole schedule, "
             f"{epochs} epochs: {w.get('status')}"]
    base = (f"; baseline {b.get('name')} (the space's default recipe, same {b.get('epochs')} epochs): "
            f"{show(b.get('test_score'))}" if b else "")
    if w.get("test_score") is not None or b:
        lines.append(f"  test {'accuracy' if accuracy else 'score'} {show(w.get('test_score'))}{base}")
    end = f"  validation at the end of its schedule (epoch {epochs}): measured {show(w.get('final_acc'))}"
    if f.get("expected_final") is not None:
        end += f", expected {show(f['expected_final'])} when it was chosen ({f.get('chosen_by')})"
    lines.append(end + (f"; baseline {show(b.get('final_acc'))}" if b else ""))
    if f.get("searched_score") is not None:
        searched = (f"  validation at epoch {epoch} (fidelity {fid}, as every trial was ranked): measured "
                    f"{show(f['searched_score'])}")
        if f.get("predicted") is not None and f.get("predicted_how"):
            interval = f.get("predicted_interval")
            band = (f", {100 * interval[2]:.0f} % interval {show(interval[0])} to {show(interval[1])}"
                    if interval else "")
            searched += f", the predictor expected {show(f['predicted'])} (held out: fitted without it{band})"
        lines.append(searched)
    if w.get("weights"):
        lines.append(f"  its weights: {w['weights']}/weights.pt (jointnas.catalog.load_trained)")
    return lines
