"""``jointnas fine``: predictor-scored genetic search for the best (arch, recipe) pairs under a budget."""
from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from pathlib import Path
from typing import List, Optional, Tuple

from ..budget import Budget, parse_flops, parse_params
from ..catalog import STRATEGIES, load_scorer, load_space, make_strategy
from ..coarse.config import run_space
from ..coarse.ranking import ranked_in
from ..errors import UsageError
from ..export import check_onnx
from ..fine import search
from ..fine.pareto import OBJECTIVES
from ..fine.problem import MAX_EVALUATIONS, MAX_GENERATIONS, MAX_POPULATION, MAX_TOP_K, SearchSettings
from ..io import FLOPS_NOTE as FLOPS_HELP, check_writable_dir, check_writable_file
from ..shipped import folder
from ..surrogates.interval import CalibratedInterval
from . import fine_pareto, in_range
from .fine_output import write_outputs


def register(sub):
    d = SearchSettings()
    p = sub.add_parser(
        "fine", help="fine search: evolve the best (arch, recipe) pairs under a FLOPs budget, scored by the predictor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "FBNetV3's fine stage: an adaptive genetic search scored by the accuracy predictor. The first "
            "population is a coarse run's best measured candidates plus random feasible ones; each generation "
            "keeps the best quarter and breeds the rest by per-dimension mutation and uniform crossover of arch "
            "and recipe. Every candidate fits the budget exactly; FLOPs are " + FLOPS_HELP + ". The mutation "
            "rate grows while the best score stalls; the search stops after --patience generations without a "
            "gain of --tolerance, or after --generations. Prints the top candidates. --strategy random is "
            "the baseline to compare with: as many random candidates within the budget, scored by the same "
            "predictor. The reported top-k are choices, not "
            "clones: pairwise at least --min-distance apart; predicted scores within 0.0001 tie and go to the "
            "lower spread, then fewer FLOPs.", 100),
        epilog="examples:\n"
        "  jointnas fine --budget 600MFLOPs                      # the only run in runs/, else the shipped predictor\n"
        "  jointnas fine --run runs/coarse-X --budget 0.4GFLOPs --max-params 8M --export chosen/\n"
        "  jointnas fine --predictor predictors/fbnetv3-digits.pt --budget 6e8 --risk 1 --json\n"
        "  jointnas fine --pareto --out front.json --export family/   # the accuracy-FLOPs front: members A, B, ...\n"
        "  jointnas train --candidate chosen/rank1-<key>/candidate.json --data digits")
    p.add_argument("--budget", metavar="FLOPS",
                   help=f"FLOPs budget: {FLOPS_HELP}; e.g. 600MFLOPs, 600M, 0.6GFLOPs, 6e8 (case-insensitive) "
                   "(default: the run's budget, else the space's, 600MFLOPs in fbnetv3)")
    p.add_argument("--max-params", metavar="N", help="parameter budget of the deployable model, e.g. 8M, 7.5M, "
                   "7500K (default: none)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", type=Path, metavar="DIR", help="a coarse run: its latest iteration's checkpoint "
                     "(DIR/predictors/iter<k>.pt, not its predictor.pt copy) scores, its best measured candidates "
                     "seed the population, the result is saved in it (default: the only run under runs/; with none or "
                     "several, the shipped predictor of --space, and fine says which it used)")
    src.add_argument("--predictor", type=Path, metavar="FILE.pt", help="a predictor checkpoint instead of a run "
                     "(e.g. the shipped predictors/fbnetv3-digits.pt)")
    p.add_argument("--space", help="space of --predictor (default: the one it was trained on)")
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default="evolution",
                   help=f"the fine strategy, one of those registered: {', '.join(sorted(STRATEGIES))} "
                   "(default: evolution, the adaptive genetic search; random is the baseline)")
    p.add_argument("--evaluations", type=in_range(int, 1, MAX_EVALUATIONS, f"a whole number in 1..{MAX_EVALUATIONS}"),
                   metavar="N", help="score at most N candidates (default: random 20000; evolution until it converges)")
    p.add_argument("--population", type=in_range(int, 4, MAX_POPULATION, f"a whole number in 4..{MAX_POPULATION}"),
                   default=d.population, help=f"population size (default: {d.population})")
    p.add_argument("--generations", type=in_range(int, 0, MAX_GENERATIONS, f"a whole number in 0..{MAX_GENERATIONS}"),
                   default=d.generations, help=f"at most this many generations (default: {d.generations})")
    p.add_argument("--patience", type=in_range(int, 1, MAX_GENERATIONS, f"a whole number in 1..{MAX_GENERATIONS}"),
                   default=d.patience, metavar="K",
                   help=f"stop after K generations whose best-score gain is below --tolerance (default: {d.patience})")
    p.add_argument("--tolerance", type=in_range(float, 0, math.inf, "a number >= 0"), default=d.tolerance,
                   help=f"a gain of the best score below this is a stall (accuracy fraction; default: {d.tolerance:g})")
    p.add_argument("--mutation-rate", type=in_range(float, 1e-9, 1.0, "a number in (0, 1]"),
                   default=d.mutation_rate, metavar="P", help=f"starting per-dimension mutation probability; it adapts "
                   f"between P and {d.max_mutation_rate:g} (default: {d.mutation_rate:g})")
    p.add_argument("--risk", type=in_range(float, 0, math.inf, "a number >= 0"), default=d.risk, metavar="LAMBDA",
                   help="score = predicted mean - LAMBDA * ensemble spread; > 0 prefers candidates the "
                   f"predictor is sure of (default: {d.risk:g}, the mean)")
    p.add_argument("--init-best", type=in_range(int, 0, MAX_POPULATION, f"a whole number in 0..{MAX_POPULATION}"),
                   default=d.init_best, metavar="P",
                   help=f"seed the population with the run's P best measured feasible candidates; random feasible "
                   f"ones fill the rest (default: {d.init_best})")
    p.add_argument("--top-k", type=in_range(int, 1, MAX_TOP_K, f"a whole number in 1..{MAX_TOP_K}"),
                   default=d.top_k, metavar="K", help=f"candidates to report and export (default: {d.top_k})")
    p.add_argument("--min-distance", type=in_range(float, 0, 1.0, "a number in [0, 1]"), default=d.min_distance,
                   metavar="F", help="reported candidates differ pairwise by at least F x the number of dimensions: "
                   "a changed categorical or bool counts 1, an ordered or float one its change as a fraction of "
                   f"its range; 0 allows near-clones (default: {d.min_distance:g})")
    p.add_argument("--seed", type=in_range(int, 0, 2**32 - 1, "a whole number in 0..2**32-1"), default=d.seed,
                   help=f"same seed, same result (default: {d.seed})")
    p.add_argument("--pareto", nargs="?", const="flops", choices=sorted(OBJECTIVES), metavar="flops|params",
                   help="one search for the front of predicted accuracy against FLOPs (default) or params, like "
                   "FBNetV3's family A-G: prints --top-k members spread along it, draws it beside --out (or in "
                   "--export), --export writes the members; --budget, if given, caps the front")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument("--out", type=Path, metavar="FILE.json", help="also write the result as JSON to FILE.json")
    p.add_argument("--export", type=Path, metavar="DIR", help="write each top candidate to DIR/rank<i>-<key>/: "
                   "candidate.json (with predicted accuracy, FLOPs, params), recipe.yaml, build.json and "
                   "build_model.py (the jointnas.build_model call for the deployable model)")
    p.add_argument("--torchscript", action="store_true", help="with --export, also write model.ts, the deployable "
                   "model as TorchScript (untrained weights)")
    p.add_argument("--onnx", action="store_true", help="with --export, also write model.onnx, the deployable "
                   "model as ONNX (untrained weights; needs the onnx extra)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn when stderr is not "
                   "a terminal)")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------- inputs
