"""AutoTrain (FBNetV3, section 4.3): the best training recipe for an architecture one already
has, found with the joint search's machinery held to the recipe.

:func:`fixed_arch_space` turns a space's recipe part into a space for one fixed architecture
(the arch part empty, the ``fixed`` family building that arch) or for a choice among a few
torchvision models. :func:`autotrain` runs the coarse stage on it (Sobol pool of recipes,
a first batch of the baseline recipe and diverse ones trained to the full schedule, the early
stop and a cheaper fidelity calibrated on it, predictor-chosen batches after it) and then the
fine stage (the genetic search scored by the predictor). Its answer is the fine stage's pick
when the predictor ranks held-out trained recipes well enough (:data:`MIN_PREDICTOR_TAU`),
else the best recipe the coarse stage trained. :func:`compare` then trains the answer and the
baseline (the space's default recipe, or a named one) alike, with one or more seeds, scores
both on the test split, and the run returns the better of the two, saying so when it is the
baseline.

Proxies (FLOPs, params) are the same for every candidate of a fixed arch, so the predictor's
proxy pretraining has nothing to learn and is skipped; the predictor is fitted on the recipe
features of the trained candidates alone (:data:`PROXIES_NOTE`).
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import yaml

from .budget import Budget
from .catalog import load_surrogate, save_recipe, space_from_dict
from .coarse.loop import Task
from .coarse.ranking import ranked_in
from .coarse.search import CoarseConfig, CoarseSearch
from .errors import SpaceError, UsageError
from .evaluation.base import TrialRequest
from .fine.problem import SearchSettings
from .fine.search import fine_search
from .io import atomic_write_text
from .space import Candidate
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
DEFAULT_BASELINE = "the space's default recipe"
COMPARE_ID = -100   # task ids of the comparison's trainings: -100, -101, ... (not trials of the run)
PROXIES_NOTE = ("FLOPs/params are the same for every recipe of a fixed arch, so the predictor skips proxy "
                "pretraining and learns from the recipe features alone")


@dataclass
class AutoTrainResult:
    recipe: dict                      # the full recipe, held-fixed values included (epochs when fixed)
    chosen_by: str                    # "fine search" or "best trained", and why
    candidate: object                 # the Candidate of the searched space
    predicted: Optional[float]        # the predictor's mean for it (None: a baseline outside the space)
    predicted_std: Optional[float]
    best_measured: Optional[dict]     # the coarse stage's best trained candidate (recipe, score)
    coarse: dict                      # CoarseSearch.summary()
    fine: dict                        # fine-search facts (generations, stop reason, scored)
    comparison: Optional[dict] = None  # the search's answer and the baseline trained alike (:func:`compare`)
    files: dict = field(default_factory=dict)   # what was written: space, candidate, recipe, result
    command: str = ""

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "chosen_by": self.chosen_by, "candidate": self.candidate.to_dict(),
                "predicted": self.predicted,
                "predicted_std": self.predicted_std, "best_measured": self.best_measured, "fine": self.fine,
                "comparison": self.comparison, "files": self.files, "command": self.command}


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
    unless ``settings`` name another ``surrogate``. The coarse stage's own result stage (its
    winner retrained beside a preset) is off: autotrain's comparison (:func:`compare`) replaces it."""
    return CoarseConfig(**{"surrogate": SURROGATE, **settings, "final": False})


def baseline_candidate(space, recipe: Optional[dict] = None, arch: Optional[dict] = None) -> Candidate:
    """The recipe to beat as a candidate of ``space``: ``recipe`` (default: the space's default
    recipe), without ``epochs`` when the space holds the schedule fixed; ``arch``: the model it
    trains when the space still chooses one."""
    recipe = dict(recipe if recipe is not None else space.default_recipe())
    if "epochs" not in space.recipe:
        recipe.pop("epochs", None)
    return Candidate(dict(arch or {}), recipe, space=space.name)


