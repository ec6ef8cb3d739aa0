"""What defines a coarse run (:class:`CoarseConfig`), the space it stores, and its pool: the
Sobol sample with each candidate's cost, those over the budget dropped."""
from __future__ import annotations

import copy
import json
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Optional, Union

import numpy as np

from .. import catalog
from ..budget import Budget, check_budget as check
from ..errors import BudgetError, UsageError
from ..space import Candidate, SearchSpace
from ..surrogates.prior import check_prior_pairs

MIN_TRIALS = 3  # finished trials it takes to rank epochs (calibration) or fit the surrogate
TRAINING_BATCH, TRAINING_EXPLORE = 6, 1.0   # batch and explore of a run whose evaluator trains
AT_ONCE_EXPLORE = 0.5                       # explore of a run whose evaluator answers at once


@dataclass
class CoarseConfig:
    """What defines a coarse run (stored in the run; execution settings such as workers are not)."""

    space: str = ""                    # the space's name (the space itself is stored whole)
    evaluator: Optional[str] = None    # catalog spec (train:digits, module:function); None: not rebuildable
    evaluator_options: dict = field(default_factory=dict)
    pool: int = 20000
    seed: int = 0
    budget: Optional[int] = None       # FLOPs of the deployable model (fvcore count)
    max_params: Optional[int] = None
    # batch/iterations/epoch_cap: sized for the default run on 2 CPU cores
    # (BENCHMARKS.md, "The README's main command"); paper scale is batch 48, 4 iterations, no cap.
    # None: the evaluator's (TRAINING_BATCH, or 1 where it ``answers_at_once``)
    batch: Optional[int] = None
    first_batch: Optional[int] = None  # the first (calibration) batch's size; None: ``batch``
    # candidates ({"arch", "recipe"}) the pool holds and the first batch trains ahead of the policy's
    # choice, so that the run measures them (autotrain: the recipe it must beat)
    first_candidates: Optional[list] = None
    iterations: int = 2
    # an evaluation budget: exactly this many trials, whatever the batch (the last batch is cut);
    # when set, it decides ``iterations`` (a new run's, from the batch sizes)
    max_trials: Optional[int] = None
    epoch_cap: Optional[int] = 2       # None: every candidate's full recipe schedule
    rank_threshold: float = 0.9
    explore: Optional[float] = None    # None: 1.0, or 0.5 where the evaluator answers at once
    ensemble: int = 5
    # forest: on digits with the shipped pairs its held-out tau was 0.40 against the MLP's 0.16, at a
    # hundredth of the fitting time (BENCHMARKS.md, "The README's main command"); "mlp" is FBNetV3's predictor
    surrogate: str = "forest"
    policy: str = "ucb"
    fidelities: Optional[list] = None  # cheaper training settings to calibrate (Fidelity dicts); None: the evaluator's
    # train the winner again at full fidelity (+ test score) beside the baseline; None: where the
    # evaluator says it tells something new (Evaluator.retrains_winner: the trainer, not a function or table)
    final: Optional[bool] = None
    baseline: Optional[str] = None     # preset trained beside the winner; None: the space's first preset
    prior_pairs: Optional[str] = None  # JSONL of pairs trained before on this space and task: a warm start
    diverged_score: Optional[float] = None   # a diverged trial's score (chance level for a classifier)
    score_bounds: Optional[list] = None      # the evaluator's score range, e.g. [0, 1] for accuracies
    # torch CPU threads per trial: a trial's numbers depend on it, so it is the run's, not a resume's
    # (None: the executor's default, which may follow --workers)
    threads: Optional[int] = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def first_batch_size(self) -> int:
        return self.first_batch or self.batch

    @classmethod
    def from_settings(cls, d: dict) -> "CoarseConfig":
        """A new run's settings given as a mapping, the defaults for what it leaves out (a stored
        run's settings are read by :meth:`from_dict`, with the defaults of the version that wrote them)."""
        unknown = cls._unknown(d)
        if unknown:
            raise UsageError(f"unknown coarse setting(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(f.name for f in fields(cls)))}")
        return cls(**d)

    @classmethod
    def _unknown(cls, d: dict) -> list:
        return sorted(set(d) - {f.name for f in fields(cls)})

    @classmethod
    def from_dict(cls, d: dict) -> "CoarseConfig":
        d = dict(d)
        if d.get("kind") == "oneshot":  # jointnas.oneshot's runs share the store, not the settings
            raise UsageError("this run is a one-shot run (jointnas oneshot), not a coarse run; continue it with "
                             "'jointnas oneshot --run DIR', or look at it with 'jointnas report DIR'")
        if "data" in d:  # a run made before evaluators: its trainer settings become the evaluator's
            d["evaluator"] = f"train:{d.pop('data')}"
            d["evaluator_options"] = {"data_root": d.pop("data_root", None), "train_subset": d.pop("train_subset", None)}
            classes = d.pop("num_classes", None)
            d.setdefault("diverged_score", 1.0 / classes if classes else None)
            d.setdefault("score_bounds", [0.0, 1.0])
        d.setdefault("surrogate", "mlp")  # runs from before surrogates were named were fitted with the MLP
        unknown = cls._unknown(d)
        if unknown:
            raise UsageError(f"the run's settings have unknown key(s) {', '.join(unknown)}; "
                             "it was made by another version of jointnas")
        return cls(**d)


