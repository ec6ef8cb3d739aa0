"""``jointnas coarse``: the coarse stage (pool, proxies, predictor, iterative training), resumable."""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path

from ..budget import format_flops, parse_flops, parse_params
from ..coarse.config import AT_ONCE_EXPLORE, TRAINING_BATCH, TRAINING_EXPLORE, CoarseConfig, evaluator_defaults
from ..errors import UsageError
from ..execution.base import ExecutorSettings
from ..io import FLOPS_NOTE, check_writable_dir
from ..shipped import folder
from ..surrogates.prior import PriorPairsError, check_prior_pairs
from . import fraction, in_range, int_at_least, non_negative, positive

# The run-defining settings and their defaults, as flags see them. The space, data set and
# surrogate names are defaults of the command line only; the library takes objects.
DEFAULTS = dict({k: v for k, v in CoarseConfig().to_dict().items()
                 if k not in ("space", "evaluator", "evaluator_options", "diverged_score", "score_bounds",
                              "fidelities", "final", "baseline", "prior_pairs")},
                space="fbnetv3", data="digits", data_root=None, train_subset=None, objective=None)


# Ten times FBNetV3's 20000: sampling and costing it takes about a minute on one core; far more
# is a typo that would run for minutes before the first trial.
MAX_POOL = 200_000
_pool_size = in_range(int, 1, MAX_POOL, f"a whole number from 1 to {MAX_POOL}")