def autotrain(run_dir, space, evaluator, config=None, *, fine_settings=None, executor=None, progress=None,
              epochs: Optional[int] = None, baseline: Optional[dict] = None, baseline_name: str = DEFAULT_BASELINE,
              seeds: int = 1, log=print) -> AutoTrainResult:
    """Coarse then fine search of ``space``'s recipe, then the answer and the baseline (``baseline``:
    a recipe, default the space's default recipe, named ``baseline_name``) trained alike with
    ``seeds`` seeds and scored on the test split (:func:`compare`); the better of the two is returned.
    Writes ``<run_dir>/autotrain/`` (space.yaml, candidate.json, recipe.yaml, result.json).
    ``config``: the coarse settings (default: :func:`default_config`); ``epochs``: the schedule
    length held fixed by the space (written into the recipe for humans)."""
    run_dir = Path(run_dir)
    config = config if config is not None else default_config()
    base = baseline_candidate(space, baseline)
    if space.arch_width == 0 and config.first_candidates is None and _in_space(space, base):
        # measured in the first batch: the best trained recipe is then never worse than it was measured
        config = dataclasses.replace(config, first_candidates=[{"arch": base.arch, "recipe": base.recipe}])
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
            seeds_found = _measured_seeds(search)
            settings = fine_settings or SearchSettings(population=64, generations=60, patience=10, risk=1.0,
                                                       init_best=8, seed=search.config.seed)
            unbounded = Budget(max_flops=sys.maxsize)  # the arch is given: no budget to meet
            found = fine_search(predictor, space, unbounded, seeds=[c for c, _ in seeds_found], settings=settings)
            log(f"fine: {found.generations} generation(s), {found.scored} recipes scored by the predictor "
                f"(score = mean - {settings.risk:g} x spread; {found.stop_reason})")
            best = found.top[0]
            top = seeds_found[0] if seeds_found else None
            best_measured = {"recipe": dict(top[0].recipe), "arch": dict(top[0].arch), "score": top[1]} if top else None
            candidate, chosen_by = choose(best.candidate, top[0] if top else None, coarse.get("predictor_eval"),
                                          best.score, top[1] if top else None)
            log(f"autotrain: the recipe is the {chosen_by}")
            base = baseline_candidate(space, baseline, candidate.arch)
            comparison = None
            if seeds > 0:
                comparison = compare(search, candidate, base, baseline_name, epochs, seeds, log)
                comparison["predictor_tau"] = _last_tau(coarse.get("predictor_eval"))
                search.store.save_result("autotrain", comparison)
                if comparison["returned"] == "baseline":
                    candidate, chosen_by = base, f"baseline ({baseline_name}): {comparison['verdict']}"
    recipe = dict(candidate.recipe)
    if epochs is not None:
        recipe["epochs"] = int(epochs)
    mean, std = predictor.predict([candidate]) if _in_space(space, candidate) else ([None], [None])
    fine = {"generations": found.generations, "stop_reason": found.stop_reason, "scored": found.scored,
            "risk": settings.risk, "pick": dict(best.candidate.recipe), "predicted": float(best.mean)}
    result = AutoTrainResult(recipe, chosen_by, candidate, _float(mean[0]), _float(std[0]), best_measured, coarse,
                             fine, comparison)
    result.files = write_outputs(run_dir / "autotrain", space, result)
    return result


def _float(v) -> Optional[float]:
    return None if v is None else float(v)


def _in_space(space, candidate) -> bool:
    try:
        space.validate(candidate.arch, candidate.recipe)
    except SpaceError:
        return False
    return True


def _last_tau(predictor_eval: Optional[list]) -> Optional[float]:
    return (predictor_eval or [{}])[-1].get("kendall_tau")


