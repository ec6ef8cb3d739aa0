"""Which trial to retrain: the early score's best vs the one jointnas.coarse.extrapolate expects to end best.

On the shipped digits pairs (whole curves of 134 fbnetv3 candidates trained to the end of their
recipes): each draw takes N pairs as "the run" (known up to the early-stop epoch) and the rest as
the earlier pairs the extrapolator learns from; both rules pick one of the N, and the pick's real
end-of-schedule validation accuracy is read from its curve.

    python scripts/bench_winner_choice.py --draws 200 --n 12 --epochs 1 2
"""
from __future__ import annotations

import argparse

import numpy as np

from jointnas.coarse.calibration import rank_correlation
from jointnas.catalog import load_space
from jointnas.coarse.extrapolate import ScheduleExtrapolator, whole_curves
from jointnas.surrogates.prior import read_prior_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="data/fbnetv3_digits_pairs.jsonl")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--n", type=int, default=12, help="trials in a simulated run")
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 2], help="early-stop epochs to simulate")
    ap.add_argument("--diverged-score", type=float, default=0.1)
    args = ap.parse_args()
    space = load_space("fbnetv3")
    rows = read_prior_rows(args.pairs, space)
    print(f"{args.pairs}: {len(rows)} rows; {args.draws} draws of {args.n} as the run\n")
    print("| early-stop epoch | rule | end accuracy of the pick (mean) | picks >= 99 % | schedule of the pick "
          "(mean epochs) | Kendall tau with the ends, within a run |")
    print("|---|---|---|---|---|---|")
    for epoch in args.epochs:
        cands, early, final = whole_curves(rows, epoch, args.diverged_score)
        early, final = np.asarray(early), np.asarray(final)
        schedule = np.array([c.recipe["epochs"] for c in cands])
        picks = {"early score": [], "extrapolated": [], "hindsight (the best end of the run)": []}
        taus = {"early score": [], "extrapolated": [], "hindsight (the best end of the run)": []}
        rng = np.random.default_rng(0)
        for d in range(args.draws):
            order = rng.permutation(len(cands))
            run, rest = order[:args.n], order[args.n:]
            ex = ScheduleExtrapolator(space, epoch, seed=d).fit([cands[i] for i in rest], early[rest], final[rest],
                                                                folds=0)
            expected = ex.predict([cands[i] for i in run], early[run])
            for rule, score in (("early score", early[run]), ("extrapolated", expected),
                                ("hindsight (the best end of the run)", final[run])):
                picks[rule].append(run[int(np.argmax(score))])
                taus[rule].append(rank_correlation(score, final[run]))
        for rule, chosen in picks.items():
            chosen = np.asarray(chosen)
            print(f"| {epoch} | {rule} | {100 * final[chosen].mean():.2f} % | {100 * np.mean(final[chosen] >= 0.99):.0f} % "
                  f"| {schedule[chosen].mean():.1f} | {np.mean(taus[rule]):.2f} |")


if __name__ == "__main__":
    main()
