"""``jointnas train``: train one preset or candidate on a dataset and print its learning curve."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..catalog import available_recipes, load_space, read_recipe
from ..coarse.target import Target, compare, format_check
from ..evaluation.data import TASK_NAMES, load_task
from ..errors import RecipeError, UsageError
from ..io import check_writable_dir
from ..evaluation.saved_model import save_trained
from ..space import Candidate
from . import int_at_least


def register(sub):
    p = sub.add_parser("train", help="train one preset or candidate and print its learning curve",
                       description="Train one (arch, recipe) candidate on a dataset: per-epoch validation accuracy "
                       "and loss, then the final accuracy. The arch is built with the dataset's channels and "
                       "classes at a resolution scaled from the arch's (see README, 'Train one candidate'). "
                       "A candidate exported by 'jointnas fine' carries a prediction and what it means (split, "
                       "epoch, fidelity): it is compared with the accuracy measured the same way, and the "
                       "full schedule's test accuracy is shown separately.")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", help="a preset of the space, e.g. FBNetV3_A (with the space's default recipe)")
    g.add_argument("--candidate", type=Path, help="a candidate JSON file (arch + recipe)")
    p.add_argument("--space", help="space name or YAML path (default: the candidate's space; fbnetv3 for --preset)")
    p.add_argument("--recipe", metavar="NAME|FILE", help="train the preset's or candidate's arch with this recipe "
                   f"instead of its own: a shipped recipe ({', '.join(available_recipes()) or 'none'}; see "
                   "'jointnas describe --recipes') or a recipe file, such as the recipe.yaml an autotrain run "
                   "writes; recipe dimensions the file leaves out take the space's default")
    p.add_argument("--data", help=f"dataset: {', '.join(TASK_NAMES)} (default: the one the candidate's "
                   "prediction refers to, else digits)")
    p.add_argument("--data-root", type=Path, help="where datasets are read from / downloaded to (default: data/cache)")
    p.add_argument("--download", action="store_true",
                   help="download fashion-mnist / cifar10 with torchvision if missing")
    p.add_argument("--epochs", type=int, help="stop after this many epochs of the recipe's schedule "
                   "(default: the recipe's epochs)")
    p.add_argument("--train-subset", type=int_at_least(1), metavar="N",
                   help="train on the first N (shuffled) training images only, for quick runs (default: the "
                   "candidate's prediction's subset, else all)")
    p.add_argument("--max-train", type=int_at_least(1), help=argparse.SUPPRESS)  # deprecated name
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--seed", type=int_at_least(0), help="seed of the train/val split and of training (default: "
                   "the candidate's prediction's seed, else 0)")
    p.add_argument("--test", action="store_true", help="also report the final weights' accuracy on the test split")
    p.add_argument("--save", type=Path, metavar="DIR", help="save the trained weights (a state dict that "
                   "torch.load(weights_only=True) reads), the candidate, its recipe and the curve in DIR")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def load_candidate(args) -> tuple:
    """(candidate, space, label) from --preset or --candidate (and --space)."""
    if args.preset is not None:
        space = load_space(args.space or "fbnetv3")
        return space.preset(args.preset), space, args.preset
    try:
        cand = Candidate.from_json(args.candidate.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read candidate {args.candidate}: {e}") from None
    space = load_space(args.space or cand.space or "fbnetv3")
    if cand.space and cand.space != space.name and not _names_space(cand.space, space):
        raise UsageError(f"candidate {args.candidate} belongs to space {cand.space!r}, not {space.name!r}; "
                         f"drop --space or pass that space's name or file")
    space.validate(cand.arch, cand.recipe)
    return cand, space, str(args.candidate)


def with_recipe(args, cand, space, label: str) -> tuple:
    """(the candidate's arch with the recipe of --recipe, label, epochs to train). A candidate's
    prediction was made for its own recipe, so it is dropped; the data, subset and seed it was made on
    stay the defaults. In a space that holds the schedule outside the recipe (no ``epochs``
    dimension), the file's epochs is the schedule unless --epochs gives one."""
    try:
        found = read_recipe(args.recipe)
        recipe = found.for_space(space)
    except RecipeError as e:
        raise UsageError(f"--recipe: {e}") from None
    epochs = found.epochs if "epochs" not in space.recipe and args.epochs is None else args.epochs
    meta = {"target": cand.meta["target"]} if cand.meta.get("target") else {}
    label = f"{label} with recipe {found.name}"
    return Candidate(dict(cand.arch), recipe, space=cand.space, meta=meta), label, epochs


def _names_space(name_or_path: str, space) -> bool:
    """Whether a candidate's ``space`` (a name or a file, as autotrain writes) is ``space`` itself."""
    try:
        return load_space(name_or_path).fingerprint() == space.fingerprint()
    except UsageError:
        return False


def run(args):
    from ..evaluation.trainer import resolve_device, train  # torch: the other commands start without it

    cand, space, label = load_candidate(args)
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    if args.recipe is not None:
        cand, label, args.epochs = with_recipe(args, cand, space, label)
    if args.max_train is not None:
        sys.stderr.write("jointnas train: --max-train is deprecated; use --train-subset\n")
        args.train_subset = args.train_subset or args.max_train
    target = Target.from_dict(cand.meta["target"]) if cand.meta.get("target") else None
    # The measurement defaults to the prediction's setting, so that the two compare like for like.
    data = args.data or (target.data if target else "digits")
    subset = args.train_subset or (target.train_subset if target and target.data == data else None)
    seed = args.seed if args.seed is not None else (target.seed if target else 0)
    measured_as = Target(data=data, train_subset=subset, seed=seed)
    if args.save is not None:
        check_writable_dir(args.save, "--save")
    resolve_device(args.device)  # a bad device is a usage error before any data is loaded
    task = load_task(measured_as.data, args.data_root, seed=measured_as.seed, download=args.download)
    if measured_as.train_subset:
        task = task.shrink(train=measured_as.train_subset)
    if not args.json:
        print(f"{label} on {task.describe()}", flush=True)
    predicted = cand.meta.get("predicted_acc")
    result = train(cand, task, epochs=args.epochs, device=args.device, seed=measured_as.seed, space=space,
                   progress=sys.stderr.isatty(), test=args.test or predicted is not None,
                   keep_model=args.save is not None)
    check = None if predicted is None else compare(cand.meta, result.curve, int(cand.recipe.get("epochs") or result.epochs_run or 1), measured_as)
    saved = None
    if args.save is not None and result.status == "done":
        training = {"data": measured_as.data, "seed": measured_as.seed, "train_subset": measured_as.train_subset,
                    "epochs": result.epochs_run}
        saved = save_trained(args.save, cand, result, result.model, space, num_classes=task.num_classes,
                             in_channels=task.in_channels, training=training)
    if args.json:
        extra = {} if check is None else {"honest_check": check}
        print(json.dumps(dict(result.to_dict(), candidate=cand.to_dict(), data=measured_as.data,
                              train_subset=measured_as.train_subset, seed=measured_as.seed,
                              saved=str(saved) if saved else None, **extra)))
    else:
        print_result(result, cand, args.epochs)
        if check is not None:
            print(format_check(check))
        if saved is not None:
            print(f"saved weights, candidate, recipe and curve in {saved}/")
        elif args.save is not None:
            print(f"nothing saved in {args.save}: training ended with status {result.status}")
    return 0 if result.status == "done" else 1


def print_result(result, cand, epochs=None) -> None:
    schedule = cand.recipe.get("epochs", epochs)  # a recipe without epochs trains the --epochs schedule
    for row in result.curve:
        print(f"epoch {row['epoch']:3d}/{schedule}  train_loss {row['train_loss']:.4f}  "
              f"val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}")
    speed = f", {result.images_per_s:.0f} train images/s" if result.images_per_s else ""
    print(f"status {result.status}: {result.epochs_run} epoch(s) at {result.resolution} px on {result.device} "
          f"in {result.wall_time:.1f} s{speed}")
    if result.status != "done":
        print(f"error: {result.error}")
        return
    how_far = ("full schedule" if result.epochs_run == schedule
               else f"stopped after {result.epochs_run} of the schedule's {schedule} epochs")
    test = f", test_acc {result.test_acc:.4f}" if result.test_acc is not None else ""
    print(f"{how_far}: final val_acc {result.final_acc:.4f}{test}")
