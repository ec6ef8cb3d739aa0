"""1x1 convs as matrix products on small maps, fused optimizer steps, one validation: side by side.

Part 1, one layer: training time (forward + backward) of each 1x1 conv shape of an mbconv model
trained on digits (56 px), ``nn.Conv2d`` (oneDNN) vs ``F.linear`` on the channels-last view.
Part 2, whole models: training steps per second (forward + backward + AdamW step) of presets and
pool candidates, alternating: "before" (every PointwiseConv2d turned back into nn.Conv2d, the
optimizer's for-loop step), "pointwise" (as built), "+ fused" (as built, fused AdamW: the trainer's).
Part 3, the result stage: an epoch of digits with and without BatchNorm recalibration and
validation (what ``train(..., validate_every_epoch=False)`` saves per epoch).
Part 4, one optimizer step of the first model: per-tensor loop, foreach and fused, per optimizer.
Part 5, BN recalibration (512 images) + validation (288) of the first model at evaluation batches
of 256 and 64, alternating, with the minor page faults each took.
Part 6, training steps/s of the first model at one and two threads, alternating, alone and beside
one busy process (run it again under ``OMP_WAIT_POLICY=PASSIVE`` for passive waiting).

    OMP_NUM_THREADS=1 python scripts/bench_small_map.py --models FBNetV3_A FBNetV3_E --pool 4
    OMP_NUM_THREADS=1 python scripts/bench_small_map.py --models FBNetV3_A --pool 0 --parts 4 5 6
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from bench_depthwise import SGD, _best_ms, as_plain, model_args, models, steps_per_s, whole_models
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
    from jointnas.evaluation.train import TrainEvaluator
    from jointnas.space import Candidate
    from jointnas.evaluation.trainer import train

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


def part_optimizers(space, arch, repeats: int = 10) -> None:
    from jointnas.evaluation.optim import param_groups

    model = space.family.build(arch, num_classes=10, in_channels=1, input_size=56).to(memory_format=torch.channels_last)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    print(f"{sum(p.numel() for p in params) / 1e6:.2f} M parameters in {len(params)} tensors\n")
    print("| optimizer | per-tensor loop ms | foreach ms | fused ms |")
    print("|---|---|---|---|")
    kinds = {"AdamW": lambda g, **k: torch.optim.AdamW(g, lr=1e-3, **k),
             "Adam": lambda g, **k: torch.optim.Adam(g, lr=1e-3, **k),
             "SGD (Nesterov)": lambda g, **k: torch.optim.SGD(g, lr=1e-3, momentum=0.9, nesterov=True, **k),
             "RMSprop": lambda g, **k: torch.optim.RMSprop(g, lr=1e-3, alpha=0.9, eps=0.0316, momentum=0.9, **k)}
    for name, make in kinds.items():
        cells = []
        for options in ({"foreach": False}, {"foreach": True}, {"fused": True}):
            try:
                opt = make(param_groups(model, 1e-4), **options)
            except TypeError:
                cells.append("no such form")
                continue
            opt.step()  # state allocated outside the timing
            cells.append(f"{_best_ms(opt.step, repeats):.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def part_eval_batch(space, arch, rounds: int = 3) -> None:
    import resource

    from jointnas.evaluation.train import TrainEvaluator
    from jointnas.evaluation.batches import make_batches
    from jointnas.evaluation.trainer import evaluate, init_weights, recalibrate_bn

    task, dev = TrainEvaluator("digits").task(0), torch.device("cpu")
    model = init_weights(space.family.build(arch, num_classes=10, in_channels=1, input_size=56))
    model = model.to(memory_format=torch.channels_last)
    times = {256: [], 64: []}
    faults = {256: [], 64: []}
    for _ in range(rounds):
        for batch in times:
            calibration = make_batches(task.train.head(512), task, 56, dev, batch, False, 0)
            val = make_batches(task.val, task, 56, dev, batch, False, 0)
            before, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            recalibrate_bn(model, calibration, dev)
            evaluate(model, val, dev)
            times[batch].append(time.perf_counter() - t0)
            faults[batch].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print("| evaluation batch | recalibration + validation s (median) | minor page faults (median) |")
    print("|---|---|---|")
    for batch in times:
        print(f"| {batch} | {statistics.median(times[batch]):.2f} | {statistics.median(faults[batch]):.0f} |")


def part_threads(space, arch, args) -> None:
    import subprocess
    import sys

    x = torch.randn(args.batch, 1, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    model = space.family.build(arch, num_classes=10, in_channels=1, input_size=args.size)
    model = model.to(memory_format=torch.channels_last)
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}\n")
    print("| beside | 1 thread steps/s | 2 threads steps/s | 2 vs 1 |")
    print("|---|---|---|---|")
    for beside in ("nothing", "one busy process"):
        busy = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if beside != "nothing" else None)
        try:
            rates = {1: [], 2: []}
            for _ in range(args.rounds):
                for threads in rates:
                    torch.set_num_threads(threads)
                    rates[threads].append(steps_per_s(model, x, y, args.steps, SGD))
        finally:
            torch.set_num_threads(1)
            if busy is not None:
                busy.kill()
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        print(f"| {beside} | {one:.2f} | {two:.2f} | {two / one:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_args(ap)
    ap.add_argument("--rounds", type=int, default=3, help="alternating measurements per model")
    ap.add_argument("--result-models", type=int, default=2, help="models of part 3 (the first ones)")
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3], choices=range(1, 7),
                    help="which parts to run (4-6 measure what was left alone)")
    args = ap.parse_args()
    space, archs = models(args)
    name, arch = archs[0]
    if 1 in args.parts:
        first = space.family.build(arch, num_classes=10, in_channels=1, input_size=args.size)
        print(f"Part 1: training time of {name}'s 1x1 convs (forward + backward, best of 5):\n")
        part_layers(layer_shapes(first, args.size), args.batch, repeats=5)
    if 2 in args.parts:
        print("\nPart 2: whole model, training steps/s with AdamW (median of alternating rounds):\n")
        ratios = whole_models(space, archs, args, [
            ("before", lambda m: as_plain(m, PointwiseConv2d), lambda p: torch.optim.AdamW(p, lr=1e-3, fused=False)),
            ("pointwise", None, lambda p: torch.optim.AdamW(p, lr=1e-3, fused=False)),
            ("+ fused AdamW", None, lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True))])
        print(f"\ngeometric mean speed-up {statistics.geometric_mean(ratios):.2f}x")
    if 3 in args.parts:
        print("\nPart 3: digits, 2 epochs of a 12-epoch schedule (space default recipe), median of 2:\n")
        part_result_stage(space, archs[:args.result_models], repeats=2)
    if 4 in args.parts:
        print(f"\nPart 4: one optimizer step of {name} (best of 10):\n")
        part_optimizers(space, arch)
    if 5 in args.parts:
        print(f"\nPart 5: {name}'s BN recalibration and validation on digits by evaluation batch:\n")
        part_eval_batch(space, arch)
    if 6 in args.parts:
        print(f"\nPart 6: {name}'s training steps/s (SGD) by thread count (median of alternating rounds):\n")
        part_threads(space, arch, args)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
