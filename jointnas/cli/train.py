"""``jointnas train``: train one preset or candidate on a dataset and print its learning curve."""
from __future__ import annotations

import json
from pathlib import Path

from ..catalog import load_space
from ..data import TASK_NAMES, load_task
from ..errors import UsageError
from ..space import Candidate


def register(sub):
    p = sub.add_parser("train", help="train one preset or candidate and print its learning curve",
                       description="Train one (arch, recipe) candidate on a dataset: per-epoch validation accuracy "
                       "and loss, then the final accuracy. The arch is built with the dataset's channels and "
                       "classes at a resolution scaled from the arch's (see README, 'Train one candidate').")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", help="a preset of the space, e.g. FBNetV3_A (with the space's default recipe)")
    g.add_argument("--candidate", type=Path, help="a candidate JSON file (arch + recipe)")
    p.add_argument("--space", default="fbnetv3", help="space name or YAML path (default: fbnetv3)")
    p.add_argument("--data", default="digits", help=f"dataset: {', '.join(TASK_NAMES)} (default: digits)")
    p.add_argument("--data-root", type=Path, help="where datasets are read from / downloaded to (default: data/cache)")
    p.add_argument("--download", action="store_true",
                   help="download fashion-mnist / cifar10 with torchvision if missing")
    p.add_argument("--epochs", type=int, help="stop after this many epochs of the recipe's schedule "
                   "(default: the recipe's epochs)")
    p.add_argument("--max-train", type=int, metavar="N", help="train on the first N training images only (quick runs)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split and of training (default: 0)")
    p.add_argument("--test", action="store_true", help="also report the final weights' accuracy on the test split")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def load_candidate(args, space) -> tuple:
    """(candidate, label) from --preset or --candidate."""
    if args.preset is not None:
        return space.preset(args.preset), args.preset
    try:
        cand = Candidate.from_json(args.candidate.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read candidate {args.candidate}: {e}") from None
    space.validate(cand.arch, cand.recipe)
    return cand, str(args.candidate)


def run(args):
    from ..trainer import resolve_device, train

    space = load_space(args.space)
    cand, label = load_candidate(args, space)
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    if args.max_train is not None and args.max_train < 1:
        raise UsageError(f"--max-train must be at least 1, got {args.max_train}")
    resolve_device(args.device)  # a bad device is a usage error before any data is loaded
    task = load_task(args.data, args.data_root, seed=args.seed, download=args.download)
    if args.max_train:
        task = task.shrink(train=args.max_train)
    if not args.json:
        print(f"{label} on {task.describe()}", flush=True)
    # A candidate exported by `jointnas fine` carries the predictor's estimate: measure the test
    # accuracy too, so that the two can be compared (the honest check of the predictor).
    predicted = cand.meta.get("predicted_acc")
    result = train(cand, task, epochs=args.epochs, device=args.device, seed=args.seed, space=space,
                   progress=True, test=args.test or predicted is not None)
    if args.json:
        extra = {} if predicted is None else {"predicted_acc": predicted,
                                               "predicted_std": cand.meta.get("predicted_std")}
        print(json.dumps(dict(result.to_dict(), candidate=cand.to_dict(), data=args.data, **extra)))
    else:
        print_result(result, cand, args.epochs)
        if predicted is not None:
            print(predicted_vs_measured(cand.meta, result))
    return 0 if result.status == "done" else 1


def predicted_vs_measured(meta: dict, result) -> str:
    std = meta.get("predicted_std")
    line = f"predicted acc {meta['predicted_acc']:.4f}" + (f" ± {std:.4f}" if std is not None else "")
    if result.test_acc is None:
        return line + " (jointnas fine); no test accuracy measured (training did not finish)"
    return (line + f" (jointnas fine) vs measured test_acc {result.test_acc:.4f}: "
            f"{result.test_acc - meta['predicted_acc']:+.4f}")


def print_result(result, cand, epochs=None) -> None:
    schedule = cand.recipe.get("epochs", epochs)  # a recipe without epochs trains the --epochs schedule
    for row in result.curve:
        print(f"epoch {row['epoch']:3d}/{schedule}  train_loss {row['train_loss']:.4f}  "
              f"val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}")
    speed = f", {result.images_per_s:.0f} train images/s" if result.images_per_s else ""
    print(f"status {result.status}: {result.epochs_run} epoch(s) at {result.resolution} px on {result.device} "
          f"in {result.wall_time:.1f} s{speed}")
    if result.status == "done":
        print(f"final val_acc {result.final_acc:.4f}")
    else:
        print(f"error: {result.error}")
    if result.test_acc is not None:
        print(f"test_acc {result.test_acc:.4f}")