def new_run_config(config: Union[CoarseConfig, dict, None], space: SearchSpace, evaluator) -> CoarseConfig:
    """A new run's settings: ``config`` (None: the defaults; not changed) checked against ``space``
    (its budget; its earlier pairs, read whole) and completed by the space's name and the ``evaluator``
    (how to rebuild it, its score range, its diverged score and, unless earlier pairs fix full
    fidelity, its fidelities)."""
    if isinstance(config, dict):
        config = CoarseConfig.from_settings(config)
    config = copy.deepcopy(config) if config is not None else CoarseConfig()
    evaluator.check_space(space)
    if space.family is None and (config.budget is not None or config.max_params is not None):
        raise BudgetError(f"space {space.name} has no model family, so there are no FLOPs or params to "
                          "budget; drop the budget")
    check_budget(space, config.budget, config.max_params)
    if config.prior_pairs:  # read whole now: a file that cannot be used fails before any training
        check_prior_pairs(config.prior_pairs, space)
    config.space = space.name
    config.evaluator = evaluator.spec()
    config.evaluator_options = dict(evaluator.options()) if config.evaluator else {}
    config.diverged_score = evaluator.diverged_score
    if config.fidelities is None:  # earlier pairs were measured at full fidelity: they fix it
        config.fidelities = [] if config.prior_pairs else list(evaluator.fidelities())
    bounds = evaluator.score_bounds
    config.score_bounds = [float(b) for b in bounds] if bounds is not None else None
    if config.final is None:
        config.final = bool(evaluator.retrains_winner)
    batch, explore = evaluator_defaults(evaluator)
    config.batch = batch if config.batch is None else config.batch
    config.explore = explore if config.explore is None else config.explore
    if config.max_trials is not None:
        config.iterations = iterations_for(config.max_trials, config.first_batch_size, config.batch)
    return config


def evaluator_defaults(evaluator) -> tuple:
    """(batch, explore) of a run on ``evaluator`` that sets neither: one evaluation per refit,
    ranked by mean + 0.5 x spread, where evaluations cost nothing (the best of the tuning runs in
    BENCHMARKS.md, "The proxies' trend"); batches sized to train side by side, mean + 1 x spread,
    otherwise."""
    return (1, AT_ONCE_EXPLORE) if evaluator.answers_at_once else (TRAINING_BATCH, TRAINING_EXPLORE)


