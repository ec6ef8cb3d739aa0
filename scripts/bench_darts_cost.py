"""Benchmark: the darts family's closed-form cost on a whole pool vs. fvcore per model.

Usage: python scripts/bench_darts_cost.py [--pool 20000] [--fvcore-models 10] [--seed 0]

Times ``count_costs`` on a ``--pool``-candidate pool of spaces/darts.yaml (C = 16, 8 cells, the
CIFAR-10 input), times fvcore (``count_cost_fvcore``) on ``--fvcore-models`` evenly spaced members,
checks that both agree on those, and prints the parameter counts of the published cells at the
papers' CIFAR-10 network (C = 36, 20 cells, no auxiliary head). Prints a Markdown block for
BENCHMARKS.md.
"""
import argparse
import os
import time

import torch

from jointnas import count_cost_fvcore, count_costs, load_space, sample_pool
from jointnas.families.darts import DartsFamily
from jointnas.families.darts_genotypes import PRESETS, arch_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--fvcore-models", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = load_space("darts")
    t = time.perf_counter()
    pool = sample_pool(space, args.pool, seed=args.seed)
    sample_s = time.perf_counter() - t
    t = time.perf_counter()
    fast = count_costs(pool, space)
    fast_s = time.perf_counter() - t
    step = max(1, len(pool) // args.fvcore_models)
    picked = list(range(0, len(pool), step))[:args.fvcore_models]
    t = time.perf_counter()
    ref = [count_cost_fvcore(pool[i], space) for i in picked]
    fv_s = (time.perf_counter() - t) / len(picked)
    agree = all(tuple(fast[i]) == (r.flops, r.params) for i, r in zip(picked, ref))
    big = DartsFamily.from_spec({"name": "darts", "network": {"channels": 36, "cells": 20}})
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, one torch thread\n")
    print(f"- pool of {len(pool)}: sampled in {sample_s:.2f} s; closed-form costs in {fast_s:.2f} s "
          f"({fast_s / len(pool) * 1e6:.0f} us each); FLOPs {fast[:, 0].min() / 1e6:.1f}-{fast[:, 0].max() / 1e6:.1f} M, "
          f"params {fast[:, 1].min() / 1e6:.3f}-{fast[:, 1].max() / 1e6:.3f} M")
    print(f"- fvcore on {len(picked)} members: {fv_s:.2f} s each (the pool would take "
          f"{fv_s * len(pool) / 3600:.1f} h); closed form equals fvcore on all of them: {agree}")
    for name, genotype in PRESETS.items():
        small, cifar = space.family.cost(arch_of(genotype)), big.cost(arch_of(genotype))
        print(f"- {name}: {small.flops / 1e6:.1f} MFLOPs, {small.params:,} params at C=16, 8 cells; "
              f"{cifar.flops / 1e6:.1f} MFLOPs, {cifar.params:,} params at C=36, 20 cells")


if __name__ == "__main__":
    main()
