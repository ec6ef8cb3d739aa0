"""AutoTrain (FBNetV3, section 4.3): the best training recipe for an architecture one already
has, found with the joint search's machinery held to the recipe.

:func:`fixed_arch_space` turns a space's recipe part into a space for one fixed architecture
(the arch part empty, the ``fixed`` family building that arch) or for a choice among a few
torchvision models. :func:`autotrain` runs the coarse stage on it (Sobol pool of recipes,
a diverse first batch trained to the full schedule, predictor-chosen batches after it) and
then the fine stage (the genetic search scored by the predictor), and returns the recipe: the
fine stage's pick when the predictor ranks held-out trained recipes well enough
(:data:`MIN_PREDICTOR_TAU`), else the best recipe the coarse stage trained.

Proxies (FLOPs, params) are the same for every candidate of a fixed arch, so the predictor's
proxy pretraining has nothing to learn and is skipped; the predictor is fitted on the recipe
features of the trained candidates alone (:data:`PROXIES_NOTE`).
"""
from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import yaml

from .budget import Budget
from .catalog import load_surrogate, save_recipe, space_from_dict
from .coarse.ranking import ranked_in
from .coarse.search import CoarseConfig, CoarseSearch
from .errors import UsageError
from .fine.problem import SearchSettings
from .fine.search import fine_search
from .io import atomic_write_text
from .store import RunStore

# The fine stage's pick is an extrapolation of the predictor; it is taken only when the predictor
# ranked the trained recipes it had not seen (k-fold, out of fold) at least this well. Below it,
# the best recipe actually trained is the answer (BENCHMARKS.md, "AutoTrain": with 6 trained
# recipes the fine stage chose the corners of the ranges and lost 10 points to it).
MIN_PREDICTOR_TAU = 0.3
# What ranks recipes in autotrain unless the config says otherwise: on recipe features alone (the
# proxies are constant) the random forest ranked held-out trained recipes better than the MLP
# ensemble (BENCHMARKS.md, "AutoTrain": out-of-fold Kendall tau on 48 recorded recipes per search).
SURROGATE = "forest"
PROXIES_NOTE = ("FLOPs/params are the same for every recipe of a fixed arch, so the predictor skips proxy "
                "pretraining and learns from the recipe features alone")


@dataclass
class AutoTrainResult:
    recipe: dict                      # the full recipe, held-fixed values included (epochs when fixed)
    chosen_by: str                    # "fine search" or "best trained", and why
    candidate: object                 # the Candidate of the searched space
    predicted: float                  # the predictor's mean for it
    predicted_std: float
    best_measured: Optional[dict]     # the coarse stage's best trained candidate (recipe, score)
    coarse: dict                      # CoarseSearch.summary()
    fine: dict                        # fine-search facts (generations, stop reason, scored)
    files: dict = field(default_factory=dict)   # what was written: space, candidate, recipe
    command: str = ""

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "chosen_by": self.chosen_by, "candidate": self.candidate.to_dict(),
                "predicted": self.predicted,
                "predicted_std": self.predicted_std, "best_measured": self.best_measured, "fine": self.fine,
                "files": self.files, "command": self.command}


def fixed_arch_space(base, arch_family, arch: Optional[dict] = None, models: Sequence[str] = (),
                     epochs: Optional[int] = None, name: Optional[str] = None):
    """A space with ``base``'s recipe part and the arch held fixed.

    ``arch`` (a dict of ``arch_family``'s values) fixes one architecture; ``models`` (several
    torchvision names) makes the arch a categorical choice among them instead. ``epochs``
    holds the schedule length fixed: the ``epochs`` dimension is dropped, and every recipe is
    trained for that many epochs.
    """
    recipe = {k: v for k, v in base.to_dict()["recipe"].items() if not (epochs is not None and k == "epochs")}
    if arch is not None:
        family = {"name": "fixed", "family": arch_family.to_dict(), "arch": dict(arch)}
        arch_dims = {}
        label = name or _label(arch)
    else:
        family = arch_family.to_dict()
        family.pop("model", None)
        arch_dims = {"model": {"type": "categorical", "choices": list(models)}}
        label = name or "+".join(models)
    doc = {"name": f"autotrain-{label}", "description": f"AutoTrain: the recipe of {label}",
           "family": family, "arch": arch_dims, "recipe": recipe}
    return space_from_dict(doc, f"<autotrain {label}>")


def _label(arch: dict) -> str:
    if "model" in arch:
        return str(arch["model"]) + (f"@{arch['resolution']}" if "resolution" in arch else "")
    return "arch"


def default_config(**settings):
    """The coarse settings of an autotrain run: :class:`CoarseConfig` with :data:`SURROGATE`
    unless ``settings`` name another ``surrogate``."""
    return CoarseConfig(**{"surrogate": SURROGATE, **settings})