def runs_under(root: Path = Path("runs")) -> List[Path]:
    """The run directories directly under ``root``, by name."""
    if not root.is_dir():
        return []
    from ..store import RunStore  # the run store: `jointnas fine --predictor` starts without it

    return sorted((d for d in root.iterdir() if d.is_dir() and RunStore.is_run(d)), key=lambda d: d.name)


def shipped_predictor(space_name: str) -> Optional[Path]:
    """The predictor shipped for ``space_name`` (``predictors/<space>-digits.pt`` first), or None."""
    found = sorted(folder("predictors").glob(f"{space_name}-*.pt"))
    preferred = [f for f in found if f.name == f"{space_name}-digits.pt"]
    return (preferred or found or [None])[0]


def _measured_seeds(store) -> list:
    """The run's measured candidates, best first by the run's one ranking rule (score at the
    calibrated early-stop epoch and fidelity; :mod:`jointnas.coarse.ranking`)."""
    return [t.candidate for t, _ in ranked_in(store)]


def _load_inputs(args) -> Tuple[object, object, list, dict, object]:
    """(predictor, space, seeds, source description, store or None)."""
    if args.predictor is not None:
        if not args.predictor.is_file():
            raise UsageError(f"--predictor {args.predictor}: no such file; pass a checkpoint written by "
                             "'jointnas coarse' (RUN/predictors/iter<k>.pt) or a shipped one (predictors/*.pt)")
        predictor = load_scorer(args.predictor, space=args.space)
        return predictor, predictor.space, [], {"predictor": str(args.predictor)}, None
    run_dir, why = args.run, ""
    if run_dir is None:
        runs = runs_under()
        if len(runs) != 1:
            return _shipped_inputs(args, runs)
        run_dir, why = runs[0], "the only run under runs/; "
    from ..store import RunStore  # see runs_under

    store = RunStore.open(run_dir)
    if store.config.get("kind") == "oneshot":  # jointnas.oneshot.run's marker; importing it would load torch
        store.close()
        raise UsageError(f"run {run_dir} is a one-shot run (jointnas oneshot): it derived a cell, not a predictor "
                         f"to score with; train the cell with 'jointnas train --candidate {run_dir}/candidate.json' "
                         f"or pass --predictor")
    path = store.predictor_path()
    if path is None:
        store.close()
        raise UsageError(f"run {run_dir} has no fitted predictor yet (its first coarse iteration has not "
                         f"finished); continue it with 'jointnas coarse --run {run_dir}', or pass --predictor")
    space = run_space(store)
    if args.space is not None and load_space(args.space).fingerprint() != space.fingerprint():
        store.close()
        raise UsageError(f"--space {args.space}: run {run_dir} searched space {store.config['space']}; drop --space "
                         "or pass --predictor")
    iteration = max(p["iteration"] for p in store.predictors() if p["path"] == str(path))
    record = next((e for e in store.results("predictor_eval") if e["iteration"] == iteration), None)
    # Said in one line: the iteration checkpoint is what scores; the run's predictor.pt copy is never read.
    sys.stderr.write(f"scoring with {path}: run {run_dir}'s iteration {iteration} checkpoint, its latest ({why}"
                     "the run's predictor.pt copy is not read)\n")
    predictor = load_scorer(path, space=space)
    return predictor, space, _measured_seeds(store), {"run": str(run_dir), "predictor": str(path),
                                                      "interval": CalibratedInterval.from_record(record)}, store


