"""The summary of a coarse run (:func:`summary`, what ``CoarseSearch.run`` returns) and its
one-screen text (:func:`format_summary`, what ``jointnas coarse`` prints at the end)."""
from __future__ import annotations

from .ranking import rule
from .run import CoarseRun


def summary(run: CoarseRun, top: int = 5) -> dict:
    """A coarse run as plain values: settings, calibration, counts, its ``top`` trials by the
    ranking rule (the report ranks by the same), each predictor's held-out measure and the
    result stage's record."""
    store, cal = run.store, run.calibration()
    trials = store.trials()
    scored = run.ranked(top)
    extrapolator = run.extrapolator()
    expected = (extrapolator.predict([t.candidate for t, _ in scored], [v for _, v in scored])
                if extrapolator is not None and scored else [None] * len(scored))
    return {"run": str(store.run_dir), "config": store.config, "calibration": cal.to_dict() if cal else {},
            "counts": store.counts(), "iterations": sorted({t.iteration for t in trials}),
            "best": [{"trial": t.id, "iteration": t.iteration, "score": s, "final_acc": t.final_acc,
                      "epochs_run": t.epochs_run, "schedule": t.candidate.recipe.get("epochs"),
                      "expected_final": None if e is None else float(e), "flops": t.flops, "params": t.params,
                      "key": t.key} for (t, s), e in zip(scored, expected)],
            "predictor_eval": sorted(store.results("predictor_eval"), key=lambda e: e["iteration"]),
            "predictor": str(run.final_predictor),
            "final": (store.results("final") or [None])[-1]}


def format_summary(s: dict) -> str:
    cfg, cal = s["config"], s["calibration"]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(s["counts"].items()))
    lines = [f"coarse search {s['run']}: {sum(s['counts'].values())} trials ({counts}) "
             f"over {len(s['iterations'])} iteration(s)"]
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
    expect = any(b.get("expected_final") is not None for b in s["best"])
    lines += ["", f"best measured candidates ({rule(epoch, 'score', fid)}):",
              f"  {'trial':>5} {'iter':>4} {'acc@' + str(epoch):>7} {'final':>6} {'epochs':>6} "
              + (f"{'schedule':>8} {'expected at its end':>19} " if expect else "")
              + f"{'MFLOPs':>8} {'Mparams':>7}  key"]
    for b in s["best"]:
        lines.append(f"  {b['trial']:>5} {b['iteration']:>4} {b['score']:>7.3f} {b['final_acc'] or 0:>6.3f} "
                     f"{b['epochs_run']:>6} "
                     + (f"{b.get('schedule') or '-':>8} {_ratio(b.get('expected_final')):>19} " if expect else "")
                     + f"{b['flops'] / 1e6:>8.1f} {b['params'] / 1e6:>7.2f}  {b['key']}")
    lines += ["", "predictor per iteration (held-out = k-fold out-of-fold Kendall tau):",
              f"  {'iter':>4} {'trained':>7} {'held-out tau':>12} {'tau on its next batch':>22}"]
    evals = s["predictor_eval"]
    next_tau = {e["iteration"] - 1: e.get("next_batch_tau") for e in evals}
    for e in evals:
        tau, nxt = e["kendall_tau"], next_tau.get(e["iteration"])
        lines.append(f"  {e['iteration']:>4} {e['n_train']:>7} {'-' if tau is None else f'{tau:.2f}':>12} "
                     f"{'-' if nxt is None else f'{nxt:.2f}':>22}")
    lines.append(f"final predictor: {s['predictor']}")
    if s.get("final"):
        lines += [""] + format_final(s["final"])
    run = s["run"]
    lines += ["", f"continue: jointnas fine --run {run} (predictor-scored search), jointnas report {run} "
              f"(plots), or jointnas coarse --run {run} --iterations {cfg.get('iterations', 0) + 2} (more trials)"]
    return "\n".join(lines)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_final(f: dict) -> list:
    """The winner retrained at full fidelity, its test score next to the predicted one, and the baseline."""
    w, b = f.get("winner") or {}, f.get("baseline")
    lines = [f"result: winner trial {f['trial']} ({f['key']}) retrained at full fidelity, {w.get('epochs')} epochs: "
             f"{w.get('status')}"]
    if f.get("expected_final") is not None:
        lines.append(f"  chosen as the trial expected to end its schedule best: validation {_pct(f['expected_final'])} "
                     f"expected ({f.get('chosen_by')})")
    lines.append(f"  test {_pct(w.get('test_score'))}, validation {_pct(w.get('final_acc'))}; the predictor expected "
                 f"{_pct(f.get('predicted'))} (at fidelity {f.get('fidelity_label')}, epoch {f.get('epoch')}; searched "
                 f"score {_pct(f.get('searched_score'))})")
    if w.get("weights"):
        lines.append(f"  its weights: {w['weights']}/weights.pt (jointnas.catalog.load_trained)")
    if b:
        lines.append(f"  baseline {b.get('name')} with the space's default recipe, {b.get('epochs')} epochs (same "
                     f"training cost): test {_pct(b.get('test_score'))}, validation {_pct(b.get('final_acc'))}")
    return lines