def iterations_for(max_trials: int, first: int, batch: int) -> int:
    """Iterations that ``max_trials`` evaluations take: a first batch of ``first``, then ``batch``
    each (the last one cut); UsageError below the trials the first fit needs."""
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < MIN_TRIALS:
        raise UsageError(f"max_trials must be a whole number >= {MIN_TRIALS} (the trials the first fit needs), "
                         f"got {max_trials!r}")
    if batch < 1 or first < 1:
        raise UsageError(f"batch sizes must be >= 1, got batch={batch}, first batch={first}")
    return 1 + -(-max(0, max_trials - first) // batch)


def run_space(store) -> SearchSpace:
    """The space a run searched, as the run stored it (runs from before spaces were stored: by name)."""
    stored = store.get_meta("space")
    if stored is not None:
        return catalog.space_from_dict(json.loads(stored), f"the space stored in run {store.run_dir}")
    return catalog.load_space(store.config["space"])


def check_budget(space: SearchSpace, budget: Optional[int], max_params: Optional[int]) -> None:
    """UsageError (naming the space's minimum) if no candidate of the space can meet the budget."""
    if budget is None and max_params is None:
        return
    check(space, Budget(budget if budget is not None else sys.maxsize, max_params))


def build_pool(space: SearchSpace, config: CoarseConfig, progress: bool = True, given=None):
    """(feasible candidates, their (n, 2) [flops, params], number sampled); UsageError if none fits.
    ``given``: the candidates (Candidates or mappings) to search instead of a Sobol sample, each
    once. A space without a family has no costs: they are all 0 and nothing is dropped."""
    if given is None:
        pool = space.sample(config.pool, seed=config.seed)
    else:
        pool = _distinct([space.as_candidate(c.to_dict() if isinstance(c, Candidate) else c, i)
                          for i, c in enumerate(given)])
        if not pool:
            raise UsageError("the pool given is empty; give at least one candidate")
    if config.first_candidates:
        lead = [space.as_candidate(c, i) for i, c in enumerate(config.first_candidates)]
        keys = {c.key() for c in lead}
        pool = lead + [c for c in pool if c.key() not in keys]
    if space.family is None:
        return pool, np.zeros((len(pool), 2), dtype=np.int64), len(pool)
    costs = space.family.costs([c.arch for c in pool], progress=progress)
    keep = np.ones(len(pool), dtype=bool)
    if config.budget is not None:
        keep &= costs[:, 0] <= config.budget
    if config.max_params is not None:
        keep &= costs[:, 1] <= config.max_params
    if not keep.any():
        raise BudgetError(f"none of the {len(pool)} pool candidates fits the budget (cheapest in the pool: "
                          f"{costs[:, 0].min() / 1e6:.1f} MFLOPs, {costs[:, 1].min() / 1e6:.2f} M params); "
                          "raise the budget or sample a larger pool")
    idx = np.flatnonzero(keep)
    return [pool[i] for i in idx], costs[idx], len(pool)


def _distinct(candidates: list) -> list:
    """``candidates`` less repeats (the first of each kept, in order)."""
    seen, out = set(), []
    for c in candidates:
        if c.key() not in seen:
            seen.add(c.key())
            out.append(c)
    return out


def given_pool(space: SearchSpace, config: CoarseConfig, pool, progress: bool = True):
    """A new run's pool as (candidates, costs, sampled) from what its caller gave: None (sampled
    here), a sequence of candidates (costed here, those over the budget dropped), or that triple
    already computed."""
    if pool is None:
        return build_pool(space, config, progress=progress)
    if isinstance(pool, tuple) and len(pool) == 3 and isinstance(pool[2], int):
        return pool
    return build_pool(space, config, progress=progress, given=list(pool))


def writable(run_dir, make):
    """``make()``, with an OS refusal (read-only place, /proc, ...) turned into a UsageError."""
    try:
        return make()
    except OSError as e:
        raise UsageError(f"cannot make a run directory at {run_dir}: {e.strerror or e}; choose a directory "
                         "you can write to") from None