def register(sub):
    d = DEFAULTS
    p = sub.add_parser(
        "coarse", help="coarse search: train predictor-chosen candidates iteratively (resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="FBNetV3's constrained iterative optimisation. Samples a Sobol pool, drops candidates over "
        "the budget, gives the predictor their FLOPs/params, trains a diverse first batch to the full "
        "schedule and calibrates an early-stop epoch (the first whose Kendall tau-b between accuracy at that "
        "epoch and final accuracy reaches --rank-threshold) and a cheaper training fidelity, then trains "
        "predictor-chosen batches to that epoch, refitting the predictor after each. The winner is then trained "
        "again at full fidelity and scored on the test split beside the space's default preset. Everything "
        "lives in the run directory; run the same command with --run DIR to continue an interrupted run.",
        epilog="Defaults are sized for a 2-core laptop (about 7 minutes of search on digits, see BENCHMARKS.md). "
        "--workers, --device, --executor, --max-retries, a higher --iterations and --prior-pairs may change when "
        "continuing a run (--threads stays the run's, so its numbers do not change); other settings are the run's. One driver at a time: a second one "
        "on a run in progress exits with code 2. Paper scale "
        "(FBNetV3's AutoTrain: batch 48, 4 iterations, full schedules) on GPUs:\n"
        "  jointnas coarse --pool 20000 --batch 48 --iterations 4 --epoch-cap 0 --workers 8")
    p.add_argument("--run", type=Path, metavar="DIR",
                   help="run directory: an existing run is continued; a new or empty directory starts one "
                   "(default: a new runs/coarse-<timestamp>)")
    p.add_argument("--space", help=f"space name or YAML path (default: {d['space']})")
    p.add_argument("--objective", metavar="MODULE:FUNCTION",
                   help="score candidates with your own Python function FUNCTION(candidate, report) -> float "
                   "(higher is better; call report(epoch, score) after each epoch for early-stop calibration) "
                   "instead of the built-in trainer; MODULE is imported from the current directory or PYTHONPATH")
    p.add_argument("--evaluator", metavar="SPEC",
                   help="what a trial measures, as a spec: train:DATA (the built-in trainer, as --data DATA), "
                   "tabular:TABLE/TASK (a recorded benchmark answering in milliseconds, e.g. tabular:nb201/cifar10 "
                   "with --space nb201, or tabular:hpobench-mlp/vehicle with --space hpobench-mlp; pip install "
                   "'jointnas[bench]'), or MODULE:FUNCTION (as --objective)")
    p.add_argument("--data", help=f"dataset: digits, fashion-mnist, cifar10 or imagefolder:DIR (default: {d['data']})")
    p.add_argument("--data-root", help="where fashion-mnist / cifar10 files are (default: data/cache)")
    p.add_argument("--train-subset", type=int_at_least(16), metavar="N",
                   help="train every candidate on the first N (shuffled) training images only, for quick looks; "
                   "validation uses the whole validation split (default: all training images)")
    p.add_argument("--pool", type=_pool_size, metavar="N",
                   help=f"Sobol pool size before the budget filter, at most {MAX_POOL} (default: {d['pool']})")
    p.add_argument("--seed", type=int_at_least(0), help=f"seed of pool, batch choice, training, predictor "
                   f"(default: {d['seed']})")
    p.add_argument("--budget", metavar="FLOPS",
                   help=f"drop candidates above this many FLOPs: {FLOPS_NOTE} (the space's deploy section: "
                   "3 channels, 1000 classes, at the candidate's resolution), e.g. 600MFLOPs, 0.6GFLOPs, 6e8, "
                   "or none for no limit (default: the space's budget, 600MFLOPs in fbnetv3; else no limit)")
    p.add_argument("--max-params", metavar="N", help="drop candidates with more parameters (deployable model), "
                   "e.g. 8M (default: no limit)")
    p.add_argument("--batch", type=int_at_least(3), metavar="N",
                   help=f"candidates trained per iteration (default: {TRAINING_BATCH}, or 1 with an evaluator that "
                   "answers at once, a recorded table; paper: 48)")
    p.add_argument("--first-batch", type=int_at_least(3), metavar="N",
                   help="candidates of the first (calibration) batch (default: --batch). With a warm start a "
                   "smaller one is cheaper, but the held-out tau then rests on fewer, more alike trials")
    p.add_argument("--iterations", type=int_at_least(1), metavar="N",
                   help=f"iterations, the first being the calibration batch (default: {d['iterations']}; "
                   "paper: 4). Raise it on a finished run to continue it.")
    p.add_argument("--epoch-cap", type=int_at_least(0), metavar="E",
                   help=f"train at most E epochs of each recipe's schedule (fbnetv3 recipes ask for 2..12); the "
                   "learning-rate schedule keeps the recipe's length, so a capped candidate stops before its "
                   f"schedule ends. 0 = no cap, the full schedules (default: {d['epoch_cap']}, to fit a CPU)")
    p.add_argument("--rank-threshold", type=fraction, metavar="TAU",
                   help=f"Kendall tau-b the early-stop epoch must reach (default: {d['rank_threshold']})")
    p.add_argument("--explore", type=non_negative, metavar="BETA",
                   help=f"choose by predicted mean + BETA * ensemble std (default: {TRAINING_EXPLORE:g}, or "
                   f"{AT_ONCE_EXPLORE:g} with an evaluator that answers at once)")
    p.add_argument("--ensemble", type=int_at_least(1), metavar="N",
                   help=f"predictor ensemble members (default: {d['ensemble']})")
    p.add_argument("--surrogate", metavar="NAME", help=f"what ranks untried candidates: {_names('SURROGATES')} "
                   f"(default: {d['surrogate']}: trees on the candidate's encoding and log FLOPs/params, which "
                   "ranked digits trials best; mlp = FBNetV3's MLP ensemble, its encoder pretrained on FLOPs/params)")
    p.add_argument("--policy", metavar="NAME", help=f"how each next batch is chosen from the surrogate: "
                   f"{_names('POLICIES')} (default: {d['policy']} = predicted mean + --explore x spread; ei = "
                   "expected improvement; thompson = one draw from the surrogate's spread)")
    p.add_argument("--executor", metavar="NAME", default="local",
                   help=f"where trials run: {_names('EXECUTORS')} (default: local = worker processes; serial = "
                   "one at a time in this process; ray = Ray actors, pip install 'jointnas[ray]')")
    p.add_argument("--workers", type=int_at_least(1), metavar="N",
                   help="candidates trained in parallel processes: one GPU each when several exist, one torch "
                   "thread each on a CPU (default: the number of GPUs, or 2 on a CPU with >= 2 cores); "
                   "with --executor ray, trials at once (default: as many as the cluster's CPUs and GPUs hold)")
    p.add_argument("--threads", type=int_at_least(1), metavar="N",
                   help="torch CPU threads per trial, fixed when the run is created: a trial's numbers depend on "
                   "it, so a resume with other --workers keeps it and gives the same numbers (default: 1, which "
                   "holds up on a shared machine)")
    p.add_argument("--max-retries", type=int_at_least(0), metavar="N",
                   help="times a trial whose worker process (or Ray worker or node) died runs again before it is "
                   "recorded failed (default: 2)")
    p.add_argument("--retry-failed", action="store_true", help="when continuing a run, queue its failed trials "
                   "again (surrogates already fitted are kept; the next fit uses them)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto = cuda if "
                   "there is one, else cpu); Ray trials' device follows --gpus-per-trial")
    ray = p.add_argument_group("Ray (--executor ray)")
    ray.add_argument("--ray-address", metavar="ADDR", help="join an existing Ray cluster: auto (the one started "
                     "here with 'ray start --head') or ray://HOST:PORT (default: start a private local instance)")
    ray.add_argument("--cpus-per-trial", type=positive, metavar="X", help="CPUs each Ray trial asks for; "
                     "its torch threads are the whole part of it (default: 1)")
    ray.add_argument("--gpus-per-trial", type=non_negative, metavar="X", help="GPUs each Ray trial asks for; "
                     "a fraction such as 0.25 lets 4 trials share a GPU (default: 0 = train on CPU)")
    p.add_argument("--prior-pairs", metavar="FILE", help="JSONL of pairs trained before on this space and data, "
                   "always added to the predictor's training set (a warm start), read whole before any training; "
                   "'none' for none; a resume may change it (default: the shipped "
                   f"{SHIPPED_PAIRS} for --space fbnetv3 --data digits, else none; on a resume: the run's)")
    p.add_argument("--baseline", metavar="PRESET", help="the space's preset trained (default recipe, same epochs) "
                   "beside the winner at the end (default: the space's first, FBNetV3_A in fbnetv3)")
    p.add_argument("--no-result", action="store_true", help="end without training the winner again at full "
                   "fidelity (no test score, no weights kept, no baseline)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs and summary only)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


SHIPPED_PAIRS = "fbnetv3_digits_pairs.jsonl"  # in the shipped data folder (jointnas.shipped)


def _prior_pairs(args, space, requested: dict):
    """A new run's earlier pairs: the flag's (checked), else the shipped ones for their space and task
    (a refusal when this install lacks them: a run without its warm start is a different run)."""
    if args.prior_pairs:
        return _checked_pairs(args.prior_pairs, space)
    if (space.name == "fbnetv3" and requested.get("data", DEFAULTS["data"]) == "digits" and "objective" not in
            requested and "train_subset" not in requested):
        path = folder("data") / SHIPPED_PAIRS
        if not path.is_file():
            raise UsageError(f"the shipped warm-start pairs {path} are missing from this jointnas install; "
                             "reinstall jointnas, or pass --prior-pairs none to search without them")
        return str(path)
    return None


def _checked_pairs(text, space, run=None):
    """Earlier pairs read whole and checked: --prior-pairs TEXT (None for none, a file as an absolute path
    that a resume elsewhere finds), or with ``run`` the run's own (a resume without the flag)."""
    if text is None or (run is None and text == "none"):
        return None
    path = text if run else str(Path(text).absolute())
    try:
        check_prior_pairs(path, space)
    except PriorPairsError as e:
        raise UsageError(f"run {run}: {e.problem}; continue it with --prior-pairs FILE (other pairs) or "
                         "--prior-pairs none" if run else f"--prior-pairs {text}: {e}") from None
    return path


def _budget_line(space, budget, asked: bool) -> str:
    """Which FLOPs budget a new run searches under, and where it came from."""
    if budget is None:
        return ("budget: none, every pool candidate may be trained" + (" (--budget none)" if asked else "")
                if space.family is not None else "budget: none (the space has no model family to count FLOPs)")
    source = ("--budget" if asked else
              f"the {space.name} space's default, from {space.source} (--budget FLOPS or --budget none to change it)")
    return f"budget: <= {format_flops(budget)} per candidate, {source}; FLOPs: {FLOPS_NOTE}"


def _names(registry: str) -> str:
    from .. import catalog

    return ", ".join(sorted(getattr(catalog, registry)))


def _requested(args) -> dict:
    """The run-defining flags the user actually passed, parsed and validated (no files touched)."""
    out = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    if "budget" in out:
        out["budget"] = None if str(out["budget"]).strip().lower() == "none" else parse_flops(out["budget"])
    if "max_params" in out:
        out["max_params"] = parse_params(out["max_params"])
    if out.get("epoch_cap") == 0:
        out["epoch_cap"] = None
    if "data_root" in out:
        out["data_root"] = str(out["data_root"])
    spec = getattr(args, "evaluator", None)
    if spec is not None:
        if "objective" in out or "data" in out:
            raise UsageError("--evaluator says what a trial measures, as do --objective and --data: give one of them")
        kind, _, arg = spec.partition(":")
        if not arg:
            raise UsageError(f"--evaluator {spec!r}: expected KIND:ARGUMENT, e.g. train:digits, "
                             "tabular:nb201/cifar10 or MODULE:FUNCTION")
        if kind == "train":
            out["data"] = arg
        else:
            out["objective"] = spec  # any other spec: an evaluator of its own (a table, a Python objective)
    if "policy" in out:
        from .. import catalog

        catalog.resolve(catalog.POLICIES, out["policy"], "policy")
    if "objective" in out:
        clash = [f"--{k.replace('_', '-')}" for k in ("data", "data_root", "train_subset") if k in out]
        if clash:
            raise UsageError(f"{', '.join(clash)} set(s) up the built-in trainer; --objective scores candidates "
                             "with your function instead: drop one of them")
    return out


def _evaluator(requested: dict, device: str):
    from .. import catalog
    from ..evaluation.function import FunctionEvaluator
    from ..evaluation.train import TrainEvaluator

    if "objective" in requested:
        spec = requested["objective"]
        if spec.split(":", 1)[0] in catalog.EVALUATORS:  # a registered kind, e.g. tabular:nb201/cifar10
            return catalog.make_evaluator(spec)
        return FunctionEvaluator.from_spec(spec)
    return TrainEvaluator(requested.get("data", DEFAULTS["data"]), data_root=requested.get("data_root"),
                          train_subset=requested.get("train_subset"), device=device)


def _conflict_text(c) -> str:
    """A setting a resume may not change (:func:`jointnas.coarse.resume.conflicts`), as its flag."""
    if c.setting == "space":
        return f"--space {c.asked} (run searched space {c.stored!r})"
    return f"--{c.setting.replace('_', '-')} {c.asked!r} (run has {c.stored!r})"


def _check_device(device: str) -> None:
    import torch

    from ..evaluation.trainer import resolve_device

    dev = resolve_device(device)  # UsageError for an unknown or absent device
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA device(s)")


def _default_workers(device: str) -> int:
    import torch

    from ..execution.local import usable_cpus

    if device in ("auto", "cuda") and torch.cuda.device_count() > 1:
        return torch.cuda.device_count()
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return 2 if usable_cpus() >= 2 else 1
    return 1


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stderr_log(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _check_iterations(iterations: int, batch: int, pool: int) -> None:
    """Each iteration trains a new batch of pool candidates: more than the pool holds is a typo."""
    most = max(1, -(-pool // batch))
    if iterations > most:
        raise UsageError(f"--iterations {iterations}: a pool of {pool} candidates has room for at most {most} "
                         f"batches of {batch}; lower --iterations or raise --pool")


RAY_FLAGS = ("ray_address", "cpus_per_trial", "gpus_per_trial")


def _executor(args, threads=lambda: None):
    """A function making the chosen executor, its settings checked now (before any file is written);
    ``threads()`` gives the run's threads per trial when the executor is made."""
    from .. import catalog

    cls = catalog.resolve(catalog.EXECUTORS, args.executor, "executor")
    if args.executor == "ray":
        return _ray_executor(args, cls, threads)
    given = [f"--{k.replace('_', '-')}" for k in RAY_FLAGS if getattr(args, k, None) is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: for Ray trials only; add --executor ray")
    retries = getattr(args, "max_retries", None)
    settings = ExecutorSettings(workers=args.workers or _default_workers(args.device), device=args.device,
                                max_retries=2 if retries is None else retries)
    return lambda: cls.from_settings(dataclasses.replace(settings, threads=threads()))


def _ray_executor(args, cls, threads):
    from ..execution.ray import import_ray

    try:
        import_ray()
    except UsageError as e:
        raise UsageError(f"--executor ray: {e}") from None
    if args.device != "auto":
        raise UsageError(f"--device {args.device} applies to local trials only; Ray trials train on CPU, or on "
                         "the GPU share that --gpus-per-trial asks for")
    # getattr: `jointnas autotrain` shares this factory without the Ray flags (Ray's defaults there)
    ray = {k: getattr(args, k, None) for k in RAY_FLAGS}
    settings = ExecutorSettings(workers=getattr(args, "workers", None), address=ray["ray_address"],
                                cpus_per_trial=ray["cpus_per_trial"] or 1.0, gpus_per_trial=ray["gpus_per_trial"] or 0.0,
                                max_retries=2 if getattr(args, "max_retries", None) is None else args.max_retries)
    return lambda: cls.from_settings(dataclasses.replace(settings, threads=threads()))


def run(args):
    from ..catalog import SURROGATES, load_space, resolve
    from ..coarse.resume import change_prior_pairs, conflicts, found_line
    from ..coarse.search import CoarseSearch
    from ..coarse.summary import format_summary
    from ..progress import Progress
    from ..store import RunStore

    requested = _requested(args)
    _check_device(args.device)
    # Unknown names, a missing Ray: fail before any work. The run's thread count is read when the
    # executor is made (`search` exists by then, before any trial).
    make_executor = _executor(args, lambda: search.config.threads)
    if "surrogate" in requested:
        resolve(SURROGATES, requested["surrogate"], "surrogate")
    # With --json, stdout carries the JSON summary only: log lines go to stderr.
    progress = Progress(bars=not args.no_progress, log=_stderr_log if args.json else None)
    if args.run is not None and RunStore.is_run(args.run):
        evaluator = _evaluator(requested, args.device) if "objective" in requested else None
        search = CoarseSearch.open(args.run, evaluator, executor=make_executor, progress=progress)
        if evaluator is None and search.config.evaluator and search.config.evaluator.startswith("train:"):
            search.evaluator.device = args.device
        try:
            refused = "; ".join(map(_conflict_text, conflicts(search.loop, requested)))
            if refused:
                raise UsageError(f"{args.run} is a run made with other settings: {refused}; drop those flags to "
                                 "continue it, or pass a new --run directory")
            iterations = requested.get("iterations", search.config.iterations)
            if iterations > search.config.iterations:
                _check_iterations(iterations, search.config.batch, search.config.pool)
            pairs = (_checked_pairs(search.config.prior_pairs, search.space, run=args.run) if args.prior_pairs is None
                     else _checked_pairs(args.prior_pairs, search.space))
            try:  # refuses a lower count before it stores anything: every check precedes the first change
                search.loop.extend(iterations)
            except UsageError as e:
                raise UsageError(f"--iterations {iterations}: {e}") from None
            changed = change_prior_pairs(search.loop, pairs)  # stored; None when unchanged
        except BaseException:
            search.close()
            raise
        print(f"continuing run {args.run}: {found_line(search.store.counts())}", file=sys.stderr)
        if changed:
            print(changed, file=sys.stderr)
        if search.config.threads is None and args.executor == "local":
            print(f"note: {args.run} does not record its threads per trial (made by an older jointnas); these "
                  "trials train with one torch thread each, and a trial's numbers depend on that",
                  file=sys.stderr)
        if args.retry_failed:
            search.retry_failed()
    else:
        space = load_space(requested.get("space", DEFAULTS["space"]))
        if space.family is None and (requested.get("budget") is not None or "max_params" in requested):
            raise UsageError(f"space {space.name} has no model family, so it has no FLOPs or params: drop "
                             "--budget / --max-params")
        evaluator = _evaluator(requested, args.device)
        settings = {k: v for k, v in {**DEFAULTS, **requested}.items() if k in CoarseConfig.__dataclass_fields__
                    and k != "space"}
        if settings.get("threads") is None and args.executor == "local":
            from ..execution.local import DEFAULT_THREADS  # not at import: --help loads no executor
            settings["threads"] = DEFAULT_THREADS
        elif settings.get("threads") is None and args.executor == "ray":  # stored, as a local run's are
            from ..execution.ray import trial_threads  # ray's module: only for a Ray run
            settings["threads"] = trial_threads(args.cpus_per_trial or 1.0)
        run_dir = args.run or Path("runs") / time.strftime("coarse-%Y%m%d-%H%M%S")
        try:
            check_writable_dir(run_dir, "--run")
        except UsageError as e:
            raise UsageError(f"cannot make a run directory: {e}") from None
        _check_iterations(settings["iterations"], settings.get("batch") or evaluator_defaults(evaluator)[0],
                          settings["pool"])
        settings["prior_pairs"] = _prior_pairs(args, space, requested)
        settings["final"] = False if args.no_result else None   # None: where the evaluator retrains
        if args.baseline is not None and args.baseline not in space.presets:
            raise UsageError(f"--baseline {args.baseline!r}: space {space.name} has "
                             + (f"the presets {', '.join(space.presets)}" if space.presets else "no presets"))
        settings["baseline"] = args.baseline  # None: the space's first preset
        if "budget" not in requested:
            settings["budget"] = space.budget
        search = CoarseSearch.create(run_dir, space, evaluator, CoarseConfig(**settings), executor=make_executor,
                                     progress=progress)
        print(f"new run {run_dir} (continue it after an interruption with: jointnas coarse --run {run_dir})",
              file=sys.stderr)
        print(_budget_line(space, settings["budget"], "budget" in requested), file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops as cleanly as Ctrl-C
    try:
        summary = search.run()
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted; finished trials are saved. Continue with: jointnas coarse --run "
                         f"{search.store.run_dir}\n")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        search.close()
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0
