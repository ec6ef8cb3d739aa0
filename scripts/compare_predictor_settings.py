"""Compare predictor settings by k-fold cross-validation on the first rows of a pairs table.

This is how the predictor's early-stopping default was chosen (BENCHMARKS.md, "Early stopping
of the predictor"): every setting below starts from the earlier default (a 20 % internal
validation split from 10 pairs up) and changes one thing.

    python scripts/compare_predictor_settings.py --pairs data/fbnetv3_digits_pairs.jsonl --rows 50

The rows after ``--rows`` stay untouched, so a choice made here can be checked on them
(``bench_predictor.py --confirm-after``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

EARLIER_DEFAULT = dict(early_stopping_from=10)
SETTINGS = {
    "earlier default": {},
    "no validation split": dict(val_fraction=0.0),
    "hidden 32": dict(hidden=32),
    "weight decay 1e-2": dict(weight_decay=1e-2),
    "lr 3e-3": dict(lr=3e-3),
    "1 head layer": dict(head_layers=1),
    "batch 8": dict(batch_size=8),
    "no split, lr 3e-3": dict(val_fraction=0.0, lr=3e-3),
    "no split, bootstrap": dict(val_fraction=0.0, bootstrap=True),
    "no split, batch 8": dict(val_fraction=0.0, batch_size=8),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=50, help="use the table's first N rows")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--kfold", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from jointnas import Candidate, load_space, sample_pool
    from jointnas.surrogates import Predictor, evaluate
    from jointnas.families.cost import count_costs

    space = load_space("fbnetv3")
    rows = [json.loads(line) for line in args.pairs.read_text().splitlines() if line.strip()][:args.rows]
    rows = [r for r in rows if r["status"] == "done"]
    cands, y = [Candidate.from_dict(r["candidate"]) for r in rows], np.array([r["final_acc"] for r in rows])
    pool = sample_pool(space, 20000, seed=0)
    costs = count_costs(pool, space)
    print(f"{len(y)} pairs, {args.kfold}-fold, {args.seeds} seeds; pooled out-of-fold Kendall tau", file=sys.stderr)
    for name, change in SETTINGS.items():
        kw = dict(EARLIER_DEFAULT, **change)
        for pretrained in (True, False):
            start, taus = time.time(), []
            for seed in range(args.seeds):
                if pretrained:
                    p = Predictor(space, ensemble=5, seed=seed, **kw).pretrain(pool, costs, epochs=50)
                    res = evaluate(space, cands, y, k=args.kfold, seed=seed, pretrain=p)
                else:
                    res = evaluate(space, cands, y, k=args.kfold, seed=seed, ensemble=5, **kw)
                taus.append(res["kendall_tau_pooled"])
            print(f"| {name} | {'with' if pretrained else 'without'} pretraining | {np.mean(taus):.3f} | "
                  f"{time.time() - start:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