def choose(fine_pick, best_trained, predictor_eval: Optional[list], expected: Optional[float] = None,
           measured: Optional[float] = None):
    """(candidate, why): the fine search's pick when the last predictor's out-of-fold Kendall tau
    reached :data:`MIN_PREDICTOR_TAU` and the predictor expects the pick (``expected``: its fine-search
    score, mean - risk x spread) above the best trained candidate's ``measured`` score; else the
    best trained candidate."""
    tau = _last_tau(predictor_eval)
    if best_trained is None:
        return fine_pick, "fine search's pick (nothing was trained to compare with)"
    if tau is not None and tau >= MIN_PREDICTOR_TAU:
        if expected is not None and measured is not None and expected <= measured:
            # a pick the predictor itself does not expect to beat a measured recipe (BENCHMARKS.md,
            # "AutoTrain against its baseline": such a pick lost 3 points on digits)
            return best_trained, (f"best trained recipe: the predictor expects its fine-search pick at "
                                  f"{expected:.3f} (mean - risk x spread), not above the best trained recipe's "
                                  f"measured {measured:.3f}")
        return fine_pick, f"fine search's pick (the predictor's held-out Kendall tau is {tau:.2f})"
    why = "not measurable (too few trained recipes)" if tau is None else f"only {tau:.2f}"
    return best_trained, (f"best trained recipe: the predictor's held-out Kendall tau is {why} "
                          f"(< {MIN_PREDICTOR_TAU}), so its fine-search pick is not trusted")


def compare(search, answer: Candidate, baseline: Candidate, baseline_name: str, epochs: Optional[int], seeds: int,
            log=print) -> dict:
    """Train ``answer`` and ``baseline`` alike (same epochs, same data, seeds ``seed .. seed + seeds - 1``
    of the run, each scored on the validation and test splits) on the search's executor; the
    record says which is better. The better is judged on validation (what the search may look
    at; a test score chooses nothing), the answer only when it is strictly better. A run that
    already holds the same comparison is not trained again."""
    first = search.config.seed
    schedule = epochs if epochs is not None else answer.recipe.get("epochs") or search.config.epoch_cap
    if "epochs" in baseline.recipe:
        baseline = Candidate(dict(baseline.arch), {**baseline.recipe, "epochs": int(schedule)}, space=baseline.space)
    what = {"answer_key": answer.key(), "baseline_key": baseline.key(), "epochs": schedule,
            "seeds": list(range(first, first + seeds))}
    for done in reversed(search.store.results("autotrain")):
        if all(done.get(k) == v for k, v in what.items()):
            log(f"autotrain: the answer and the baseline were already trained alike: {done['verdict']}")
            return done
    log(f"autotrain: training the answer and the baseline ({baseline_name}) alike: {schedule} epochs, "
        f"{seeds} seed(s), scored on the test split")
    tasks, names = [], {}
    for i, seed in enumerate(what["seeds"]):
        request = TrialRequest(schedule if epochs is not None else None, seed, test=True, validate_every_epoch=False)
        tasks += [Task(COMPARE_ID - 2 * i, answer, request), Task(COMPARE_ID - 2 * i - 1, baseline, request)]
        names.update({COMPARE_ID - 2 * i: ("answer", seed), COMPARE_ID - 2 * i - 1: ("baseline", seed)})
    results = search.evaluate(tasks, "answer vs baseline", lambda t, r: (
        f"  {names[t.id][0]}, seed {names[t.id][1]}: {r.get('status')}, validation {_pct(r.get('final_acc'))}, "
        f"test {_pct(r.get('test_score'))}"))
    runs = {"answer": [], "baseline": []}
    for t in tasks:
        r = results.get(t.id, {})
        runs[names[t.id][0]].append({"seed": t.request.seed, **{k: r.get(k) for k in
                                                                 ("status", "final_acc", "test_score", "wall_time",
                                                                  "error")}})
    record = {**what, "answer": {"recipe": dict(answer.recipe), "arch": dict(answer.arch), "runs": runs["answer"]},
              "baseline": {"name": baseline_name, "recipe": dict(baseline.recipe), "arch": dict(baseline.arch),
                           "runs": runs["baseline"]}}
    for split, key in (("validation", "final_acc"), ("test", "test_score")):
        record[split] = paired(runs["answer"], runs["baseline"], key)
    val = record["validation"]
    better = val["difference"] is not None and val["difference"] > 0
    record["returned"] = "answer" if better else "baseline"
    record["verdict"] = verdict(record, baseline_name)
    log(f"autotrain: {record['verdict']}")
    return record


