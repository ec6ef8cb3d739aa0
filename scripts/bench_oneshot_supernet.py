"""Peak memory and seconds per epoch of the one-shot supernets (issue 27): DARTS (first and second
order) and PC-DARTS, on the ``nb201`` and ``darts`` spaces, at the same batch and width, one thread.

Each configuration runs in a fresh subprocess so that its peak is its own: on CPU the peak resident
set (``resource.getrusage(...).ru_maxrss``) is reported together with its growth over the process's
peak just before the first training step (torch, the data and the supernet already in memory); on
CUDA ``torch.cuda.max_memory_allocated``. Time: one untimed warm-up step, then ``--steps`` timed
steps (alpha update then w update, as a search does); seconds per epoch = seconds per step x the
steps of an epoch of ``--epoch-examples`` examples per side (w batches and alpha batches).
Inputs are random tensors of Fashion-MNIST's shape (1 x 28 x 28, 10 classes): the cost does not
depend on pixel values.

    OMP_NUM_THREADS=1 python scripts/bench_oneshot_supernet.py            # the BENCHMARKS.md table
    python scripts/bench_oneshot_supernet.py --spaces nb201 --steps 1     # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spaces", default="nb201,darts")
    p.add_argument("--strategies", default="darts,darts-2nd,pc-darts")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--channels", type=int, default=8, help="C of every configuration")
    p.add_argument("--nb201-cells", type=int, default=1, help="cells per stage of the nb201 supernet")
    p.add_argument("--darts-cells", type=int, default=5, help="cells of the darts supernet")
    p.add_argument("--resolution", type=int, default=28)
    p.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    p.add_argument("--epoch-examples", type=int, default=25000,
                   help="examples per side in an epoch (25,000: half of CIFAR-10's training split)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    return p.parse_args(argv)


def measure(args, space: str, strategy: str) -> dict:
    import resource
    import time

    import torch

    from jointnas.oneshot import OneShotSearch, OneShotSettings

    torch.set_num_threads(1)
    cells = args.nb201_cells if space == "nb201" else args.darts_cells
    settings = OneShotSettings.for_strategy(strategy, space).override(
        dict(channels=args.channels, cells=cells, batch_size=args.batch, warmup_epochs=0))
    search = OneShotSearch(space, settings, num_classes=10, in_channels=1, resolution=args.resolution,
                           device=args.device)
    g = torch.Generator().manual_seed(0)

    def batch():
        return (torch.randn(args.batch, 1, args.resolution, args.resolution, generator=g),
                torch.randint(0, 10, (args.batch,), generator=g))

    data = [batch() for _ in range(2 * (args.steps + 1))]
    cuda = search.device.type == "cuda"
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    search.train_epoch(data[:1], data[1:2], 0)  # warm-up
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    search.train_epoch(data[2:2 + args.steps], data[2 + args.steps:], 1)
    if cuda:
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / args.steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = dict(space=space, strategy=strategy, channels=args.channels, cells=cells, batch=args.batch,
               params=sum(p.numel() for p in search.net.parameters()), s_per_step=per_step,
               s_per_epoch=per_step * -(-args.epoch_examples // args.batch),
               peak_rss_mib=peak, rss_growth_mib=peak - base)
    if cuda:
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.one:
        space, strategy = args.one.split(":")
        print(json.dumps(measure(args, space, strategy)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    passthrough = list(argv if argv is not None else sys.argv[1:])
    rows = []
    for space in args.spaces.split(","):
        for strategy in args.strategies.split(","):
            done = subprocess.run([sys.executable, __file__, *passthrough, "--one", f"{space}:{strategy}"],
                                  env=env, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    mem = "CUDA peak MiB" if args.device != "cpu" else "peak RSS MiB (growth)"
    print(f"| space | strategy | C | cells | batch | params | s / step | s / epoch ({args.epoch_examples} per side) "
          f"| {mem} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = f"{r['cuda_peak_mib']:.0f}" if "cuda_peak_mib" in r else f"{r['peak_rss_mib']:.0f} ({r['rss_growth_mib']:.0f})"
        print(f"| {r['space']} | {r['strategy']} | {r['channels']} | {r['cells']} | {r['batch']} | {r['params']:,} "
              f"| {r['s_per_step']:.2f} | {r['s_per_epoch']:.0f} | {m} |")


if __name__ == "__main__":
    main()
