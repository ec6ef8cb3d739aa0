"""Train candidates of a Sobol pool with the real trainer and append one JSON row per trial.

Resumable: candidates already in the output table are skipped; each row is written (and
fsync'ed) as soon as its trial finishes, so an interrupted run loses at most the trial in
flight. Candidates are taken in pool order (the first points of a scrambled Sobol sequence
cover the space evenly), so ``--n`` can grow between runs without changing earlier rows.

    python scripts/make_trained_pairs.py --out data/fbnetv3_digits_pairs.jsonl --n 400 --task digits \
        --epochs recipe --device auto --threads 1 --time-budget-min 95 --shard 0/2
    # ... and the same with --shard 1/2 beside it: one process per core, one table

(what made ``data/fbnetv3_digits_pairs.jsonl``, on a 2-core CPU machine; each shard was then
rerun with a shorter ``--time-budget-min`` to use the rest of the session). Every row records
the device, torch version, git commit and the exact command.
``--epochs N`` stops each trial after N epochs of its recipe's schedule, and
``--train-subset`` / ``--batch-size`` shrink a trial further; every row records them.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSONL table to append to")
    ap.add_argument("--space", default="fbnetv3")
    ap.add_argument("--task", default="digits")
    ap.add_argument("--n", type=int, default=200, help="train the first N pool members (skipping ones done)")
    ap.add_argument("--pool-size", type=int, default=20000)
    ap.add_argument("--pool-seed", type=int, default=0)
    ap.add_argument("--epochs", default="recipe",
                    help="'recipe' (the recipe's own epochs) or N: stop after N epochs of the recipe's schedule")
    ap.add_argument("--train-subset", type=int, default=None, help="train on the first N training images only")
    ap.add_argument("--val-subset", type=int, default=None, help="validate on the first N validation images only")
    ap.add_argument("--batch-size", type=int, default=None, help="training batch size (default: the task's)")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--time-budget-min", type=float, default=None, help="start no new trial after this many minutes")
    ap.add_argument("--shard", default="0/1", metavar="K/N",
                    help="train only pool members whose index is K mod N, so N processes can share one table")
    args = ap.parse_args(argv)
    try:
        args.shard_k, args.shard_n = (int(v) for v in args.shard.split("/"))
    except ValueError:
        args.shard_k, args.shard_n = -1, 0
    if not 0 <= args.shard_k < args.shard_n:
        ap.error(f"--shard must be K/N with 0 <= K < N (e.g. 0/2), got {args.shard!r}")
    return args


def done_keys(path: Path) -> set:
    keys = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    keys.add(json.loads(line)["key"])
                except (ValueError, KeyError):
                    pass  # a torn last line from a crash: that candidate is simply trained again
    return keys


def append_row(path: Path, row: dict) -> None:
    """One ``write`` on an O_APPEND descriptor, so rows from concurrent shards never interleave."""
    data = (json.dumps(row, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "jointnas"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from jointnas import sample_pool
    from jointnas.evaluation.data import load_task
    from jointnas.families.cost import count_costs
    from jointnas.catalog import load_space
    from jointnas.evaluation.trainer import train

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    epochs = None if args.epochs == "recipe" else int(args.epochs)
    space = load_space(args.space)
    pool = sample_pool(space, args.pool_size, seed=args.pool_seed)[:args.n]
    costs = count_costs(pool, space)
    task = load_task(args.task, seed=args.seed).shrink(train=args.train_subset, val=args.val_subset)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    seen = done_keys(args.out)
    todo = [i for i, c in enumerate(pool) if c.key() not in seen and i % args.shard_n == args.shard_k]
    commit = git_commit()
    print(f"{len(seen)} rows already in {args.out}; training {len(todo)} (shard {args.shard})", file=sys.stderr)
    start = time.time()
    from tqdm import tqdm
    for i in tqdm(todo, desc="train candidates", unit="cand", file=sys.stderr):
        if args.time_budget_min is not None and time.time() - start > 60 * args.time_budget_min:
            print(f"time budget of {args.time_budget_min} min spent; stopping (rerun to continue)", file=sys.stderr)
            break
        cand = pool[i]
        t0 = time.time()
        try:
            result = train(cand, task, epochs=epochs, device=args.device, seed=args.seed, space=space,
                           batch_size=args.batch_size).to_dict()
        except Exception as e:  # the trainer reports its own failures; this catches bugs so the run goes on
            result = {"status": "failed", "curve": [], "final_acc": None, "epochs_run": 0,
                      "wall_time": time.time() - t0, "device": args.device, "error": f"{type(e).__name__}: {e}"}
        row = {"key": cand.key(), "candidate": cand.to_dict(), "pool": {"size": args.pool_size, "seed": args.pool_seed,
               "index": i}, "task": args.task, "epochs_arg": args.epochs,
               "train_images": len(task.train), "val_images": len(task.val), "batch_size": args.batch_size or task.batch_size, "seed": args.seed,
               "flops": int(costs[i, 0]), "params": int(costs[i, 1]), "torch_threads": args.threads,
               "torch": torch.__version__, "git_commit": commit, "command": command, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}
        append_row(args.out, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
