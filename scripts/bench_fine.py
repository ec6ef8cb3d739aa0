"""Benchmark of `jointnas fine`: wall time of the whole command, candidates scored per second
(wall and CPU), and the best predicted score found vs `jointnas fine --strategy random` with
as many evaluations on the same predictor; plus the predictor alone (rows per CPU-second at the
GA's batch size and at a large one), the ceiling the search runs against; and `python -c "import torch"`
alone (wall and CPU seconds, three times), the floor under the whole command.

    python scripts/bench_fine.py                        # shipped predictor, --budget 600MFLOPs
    python scripts/bench_fine.py --predictor RUN/predictors/iter3.pt --budget 800MFLOPs --seeds 0 1 2
    python scripts/bench_fine.py --seeds 0 1 2 --populations 100 300   # OFA's population vs ours
    python scripts/bench_fine.py --synthetic --risks 0 1   # a predictor fitted to a synthetic accuracy

The command runs in a fresh empty directory, so that with no --predictor it scores with the
shipped predictor (there is no runs/ folder to pick a run from). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jointnas import Candidate


def run_fine(budget: str, predictor, seed: int, population, risk, extra=()):
    cmd = [sys.executable, "-m", "jointnas", "fine", "--budget", budget, "--json", "--no-progress", *extra]
    if predictor:
        cmd += ["--predictor", str(Path(predictor).resolve())]
    if population is not None:
        cmd += ["--population", str(population)]
    if risk is not None:
        cmd += ["--risk", str(risk)]
    if seed:
        cmd += ["--seed", str(seed)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    with tempfile.TemporaryDirectory() as cwd:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return cmd, (wall, cpu), json.loads(proc.stdout)


def import_torch_cpu() -> tuple:
    """(wall s, CPU s) of a fresh ``python -c "import torch"``: the floor under the whole command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def synthetic_accuracy(space, candidates, costs):
    """More FLOPs help (saturating), the learning rate has an optimum, longer schedules and EMA help."""
    z = (np.log(costs[:, 0]) - np.log(3e8)) / np.log(4.0)
    lr = np.log10([c.recipe["lr"] for c in candidates])
    epochs = np.array([c.recipe["epochs"] for c in candidates])
    ema = np.array([c.recipe["ema"] for c in candidates], dtype=float)
    return np.clip(0.55 + 0.25 * np.tanh(z) - 0.06 * (lr + 1.5) ** 2 + 0.004 * epochs + 0.02 * ema, 0.0, 1.0)


def fit_synthetic_predictor(path: Path) -> None:
    """A default-sized Predictor, proxy-pretrained on 2000 pool members and fitted to the synthetic
    accuracy of 300 of them; unlike a predictor fitted on a handful of real pairs, it has a
    landscape worth searching."""
    import torch

    from jointnas import load_space, sample_pool
    from jointnas.surrogates import Predictor
    from jointnas.families.cost import count_costs

    torch.set_num_threads(1)
    space = load_space("fbnetv3")
    pool = sample_pool(space, 2000, seed=5)
    costs = count_costs(pool, space)
    p = Predictor(space, seed=0).pretrain(pool, costs, epochs=5)
    p.fit(pool[:300], synthetic_accuracy(space, pool[:300], costs[:300]), frozen_epochs=10, full_epochs=10)
    p.save(path)


def cpu_rates(payload: dict, seed: int, population) -> tuple:
    """(GA candidates per CPU-second, the fastest of three runs; predictor rows per CPU-second at
    batch 225 and at 20,000), measured in this process after a warm-up run."""
    import torch

    from jointnas.budget import Budget
    from jointnas.fine.problem import SearchSettings
    from jointnas.fine.search import fine_search
    from jointnas.catalog import load_surrogate

    torch.set_num_threads(1)
    predictor = load_surrogate(payload["predictor"])
    budget = Budget(payload["budget"]["max_flops"], payload["budget"]["max_params"])
    settings = SearchSettings(seed=seed, **({"population": population} if population else {}))
    fine_search(predictor, predictor.space, budget, settings=settings)
    times = []
    for _ in range(3):  # the fastest of three: on a shared machine one run says more about the others
        start = time.process_time()
        r = fine_search(predictor, predictor.space, budget, settings=settings)
        times.append(time.process_time() - start)
    ga = r.scored / min(times)
    rates = []
    for batch in (225, 20000):
        x = np.random.default_rng(0).random((batch, predictor.space.encoding_width)).astype(np.float32)
        predictor.predict_encoded(x)
        start, n = time.process_time(), 0
        while time.process_time() - start < 1.0:
            predictor.predict_encoded(x)
            n += batch
        rates.append(n / (time.process_time() - start))
    return ga, rates[0], rates[1]


