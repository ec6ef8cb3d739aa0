"""The depthwise conv's weight gradient: torch's (oneDNN) vs jointnas.families.depthwise, side by side.

Part 1, one layer: the weight-gradient time of each depthwise shape of an mbconv model trained on
digits (56 px), torch's vs the tap-by-tap sum, at the shapes where jointnas uses the latter.
Part 2, whole models: training steps per second (forward + backward + SGD step) of presets and
pool candidates built by the mbconv family, with every DepthwiseConv2d turned back into a plain
nn.Conv2d ("torch") and as built ("jointnas"), alternating, one torch thread.

    OMP_NUM_THREADS=1 python scripts/bench_depthwise.py --models FBNetV3_A FBNetV3_E --pool 4
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from jointnas import load_space, sample_pool
from jointnas.families.depthwise import DepthwiseConv2d, depthwise_weight_grad


def _best_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def layer_shapes(model, size: int):
    """(channels, input size, kernel, stride, padding) of each depthwise conv, from a forward pass."""
    shapes = []

    def hook(mod, inputs, _out):
        shapes.append((mod.in_channels, inputs[0].shape[2], mod.kernel_size[0], mod.stride[0], mod.padding[0]))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, DepthwiseConv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, size, size))
    for h in handles:
        h.remove()
    return sorted(set(shapes))


def part_layers(shapes, batch: int, repeats: int) -> None:
    print(f"| channels | input | kernel | stride | pad | output | torch ms | jointnas ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c, size, k, s, p in shapes:
        out = (size + 2 * p - k) // s + 1
        if k <= out:
            continue  # jointnas keeps torch's own gradient there
        x = torch.randn(batch, c, size, size).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, 1, k, k, requires_grad=True)
        g = torch.randn(batch, c, out, out).contiguous(memory_format=torch.channels_last)
        ref = _best_ms(lambda: torch.autograd.grad(F.conv2d(x, w, None, s, p, 1, c), (w,), g), repeats)
        new = _best_ms(lambda: depthwise_weight_grad(x, g, k, s, p), repeats)
        print(f"| {c} | {size} | {k} | {s} | {p} | {out} | {ref:.1f} | {new:.1f} | {ref / new:.1f}x |")


def as_plain(model, kind=DepthwiseConv2d):
    """A copy of ``model`` whose ``kind`` modules are plain ``nn.Conv2d`` again (same weights)."""
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if isinstance(m, kind):
            m.__class__ = nn.Conv2d
    return plain


def steps_per_s(model, x, y, steps: int, optimizer) -> float:
    opt = optimizer(model.parameters())
    model.train()
    for _ in range(2):  # warm-up
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def model_args(ap: argparse.ArgumentParser) -> None:
    """The options of the models measured (shared by the small-map benchmarks)."""
    ap.add_argument("--models", nargs="*", default=["FBNetV3_A", "FBNetV3_E"], help="presets of the fbnetv3 space")
    ap.add_argument("--pool", type=int, default=4, help="also this many Sobol pool candidates")
    ap.add_argument("--size", type=int, default=56, help="training resolution (digits: 56 for 224 px archs)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)


def models(args):
    """(space, [(name, arch)]) of ``args``, after one torch thread is set and the load printed."""
    torch.set_num_threads(1)
    space = load_space("fbnetv3")
    archs = [(name, space.preset(name).arch) for name in args.models]
    archs += [(f"pool #{i}", c.arch) for i, c in enumerate(sample_pool(space, args.pool, seed=0) if args.pool else [])]
    print(f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, 1 thread, batch {args.batch}, "
          f"{args.size} px\n")
    return space, archs


def SGD(params):
    return torch.optim.SGD(params, lr=0.01)


def whole_models(space, archs, args, variants) -> list:
    """Print a table row of steps/s per model for each (label, model transform or None, optimizer
    factory), measured in alternating rounds; returns each model's last/first ratio."""
    print("| model | " + " | ".join(label for label, _, _ in variants) + " | speed-up |")
    print("|---" * (len(variants) + 2) + "|")
    x = torch.randn(args.batch, 1, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    ratios = []
    for name, arch in archs:
        torch.manual_seed(0)
        built = space.family.build(arch, num_classes=10, in_channels=1, input_size=args.size)
        built = built.to(memory_format=torch.channels_last)
        nets = [change(built) if change else built for _, change, _ in variants]
        rates = [[] for _ in variants]
        for _ in range(args.rounds):
            for net, (_, _, optimizer), out in zip(nets, variants, rates):
                out.append(steps_per_s(net, x, y, args.steps, optimizer))
        medians = [statistics.median(r) for r in rates]
        ratios.append(medians[-1] / medians[0])
        print(f"| {name} | " + " | ".join(f"{m:.2f}" for m in medians) + f" | {ratios[-1]:.2f}x |")
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_args(ap)
    ap.add_argument("--rounds", type=int, default=3, help="alternating torch/jointnas measurements per model")
    args = ap.parse_args()
    space, archs = models(args)
    first = space.family.build(archs[0][1], num_classes=10, in_channels=1, input_size=args.size)
    print(f"Weight gradient of {archs[0][0]}'s depthwise convs where the kernel exceeds the output map:\n")
    part_layers(layer_shapes(first, args.size), args.batch, repeats=5)
    print("\nWhole model, training steps/s (median of alternating rounds):\n")
    ratios = whole_models(space, archs, args, [("torch steps/s", as_plain, SGD), ("jointnas steps/s", None, SGD)])
    print(f"\ngeometric mean speed-up {statistics.geometric_mean(ratios):.2f}x; "
          f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
