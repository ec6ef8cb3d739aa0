"""1x1 convs as matrix products on small maps, fused optimizer steps, one validation: side by side.

Part 1, one layer: training time (forward + backward) of each 1x1 conv shape of an mbconv model
trained on digits (56 px), ``nn.Conv2d`` (oneDNN) vs ``F.linear`` on the channels-last view.
Part 2, whole models: training steps per second (forward + backward + AdamW step) of presets and
pool candidates, alternating: "before" (every PointwiseConv2d turned back into nn.Conv2d, the
optimizer's for-loop step), "pointwise" (as built), "+ fused" (as built, fused AdamW: the trainer's).
Part 3, the result stage: an epoch of digits with and without BatchNorm recalibration and
validation (what ``train(..., validate_every_epoch=False)`` saves per epoch).

    OMP_NUM_THREADS=1 python scripts/bench_small_map.py --models FBNetV3_A FBNetV3_E --pool 4
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from bench_depthwise import _best_ms, as_plain, model_args, models, whole_models
from jointnas.families.pointwise import SMALL_MAP, PointwiseConv2d


def layer_shapes(model, size: int):
    """(in channels, out channels, map side) of each 1x1 conv, from a forward pass."""
    shapes = []

    def hook(mod, inputs, _out):
        shapes.append((mod.in_channels, mod.out_channels, inputs[0].shape[2]))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, PointwiseConv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, size, size))
    for h in handles:
        h.remove()
    return sorted(set(shapes), key=lambda s: (-s[2], s[0], s[1]))


def part_layers(shapes, batch: int, repeats: int) -> None:
    print("| in | out | map | conv ms | linear ms | speed-up | jointnas uses |")
    print("|---|---|---|---|---|---|---|")
    for ci, co, side in shapes:
        x = torch.randn(batch, ci, side, side).contiguous(memory_format=torch.channels_last).requires_grad_()
        w = torch.randn(co, ci, 1, 1).contiguous(memory_format=torch.channels_last).requires_grad_()
        g = torch.randn(batch, co, side, side).contiguous(memory_format=torch.channels_last)

        def conv():
            F.conv2d(x, w).backward(g)

        def linear():
            F.linear(x.permute(0, 2, 3, 1), w.flatten(1)).permute(0, 3, 1, 2).backward(g)

        a, b = _best_ms(conv, repeats), _best_ms(linear, repeats)
        uses = "linear" if side * side <= SMALL_MAP else "conv"
        print(f"| {ci} | {co} | {side}x{side} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {uses} |")


def part_result_stage(space, archs, repeats: int) -> None:
    from jointnas.evaluators import TrainEvaluator
    from jointnas.space import Candidate
    from jointnas.trainer import train

    task = TrainEvaluator("digits").task(0)
    recipe = dict(space.preset(next(iter(space.presets))).recipe, epochs=12)
    print("| model | 2 epochs, validated twice (s) | validated once (s) | saved per epoch | share of an epoch |")
    print("|---|---|---|---|---|")
    for name, arch in archs:
        cand = Candidate(dict(arch), recipe, space=space.name)
        every, once = [], []
        for _ in range(repeats):
            every.append(train(cand, task, epochs=2, space=space).wall_time)
            once.append(train(cand, task, epochs=2, space=space, validate_every_epoch=False).wall_time)
        e, o = statistics.median(every), statistics.median(once)
        print(f"| {name} | {e:.1f} | {o:.1f} | {e - o:.1f} s | {(e - o) / (o / 2):.0%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_args(ap)
    ap.add_argument("--rounds", type=int, default=3, help="alternating measurements per model")
    ap.add_argument("--result-models", type=int, default=2, help="models of part 3 (the first ones)")
    args = ap.parse_args()
    space, archs = models(args)
    first = space.family.build(archs[0][1], num_classes=10, in_channels=1, input_size=args.size)
    print(f"Part 1: training time of {archs[0][0]}'s 1x1 convs (forward + backward, best of 5):\n")
    part_layers(layer_shapes(first, args.size), args.batch, repeats=5)
    print("\nPart 2: whole model, training steps/s with AdamW (median of alternating rounds):\n")
    ratios = whole_models(space, archs, args, [
        ("before", lambda m: as_plain(m, PointwiseConv2d), lambda p: torch.optim.AdamW(p, lr=1e-3, fused=False)),
        ("pointwise", None, lambda p: torch.optim.AdamW(p, lr=1e-3, fused=False)),
        ("+ fused AdamW", None, lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True))])
    print(f"\ngeometric mean speed-up {statistics.geometric_mean(ratios):.2f}x")
    print("\nPart 3: digits, 2 epochs of a 12-epoch schedule (space default recipe), median of 2:\n")
    part_result_stage(space, archs[:args.result_models], repeats=2)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