def true_synthetic(candidate) -> float:
    from jointnas import load_space
    from jointnas.families.cost import count_costs

    space = load_space(candidate.space)
    return float(synthetic_accuracy(space, [candidate], count_costs([candidate], space))[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="600MFLOPs")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--predictor", help="predictor checkpoint (default: what `jointnas fine` picks: the shipped one)")
    src.add_argument("--synthetic", action="store_true", help="fit a predictor to a synthetic accuracy first "
                     "(fit_synthetic_predictor) and search with it")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--populations", type=int, nargs="+", default=[None],
                    help="run with these --population values (default: only the default population)")
    ap.add_argument("--risks", type=float, nargs="+", default=[None],
                    help="run with these --risk values (default: only the default, 0)")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    if args.synthetic:
        args.predictor = Path(tmp.name) / "synthetic.pt"
        fit_synthetic_predictor(args.predictor)
    rows = []
    load_before = os.getloadavg()
    for population, risk, seed in itertools.product(args.populations, args.risks, args.seeds):
        cmd, wall, payload = run_fine(args.budget, args.predictor, seed, population, risk)
        search = payload["search"]
        _, r_wall, rnd = run_fine(args.budget, args.predictor, seed, population, risk,
                                  ("--strategy", "random", "--evaluations", str(search["scored"])))
        truth = ""
        if args.synthetic:
            found = Candidate.from_dict(payload["top"][0]["candidate"])
            pick = Candidate.from_dict(rnd["top"][0]["candidate"])
            truth = f" | {true_synthetic(found):.4f} vs {true_synthetic(pick):.4f}"
        ga_cpu, pred_small, pred_large = cpu_rates(payload, seed, population)
        rows.append((seed, wall, search, rnd, r_wall, ga_cpu, pred_small, pred_large, payload, truth))
        print(f"{' '.join(cmd[1:])}: {wall[0]:.1f} s", file=sys.stderr)
    torch_times = [import_torch_cpu() for _ in range(3)]
    load_after = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}; predictor {payload['predictor']}; {os.cpu_count()} CPUs visible; "
          f"load average (1/5/15 min) {' '.join(f'{x:.1f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.1f}' for x in load_after)} after; `python -c \"import torch\"` alone, 3 times: "
          + ", ".join(f"{w:.2f} / {c:.2f}" for w, c in torch_times) + " (wall s / CPU s)")
    print()
    truth_head = " | synthetic truth: GA's vs random's pick" if args.synthetic else ""
    print("| population | risk | seed | whole command: wall s / CPU s | search s | generations | scored | scored/s (wall) "
          "| scored/CPU-s | predictor alone rows/CPU-s (batch 225 / 20000) | best found | random search: best "
          "(wall s of the command) | stop" + truth_head + " |")
    print("|---" * (13 + bool(args.synthetic)) + "|")
    for seed, wall, search, rnd, r_wall, ga_cpu, small, large, payload, truth in rows:
        settings = payload["settings"]
        print(f"| {settings['population']} | {settings['risk']:g} | {seed} | {wall[0]:.2f} / {wall[1]:.2f} "
              f"| {search['wall_time']:.2f} "
              f"| {search['generations']} | {search['scored']} | {search['scored_per_second']:.0f} | {ga_cpu:.0f} "
              f"| {small:.0f} / {large:.0f} | {search['best_score']:.4f} | {rnd['search']['best_score']:.4f} "
              f"({r_wall[0]:.2f}) | {search['stop_reason'].split(':')[0]}{truth} |")


if __name__ == "__main__":
    main()
