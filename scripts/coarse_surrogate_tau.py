"""Held-out Kendall tau of the coarse run's surrogates on digits, warm-started from the shipped
pairs (``data/fbnetv3_digits_pairs.jsonl``) as `jointnas coarse` does: pooled 5-fold
out-of-fold tau of the run's own trials, the shipped pairs in every training fold.

    python scripts/coarse_surrogate_tau.py --run runs/coarse-X              # a finished run's trials
    python scripts/coarse_surrogate_tau.py --draws 20 --n 18 --kinds forest  # n of the shipped pairs play the run

The first form scores the trials at the run's calibrated epoch and fidelity (a run still in use
is locked: copy its directory and remove the copy's run.lock); the second draws
``n`` shipped pairs at random as "the run" and keeps the others as the warm start.
No training happens: only surrogate fits.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PAIRS = REPO / "data" / "fbnetv3_digits_pairs.jsonl"


def surrogates(kinds, space, pool, costs):
    from jointnas.catalog import make_surrogate

    out = {}
    for kind in kinds:
        p = make_surrogate(kind, space, seed=0, ensemble=5, score_bounds=(0.0, 1.0))
        p.pretrain(pool, costs)
        out[kind] = p
    return out


def held_out_tau(template, prior, candidates, y, seed):
    from jointnas.surrogates.evaluate import cross_validate
    from jointnas.surrogates.prior import WithPrior

    tmpl = WithPrior(copy.deepcopy(template), *prior) if prior else copy.deepcopy(template)
    return cross_validate(tmpl, candidates, y, k=5, seed=seed)["kendall_tau_pooled"]


def from_run(args):
    from jointnas.coarse.loop import CoarseLoop
    from jointnas.surrogates.prior import load_prior_pairs
    from jointnas.store import RunStore

    with RunStore.open(args.run) as store:
        config = store.config
    search = CoarseLoop.open(args.run)
    search.start()
    epoch = search.calibration().chosen_epoch
    trials, y = search.training_set()
    cands = [t.candidate for t in trials]
    prior = load_prior_pairs(PAIRS, search.space, epoch, config.get("diverged_score"),
                             exclude=(c.key() for c in cands))
    print(f"{args.run}: {len(cands)} trials at epoch {epoch}; {len(prior[0])} shipped pairs as the warm start")
    for kind, template in surrogates(args.kinds, search.space, search.pool, search.costs).items():
        for with_prior in (True, False):
            t = time.process_time()
            taus = [held_out_tau(template, prior if with_prior else None, cands, y, seed) for seed in range(args.seeds)]
            print(f"{kind:>6} {'warm start' if with_prior else 'run only':>10}: tau {np.round(taus, 3).tolist()} "
                  f"mean {np.mean(taus):.3f} ({time.process_time() - t:.1f} CPU-s)", flush=True)
    search.close()


def from_draws(args):
    from jointnas import load_space
    from jointnas.surrogates.prior import load_prior_pairs

    space = load_space("fbnetv3")
    cands, y = load_prior_pairs(PAIRS, space, args.epoch, 0.1)
    pool = space.sample(20000, seed=0)
    costs = space.family.costs([c.arch for c in pool])
    templates = surrogates(args.kinds, space, pool, costs)
    rng = np.random.default_rng(0)
    taus = {k: [] for k in args.kinds}
    for _ in range(args.draws):
        idx = rng.permutation(len(cands))
        run, rest = idx[:args.n], idx[args.n:]
        for kind, template in templates.items():
            taus[kind].append(held_out_tau(template, ([cands[i] for i in rest], y[rest]),
                                           [cands[i] for i in run], y[run], 0))
    for kind, v in taus.items():
        v = np.array(v)
        print(f"{kind}: {args.draws} draws of {args.n}: tau mean {v.mean():.3f}, min {v.min():.3f}, "
              f"max {v.max():.3f}, share >= 0.3 {np.mean(v >= 0.3):.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, help="a finished coarse run on digits (fbnetv3 space)")
    p.add_argument("--kinds", type=lambda s: s.split(","), default=["forest", "mlp"])
    p.add_argument("--seeds", type=int, default=2, help="fold seeds (--run)")
    p.add_argument("--draws", type=int, default=20, help="random draws of the shipped pairs (no --run)")
    p.add_argument("--n", type=int, default=18, help="shipped pairs that play the run's trials (no --run)")
    p.add_argument("--epoch", type=int, default=2, help="the score's epoch (no --run)")
    args = p.parse_args(argv)
    (from_run if args.run else from_draws)(args)


if __name__ == "__main__":
    main()
