"""AutoTrain benchmark on Fashion-MNIST: the recipe jointnas finds for a fixed torchvision model
vs the recipe Optuna's TPE finds with the same number of trained recipes and epochs vs
torchvision's reference recipe for that model, each retrained with several seeds and scored on
the test split; then FBNetV3's claim that recipes are model-specific (two models' searched
recipes swapped).

    python scripts/bench_autotrain.py --out bench/autotrain            # the BENCHMARKS.md sizing
    python scripts/bench_autotrain.py --out /tmp/b --trials 6 --batch 3 --train-subset 256 --epochs 1 --seeds 1

Everything is resumable: searches live in run directories / an Optuna SQLite file under
--out, and every retraining is one line of results.jsonl, so a second start only does what
is missing. Optuna is needed for the TPE arm only (``pip install optuna``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# torchvision's reference recipes (references/classification, README "Training" section), in this
# trainer's terms: the optimizer, momentum and weight decay as given; the learning rate scaled
# linearly from the reference's total batch (8 GPUs x per-GPU batch) to the per-GPU batch used
# here; the schedule is this trainer's cosine over the benchmark's epochs (the references use step
# decay over 90 / 600 epochs); augmentations it does not have (AutoAugment, random erasing) are off.
REFERENCE = {
    # --model resnet18 with the script's defaults: SGD momentum 0.9 (no Nesterov), lr 0.1 at batch
    # 8 x 32 = 256, weight decay 1e-4, 90 epochs, lr x0.1 every 30.
    "resnet18": dict(optimizer="sgd_plain", lr=0.1 * 32 / 256, momentum=0.9, weight_decay=1e-4, batch_size=32,
                     cutout=0, grad_clip=0.0, label_smoothing=0.0, mixup_alpha=0.0, ema=False, warmup_epochs=0),
    # MobileNetV3: RMSprop (alpha 0.9, eps 0.0316, momentum 0.9, as this trainer's rmsprop), lr 0.064 at
    # batch 8 x 128 = 1024, weight decay 1e-5, 600 epochs, lr x0.973 every 2, AutoAugment, random erase 0.2.
    "mobilenet_v3_small": dict(optimizer="rmsprop", lr=0.064 * 128 / 1024, momentum=0.9, weight_decay=1e-5,
                               batch_size=128, cutout=0, grad_clip=0.0, label_smoothing=0.0, mixup_alpha=0.0,
                               ema=False, warmup_epochs=0),
    # MobileNetV2: SGD momentum 0.9, lr 0.045 at batch 8 x 32 = 256, weight decay 4e-5, 300 epochs.
    "mobilenet_v2": dict(optimizer="sgd_plain", lr=0.045 * 32 / 256, momentum=0.9, weight_decay=4e-5, batch_size=32,
                         cutout=0, grad_clip=0.0, label_smoothing=0.0, mixup_alpha=0.0, ema=False, warmup_epochs=0),
}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "autotrain")
    p.add_argument("--models", default="mobilenet_v3_small,resnet18",
                   help="first: the model of the jointnas/TPE/reference comparison; the first two: the swap")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--train-subset", type=int, default=500)
    p.add_argument("--val-subset", type=int, default=500, help="validation images scored after each epoch")
    p.add_argument("--test-subset", type=int, default=2000,
                   help="retrainings are scored on the first N images of the test split (None: all 10000)")
    p.add_argument("--epochs", type=int, default=2, help="every training (search and retraining) runs this many")
    p.add_argument("--resolution", type=int, default=112,
                   help="deploy-side resolution; Fashion-MNIST trains at 56 * this / 224 px (112 -> 28 px)")
    p.add_argument("--trials", type=int, default=6, help="recipes trained by each search")
    p.add_argument("--batch", type=int, default=3, help="jointnas coarse batch (trials / batch iterations)")
    p.add_argument("--pool", type=int, default=1024)
    p.add_argument("--surrogate", default=None,
                   help="jointnas's surrogate, mlp or forest (default: autotrain's; the 48-recipe run of BENCHMARKS.md "
                   "used mlp)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--part", choices=("a", "b", "all"), default="all",
                   help="a: the first model's searches and retrainings; b: the second model's search; all: "
                   "whatever is missing, then the swap and the tables (run a and b at once on two cores)")
    return p.parse_args(argv)


def space_for(model: str, args):
    from jointnas.autotrain import fixed_arch_space
    from jointnas.catalog import load_space
    from jointnas.families.torchvision import TorchvisionFamily

    base = load_space("autotrain")
    return fixed_arch_space(base, TorchvisionFamily(deploy=base.family.deploy),
                            {"model": model, "resolution": args.resolution}, epochs=args.epochs)


def evaluator_for(args):
    from jointnas.evaluation.train import TrainEvaluator

    class SubsetEvaluator(TrainEvaluator):
        """Scores on the first --val-subset validation images (every epoch of every trial is evaluated)."""

        def task(self, seed: int = 0):
            return super().task(seed).shrink(val=args.val_subset)

    return SubsetEvaluator(args.data, train_subset=args.train_subset, device="cpu")


def task_for(args, seed: int):
    from jointnas.evaluation.data import load_task

    return load_task(args.data, seed=seed).shrink(train=args.train_subset, val=args.val_subset,
                                                  test=args.test_subset)


# --------------------------------------------------------------------------- the searches
def found(kind: str, model: str, args, search) -> dict:
    """The recipe a search found, saved under --out so that a second start does not search again."""
    path = args.out / f"found-{kind}-{model}.json"
    if path.exists():
        return json.loads(path.read_text())["recipe"]
    start = time.time()
    recipe, info = search(model, args)
    path.write_text(json.dumps({"recipe": recipe, "seconds": time.time() - start, **info}, indent=1) + "\n")
    return recipe


def fine_pick(model: str, args) -> dict:
    """The fine stage's own pick in the jointnas search (autotrain's answer only when the predictor ranks well)."""
    return json.loads((args.out / f"found-jointnas-{model}.json").read_text())["fine_pick"]


def jointnas_recipe(model: str, args):
    from jointnas.autotrain import autotrain, default_config
    from jointnas.execution.serial import SerialExecutor

    config = default_config(pool=args.pool, seed=args.seed, batch=args.batch, iterations=args.trials // args.batch,
                            epoch_cap=args.epochs, rank_threshold=1.0,
                            **({"surrogate": args.surrogate} if args.surrogate else {}))
    t = time.time()
    result = autotrain(args.out / f"jointnas-{model}", space_for(model, args), evaluator_for(args), config,
                       executor=SerialExecutor, epochs=args.epochs, seeds=0,  # this script retrains every answer itself
                       log=lambda line: print(f"[{model}] {line}", flush=True))
    print(f"[{model}] jointnas search {time.time() - t:.0f} s: predicted {result.predicted:.3f} "
          f"+- {result.predicted_std:.3f}", flush=True)
    return dict(result.candidate.recipe), {"chosen_by": result.chosen_by, "fine_pick": result.fine["pick"],
                                            "predicted": result.predicted, "predicted_std": result.predicted_std,
                                            "best_measured": result.best_measured,
                                            "predictor_eval": result.coarse.get("predictor_eval")}


def tpe_recipe(model: str, args):
    import optuna

    from jointnas.evaluation.base import TrialRequest
    from jointnas.space import Candidate

    space, evaluator = space_for(model, args), evaluator_for(args)

    def suggest(trial):
        out = {}
        for name, d in space.recipe.items():
            if d.kind == "categorical":
                out[name] = trial.suggest_categorical(name, list(d.choices))
            elif d.kind == "bool":
                out[name] = trial.suggest_categorical(name, [False, True])
            elif d.kind == "int":
                out[name] = trial.suggest_int(name, d.low, d.high, step=d.step)
            else:
                out[name] = trial.suggest_float(name, d.low, d.high, log=d.log)
        return out

    def objective(trial):
        recipe = suggest(trial)
        r = evaluator.evaluate(Candidate({}, recipe), space, TrialRequest(args.epochs, args.seed))
        trial.set_user_attr("status", r.status)
        return r.final_score if r.final_score is not None else evaluator.diverged_score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    # the same number of space-filling trials before modelling as jointnas's first batch
    sampler = optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=args.batch)
    study = optuna.create_study(study_name=f"tpe-{model}", storage=f"sqlite:///{args.out / f'tpe-{model}.db'}",
                                sampler=sampler, direction="maximize", load_if_exists=True)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    t = time.time()
    study.optimize(objective, n_trials=max(0, args.trials - len(done)))
    print(f"[{model}] TPE search {time.time() - t:.0f} s: best val {study.best_value:.3f}", flush=True)
    return suggest(optuna.trial.FixedTrial(study.best_params)), {"best_val": study.best_value}


# --------------------------------------------------------------------------- retraining
class Results:
    """results.jsonl: one line per retraining, read back so that nothing is trained twice."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def get(self, key: dict):
        """A retraining of the same recipe with the same seed, whatever it was labelled (CPU runs repeat)."""
        for r in self.rows:
            if all(r.get(k) == v for k, v in key.items() if k != "label"):
                return r
        return None

    def add(self, row: dict) -> None:
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())


