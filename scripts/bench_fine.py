"""Benchmark of `jointnas fine`: wall time with default settings, candidates scored per second,
and the best predicted score found vs the best of as many random feasible candidates scored by
the same predictor (both measured in this one run).

    python scripts/bench_fine.py                        # shipped predictor, --budget 600MFLOPs
    python scripts/bench_fine.py --predictor RUN/predictors/iter3.pt --budget 400MFLOPs --seeds 0 1 2
    python scripts/bench_fine.py --seeds 0 1 2 --populations 100 300   # OFA's population vs ours

The command runs in a fresh empty directory, so that with no --predictor it scores with the
shipped predictor (there is no runs/ folder to pick a run from). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run_fine(budget: str, predictor, seed: int, population):
    cmd = ["jointnas", "fine", "--budget", budget, "--json", "--no-progress"]
    if predictor:
        cmd += ["--predictor", str(Path(predictor).resolve())]
    if population is not None:
        cmd += ["--population", str(population)]
    if seed:
        cmd += ["--seed", str(seed)]
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return cmd, wall, json.loads(proc.stdout)


def random_baseline(payload: dict, n: int, seed: int):
    """Best score of ``n`` random feasible candidates (plain rejection sampling from Sobol draws)."""
    import torch

    from jointnas.budget import Budget
    from jointnas.evolution import Variation
    from jointnas.fine import random_feasible
    from jointnas.predictor import Predictor

    torch.set_num_threads(1)
    predictor = Predictor.load(payload["predictor"])
    budget = Budget(payload["budget"]["max_flops"], payload["budget"]["max_params"])
    rng = np.random.default_rng([seed, 12345])
    start = time.perf_counter()
    sample = random_feasible(Variation(predictor.space, budget), n, rng, repair=False)
    mean, std = predictor.predict([c for c, _ in sample])
    risk = payload["settings"]["risk"]
    score = mean - risk * std
    return float(score.max()), len(sample), time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="600MFLOPs")
    ap.add_argument("--predictor", help="predictor checkpoint (default: what `jointnas fine` picks: the shipped one)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--populations", type=int, nargs="+", default=[None],
                    help="also run with these --population values (default: only the default population)")
    args = ap.parse_args()

    rows = []
    load_before = os.getloadavg()
    for population in args.populations:
        for seed in args.seeds:
            cmd, wall, payload = run_fine(args.budget, args.predictor, seed, population)
            search = payload["search"]
            best_random, n_random, random_s = random_baseline(payload, search["scored"], seed)
            rows.append((seed, wall, search, best_random, n_random, random_s, payload))
            print(f"{' '.join(cmd)}: {wall:.1f} s", file=sys.stderr)
    load_after = os.getloadavg()
    print(f"predictor {payload['predictor']}; {os.cpu_count()} CPUs visible; load average (1/5/15 min) "
          f"{' '.join(f'{x:.1f}' for x in load_before)} before, {' '.join(f'{x:.1f}' for x in load_after)} after")
    print()
    print("| population | seed | wall s (whole command) | search s | generations | scored | scored/s | best found "
          "| best of as many random feasible | ratio | stop |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for seed, wall, search, best_random, n_random, random_s, payload in rows:
        print(f"| {payload['settings']['population']} | {seed} | {wall:.1f} | {search['wall_time']:.1f} "
              f"| {search['generations']} | {search['scored']} "
              f"| {search['scored_per_second']:.0f} | {search['best_score']:.4f} | {best_random:.4f} "
              f"(n={n_random}, {random_s:.1f} s) | {search['best_score'] / best_random:.3f} "
              f"| {search['stop_reason'].split(':')[0]} |")


if __name__ == "__main__":
    main()
