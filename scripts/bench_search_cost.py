"""The coarse search's own CPU time per suggestion, at one evaluation per refit (issue 23).

A coarse run on a pool of ``--pool`` candidates with a ``FunctionEvaluator`` whose answers cost
nothing: NAS-Bench-201's whole table (15,625 rows, one recorded seed per evaluation), or
62,208 candidates sampled from the fbnetv3 space scored by a fixed random function of their
encoding. Each suggestion's cost is the process CPU time from the end of one evaluation to the
start of the next (the refit, the held-out bookkeeping, the checkpoint, the pool's scoring, the
store), the evaluations themselves excluded.

To reach n = 300 without 300 slow iterations (the code before the change took seconds per
suggestion), the first batch is ``--first`` diverse candidates, then ``--window`` suggestions
one at a time: their costs are those at n = first .. first + window. ``--first 10`` runs the
whole search instead (every suggestion from n = 10).

It drives the API both versions share (``pool=(candidates, costs, sampled)``, ``iterations``,
``final=False``), so the same command measures any checkout: put it first on PYTHONPATH.

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/bench_search_cost.py --pool nb201 --surrogate forest
    OMP_NUM_THREADS=1 PYTHONPATH=/path/to/main python scripts/bench_search_cost.py --pool fbnetv3 --out x.jsonl
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FBNETV3_POOL = 62_208


def nb201_pool():
    from jointnas.catalog import load_space
    from jointnas.evaluation.tabular import load_table

    table, space = load_table("nb201/cifar10"), load_space("nb201")
    cands = [space.candidate(*table.values_of(k)) for k in table.keys]
    rng = np.random.default_rng(0)

    def score(candidate) -> float:
        return table.draw(table.row_of(candidate), rng)
    return space, cands, score


def fbnetv3_pool():
    from jointnas.catalog import load_space

    space = load_space("fbnetv3")
    cands = space.sample(FBNETV3_POOL, seed=0)
    w = np.random.default_rng(1).standard_normal(space.encoding_width)

    def score(candidate) -> float:
        x = space.encode([candidate])[0]
        return float(np.tanh(x @ w / 10) + 0.01 * np.sin(1000 * x.sum()))
    return space, cands, score


def measure(pool: str, surrogate: str, first: int, window: int, seed: int = 0) -> dict:
    from jointnas import CoarseConfig, CoarseSearch, FunctionEvaluator
    from jointnas.progress import Progress

    space, cands, score = (nb201_pool if pool == "nb201" else fbnetv3_pool)()
    costs = (space.family.costs([c.arch for c in cands]) if space.family is not None
             else np.zeros((len(cands), 2), dtype=np.int64))
    marks, evaluation = [], [0.0]

    def objective(candidate, report):
        start = time.process_time()
        marks.append(start)
        value = score(candidate)
        end = time.process_time()
        evaluation[0] += end - start
        marks.append(end)
        return value

    # iteration 1 = the first batch; its suggestion (calibration, the first fit) is not counted
    config = CoarseConfig(pool=len(cands), batch=1, first_batch=first, iterations=window + 2, epoch_cap=None,
                          surrogate=surrogate, seed=seed, final=False)
    with tempfile.TemporaryDirectory() as tmp:
        t0, w0 = time.process_time(), time.perf_counter()
        with CoarseSearch.create(Path(tmp) / "run", space, FunctionEvaluator(objective), config,
                                 pool=(cands, costs, len(cands)),
                                 progress=Progress(bars=False, log=lambda line: None)) as search:
            search.run()
        total, wall = time.process_time() - t0, time.perf_counter() - w0
    # marks: [start_1, end_1, start_2, end_2, ...]; the suggestion of evaluation k costs start_k - end_(k-1)
    # (0-based k); the first after the first batch (k = first) also calibrates and fits first: not counted
    starts, ends = marks[0::2], marks[1::2]
    per = [1000 * (starts[k] - ends[k - 1]) for k in range(first + 1, len(starts))]
    import jointnas

    return {"pool": pool, "pool_size": len(cands), "surrogate": surrogate, "first": first, "window": len(per),
            "n_range": [first + 1, first + 1 + len(per)], "ms_mean": statistics.fmean(per),
            "ms_median": statistics.median(per), "ms_max": max(per), "per_suggestion_ms": [round(v, 2) for v in per],
            "run_cpu_s": total, "run_wall_s": wall, "evaluation_cpu_s": evaluation[0],
            "jointnas": str(Path(jointnas.__file__).resolve().parent.parent), "date": time.strftime("%Y-%m-%d %H:%M"),
            "load": open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", choices=("nb201", "fbnetv3"), default="nb201")
    ap.add_argument("--surrogate", default="forest", help="catalog name of the surrogate (forest, mlp, ...)")
    ap.add_argument("--first", type=int, default=290, help="first batch size: suggestions start at this n")
    ap.add_argument("--window", type=int, default=10, help="suggestions measured one at a time after it")
    ap.add_argument("--label", default="", help="recorded with the row (e.g. main, branch)")
    ap.add_argument("--out", type=Path, help="append the result as one JSON line")
    args = ap.parse_args(argv)
    row = dict(measure(args.pool, args.surrogate, args.first, args.window), label=args.label)
    print(f"{row['label']:>8} {row['pool']:>8} ({row['pool_size']} rows) {row['surrogate']:>8} "
          f"n={row['n_range'][0]}..{row['n_range'][1]}: {row['ms_mean']:.1f} ms mean, {row['ms_median']:.1f} ms "
          f"median, {row['ms_max']:.1f} ms max per suggestion (run {row['run_cpu_s']:.1f} CPU s)", flush=True)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