def retrain(model: str, label: str, recipe: dict, args) -> list:
    from jointnas.space import Candidate
    from jointnas.evaluation.trainer import train

    space = space_for(model, args)
    results = Results(args.out / f"results-{model}.jsonl")
    recipe = {k: v for k, v in recipe.items() if k in space.recipe}
    accs = []
    for seed in range(args.seeds):
        key = {"model": model, "label": label, "seed": seed, "recipe": recipe}
        row = results.get(key)
        if row is None:
            task = task_for(args, seed)
            r = train(Candidate({}, recipe), task, epochs=args.epochs, seed=seed, space=space, device="cpu", test=True)
            row = dict(key, status=r.status, val_acc=r.final_acc, test_acc=r.test_acc, wall_time=r.wall_time)
            results.add(row)
            print(f"[{model}] {label} seed {seed}: test {row['test_acc']}  ({r.wall_time:.0f} s)", flush=True)
        accs.append(row["test_acc"] if row["test_acc"] is not None else 0.0)
    return accs


def mean_std(xs) -> str:
    return f"{100 * statistics.mean(xs):.2f} +- {100 * (statistics.stdev(xs) if len(xs) > 1 else 0.0):.2f}"


def cpu_minutes() -> float:
    t = os.times()
    return (t.user + t.system + t.children_user + t.children_system) / 60


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(1)
    models = args.models.split(",")
    if models[0] not in REFERENCE:
        raise SystemExit(f"no reference recipe for {models[0]}; known: {', '.join(REFERENCE)}")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    a, b = models[0], (models[1] if len(models) > 1 else None)
    recipes, table, swap = {}, {}, {}
    if args.part in ("a", "all"):
        recipes[a] = {"jointnas": found("jointnas", a, args, jointnas_recipe),
                      "jointnas fine stage's pick": fine_pick(a, args),
                      "tpe": found("tpe", a, args, tpe_recipe),
                      "torchvision reference": dict(REFERENCE[a])}
        table = {name: retrain(a, name, r, args) for name, r in recipes[a].items()}
        if b is not None:
            swap[(b, "other")] = retrain(b, f"jointnas for {a}", recipes[a]["jointnas"], args)
    if b is not None and args.part in ("b", "all"):
        recipes[b] = {"jointnas": found("jointnas", b, args, jointnas_recipe)}
        swap[(b, "own")] = retrain(b, "jointnas", recipes[b]["jointnas"], args)
        swap[(a, "other")] = retrain(a, f"jointnas for {b}", recipes[b]["jointnas"], args)
    spent = {"wall_min": (time.time() - start) / 60, "cpu_min": cpu_minutes()}
    print(f"part {args.part}: {spent['wall_min']:.1f} min wall, {spent['cpu_min']:.1f} CPU-min", flush=True)
    if args.part != "all":
        (args.out / f"spent-{args.part}.json").write_text(json.dumps(spent) + "\n")
        return 0
    px = space_for(a, args).family.input_size({}, task_for(args, 0))
    print(f"\n{args.data}, {args.train_subset} training images at {px} px, {args.epochs} epochs, {args.trials} "
          f"recipes per search, {args.seeds} seeds; accuracy % on {args.test_subset or 'all'} test images, "
          f"mean +- std\n")
    print(f"| recipe for {a} | test accuracy |\n| --- | --- |")
    for name, accs in table.items():
        print(f"| {name} | {mean_std(accs)} |")
    if b is not None:
        swap[(a, "own")] = table["jointnas"]
        print("\n| model | own jointnas recipe | the other model's | change (points) |\n| --- | --- | --- | --- |")
        for m in (a, b):
            own, other = swap[(m, "own")], swap[(m, "other")]
            print(f"| {m} | {mean_std(own)} | {mean_std(other)} | "
                  f"{100 * (statistics.mean(other) - statistics.mean(own)):+.2f} |")
    parts = [json.loads(p.read_text()) for p in sorted(args.out.glob("spent-*.json"))]
    if parts:
        shown = ", ".join(f"{x['wall_min']:.1f} min wall / {x['cpu_min']:.1f} CPU-min" for x in parts)
        print(f"\nparts run separately: {shown}")
    (args.out / "recipes.json").write_text(json.dumps(recipes, indent=1, default=str) + "\n")
    print(f"\nthis process: {(time.time() - start) / 60:.1f} min wall, {cpu_minutes():.1f} CPU-min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
