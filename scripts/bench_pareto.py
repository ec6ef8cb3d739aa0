"""Benchmark of `jointnas fine --pareto`: (a) which multi-objective search gives the better front
per second, jointnas's NSGA-II over the genome (jointnas.fine.pareto) or pymoo's NSGA2 (as
pymoo's docs set it up for mixed variables: random keys in [0, 1], SBX and polynomial mutation;
and with jointnas's genome operators plugged in), by the hypervolume of everything scored after
the same number of evaluations; (b) the front of one `jointnas fine --pareto` command against
five `jointnas fine --budget B` commands at five budgets spanning it: predicted accuracy at each
budget and total time.

    python scripts/bench_pareto.py                           # the shipped predictor
    python scripts/bench_pareto.py --synthetic /tmp/s.pt     # also bench_fine's synthetic predictor
                                                             # (fitted once, then reused from the file)
    python scripts/bench_pareto.py --seeds 0 1 2 --evaluations 20000

pymoo is not a dependency of jointnas: part (a) runs its rows only where pymoo imports.
Hypervolume: the share of the box log(FLOPs) from the cheapest to the dearest arch x predicted
score [0, 1] that the non-dominated candidates scored so far dominate (jointnas.fine.pareto.hypervolume).
Prints Markdown tables.
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

from jointnas.catalog import load_scorer
from jointnas.fine.pareto import hypervolume, pareto_search
from jointnas.fine.problem import FineProblem, SearchSettings

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "predictors" / "fbnetv3-digits.pt"


class Archive:
    """Every row a search scored, for the hypervolume of its non-dominated ones."""

    def __init__(self, box):
        self.box, self.cost, self.score = box, [], []

    def add(self, cost, score):
        self.cost.append(np.asarray(cost, dtype=np.float64))
        self.score.append(np.asarray(score, dtype=np.float64))

    def hypervolume(self) -> float:
        return hypervolume(np.concatenate(self.cost), np.concatenate(self.score), *self.box)


def box_of(problem: FineProblem) -> tuple:
    ends = problem.costs(np.stack([problem.genome.cheapest(), problem.genome.dearest()]))[:, 0]
    return float(ends.min()), float(ends.max())


def ours(predictor, seed: int, evaluations: int):
    st = SearchSettings(seed=seed, evaluations=evaluations, patience=10**5, generations=10**5)
    start = time.perf_counter()
    r = pareto_search(predictor, predictor.space, settings=st)
    wall = time.perf_counter() - start
    return wall, r.scored, r.hypervolume


def pymoo_run(predictor, seed: int, evaluations: int, genome_operators: bool):
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.crossover import Crossover
    from pymoo.core.mutation import Mutation
    from pymoo.core.problem import Problem
    from pymoo.core.sampling import Sampling
    from pymoo.optimize import minimize

    problem = FineProblem(predictor.space, predictor, None)
    genome = problem.genome
    archive = Archive(box_of(problem))
    rng = np.random.default_rng(seed)

    def rows(X):  # random keys -> rows (floor for discrete dimensions); genome rows pass through
        return X if genome_operators else genome._from_unit(np.clip(X, 0.0, 1.0 - 1e-12))

    class Front(Problem):
        def __init__(self):
            if genome_operators:
                hi = np.where(genome.is_float, np.inf, genome.k - 1).astype(float)
                super().__init__(n_var=genome.width, n_obj=2, xl=np.zeros(genome.width), xu=hi)
            else:
                super().__init__(n_var=genome.width, n_obj=2, xl=0.0, xu=1.0)

        def _evaluate(self, X, out, *args, **kwargs):
            G = rows(X)
            costs = problem.costs(G)
            _, _, score = problem.predict(G, costs)
            archive.add(costs[:, 0], score)
            out["F"] = np.column_stack([np.log(costs[:, 0]), -score])

    class GenomeSampling(Sampling):  # like jointnas's first population: the cheapest arch and random rows
        def _do(self, p, n_samples, **kwargs):
            return np.concatenate([genome.cheapest()[None], genome.random(n_samples - 1, rng)])

    class GenomeCrossover(Crossover):
        def __init__(self):
            super().__init__(2, 2)

        def _do(self, p, X, **kwargs):
            return np.stack([genome.crossover(X[0], X[1], rng), genome.crossover(X[1], X[0], rng)])

    class GenomeMutation(Mutation):
        def _do(self, p, X, **kwargs):
            return genome.mutate(X, SearchSettings.mutation_rate, rng)

    if genome_operators:
        algorithm = NSGA2(pop_size=SearchSettings.population, sampling=GenomeSampling(), crossover=GenomeCrossover(),
                          mutation=GenomeMutation(), eliminate_duplicates=True)
    else:
        algorithm = NSGA2(pop_size=SearchSettings.population, eliminate_duplicates=True)
    start = time.perf_counter()
    res = minimize(Front(), algorithm, ("n_evals", evaluations), seed=seed, verbose=False)
    wall = time.perf_counter() - start
    return wall, int(res.algorithm.evaluator.n_eval), archive.hypervolume()


def algorithms_table(predictors: dict, seeds, evaluation_counts) -> list:
    try:
        import pymoo
        have_pymoo = f"pymoo {pymoo.__version__}"
    except ImportError:
        have_pymoo = None
    runs = [("jointnas NSGA-II (jointnas.fine.pareto)", ours)]
    if have_pymoo:
        runs += [(f"{have_pymoo} NSGA2, random keys + SBX + PM",
                  lambda p, s, e: pymoo_run(p, s, e, genome_operators=False)),
                 (f"{have_pymoo} NSGA2 + jointnas genome operators",
                  lambda p, s, e: pymoo_run(p, s, e, genome_operators=True))]
    lines = ["| predictor | search | seed | evaluations | wall s | hypervolume | hypervolume per s |", "|---" * 7 + "|"]
    for pname, predictor in predictors.items():
        for evaluations in evaluation_counts:
            for label, fn in runs:
                for seed in seeds:
                    wall, n, hv = fn(predictor, seed, evaluations)
                    lines.append(f"| {pname} | {label} | {seed} | {n} | {wall:.2f} | {hv:.4f} | {hv / wall:.3f} |")
                    print(lines[-1], file=sys.stderr, flush=True)
    if not have_pymoo:
        lines.append("(pymoo not installed: its rows are missing)")
    return lines


def jointnas_cli(*args) -> tuple:
    """(wall s of the whole command, its JSON) of ``jointnas fine ... --json --no-progress``."""
    cmd = [sys.executable, "-m", "jointnas", "fine", *args, "--json", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return wall, json.loads(proc.stdout)


def budgets_table(name: str, path: Path, seed: int) -> list:
    pwall, pareto = jointnas_cli("--pareto", "--predictor", str(path), "--seed", str(seed))
    front = pareto["front"]
    lo, hi = front[0]["flops"], front[-1]["flops"]
    budgets = np.geomspace(lo * 1.1, max(hi, 4 * lo), 5).round(-6)
    lines = [f"{name}: one `fine --pareto` ({pwall:.1f} s whole command, search {pareto['search']['wall_time']:.2f} s, "
             f"{pareto['search']['scored']} scored, front of {len(front)} from {lo / 1e6:.1f} to {hi / 1e6:.1f} MFLOPs)",
             "", "| budget MFLOPs | front's best under it: pred acc | MFLOPs | `fine --budget`: pred acc | MFLOPs "
             "| wall s (search s) |", "|---" * 6 + "|"]
    total, total_search = 0.0, 0.0
    for b in budgets:
        wall, single = jointnas_cli("--budget", f"{int(b)}", "--predictor", str(path), "--seed", str(seed))
        total += wall
        total_search += single["search"]["wall_time"]
        under = [m for m in front if m["flops"] <= b]
        mine = max(under, key=lambda m: m["score"]) if under else None
        top = single["top"][0]
        mine_text = f"{100 * mine['predicted_acc']:.2f}% | {mine['flops'] / 1e6:.1f}" if mine else "none | -"
        lines.append(f"| {b / 1e6:.0f} | {mine_text} | {100 * top['predicted_acc']:.2f}% | {top['flops'] / 1e6:.1f} | "
                     f"{wall:.1f} ({single['search']['wall_time']:.2f}) |")
        print(lines[-1], file=sys.stderr, flush=True)
    lines.append(f"| total | one command: {pwall:.1f} s (search {pareto['search']['wall_time']:.2f} s) | | "
                 f"five commands: {total:.1f} s (search {total_search:.2f} s) | | |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", type=Path, metavar="FILE.pt", help="also bench_fine's synthetic predictor: "
                    "read from FILE.pt, fitted there first when missing")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--evaluations", type=int, nargs="+", default=[2000, 20000], help="per search in part (a)")
    args = ap.parse_args()
    predictors = {"shipped": SHIPPED}
    if args.synthetic is not None:
        if not args.synthetic.is_file():
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from bench_fine import fit_synthetic_predictor

            fit_synthetic_predictor(args.synthetic)
        predictors["synthetic"] = args.synthetic
    import torch

    torch.set_num_threads(1)
    loaded = {k: load_scorer(v) for k, v in predictors.items()}
    out = ["(a) front per second, same evaluations each", ""] + algorithms_table(loaded, args.seeds, args.evaluations)
    for name, path in predictors.items():
        lines = budgets_table(name, path, args.seeds[0])
        out += ["", "(b) " + lines[0], *lines[1:]]
    print("\n".join(out))


if __name__ == "__main__":
    main()