def autotrain(run_dir, space, evaluator, config=None, *, fine_settings=None, executor=None, progress=None,
              epochs: Optional[int] = None, log=print) -> AutoTrainResult:
    """Coarse then fine search of ``space``'s recipe; writes ``<run_dir>/autotrain/`` (space.yaml,
    candidate.json, recipe.yaml) and returns the recipe. ``config``: the coarse settings (default:
    :func:`default_config`); ``epochs``: the schedule length held fixed by the space (written
    into the recipe for humans)."""
    run_dir = Path(run_dir)
    config = config if config is not None else default_config()
    with warnings.catch_warnings():  # an empty arch part gives the predictor a zero-width input layer
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        if RunStore.is_run(run_dir):
            search = CoarseSearch.open(run_dir, evaluator, executor=executor, progress=progress)
        else:
            search = CoarseSearch.create(run_dir, space, evaluator, config, executor=executor, progress=progress)
        with search:
            if search.space.arch_width == 0:
                log(f"autotrain: {PROXIES_NOTE}")
            coarse = search.run()
            space = search.space
            predictor = load_surrogate(search.final_predictor, space)
            seeds = _measured_seeds(search)
    settings = fine_settings or SearchSettings(population=64, generations=60, patience=10, risk=1.0,
                                               init_best=8, seed=config.seed)
    unbounded = Budget(max_flops=sys.maxsize)  # the arch is given: no budget to meet
    found = fine_search(predictor, space, unbounded, seeds=[c for c, _ in seeds], settings=settings)
    log(f"fine: {found.generations} generation(s), {found.scored} recipes scored by the predictor "
        f"(score = mean - {settings.risk:g} x spread; {found.stop_reason})")
    best = found.top[0]
    best_measured = ({"recipe": dict(seeds[0][0].recipe), "arch": dict(seeds[0][0].arch), "score": seeds[0][1]}
                     if seeds else None)
    candidate, chosen_by = choose(best.candidate, seeds[0][0] if seeds else None, coarse.get("predictor_eval"))
    log(f"autotrain: the recipe is the {chosen_by}")
    recipe = dict(candidate.recipe)
    if epochs is not None:
        recipe["epochs"] = int(epochs)
    mean, std = predictor.predict([candidate])
    fine = {"generations": found.generations, "stop_reason": found.stop_reason, "scored": found.scored,
            "risk": settings.risk, "pick": dict(best.candidate.recipe), "predicted": float(best.mean)}
    result = AutoTrainResult(recipe, chosen_by, candidate, float(mean[0]), float(std[0]), best_measured, coarse,
                             fine)
    result.files = write_outputs(run_dir / "autotrain", space, result)
    return result


def choose(fine_pick, best_trained, predictor_eval: Optional[list]):
    """(candidate, why): the fine search's pick when the last predictor's out-of-fold Kendall tau
    reached :data:`MIN_PREDICTOR_TAU`, else the best trained candidate."""
    tau = (predictor_eval or [{}])[-1].get("kendall_tau")
    if best_trained is None:
        return fine_pick, "fine search's pick (nothing was trained to compare with)"
    if tau is not None and tau >= MIN_PREDICTOR_TAU:
        return fine_pick, f"fine search's pick (the predictor's held-out Kendall tau is {tau:.2f})"
    why = "not measurable (too few trained recipes)" if tau is None else f"only {tau:.2f}"
    return best_trained, (f"best trained recipe: the predictor's held-out Kendall tau is {why} "
                          f"(< {MIN_PREDICTOR_TAU}), so its fine-search pick is not trusted")


def _measured_seeds(search) -> List[tuple]:
    """(candidate, score) of the run's trained candidates, best first (:mod:`jointnas.coarse.ranking`)."""
    return [(t.candidate, s) for t, s in ranked_in(search.store)]


def write_outputs(folder: Path, space, result: AutoTrainResult) -> dict:
    """space.yaml (the searched space), candidate.json (what `jointnas train` reads) and recipe.yaml (a
    recipe file, which `jointnas train --recipe` takes)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"space": folder / "space.yaml", "candidate": folder / "candidate.json", "recipe": folder / "recipe.yaml"}
    atomic_write_text(files["space"], yaml.safe_dump(space.to_dict(), sort_keys=False))
    cand = result.candidate
    cand = type(cand)(dict(cand.arch), dict(cand.recipe), space=str(files["space"]),
                      meta={"predicted_acc": result.predicted, "predicted_std": result.predicted_std})
    atomic_write_text(files["candidate"], json.dumps(cand.to_dict(), indent=1) + "\n")
    save_recipe(files["recipe"], result.recipe, space, name=space.name, spaces=[str(files["space"])],
                source=f"jointnas autotrain, run {folder.parent}",
                description=f"the recipe autotrain found for {space.name}: the {result.chosen_by.split(':')[0]}")
    return {k: str(v) for k, v in files.items()}


def train_command(result: AutoTrainResult, data: str, epochs: Optional[int] = None,
                  train_subset: Optional[int] = None) -> str:
    """The ``jointnas train`` line that trains the found recipe (on the full training split)."""
    parts = ["jointnas train", f"--space {result.files['space']}", f"--candidate {result.files['candidate']}",
             f"--data {data}"]
    if epochs is not None:
        parts.append(f"--epochs {epochs}")
    if train_subset:
        parts.append(f"--max-train {train_subset}")
    return " ".join(parts) + " --test"


def check_arch_names(names: Sequence[str], models: Sequence[str], presets: Sequence[str]) -> None:
    """UsageError naming the valid choices unless every name is a torchvision model or a preset,
    and presets are not mixed with others."""
    bad = [n for n in names if n not in models and n not in presets]
    if bad or not names:
        raise UsageError(f"unknown arch {', '.join(map(repr, bad)) or repr('')}; valid: FBNetV3 presets "
                         f"{', '.join(presets)}, or torchvision models {', '.join(models)} "
                         "(several models comma-separated)")
    if any(n in presets for n in names) and len(names) > 1:
        raise UsageError(f"{', '.join(names)}: a preset is one fixed arch; give one preset, or several "
                         "torchvision models")
