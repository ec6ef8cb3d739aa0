"""Training throughput of jointnas's trainer vs a naive loop, and wall time of full trainings.

Side by side in one run, on the same model (a preset, task-shaped) and the same training images:

* naive: ``DataLoader`` over a dataset applying per-sample transforms (resize, padded random
  crop, normalise), NCHW fp32 model, plain SGD loop;
* jointnas: :func:`jointnas.evaluation.trainer.train` (tensors on the device, batched augmentation,
  channels-last; bf16 autocast on CUDA), measured as its training-phase images/s.

Then, with ``--full N``, the wall time of one complete training (the recipe's epochs) of the
preset and of N random pool candidates, which is what a coarse-search iteration costs per
candidate on this machine.

    python scripts/bench_train.py --repeats 3 --full 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torchvision import transforms as T

from jointnas import load_space, sample_pool
from jointnas.evaluation.data import load_task, task_resolution
from jointnas.families.mbconv_net import build_model
from jointnas.evaluation.trainer import resolve_device, train


class PerSampleDataset(torch.utils.data.Dataset):
    def __init__(self, split, transform):
        self.images, self.labels, self.transform = split.images, split.labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), int(self.labels[i])


def naive_images_per_s(cand, task, space, device, epochs: int, seed: int) -> float:
    torch.manual_seed(seed)
    res = task_resolution(cand.arch["resolution"], task, space)
    transform = T.Compose([T.ConvertImageDtype(torch.float32), T.Resize((res, res), antialias=True),
                           T.RandomCrop(res, padding=res // 8), T.Normalize(task.mean, task.std)])
    loader = torch.utils.data.DataLoader(PerSampleDataset(task.train, transform), batch_size=task.batch_size,
                                         shuffle=True, drop_last=True, num_workers=0)
    model = build_model(cand.arch, task.num_classes, task.in_channels, network=space.family.network).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=float(cand.recipe["lr"]), momentum=0.9, nesterov=True)
    model.train()
    seen, start = 0, time.time()
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.time() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="FBNetV3_A")
    p.add_argument("--data", default="digits")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=1, help="epochs per throughput measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--full", type=int, default=0, metavar="N",
                   help="also time full trainings of the preset and N random pool candidates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write all figures to this JSON file")
    args = p.parse_args(argv)

    space = load_space("fbnetv3")
    device = resolve_device(args.device)
    task = load_task(args.data, seed=args.seed)
    cand = space.preset(args.preset)
    out = {"device": str(device), "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
           "load_avg_start": os.getloadavg()[0], "preset": args.preset, "data": args.data,
           "train_images": len(task.train), "resolution": task_resolution(cand.arch["resolution"], task, space)}
    print(f"# {args.preset} on {task.describe()}, device {device}, torch threads {torch.get_num_threads()}, "
          f"load average {out['load_avg_start']:.1f}", flush=True)
    naive, fast = [], []
    for rep in range(args.repeats):  # interleaved, so background load hits both alike
        naive.append(naive_images_per_s(cand, task, space, device, args.epochs, args.seed + rep))
        r = train(cand, task, epochs=args.epochs, device=device, seed=args.seed + rep, space=space)
        fast.append(r.images_per_s)
        print(f"repeat {rep + 1}: naive {naive[-1]:.1f} img/s, jointnas {fast[-1]:.1f} img/s "
              f"({fast[-1] / naive[-1]:.2f}x)", flush=True)
    out.update(naive_images_per_s=naive, trainer_images_per_s=fast,
               speedup_median=statistics.median(f / n for f, n in zip(fast, naive)))
    print(f"median speedup {out['speedup_median']:.2f}x (naive median {statistics.median(naive):.1f}, "
          f"jointnas median {statistics.median(fast):.1f} img/s)", flush=True)

    if args.full:
        out["full"] = []
        cands = [(args.preset, cand)] + [(f"pool#{i}", c) for i, c in
                                         enumerate(sample_pool(space, args.full, seed=args.seed))]
        for label, c in cands:
            r = train(c, task, device=device, seed=args.seed, space=space)
            row = {"candidate": label, "epochs": c.recipe["epochs"], "resolution": r.resolution,
                   "optimizer": c.recipe["optimizer"], "lr": c.recipe["lr"], "status": r.status,
                   "final_acc": r.final_acc, "wall_time": r.wall_time, "images_per_s": r.images_per_s,
                   "s_per_epoch": r.wall_time / max(r.epochs_run, 1)}
            out["full"].append(row)
            acc = "-" if r.final_acc is None else f"{r.final_acc:.3f}"
            print(f"full training {label}: {r.status}, {r.epochs_run}/{c.recipe['epochs']} epochs "
                  f"at {r.resolution} px, "
                  f"{r.wall_time:.0f} s ({row['s_per_epoch']:.1f} s/epoch), val_acc {acc}", flush=True)
    out["load_avg_end"] = os.getloadavg()[0]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
