"""``jointnas oneshot``: a differentiable one-shot search (DARTS first or second order, PC-DARTS) on
the NAS-Bench-201 cell or the DARTS cell space, as a resumable run directory."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from ..errors import UsageError
from ..io import check_writable_dir
from . import int_at_least

SPACES = ("nb201", "darts")
STRATEGIES = ("darts", "darts-2nd", "pc-darts")
REMEDIES = ("none", "early-stop", "skip-cap")
# flag -> setting of OneShotSettings that it overrides
SETTING_FLAGS = {"epochs": "epochs", "batch_size": "batch_size", "channels": "channels", "cells": "cells",
                 "train_examples": "train_examples", "remedy": "remedy", "max_skips": "max_skips"}
# flag -> field of the run's config
RUN_FLAGS = ("space", "strategy", "data", "data_root", "seed", "resolution", "train_epochs", "recipe")
RUN_DEFAULTS = {"space": "nb201", "strategy": "darts", "data": "digits", "seed": 0, "train_epochs": 0}


def register(sub):
    p = sub.add_parser(
        "oneshot", help="one-shot search: DARTS / PC-DARTS supernet on the nb201 or darts cell (resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Differentiable architecture search: every edge of the cell is a softmax-weighted mix of "
        "all ops; the supernet's weights train on one half of the training split and the architecture weights "
        "(alpha) on the other. The derived cell (argmax op per edge on nb201; two strongest inputs per node on "
        "darts) is exported as a candidate that 'jointnas train --candidate' trains. The run directory is "
        "checkpointed after every epoch; the same command with --run DIR continues it after Ctrl-C or a kill.",
        epilog="Defaults are a quick CPU preset (small supernet, a subset of the data, few epochs; printed at "
        "the start). --reference takes the published settings (DARTS: 50 epochs, batch 64, C=16; PC-DARTS: "
        "batch 256, K=4, 15 warm-up epochs), meant for a GPU:\n"
        "  jointnas oneshot --space darts --strategy pc-darts --data cifar10 --reference --device cuda")
    p.add_argument("--run", type=Path, metavar="DIR", help="run directory: an existing one-shot run is continued; "
                   "a new or empty directory starts one (default: a new runs/oneshot-<timestamp>)")
    p.add_argument("--space", choices=SPACES, help="nb201 (NAS-Bench-201's 5 ops on 6 edges) or darts (the DARTS "
                   "CNN cell: 8 ops, normal and reduction cells) (default: nb201)")
    p.add_argument("--strategy", choices=STRATEGIES, help="darts (first order), darts-2nd (second order: "
                   "virtual step + finite-difference Hessian-vector product) or pc-darts (partial channels "
                   "K=4, edge normalisation) (default: darts)")
    p.add_argument("--data", help="dataset: digits, fashion-mnist, cifar10 or imagefolder:DIR (default: digits)")
    p.add_argument("--data-root", help="where fashion-mnist / cifar10 files are (default: data/cache)")
    p.add_argument("--download", action="store_true", help="download fashion-mnist / cifar10 with torchvision if "
                   "missing")
    p.add_argument("--seed", type=int_at_least(0), help="seed of the split, the supernet and the batch order "
                   "(default: 0)")
    p.add_argument("--reference", action="store_true", help="the published search settings instead of the quick "
                   "CPU preset")
    p.add_argument("--epochs", type=int_at_least(1), metavar="N", help="search epochs")
    p.add_argument("--batch-size", type=int_at_least(2), metavar="N", help="batch size of w and alpha steps")
    p.add_argument("--channels", type=int_at_least(1), metavar="C", help="supernet channels (C of the first stage)")
    p.add_argument("--cells", type=int_at_least(1), metavar="N",
                   help="supernet cells (nb201: per stage; darts: in total, at least 3)")
    p.add_argument("--train-examples", type=int_at_least(4), metavar="N", help="training images used, half for "
                   "w and half for alpha (default: the preset's; --reference: all)")
    p.add_argument("--remedy", choices=REMEDIES, help="collapse remedy: early-stop (stop once the derived cell "
                   "holds more than --max-skips skip connections) or skip-cap (derive at most --max-skips "
                   "skips) (default: none)")
    p.add_argument("--max-skips", type=int_at_least(0), metavar="N", help="skip connections the remedy allows "
                   "(default: 2)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other search setting "
                   "(e.g. --set w_lr=0.05, --set warmup_epochs=2); repeatable; see jointnas.oneshot.settings")
    p.add_argument("--resolution", type=int_at_least(8), metavar="PX", help="supernet input size (default: the "
                   "images' own when a multiple of 4 and >= 16, else 32)")
    p.add_argument("--train-epochs", type=int_at_least(0), metavar="N", help="after the search, train the derived "
                   "cell from scratch with its recipe's schedule set to N epochs, and report its test accuracy "
                   "(default: 0, no)")
    p.add_argument("--recipe", metavar="NAME|FILE", help="recipe of that training (default: the space's default "
                   "recipe; nb201: NAS-Bench-201's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto = cuda if there "
                   "is one, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the end record as JSON")
    p.set_defaults(func=run)


def _requested(args) -> dict:
    """(run-defining flags given, setting overrides given), parsed, nothing read or written."""
    run = {k: getattr(args, k) for k in RUN_FLAGS if getattr(args, k) is not None}
    settings = {SETTING_FLAGS[k]: getattr(args, k) for k in SETTING_FLAGS if getattr(args, k) is not None}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set w_lr=0.05")
        settings[key.strip()] = _value(text.strip())
    if args.reference:
        run["quick"] = False
    if "data" in run:
        from ..evaluation.data import check_task_name

        check_task_name(run["data"])
    return {"run": run, "settings": settings}


def _value(text: str):
    """A --set value: JSON when it parses (numbers, true/false, null, lists), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _settings(space: str, strategy: str, quick: bool, changes: dict):
    from ..oneshot.run import resolve_settings

    try:
        return resolve_settings(strategy, space, quick, changes)
    except TypeError as e:
        raise UsageError(f"--set: {e}") from None


