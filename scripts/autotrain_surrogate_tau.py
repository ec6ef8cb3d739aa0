"""Which surrogate ranks recipes of a fixed model better: out-of-fold Kendall tau of the MLP
ensemble and of the random forest, refitted on the (recipe, validation accuracy) pairs that
``scripts/bench_autotrain.py`` recorded (jointnas's coarse runs and Optuna TPE's trials). No
training: the surrogates are fitted on what the searches measured, k-fold, for several fold seeds.

    python scripts/autotrain_surrogate_tau.py --out bench/autotrain --trials 48 --batch 8 --epochs 2 ...

Pass the bench's own sizing flags (the space depends on --epochs and --resolution). Prints a
Markdown table and writes ``<out>/surrogate-tau-<models>.json`` and the pairs themselves,
``<out>/search-records-<models>.jsonl`` (one line per trained recipe: search, recipe, score).
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def jointnas_pairs(model: str, args):
    """(candidates, scores) of a jointnas run: the coarse stage's own training set (calibrated epoch)."""
    import bench_autotrain as bench
    from jointnas.coarse.search import CoarseSearch

    with CoarseSearch.open(args.out / f"jointnas-{model}", bench.evaluator_for(args)) as search:
        trials, y = search.loop.training_set()
        return [t.candidate for t in trials], list(map(float, y)), search.space


def tpe_pairs(model: str, args):
    """(candidates, scores) of the TPE study's finished trials (final validation accuracy)."""
    import optuna

    import bench_autotrain as bench
    from jointnas.space import Candidate

    space = bench.space_for(model, args)
    study = optuna.load_study(study_name=f"tpe-{model}", storage=f"sqlite:///{args.out / f'tpe-{model}.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return [Candidate({}, dict(t.params)) for t in done], [float(t.value) for t in done], space


def tau(name: str, space, cands, y, fold_seed: int) -> dict:
    from jointnas import catalog
    from jointnas.surrogates.evaluate import cross_validate

    template = catalog.make_surrogate(name, space, seed=0, ensemble=5, score_bounds=(0.0, 1.0))
    start = time.process_time()
    m = cross_validate(template, cands, y, k=5, seed=fold_seed)
    return {"tau": m["kendall_tau_pooled"], "rho": m["spearman_rho_pooled"], "mae": m["mae_pooled"],
            "cpu_s": time.process_time() - start}


def main(argv=None) -> int:
    import torch

    import bench_autotrain as bench

    import argparse

    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--fold-seeds", type=int, default=3, help="k-fold splits drawn with seeds 0..N-1")
    mine, rest = own.parse_known_args(sys.argv[1:] if argv is None else argv)
    fold_seeds = mine.fold_seeds
    args = bench.parse_args(rest)   # the bench's own flags: --out, --models and its sizing
    torch.set_num_threads(1)
    models = args.models.split(",")
    sets = {f"jointnas {m}": (lambda m=m: jointnas_pairs(m, args)) for m in models
            if (args.out / f"jointnas-{m}").exists()}
    sets.update({f"TPE {m}": (lambda m=m: tpe_pairs(m, args)) for m in models if (args.out / f"tpe-{m}.db").exists()})
    rows, records = {}, []
    print("| records | pairs | surrogate | out-of-fold Kendall tau, 5-fold (fold seeds) | mean | Spearman rho "
          "| CPU s per 5 fits |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, load in sets.items():
        cands, y, space = load()
        records += [{"search": label, "recipe": c.recipe, "score": s} for c, s in zip(cands, y)]
        for name in ("mlp", "forest"):
            runs = [tau(name, space, cands, y, s) for s in range(fold_seeds)]
            rows[f"{label} / {name}"] = {"pairs": len(y), "runs": runs}
            taus = [r["tau"] for r in runs]
            print(f"| {label} | {len(y)} | {name} | {', '.join(f'{t:.2f}' for t in taus)} | "
                  f"{statistics.mean(taus):.2f} | {statistics.mean(r['rho'] for r in runs):.2f} | "
                  f"{statistics.mean(r['cpu_s'] for r in runs):.1f} |", flush=True)
    tag = "+".join(models)
    (args.out / f"surrogate-tau-{tag}.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = "".join(json.dumps(r, default=str) + "\n" for r in records)
    (args.out / f"search-records-{tag}.jsonl").write_text(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