def _shipped_inputs(args, runs: List[Path]) -> Tuple[object, object, list, dict, None]:
    """No --run and not exactly one run under runs/: the shipped predictor of the space (loaded
    first, so that a broken --space file reports its own error), said in one line."""
    space = load_space(args.space or "fbnetv3")
    path = shipped_predictor(space.name)
    named = ", ".join(str(r) for r in runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
    if path is None:
        where = f"{len(runs)} runs under runs/ ({named})" if runs else "no run under runs/"
        raise UsageError(f"{where} and no shipped predictor for space {space.name}; pass --run DIR or "
                         "--predictor FILE.pt" + ("" if runs else ", or run 'jointnas coarse' first"))
    if runs:
        sys.stderr.write(f"scoring with the shipped predictor {path}: {len(runs)} runs under runs/ ({named}) "
                         "and none chosen; pass --run DIR to score with one of them\n")
    else:
        sys.stderr.write(f"no run under runs/: scoring with the shipped predictor {path}\n")
    predictor = load_scorer(path, space=space)
    return predictor, predictor.space, [], {"predictor": str(path)}, None


# --------------------------------------------------------------------------- output paths
def check_outputs(args) -> None:
    """Refuse unusable --out and --export paths before any search runs (a file is made and removed
    in the nearest existing folder to be sure: :mod:`jointnas.io`)."""
    if args.out is not None:
        check_writable_file(args.out, "--out")
    if args.export is not None:
        check_writable_dir(args.export, "--export")


# --------------------------------------------------------------------------- output
# Recipe columns shown in the table when the space has them, in this order.
RECIPE_COLUMNS = [("optimizer", "optimizer"), ("lr", "lr"), ("weight_decay", "wd"), ("epochs", "epochs"),
                  ("ema", "ema"), ("mixup_alpha", "mixup")]


def format_table(result, source: dict, strategy, interval: Optional[CalibratedInterval] = None) -> str:
    """``result`` of the :class:`jointnas.fine.base.Strategy` ``strategy`` as lines of text; ``interval``:
    the run's calibrated prediction interval (None: the spread alone, said to be uncalibrated)."""
    risk = result.settings.risk
    seeded = f", {result.seeded} of the run's measured candidates seeded" if "run" in source else ""
    budget = (f"budget {result.budget.describe()} (FLOPs: {FLOPS_HELP})" if result.budget is not None
              else "no budget (the space has no model family to count FLOPs)")
    lines = [f"fine search ({result.strategy}): {budget}; predictor {source['predictor']}",
             f"{strategy.describe(result)}, {result.scored} candidates scored in {result.wall_time:.2f} s "
             f"({result.scored_per_second:.0f}/s){seeded}; {result.stop_reason}",
             f"best score {result.best.score:.4f} (first scored batch's best {result.initial_best.score:.4f}); "
             + (f"score = predicted mean - {risk:g} x spread" if risk else "score = predicted mean"),
             f"top {len(result.top)}: pairwise at least {result.min_distance:g} x the dimensions apart; "
             "scores within 0.0001 tie and go to the lower spread, then fewer FLOPs"]
    if result.ties():
        lines.append(result.ties())
    if len(result.top) < result.settings.top_k:
        lines.append(f"only {len(result.top)} of the best scored candidates lie that far apart; lower "
                     "--min-distance for more")
    lines.append("")
    top = result.top
    recipe = [(k, h) for k, h in RECIPE_COLUMNS if top and k in top[0].candidate.recipe]
    if top and not recipe:
        recipe = [(k, k) for k in list(top[0].candidate.recipe)[:6]]
    lines.append(f"pred acc: the predictor's score at the run's early-stop epoch and fidelity; {interval.describe()} "
                 "of the run (the top of a search is chosen for a high prediction: read it as the typical error)"
                 if interval is not None else "pred acc: the predictor's score; spread: how much its members disagree "
                 "(not an error bar: no held-out trials to calibrate one)")
    priced = bool(top) and top[0].flops is not None
    header = (["rank", "pred acc"] + ([f"{100 * interval.level:.0f} % interval"] if interval is not None else [])
              + ["spread", "score"] + (["MFLOPs", "M params"] if priced else [])
              + (["res"] if top and "resolution" in top[0].candidate.arch else []) + [h for _, h in recipe] + ["key"])
    rows = []
    for i, s in enumerate(top, 1):
        r = s.candidate.recipe
        row = [str(i), f"{100 * s.mean:.2f}%"] + ([_interval(interval, s.mean, s.std)] if interval is not None else [])
        row += [f"{100 * s.std:.2f}", f"{s.score:.4f}"]
        if priced:
            row += [f"{s.flops / 1e6:.1f}", f"{s.params / 1e6:.2f}"]
        if "resolution" in s.candidate.arch:
            row.append(str(s.candidate.arch["resolution"]))
        rows.append(row + [_g(r.get(k)) for k, _ in recipe] + [s.candidate.key()])
    widths = [max(len(h), *(len(row[j]) for row in rows)) if rows else len(h) for j, h in enumerate(header)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _interval(interval, mean: float, std: float) -> str:
    low, high = interval.bounds([mean], [std])
    return f"{100 * low[0]:.1f}-{100 * high[0]:.1f}%"


def _g(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else ("-" if v is None else str(v))


def run(args):
    if (args.torchscript or args.onnx) and args.export is None:
        raise UsageError(f"--{'onnx' if args.onnx else 'torchscript'} goes with --export DIR")
    if args.onnx:
        check_onnx()
    budget = None
    if args.budget is not None:
        budget = Budget(parse_flops(args.budget), parse_params(args.max_params) if args.max_params else None)
    elif args.max_params is not None:
        raise UsageError("--max-params goes with --budget FLOPS")
    settings = SearchSettings(population=args.population, generations=args.generations, patience=args.patience,
                              tolerance=args.tolerance, mutation_rate=args.mutation_rate,
                              max_mutation_rate=max(args.mutation_rate, SearchSettings.max_mutation_rate),
                              risk=args.risk, init_best=args.init_best, top_k=args.top_k, seed=args.seed,
                              evaluations=args.evaluations, min_distance=args.min_distance).validate()
    check_outputs(args)
    predictor, space, seeds, source, store = _load_inputs(args)
    interval = source.pop("interval", None)   # calibrated on the run's held-out trials (None: no run)
    if args.pareto is not None:
        return fine_pareto.run(args, settings, budget, predictor, space, seeds, source, store)
    try:
        if budget is None and _priced(space):
            budget = _default_budget(store, source, space)
        progress = not args.no_progress and sys.stderr.isatty()
        strategy = make_strategy(args.strategy, settings)
        result = search.fine_search(predictor, space, budget, seeds, settings, progress=progress, strategy=strategy)
        payload = dict(result.to_dict(), space=space.name, flops_counting=FLOPS_HELP, **source,
                       measured_seeds=result.seeded, interval=_interval_dict(interval, result.top))
        if store is not None:
            store.save_result("fine", payload)
    finally:
        if store is not None:
            store.close()
    dirs = write_outputs(args, payload, result.top, space,
                         context=dict(source, space=space.name, budget=payload["budget"], seed=settings.seed))
    if dirs:
        sys.stderr.write(f"exported {len(dirs)} candidates to {args.export}/ (train one with: jointnas train "
                         f"--candidate {dirs[0] / 'candidate.json'} --data ...)\n")
    print(json.dumps(payload, indent=2, sort_keys=True) if args.json else format_table(result, source, strategy, interval))
    return 0


def _interval_dict(interval, top) -> Optional[dict]:
    """The calibrated interval as plain values, with the bounds of each reported candidate."""
    if interval is None:
        return None
    low, high = interval.bounds([s.mean for s in top], [s.std for s in top])
    return {"level": interval.level, "scale": interval.scale, "offset": interval.offset, "n": interval.n,
            "method": interval.describe(), "bounds": [[float(a), float(b)] for a, b in zip(low, high)]}


def _default_budget(store, source: dict, space) -> Budget:
    """Without --budget: the run's budget (the coarse search's, so that both stages search the same
    models), else the space's default; said in one line. UsageError when there is neither."""
    config = store.config if store is not None else {}
    if config.get("budget") is not None:
        budget = Budget(int(config["budget"]), config.get("max_params"))
        sys.stderr.write(f"budget: {budget.describe()}, run {source['run']}'s (its coarse search's; --budget to "
                         "change it)\n")
        return budget
    if space.budget is not None:
        budget = Budget(int(space.budget))
        sys.stderr.write(f"budget: {budget.describe()}, the {space.name} space's default (--budget to change it)\n")
        return budget
    raise UsageError(f"space {space.name} counts FLOPs: pass --budget, e.g. --budget 600MFLOPs ({FLOPS_HELP})")


def _priced(space) -> bool:
    """Whether the space's candidates have a cost (a model family)."""
    return space.family is not None