def _device(name: str) -> str:
    from ..evaluation.trainer import resolve_device

    return str(resolve_device(name))  # UsageError for an unknown or absent device


def _task_loader(download: bool):
    from ..evaluation.data import load_task

    return lambda config: load_task(config.data, config.data_root, seed=config.seed, download=download)


def _conflicts(stored: dict, requested: dict) -> str:
    out = []
    for k, v in requested["run"].items():
        if stored.get(k, RUN_DEFAULTS.get(k)) != v:
            flag = "--reference" if k == "quick" else f"--{k.replace('_', '-')}"
            out.append(f"{flag} {v!r} (run has {stored.get(k)!r})" if k != "quick" else flag)
    for k, v in requested["settings"].items():
        if stored["settings"].get(k) != v:
            out.append(f"setting {k}={v!r} (run has {stored['settings'].get(k)!r})")
    return "; ".join(out)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args):
    from ..oneshot.outcome import check_recipe, finish, result_lines
    from ..oneshot.run import OneShotRun, OneShotRunConfig, default_search
    from ..progress import Progress
    from ..store import RunStore

    requested = _requested(args)
    device = _device(args.device)
    progress = Progress(bars=not args.no_progress,
                        log=(lambda line: print(line, file=sys.stderr, flush=True)) if args.json else None)
    if args.run is not None and RunStore.is_run(args.run):
        oneshot = OneShotRun.open(args.run, default_search, _task_loader(args.download), device, progress)
        refused = _conflicts(oneshot.config.to_dict(), requested)
        if refused:
            oneshot.close()
            raise UsageError(f"{args.run} is a run made with other settings: {refused}; drop those flags to "
                             "continue it, or pass a new --run directory")
        print(f"continuing one-shot run {args.run}: {len(oneshot.history())} of {oneshot.settings.epochs} epochs "
              "done", file=sys.stderr)
    else:
        given = requested["run"]
        config = OneShotRunConfig(**{k: given.get(k, RUN_DEFAULTS.get(k)) for k in RUN_FLAGS},
                                  quick=given.get("quick", True))
        settings = _settings(config.space, config.strategy, config.quick, requested["settings"])
        config.settings = settings.to_dict()
        check_recipe(config.recipe, config.space)
        run_dir = args.run or Path("runs") / time.strftime("oneshot-%Y%m%d-%H%M%S")
        try:
            check_writable_dir(run_dir, "--run")
            RunStore.check_new_dir(run_dir)
        except UsageError as e:
            raise UsageError(f"cannot make a run directory: {e}") from None
        task = _task_loader(args.download)(config)  # a missing dataset is refused before the run directory is made
        from ..oneshot.halves import Halves

        Halves.of(task, settings.batch_size, settings.train_examples)  # too few images: refused now
        oneshot = OneShotRun.create(run_dir, config, default_search, task, device, progress)
        print(f"new one-shot run {run_dir} (continue it after an interruption with: jointnas oneshot --run "
              f"{run_dir})", file=sys.stderr)
    print(oneshot.sizes_line(), file=sys.stderr, flush=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = oneshot.run(finish)
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted; the finished epochs are saved. Continue with: jointnas oneshot --run "
                         f"{oneshot.store.run_dir}\n")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        oneshot.close()
    if args.json:
        print(json.dumps(outcome.result, indent=2, sort_keys=True))
    else:
        for line in result_lines(oneshot.config, outcome.result):
            print(line)
        print(f"next: jointnas report {oneshot.store.run_dir}")
    return 0