def paired(answer: Sequence[dict], baseline: Sequence[dict], key: str) -> dict:
    """Means of ``key`` over the seeds where both scored it, the mean difference (answer - baseline)
    and its spread over seeds (sample standard deviation; None with one seed)."""
    pairs = [(a[key], b[key]) for a, b in zip(answer, baseline) if a.get(key) is not None and b.get(key) is not None]
    if not pairs:
        return {"answer": None, "baseline": None, "difference": None, "spread": None, "n": 0}
    diffs = [a - b for a, b in pairs]
    return {"answer": statistics.fmean(a for a, _ in pairs), "baseline": statistics.fmean(b for _, b in pairs),
            "difference": statistics.fmean(diffs), "spread": statistics.stdev(diffs) if len(diffs) > 1 else None,
            "n": len(pairs)}


def verdict(record: dict, baseline_name: str) -> str:
    """One line: whether the answer beat the baseline, by how much, and which recipe is returned."""
    val, test = record["validation"], record["test"]
    if val["difference"] is None:
        return f"the answer or the baseline ({baseline_name}) did not finish training; the baseline is returned"
    scores = f"validation {_diff(val)}" + (f", test {_diff(test)}" if test["difference"] is not None else "")
    if record["returned"] == "answer":
        return f"the searched recipe beats the baseline ({baseline_name}): {scores}"
    return (f"the searched recipe does NOT beat the baseline ({baseline_name}): {scores}; "
            "returning the baseline's recipe")


def _diff(d: dict) -> str:
    spread = f" +- {100 * d['spread']:.2f}" if d["spread"] is not None else ""
    return (f"{100 * d['answer']:.2f} % vs {100 * d['baseline']:.2f} % "
            f"({100 * d['difference']:+.2f}{spread} points over {d['n']} seed(s))")


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def _measured_seeds(search) -> List[tuple]:
    """(candidate, score) of the run's trained candidates, best first (:mod:`jointnas.coarse.ranking`)."""
    return [(t.candidate, s) for t, s in ranked_in(search.store)]


def write_outputs(folder: Path, space, result: AutoTrainResult) -> dict:
    """space.yaml (the searched space), candidate.json (what `jointnas train` reads) and recipe.yaml (a
    recipe file, which `jointnas train --recipe` takes)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"space": folder / "space.yaml", "candidate": folder / "candidate.json", "recipe": folder / "recipe.yaml",
             "result": folder / "result.json"}
    atomic_write_text(files["space"], yaml.safe_dump(space.to_dict(), sort_keys=False))
    cand = result.candidate
    cand = type(cand)(dict(cand.arch), dict(cand.recipe), space=str(files["space"]),
                      meta={"predicted_acc": result.predicted, "predicted_std": result.predicted_std})
    atomic_write_text(files["candidate"], json.dumps(cand.to_dict(), indent=1) + "\n")
    save_recipe(files["recipe"], result.recipe, space, name=space.name, spaces=[str(files["space"])],
                source=f"jointnas autotrain, run {folder.parent}",
                description=f"the recipe autotrain found for {space.name}: the {result.chosen_by.split(':')[0]}")
    out = {k: str(v) for k, v in files.items()}
    atomic_write_text(files["result"], json.dumps({**result.to_dict(), "files": out}, indent=1, default=str) + "\n")
    return out


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
