"""One-shot search against predictor-guided search and random search (issue 27), on the NAS-Bench-201
cell with Fashion-MNIST, sized for a shared 2-core CPU:

1. ``jointnas oneshot --space nb201`` for each strategy (darts, darts-2nd, pc-darts) and seed: the
   derived cell, its skip count, its NAS-Bench-201 table accuracies and the search's wall time;
2. ``jointnas coarse`` on the same data given the mean wall time of one one-shot command (stopped with
   SIGINT when it is up; its finished trials are kept), and random search for the same time, each
   trial trained like a coarse trial; their best cells by validation accuracy;
3. every distinct cell trained from scratch with one fixed recipe and scored on the test split.

The trained networks are NAS-Bench-201's network narrowed to the supernet's size (C = 8, one cell
per stage, a space file written beside the results), as a full C = 16, 5-cell network trains at
under 80 images/s here. Everything runs serially in one torch thread per process.

    flock /tmp/jointnas-heavy.lock python scripts/bench_oneshot.py --out /tmp/bench_oneshot
    python scripts/bench_oneshot.py --table /tmp/bench_oneshot/results.json    # the BENCHMARKS.md table
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STRATEGIES = ("darts", "darts-2nd", "pc-darts")
SMALL = {"channels": 8, "cells": 1}
# The fixed recipe every cell is trained with at the end (and the random-search trials, capped).
RECIPE = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 0.0005, "batch_size": 64, "epochs": 3}


def small_space_file(out: Path) -> Path:
    text = (REPO / "spaces" / "nb201-train.yaml").read_text()
    text = text.replace("name: nb201-train", "name: nb201-small").replace(
        "network: {channels: 16, cells: 5}", f"network: {{channels: {SMALL['channels']}, cells: {SMALL['cells']}}}")
    path = out / "nb201-small.yaml"
    path.write_text(text)
    return path


def env():
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def oneshot(out: Path, strategy: str, seed: int, args) -> dict:
    run = out / f"oneshot-{strategy}-{seed}"
    cmd = [sys.executable, "-m", "jointnas", "oneshot", "--run", str(run), "--space", "nb201", "--strategy", strategy,
           "--data", "fashion-mnist", "--seed", str(seed), "--epochs", str(args.epochs), "--train-examples",
           str(args.examples), "--channels", str(SMALL["channels"]), "--cells", str(SMALL["cells"]), "--json",
           "--no-progress"]
    began = time.time()
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    wall = time.time() - began
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    record = json.loads(proc.stdout)
    sizes = next(line for line in proc.stderr.splitlines() if line.startswith("one-shot "))
    print(f"{strategy} seed {seed}: {wall:.0f} s, skips {record['skip_count']}, "
          f"cifar10-valid {record['nb201']['cifar10-valid']['derived']} | {sizes}", flush=True)
    return {"strategy": strategy, "seed": seed, "wall": round(wall, 1), "arch": record["candidate"]["arch"],
            "skips": record["skip_count"], "nb201": record["nb201"], "sizes": sizes}


def coarse(out: Path, space_file: Path, seconds: float, args) -> dict:
    run = out / "coarse"
    cmd = [sys.executable, "-m", "jointnas", "coarse", "--run", str(run), "--space", str(space_file), "--data",
           "fashion-mnist", "--train-subset", str(args.examples), "--epoch-cap", "1", "--pool", "2000", "--batch",
           "4", "--iterations", "200", "--executor", "serial", "--threads", "1", "--no-result", "--no-progress",
           "--prior-pairs", "none", "--seed", "0"]
    began = time.time()
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        # SIGTERM, which jointnas coarse handles as Ctrl-C (its finished trials kept): a process started in
        # the background of a non-interactive shell (nohup ... &) ignores SIGINT
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    wall = time.time() - began
    from jointnas.store import RunStore

    with RunStore.open(run) as store:
        done = [t for t in store.trials(status="done") if t.final_acc is not None]
    best = max(done, key=lambda t: t.final_acc)
    print(f"coarse: {wall:.0f} s, {len(done)} trials, best val {best.final_acc:.4f}", flush=True)
    return {"wall": round(wall, 1), "trials": len(done), "arch": best.candidate.arch, "val": best.final_acc}


def random_search(task, space, seconds: float, args) -> dict:
    import numpy as np

    from jointnas.evaluation.trainer import train
    from jointnas.space import Candidate

    rng = np.random.default_rng(0)
    edges = list(space.arch)
    subset = task.shrink(train=args.examples, val=None)
    began, trials = time.time(), []
    while time.time() - began < seconds:
        arch = {e: str(rng.choice(space.arch[e].choices)) for e in edges}
        result = train(Candidate(arch, RECIPE, space=space.name), subset, epochs=1, device="cpu", seed=0,
                       space=space)
        if result.status == "done":
            trials.append((result.final_acc, arch))
    wall = time.time() - began
    best = max(trials, key=lambda t: t[0])
    print(f"random: {wall:.0f} s, {len(trials)} trials, best val {best[0]:.4f}", flush=True)
    return {"wall": round(wall, 1), "trials": len(trials), "arch": best[1], "val": best[0]}


def final_training(task, space, arch: dict, args) -> dict:
    from jointnas.evaluation.trainer import train
    from jointnas.space import Candidate

    result = train(Candidate(arch, RECIPE, space=space.name), task.shrink(train=args.final_train, test=args.final_test),
                   device="cpu",
                   seed=0, space=space, test=True, validate_every_epoch=False)
    return {"val": result.final_acc, "test": result.test_acc, "seconds": round(result.wall_time, 1),
            "status": result.status}


def table_accuracies(arch: dict) -> dict:
    from jointnas.oneshot.outcome import nb201_accuracies

    return {k: v["derived"] for k, v in nb201_accuracies(arch).items()}


def short(arch: dict) -> str:
    """A cell's ops in NAS-Bench-201's edge order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2), abbreviated."""
    from jointnas.families.cell import EDGES

    names = {"none": "none", "skip_connect": "skip", "nor_conv_1x1": "c1", "nor_conv_3x3": "c3", "avg_pool_3x3": "avg"}
    return " ".join(names[arch[e]] for e in EDGES)


def table(path: Path) -> str:
    """results.json as the markdown tables of BENCHMARKS.md."""
    r = json.loads(path.read_text())
    head = ("| method | seed | search s | cell | skips | NB201 c10-valid / c100 / IN16 (%) | val (%) | test (%) |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    def row(method, seed, wall, arch, skips, final):
        nb = final["nb201"]
        rows.append(f"| {method} | {seed} | {wall:.0f} | `{short(arch)}` | {skips} | {nb['cifar10-valid']:.2f} / "
                    f"{nb['cifar100']:.2f} / {nb['ImageNet16-120']:.2f} | {100 * final['val']:.2f} | "
                    f"{100 * final['test']:.2f} |")
    for e in sorted(r["searches"], key=lambda e: (STRATEGIES.index(e["strategy"]), e["seed"])):
        if "final" in e:
            row(e["strategy"], e["seed"], e["wall"], e["arch"], e["skips"], e["final"])
    for name in ("coarse", "random"):
        e = r.get(name)
        if e and "final" in e:
            skips = sum(op == "skip_connect" for op in e["arch"].values())
            row(f"{name} ({e['trials']} trials)", "0", e["wall"], e["arch"], skips, e["final"])
    return head + "\n" + "\n".join(rows)


def main(argv=None) -> int:
    if argv is None and sys.argv[1:2] == ["--table"]:
        print(table(Path(sys.argv[2])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the runs and results.json")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="one-shot search epochs")
    p.add_argument("--examples", type=int, default=1024, help="training images of a search (half w, half alpha) "
                   "and of a coarse or random trial")
    p.add_argument("--final-train", type=int, default=3000, help="training images of the final trainings")
    p.add_argument("--final-test", type=int, default=None, help="test images of the final trainings (default: all)")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from jointnas.catalog import load_space
    from jointnas.evaluation.data import load_task

    print(f"sizes: one-shot supernet C={SMALL['channels']}, {SMALL['cells']} cell per stage, {args.epochs} epochs, "
          f"{args.examples} training images (half w, half alpha), batch 64; trained networks: NAS-Bench-201's at "
          f"C={SMALL['channels']}, {SMALL['cells']} cell per stage, 32 px; fixed recipe {RECIPE} on "
          f"{args.final_train} training images, test on the full test split", flush=True)
    space_file = small_space_file(args.out)
    space = load_space(str(space_file))
    task = load_task("fashion-mnist", seed=0)
    save = lambda: (args.out / "results.json").write_text(json.dumps(results, indent=2))  # noqa: E731
    results = {"searches": [], "recipe": RECIPE}
    for seed in range(args.seeds):
        for strategy in args.strategies:
            results["searches"].append(oneshot(args.out, strategy, seed, args))
            save()
    seconds = sum(r["wall"] for r in results["searches"]) / len(results["searches"])
    results["budget_seconds"] = round(seconds, 1)
    results["coarse"] = coarse(args.out, space_file, seconds, args)
    save()
    results["random"] = random_search(task, space, seconds, args)
    save()
    cells = {}
    for entry in results["searches"] + [results["coarse"], results["random"]]:
        key = json.dumps(entry["arch"], sort_keys=True)
        if key not in cells:
            cells[key] = final_training(task, space, entry["arch"], args)
            cells[key]["nb201"] = table_accuracies(entry["arch"])
            print(f"trained {entry['arch']}: {cells[key]}", flush=True)
        entry["final"] = cells[key]
        save()
    print(f"wrote {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
