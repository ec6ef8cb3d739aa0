"""``jointnas autotrain``: the best training recipe for a fixed model (FBNetV3's AutoTrain), coarse
stage then fine stage, ending with the recipe as YAML and the command that trains it."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import yaml

from .. import catalog
from ..errors import UsageError
from ..evaluation.train import TrainEvaluator
from ..families.torchvision import TorchvisionFamily, classification_models
from ..fine.problem import SearchSettings
from ..io import check_writable_dir
from . import fraction, int_at_least, non_negative
from .coarse import _check_device, _executor, _interrupt

# Sized for 2 CPU cores (BENCHMARKS.md, "AutoTrain against its baseline"): every recipe trains the same
# 4 epochs, so a search trial measures the schedule the answer gets; 7 iterations of 6 give the predictor
# 42 trained recipes (with 30, its held-out tau moved by 0.3-0.5 from one iteration to the next).
DEFAULTS = dict(space="autotrain", data="digits", pool=1024, batch=6, iterations=7, epochs=4, epoch_cap=3, seed=0,
                population=64, generations=60, risk=1.0, seeds=1)


def register(sub):
    d = DEFAULTS
    p = sub.add_parser(
        "autotrain", help="search the training recipe of a fixed model (torchvision name or FBNetV3 preset)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="FBNetV3's AutoTrain: the joint search held to the recipe. The arch is fixed to --arch (one "
        "torchvision classification model, torchvision.models.get_model(name, weights=None) adapted to the data's "
        "channels and classes, or an FBNetV3 preset), or is a choice among several comma-separated torchvision "
        "models. The coarse stage trains a diverse batch of recipes, calibrates the early-stop epoch and trains "
        "predictor-chosen batches; the fine stage evolves recipes scored by the predictor (mean - --risk x "
        "ensemble spread). FLOPs/params are the same for every recipe of a fixed arch, so the predictor skips "
        "proxy pretraining and learns from the recipe features alone. The answer is the fine stage's pick when "
        "the predictor ranks held-out trained recipes with Kendall tau >= 0.3, else the best trained recipe. "
        "The baseline (the space's default recipe, or --baseline-recipe) is in the first batch, and at the end "
        "the answer and the baseline are trained alike (same epochs, same data, --seeds seeds) and scored on the "
        "test split; when the answer does not beat the baseline on validation, the run says so and returns the "
        "baseline. Prints the recipe as YAML with the comparison (logs go to stderr) and the `jointnas train` "
        "command that trains it.",
        epilog="Example: jointnas autotrain --arch resnet18 --data fashion-mnist --epochs 10 --seeds 3")
    p.add_argument("--arch", required=True, metavar="NAME[,NAME...]",
                   help="torchvision model (resnet18, mobilenet_v3_small, ...), several comma-separated, or an "
                   "FBNetV3 preset (FBNetV3_A ... FBNetV3_G)")
    p.add_argument("--space", help=f"space whose recipe part is searched (default: {d['space']})")
    p.add_argument("--data", help=f"dataset: digits, fashion-mnist, cifar10 or imagefolder:DIR (default: {d['data']})")
    p.add_argument("--data-root", help="where fashion-mnist / cifar10 files are (default: data/cache)")
    p.add_argument("--train-subset", type=int_at_least(16), metavar="N",
                   help="train every recipe on the first N (shuffled) training images only (default: all)")
    p.add_argument("--epochs", type=int_at_least(0), metavar="E",
                   help=f"hold the schedule at E epochs for every recipe, the baseline included (default: "
                   f"{d['epochs']}); 0 searches the recipe's epochs (capped by --epoch-cap during the search, the "
                   "baseline trained for the answer's)")
    p.add_argument("--resolution", type=int_at_least(8), metavar="PX",
                   help="torchvision models: the deployable model's input side (default 224); a data set trains "
                   "at its base resolution scaled by PX / 224 (fashion-mnist: 56 px at 224, 28 px at 112)")
    p.add_argument("--pool", type=int_at_least(8), metavar="N", help=f"Sobol pool of recipes (default: {d['pool']})")
    p.add_argument("--batch", type=int_at_least(3), metavar="N", help=f"recipes trained per iteration "
                   f"(default: {d['batch']})")
    p.add_argument("--iterations", type=int_at_least(1), metavar="N",
                   help=f"coarse iterations, the first being the calibration batch (default: {d['iterations']})")
    p.add_argument("--epoch-cap", type=int_at_least(0), metavar="E",
                   help=f"train at most E epochs of each recipe's schedule during the search; 0 = full schedules "
                   f"(default: {d['epoch_cap']}); used with --epochs 0 only")
    p.add_argument("--rank-threshold", type=fraction, metavar="TAU",
                   help="Kendall tau-b the early-stop epoch must reach (default: 0.9)")
    p.add_argument("--surrogate", metavar="NAME",
                   help="what ranks recipes: forest (random forest, the default: it ranked held-out recipes "
                   "better on recipe features alone) or mlp (the FBNetV3 MLP ensemble)")
    p.add_argument("--explore", type=non_negative, metavar="BETA",
                   help="coarse: choose recipes by predicted mean + BETA * ensemble std (default: 1)")
    p.add_argument("--population", type=int_at_least(4), metavar="N",
                   help=f"fine: population (default: {d['population']})")
    p.add_argument("--generations", type=int_at_least(0), metavar="N",
                   help=f"fine: at most N generations (default: {d['generations']})")
    p.add_argument("--risk", type=non_negative, metavar="L",
                   help=f"fine: score = predicted mean - L * ensemble spread (default: {d['risk']}: few trained "
                   "recipes make the predictor unsure away from them)")
    p.add_argument("--baseline-recipe", metavar="NAME|FILE",
                   help="the recipe the answer must beat: a shipped recipe's name (" + ", ".join(
                       catalog.available_recipes()) + ") or a recipe file (default: the space's default recipe); "
                   "trained for the same epochs on the same data, and in the first batch when it is a point of the "
                   "searched space")
    p.add_argument("--seeds", type=int_at_least(0), metavar="N",
                   help=f"train the answer and the baseline alike with N seeds each and score both on the test "
                   f"split (default: {d['seeds']}; 3 gives the difference's spread; 0 skips the comparison)")
    p.add_argument("--seed", type=int_at_least(0), help=f"seed of pool, training, predictor, fine search "
                   f"(default: {d['seed']})")
    p.add_argument("--run", type=Path, metavar="DIR",
                   help="run directory: an existing run is continued (default: a new runs/autotrain-<timestamp>)")
    p.add_argument("--workers", type=int_at_least(1), metavar="N",
                   help="recipes trained in parallel processes (default: as jointnas coarse)")
    p.add_argument("--executor", default="local", metavar="NAME", help="local (worker processes) or serial")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def resolve_arch(text: str, resolution=None):
    """``--arch`` -> (family, fixed arch or None, models): the one place its names become objects."""
    from ..autotrain import check_arch_names  # the coarse stage and run store: `jointnas fine` starts without them

    names = [n.strip() for n in str(text).split(",")]
    fbnet = catalog.load_space("fbnetv3")
    one_preset = len(names) == 1 and names[0] in fbnet.presets  # needs no torchvision
    check_arch_names(names, [] if one_preset else classification_models(), list(fbnet.presets))
    if names[0] in fbnet.presets:
        if resolution is not None:
            raise UsageError("--resolution is for torchvision models; an FBNetV3 preset has its own resolution")
        return fbnet.family, dict(fbnet.presets[names[0]]["arch"]), names
    if len(set(names)) != len(names):
        raise UsageError(f"--arch {text}: a model is named twice")
    family = TorchvisionFamily()
    if len(names) == 1:
        arch = {"model": names[0]}
        if resolution is not None:
            arch["resolution"] = int(resolution)
        return family, arch, names
    if resolution is not None:
        raise UsageError("--resolution fixes one model's input side; give one --arch model to use it")
    return family, None, names


def run(args):
    # the coarse stage and run store: the other commands (`jointnas fine`) start without them
    from ..autotrain import DEFAULT_BASELINE, autotrain, default_config, fixed_arch_space, train_command
    from ..coarse.search import Progress

    d = DEFAULTS
    family, arch, models = resolve_arch(args.arch, args.resolution)
    _check_device(args.device)
    catalog.resolve(catalog.EXECUTORS, args.executor, "executor")
    if args.surrogate is not None:
        catalog.resolve(catalog.SURROGATES, args.surrogate, "surrogate")
    base = catalog.load_space(args.space or d["space"])
    preset = models[0] if arch is not None and "model" not in arch else None
    epochs = (d["epochs"] if args.epochs is None else args.epochs) or None
    space = fixed_arch_space(base, family, arch=arch, models=models, epochs=epochs, name=preset)
    baseline, baseline_name = None, DEFAULT_BASELINE
    if args.baseline_recipe is not None:
        try:
            baseline = catalog.load_recipe(args.baseline_recipe, space)
        except UsageError as e:
            raise UsageError(f"--baseline-recipe {args.baseline_recipe}: {e}") from None
        baseline_name = f"recipe {args.baseline_recipe}"
    evaluator = TrainEvaluator(args.data or d["data"], data_root=args.data_root, train_subset=args.train_subset,
                               device=args.device)
    epoch_cap = epochs if epochs is not None else (d["epoch_cap"] if args.epoch_cap is None
                                                   else (args.epoch_cap or None))
    config = default_config(pool=args.pool or d["pool"], seed=args.seed if args.seed is not None else d["seed"],
                            batch=args.batch or d["batch"], iterations=args.iterations or d["iterations"],
                            epoch_cap=epoch_cap,
                            **{k: getattr(args, k) for k in ("rank_threshold", "explore", "surrogate")
                               if getattr(args, k) is not None})
    settings = SearchSettings(population=args.population or d["population"],
                              generations=args.generations if args.generations is not None else d["generations"],
                              patience=10, risk=args.risk if args.risk is not None else d["risk"],
                              init_best=8, top_k=3, seed=config.seed)
    run_dir = args.run or Path("runs") / time.strftime("autotrain-%Y%m%d-%H%M%S")
    check_writable_dir(run_dir, "--run")  # before the line that names it, and before any work
    # logs on stderr: stdout is the result alone (the recipe YAML, or --json), fit for a pipe
    progress = Progress(bars=not args.no_progress, log=_log)
    print(f"autotrain {space.name} on {evaluator.data}: run {run_dir} (continue it with --run {run_dir})",
          file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = autotrain(run_dir, space, evaluator, config, fine_settings=settings, executor=_executor(args),
                           progress=progress, epochs=epochs, baseline=baseline, baseline_name=baseline_name, seeds=d["seeds"] if args.seeds is None else args.seeds,
                           log=_log)
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted; finished trials are saved. Continue with the same command and --run {run_dir}\n")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    result.command = train_command(result, evaluator.data, epochs, args.train_subset)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, default=str))
        return 0
    print(format_result(result))
    return 0


def _log(line: str) -> None:
    from tqdm import tqdm  # tqdm: every command imports this module, few draw bars

    tqdm.write(line, file=sys.stderr)


def format_result(result) -> str:
    from ..report.autotrain import comparison_lines

    lines = [f"# recipe: the {result.chosen_by}"]
    if result.predicted is not None:
        lines.append(f"# predicted val accuracy {result.predicted:.3f} +- {result.predicted_std:.3f}")
    if result.best_measured is not None:
        lines.append(f"# best trained during the search: {result.best_measured['score']:.3f}")
    if result.comparison is not None:
        lines += [f"# {line}" for line in comparison_lines(result.comparison)]
    lines.append(yaml.safe_dump(result.recipe, sort_keys=False).rstrip())
    lines.append(f"# written to {result.files['recipe']} (a recipe file: 'jointnas train --recipe' takes it); "
                 "train it with:")
    lines.append(result.command)
    return "\n".join(lines)
