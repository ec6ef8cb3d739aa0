"""``jointnas fine``: predictor-scored genetic search for the best (arch, recipe) pairs under a budget."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Optional, Tuple

from ..budget import Budget, parse_flops, parse_params
from ..errors import UsageError

FLOPS_HELP = "fvcore's count of the deployable model, one multiply-add = one flop"


def _number(kind, low, what, high=float("inf")):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


def register(sub):
    from ..fine import SearchSettings

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
            "gain of --tolerance, or after --generations. Prints the top candidates (one per architecture, each "
            "with its best recipe).", 100),
        epilog="examples:\n"
        "  jointnas fine --budget 600MFLOPs                      # latest run under runs/, or the shipped predictor\n"
        "  jointnas fine --run runs/coarse-X --budget 0.4GFLOPs --max-params 8M --export chosen/\n"
        "  jointnas fine --predictor predictors/fbnetv3-digits.pt --budget 6e8 --risk 1 --json\n"
        "  jointnas train --candidate chosen/rank1-<key>/candidate.json --data digits")
    p.add_argument("--budget", required=True, metavar="FLOPS",
                   help=f"FLOPs budget: {FLOPS_HELP}; e.g. 600MFLOPs, 600M, 0.6GFLOPs, 6e8 (case-insensitive)")
    p.add_argument("--max-params", metavar="N", help="parameter budget of the deployable model, e.g. 8M, 7.5M, "
                   "7500K (default: none)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", type=Path, metavar="DIR", help="a coarse run: its predictor scores, its best measured "
                     "candidates seed the population, the result is saved in it (default: the latest run under "
                     "runs/, or the shipped predictor when there is none)")
    src.add_argument("--predictor", type=Path, metavar="FILE.pt", help="a predictor checkpoint instead of a run "
                     "(e.g. the shipped predictors/fbnetv3-digits.pt)")
    p.add_argument("--space", help="space of --predictor (default: the one it was trained on)")
    p.add_argument("--population", type=_number(int, 4, "a whole number >= 4"), default=d.population,
                   help=f"population size (default: {d.population})")
    p.add_argument("--generations", type=_number(int, 0, "a whole number >= 0"), default=d.generations,
                   help=f"at most this many generations (default: {d.generations})")
    p.add_argument("--patience", type=_number(int, 1, "a whole number >= 1"), default=d.patience, metavar="K",
                   help=f"stop after K generations whose best-score gain is below --tolerance (default: {d.patience})")
    p.add_argument("--tolerance", type=_number(float, 0, "a number >= 0"), default=d.tolerance,
                   help=f"a gain of the best score below this is a stall (accuracy fraction; default: {d.tolerance:g})")
    p.add_argument("--mutation-rate", type=_number(float, 1e-9, "a number in (0, 1]", high=1.0),
                   default=d.mutation_rate, metavar="P", help=f"starting per-dimension mutation probability; it adapts between P and "
                   f"{d.max_mutation_rate:g} (default: {d.mutation_rate:g})")
    p.add_argument("--risk", type=_number(float, 0, "a number >= 0"), default=d.risk, metavar="LAMBDA",
                   help="score = predicted mean - LAMBDA * ensemble spread; > 0 prefers candidates the "
                   f"predictor is sure of (default: {d.risk:g}, the mean)")
    p.add_argument("--init-best", type=_number(int, 0, "a whole number >= 0"), default=d.init_best, metavar="P",
                   help=f"seed the population with the run's P best measured feasible candidates; random feasible "
                   f"ones fill the rest (default: {d.init_best})")
    p.add_argument("--top-k", type=_number(int, 1, "a whole number >= 1"), default=d.top_k, metavar="K",
                   help=f"candidates to report and export (default: {d.top_k})")
    p.add_argument("--seed", type=_number(int, 0, "a whole number >= 0"), default=d.seed,
                   help=f"same seed, same result (default: {d.seed})")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument("--out", type=Path, metavar="FILE.json", help="also write the result as JSON to FILE.json")
    p.add_argument("--export", type=Path, metavar="DIR", help="write each top candidate to DIR/rank<i>-<key>/: "
                   "candidate.json (with predicted accuracy, FLOPs, params), recipe.yaml, build.json and "
                   "build_model.py (the jointnas.build_model call for the deployable model)")
    p.add_argument("--torchscript", action="store_true", help="with --export, also write model.ts, the deployable "
                   "model as TorchScript (untrained weights)")
    p.add_argument("--onnx", action="store_true", help="with --export, also write model.onnx, the deployable "
                   "model as ONNX (untrained weights; needs the onnx extra)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------- inputs
def latest_run(root: Path = Path("runs")) -> Optional[Path]:
    """The run under ``root`` whose store was written last, or None."""
    from ..store import DB_NAME, RunStore

    if not root.is_dir():
        return None
    runs = [d for d in root.iterdir() if d.is_dir() and RunStore.is_run(d)]
    return max(runs, key=lambda d: ((d / DB_NAME).stat().st_mtime, d.name)) if runs else None


def shipped_predictor(space_name: str) -> Optional[Path]:
    """The predictor shipped for ``space_name`` (repository checkout first, then the installed copy)."""
    from ..catalog import spaces_dir

    for folder in (spaces_dir().parent / "predictors", Path(sys.prefix) / "share" / "jointnas" / "predictors"):
        found = sorted(folder.glob(f"{space_name}-*.pt"))
        if found:
            preferred = [f for f in found if f.name == f"{space_name}-digits.pt"]
            return (preferred or found)[0]
    return None


def _measured_seeds(store) -> list:
    """The run's trained candidates, best first by accuracy at the run's calibrated early-stop
    epoch: the coarse loop trains its first batch at full length and later ones only to that
    epoch, so final accuracies of the two kinds are not comparable."""
    calibration = store.results("calibration")
    epoch = calibration[-1].get("chosen_epoch") if calibration else None
    done = store.trials(status="done")
    accuracy = {t.id: (t.acc_at(epoch) if epoch and t.curve else t.final_acc) for t in done}
    done = [t for t in done if accuracy[t.id] is not None]
    done.sort(key=lambda t: (-accuracy[t.id], t.id))
    return [t.candidate for t in done]


def _load_inputs(args) -> Tuple[object, object, list, dict, object]:
    """(predictor, space, seeds, source description, store or None)."""
    from ..catalog import load_space
    from ..coarse import run_space
    from ..predictor import load_surrogate
    from ..store import RunStore

    if args.predictor is not None:
        if not args.predictor.is_file():
            raise UsageError(f"--predictor {args.predictor}: no such file; pass a checkpoint written by "
                             "'jointnas coarse' (RUN/predictors/iter<k>.pt) or a shipped one (predictors/*.pt)")
        predictor = load_surrogate(args.predictor, space=args.space)
        return predictor, predictor.space, [], {"predictor": str(args.predictor)}, None
    run_dir = args.run if args.run is not None else latest_run()
    if run_dir is None:
        space_name = args.space or "fbnetv3"
        path = shipped_predictor(space_name)
        if path is None:
            raise UsageError(f"no run under runs/ and no shipped predictor for space {space_name}; run "
                             "'jointnas coarse' first, or pass --run DIR or --predictor FILE.pt")
        sys.stderr.write(f"no run under runs/: scoring with the shipped predictor {path}\n")
        predictor = load_surrogate(path, space=args.space)
        return predictor, predictor.space, [], {"predictor": str(path)}, None
    store = RunStore.open(run_dir)
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
    predictor = load_surrogate(path, space=space)
    return predictor, space, _measured_seeds(store), {"run": str(run_dir), "predictor": str(path)}, store


# --------------------------------------------------------------------------- output
def format_table(result, source: dict) -> str:
    risk = result.settings.risk
    seeded = f", {result.seeded} of the run's measured candidates seeded" if "run" in source else ""
    lines = [f"fine search: budget {result.budget.describe()} (FLOPs: {FLOPS_HELP}); predictor {source['predictor']}",
             f"{result.generations} generations, {result.scored} candidates scored in {result.wall_time:.1f} s "
             f"({result.scored_per_second:.0f}/s){seeded}; {result.stop_reason}",
             f"best score {result.best.score:.4f} (initial population's best {result.initial_best.score:.4f}); "
             + (f"score = predicted mean - {risk:g} x spread" if risk else "score = predicted mean"),
             ""]
    header = ["rank", "pred acc", "± spread", "score", "MFLOPs", "M params", "res", "optimizer", "lr", "wd",
              "epochs", "ema", "mixup", "key"]
    rows = []
    for i, s in enumerate(result.top, 1):
        r = s.candidate.recipe
        rows.append([str(i), f"{100 * s.mean:.2f}%", f"{100 * s.std:.2f}", f"{s.score:.4f}", f"{s.flops / 1e6:.1f}",
                     f"{s.params / 1e6:.2f}", str(s.candidate.arch.get("resolution", "?")),
                     str(r.get("optimizer", "-")), _g(r.get("lr")), _g(r.get("weight_decay")),
                     str(r.get("epochs", "-")), str(r.get("ema", "-")), _g(r.get("mixup_alpha")),
                     s.candidate.key()])
    widths = [max(len(h), *(len(row[j]) for row in rows)) for j, h in enumerate(header)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _g(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else ("-" if v is None else str(v))


def run(args):
    import torch

    from ..fine import SearchSettings, fine_search

    budget = Budget(parse_flops(args.budget), parse_params(args.max_params) if args.max_params else None)
    if (args.torchscript or args.onnx) and args.export is None:
        raise UsageError(f"--{'onnx' if args.onnx else 'torchscript'} goes with --export DIR")
    if args.onnx:
        from ..export import check_onnx

        check_onnx()
    settings = SearchSettings(population=args.population, generations=args.generations, patience=args.patience,
                              tolerance=args.tolerance, mutation_rate=args.mutation_rate,
                              max_mutation_rate=max(args.mutation_rate, SearchSettings.max_mutation_rate),
                              risk=args.risk, init_best=args.init_best, top_k=args.top_k, seed=args.seed).validate()
    predictor, space, seeds, source, store = _load_inputs(args)
    try:
        # Scoring batches of ~100 rows: extra torch threads only add synchronisation.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            result = fine_search(predictor, space, budget, seeds, settings, progress=not args.no_progress)
        finally:
            torch.set_num_threads(threads)
        payload = dict(result.to_dict(), space=space.name, flops_counting=FLOPS_HELP, **source,
                       measured_seeds=result.seeded)
        if store is not None:
            store.save_result("fine", payload)
    finally:
        if store is not None:
            store.close()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if args.export is not None:
        from ..export import export_candidates

        context = dict(source, space=space.name, budget={"max_flops": budget.max_flops,
                                                         "max_params": budget.max_params}, seed=settings.seed)
        dirs = export_candidates(result.top, args.export, space, torchscript=args.torchscript, onnx=args.onnx,
                                context=context)
        sys.stderr.write(f"exported {len(dirs)} candidates to {args.export}/ (train one with: jointnas train "
                         f"--candidate {dirs[0] / 'candidate.json'} --data ...)\n")
    print(json.dumps(payload, indent=2, sort_keys=True) if args.json else format_table(result, source))
    return 0
