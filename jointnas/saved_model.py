"""A trained model on disk, one directory:

- ``weights.pt``     the evaluated weights (the EMA ones when the recipe has ``ema``) as a plain
  state dict of CPU tensors: ``torch.load(path, weights_only=True)`` reads it, no code runs;
- ``model.json``     how to build the network the weights fit (the space as a mapping, arch,
  classes, channels, training resolution), read by :func:`load_trained`;
- ``candidate.json`` the candidate (``jointnas train --candidate`` reads it);
- ``recipe.yaml``    its training recipe;
- ``curve.json``     the training result: per-epoch curve, status, test accuracy, device, and the
  data, seed and training subset it was trained with.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Tuple

import yaml

from .errors import UsageError
from .paths import check_writable_dir

WEIGHTS = "weights.pt"


def _write(path: Path, data) -> None:
    """Write via a temporary file, so that an interrupted save never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        import torch

        torch.save(data, tmp)
    os.replace(tmp, path)


def save_trained(out_dir, candidate, result, model, space, *, num_classes: int, in_channels: int,
                 training: Optional[dict] = None) -> Path:
    """Write ``model`` (trained from ``candidate`` of ``space``, giving ``result``) under ``out_dir``.

    ``training`` (data, seed, train subset...) goes into ``curve.json`` beside the result."""
    out_dir = check_writable_dir(out_dir, "save directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    # The space itself, not its name: the model rebuilds where the space's file is not at hand.
    build = {"space": space.to_dict(), "arch": candidate.arch, "num_classes": num_classes,
             "in_channels": in_channels, "input_size": result.resolution}
    _write(out_dir / WEIGHTS, state)
    _write(out_dir / "model.json", json.dumps(build, indent=2, sort_keys=True) + "\n")
    _write(out_dir / "candidate.json", json.dumps(candidate.to_dict(), indent=2, sort_keys=True) + "\n")
    _write(out_dir / "recipe.yaml", f"# training recipe of candidate {candidate.key()}\n"
           + yaml.safe_dump(dict(candidate.recipe), sort_keys=False))
    _write(out_dir / "curve.json", json.dumps(dict(result.to_dict(), training=training or {}), indent=2,
                                              sort_keys=True) + "\n")
    return out_dir


def build_untrained(build: dict, space=None):
    """The network described by a ``model.json`` record, with fresh weights, in eval mode."""
    from .catalog import load_space, space_from_dict

    space = load_space(space) if space is not None else space_from_dict(build["space"])
    return space.family.build(build["arch"], num_classes=build["num_classes"], in_channels=build["in_channels"],
                              input_size=build["input_size"]).eval()


def load_trained(path, space=None) -> Tuple["object", "object"]:
    """(model with the saved weights in eval mode, its :class:`Candidate`) from a directory that
    :func:`save_trained` wrote."""
    import torch

    from .space import Candidate

    path = Path(path)
    try:
        build = json.loads((path / "model.json").read_text())
        candidate = Candidate.from_json((path / "candidate.json").read_text())
        state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise UsageError(f"{path} is not a saved jointnas model ({type(e).__name__}: {e})") from None
    model = build_untrained(build, space)
    model.load_state_dict(state)
    return model, candidate


WINNER = "winner"


def keep_winner(search, threads: Optional[int] = 1) -> Optional[Path]:
    """Give a coarse run's best trial (:mod:`jointnas.ranking`) its weights: retrain it exactly as
    the run trained it (same evaluator data, seed and epochs) and save it in ``RUN/winner/``.
    Trials train in worker processes that keep no weights; one more training of one candidate
    is cheaper than keeping every trial's. ``threads`` torch threads (the workers' count by
    default, so that a CPU run repeats the trial's curve; ``curve.json`` says whether it did).
    None when the run's evaluator is not the built-in trainer or no trial finished."""
    import torch

    from .evaluators import TrainEvaluator
    from .ranking import best_trials
    from .trainer import train

    if not isinstance(search.evaluator, TrainEvaluator):
        return None
    calibration = search.calibration() or {}
    ranked = best_trials(search.store.trials(), calibration.get("chosen_epoch"), top=1)
    if not ranked:
        return None
    trial, _ = ranked[0]
    out = search.store.run_dir / WINNER
    try:
        if json.loads((out / "curve.json").read_text())["training"]["trial"] == trial.id:
            return out  # kept already (a run continued after it finished)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    evaluator, seed = search.evaluator, search.config.seed
    task = evaluator.task(seed)
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        result = train(trial.candidate, task, epochs=trial.epochs_run, device=evaluator.device, seed=seed,
                       space=search.space, keep_model=True)
    finally:
        torch.set_num_threads(previous)
    if result.status != "done":
        return None
    same = [round(e["val_acc"], 12) for e in result.curve] == [round(e.get("val_acc", e.get("score")), 12)
                                                               for e in trial.curve]
    training = {"trial": trial.id, "evaluator": evaluator.spec(), "train_subset": evaluator.train_subset,
                "seed": seed, "epochs": result.epochs_run, "same_curve_as_trial": same}
    return save_trained(out, trial.candidate, result, result.model, search.space, num_classes=task.num_classes,
                        in_channels=task.in_channels, training=training)
