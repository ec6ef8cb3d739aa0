"""jointnas's predictor-guided search as an Optuna sampler: :class:`JointNASSampler`.

    import optuna
    from jointnas.integrations.optuna import JointNASSampler

    study = optuna.create_study(direction="maximize", sampler=JointNASSampler(seed=0))
    study.optimize(objective, n_trials=100)

How a trial's parameters are chosen, over the study's relative search space (the parameters
every finished trial has, Optuna's intersection search space):

- a pool of points: ``pool_size`` scrambled Sobol points over the space (every distribution
  Optuna has: float, int, log, step, categorical), plus each point a trial evaluated outside it;
- until ``n_startup_trials`` finished trials have a value, the next untried pool point in Sobol
  order (the very first trial, before any space is known, is sampled independently);
- after that the surrogate (a name registered in ``jointnas.catalog.SURROGATES``; default the
  coarse stage's, ``forest``) is fitted on the finished trials and the batch policy (``ucb``,
  ``ei`` or ``thompson``, ``jointnas.coarse.policies``) picks the untried pool point. The fit and
  the pool's scores are reused until another trial finishes. Once every pool point is tried
  or running, parameters are sampled independently.

Trials as data: a complete trial gives its value; a pruned trial gives its last intermediate
value (what the pruner judged it on, a pessimistic estimate of where it would have ended: an
early epoch's accuracy is below the final one, its loss above), and is left out of the fit if
it reported none; a failed trial gives nothing. Every trial that ran, whatever its state, is
"tried": its point is never suggested again.

Parallel trials (``n_jobs > 1``, several processes on one storage, Ray Tune): a point is chosen
and recorded on its trial (system attribute ``jointnas:point``, Optuna's internal values) under
one lock, and the points of running trials are excluded, so no point is suggested twice.
Nothing else is written to the storage. The same ``seed`` gives the same trials when trials
run one at a time. Single-objective studies, maximize or minimize.
"""
from __future__ import annotations

import math
import threading
from typing import Any, Dict, Optional, Sequence

import numpy as np

try:
    import optuna  # noqa: F401
except ImportError as e:  # the optional extra is not installed
    raise ImportError(f"JointNASSampler needs Optuna, which is not installed ({e}): "
                      "pip install 'jointnas[optuna]'") from e
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from .. import catalog
from ..errors import UsageError
from ..surrogates.base import Scorer
from .optuna_pool import StudyPool

POINT_ATTR = "jointnas:point"   # the point the sampler gave a trial, {name: internal value}
MIN_FIT = 3                     # trials with a value before a surrogate is fitted (the MLP needs 3)
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class JointNASSampler(BaseSampler):
    """Predictor-guided search (a Sobol pool, a jointnas surrogate, a batch policy) in any
    single-objective Optuna study; see the module's text for how it chooses.

    Args:
        seed: seeds the pool, the surrogate, the policy and the independent sampler; the same
            seed gives the same trials when they run one at a time. None: a random seed.
        n_startup_trials: finished trials with a value before the surrogate chooses (at least 3).
        pool_size: Sobol points over the relative search space (the candidates scored per choice).
        surrogate: a surrogate registered in ``jointnas.catalog.SURROGATES`` (``forest``, ``mlp``).
        policy: a batch policy registered in ``jointnas.catalog.POLICIES`` (``ucb``, ``ei``, ``thompson``).
        explore: the policy's weight of the surrogate's spread (UCB: mean + explore x std across
            the forest's trees). Default 0.5: on the recorded tables as soon at a top-1 %
            configuration as 0 (the predicted mean) and sooner at a top-0.1 % one, which 0 misses
            more often by exploiting lucky draws (BENCHMARKS.md, "JointNASSampler against Optuna's samplers").
        surrogate_options: passed to the surrogate's ``create`` (e.g. ``{"trees": 50}``).
        independent_sampler: samples the parameters outside the relative search space and the
            first trial; default ``optuna.samplers.RandomSampler(seed)``.
    """

    def __init__(self, *, seed: Optional[int] = None, n_startup_trials: int = 10, pool_size: int = 4096,
                 surrogate: str = "forest", policy: str = "ucb", explore: float = 0.5,
                 surrogate_options: Optional[dict] = None, independent_sampler: Optional[BaseSampler] = None):
        if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int) or n_startup_trials < MIN_FIT:
            raise UsageError(f"n_startup_trials must be a whole number of at least {MIN_FIT} (trials to fit the "
                             f"surrogate on), got {n_startup_trials!r}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise UsageError(f"pool_size must be a positive whole number, got {pool_size!r}")
        if not (isinstance(explore, (int, float)) and math.isfinite(explore) and explore >= 0):
            raise UsageError(f"explore must be a finite number >= 0, got {explore!r}")
        catalog.surrogate_class(surrogate)   # an unknown name is refused here, before any trial
        self._policy = catalog.make_policy(policy, explore=explore)
        self._seed = int(np.random.SeedSequence().entropy % 2 ** 31) if seed is None else int(seed)
        self._n_startup = n_startup_trials
        self._pool_size = pool_size
        self._surrogate = surrogate
        self._surrogate_options = dict(surrogate_options or {})
        self._rng = np.random.default_rng(self._seed)
        self._independent = independent_sampler or RandomSampler(seed=self._seed)
        self._lock = threading.Lock()
        self._search_space = IntersectionSearchSpace(include_pruned=True)
        self._state: Optional[_StudyState] = None

    # ------------------------------------------------------------------ Optuna's sampler interface
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> Dict[str, BaseDistribution]:
        if len(study.directions) > 1:
            raise UsageError(f"JointNASSampler searches single-objective studies; this one has "
                             f"{len(study.directions)} objectives")
        with self._lock:
            space = self._search_space.calculate(study)
        return {name: dist for name, dist in space.items() if not dist.single()}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: Dict[str, BaseDistribution]) -> Dict[str, Any]:
        if not search_space:
            return {}
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        with self._lock:
            state = self._state_for(study, search_space, sign)
            trials = study.get_trials(deepcopy=False)
            state.learn(trials)
            free = state.untried(trials, trial.number)
            if not free.any():
                return {}   # every pool point is tried or running: independent sampling
            if len(state.y) < self._n_startup:
                i = int(np.argmax(free))   # the next untried point in Sobol order
            else:
                i = int(self._policy.choose(state.pool.x, free, 1, state.scores(), self._rng)[0])
            # recorded before the lock is let go, so a parallel trial's choice already sees it (the
            # storage's own call, as Optuna's samplers make it: a Study has no public one for a trial id)
            study._storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, state.pool.internal(i))
            return state.pool.params(i)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Optional[Sequence[float]]) -> None:
        self._independent.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._independent.reseed_rng()

    # ------------------------------------------------------------------ state
    def _state_for(self, study: Study, search_space: Dict[str, BaseDistribution], sign: float) -> "_StudyState":
        key = (study.study_name, sign, tuple(sorted(search_space.items(), key=lambda item: item[0])))
        if self._state is None or self._state.key != key:
            self._state = _StudyState(key, StudyPool(search_space, self._pool_size, self._seed), sign, self)
        return self._state

    def _new_surrogate(self, space, n: int):
        return catalog.make_surrogate(self._surrogate, space, seed=self._seed + n, score_bounds=None,
                                      **self._surrogate_options)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_lock"] = None   # a lock does not pickle (Ray Tune ships its searcher); a new one below
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


class _StudyState:
    """What the sampler knows of one study and relative search space: the pool, which pool rows
    were tried, the finished trials' rows and values (``sign`` makes higher better), and the
    surrogate fitted on them with its scores of the pool (until another trial finishes)."""

    def __init__(self, key, pool: StudyPool, sign: float, sampler: JointNASSampler):
        self.key, self.pool, self.sign, self.sampler = key, pool, sign, sampler
        self.tried = np.zeros(len(pool), dtype=bool)
        self.seen: set = set()          # numbers of the finished trials taken in
        self.rows: list = []            # pool rows of the trials with a value
        self.y: list = []
        self._scores: Optional[_PoolScores] = None

    def learn(self, trials: Sequence[FrozenTrial]) -> None:
        """Take in the trials that finished since the last call."""
        for t in trials:
            if t.state not in _FINISHED or t.number in self.seen:
                continue
            self.seen.add(t.number)
            row = self.pool.row_of(t.params, t.distributions)
            if row is None:
                continue   # a trial without every parameter of this space (a conditional branch)
            i = self.pool.add(row)
            if i >= len(self.tried):
                self.tried = np.concatenate([self.tried, np.zeros(i + 1 - len(self.tried), dtype=bool)])
            self.tried[i] = True
            value = _value(t)
            if value is not None:
                self.rows.append(i)
                self.y.append(self.sign * value)
                self._scores = None

    def untried(self, trials: Sequence[FrozenTrial], current: int) -> np.ndarray:
        """Pool rows neither tried nor being evaluated by another running trial."""
        free = ~self.tried
        for t in trials:
            if t.state != TrialState.RUNNING or t.number == current:
                continue
            row = self.pool.row_of_internal(t.system_attrs.get(POINT_ATTR))
            if row is None:
                row = self.pool.row_of(t.params, t.distributions)
            i = None if row is None else self.pool.find(row)
            if i is not None:
                free[i] = False
        return free

    def scores(self) -> "_PoolScores":
        """The surrogate fitted on the trials with a value, scoring the pool; refitted only when
        a trial finished since."""
        if self._scores is None or self._scores.x is not self.pool.x:
            if self._scores is None:
                surrogate = self.sampler._new_surrogate(self.pool.space, len(self.y))
                surrogate.fit(self.pool.candidates(self.pool.values[self.rows]), np.asarray(self.y))
            else:
                surrogate = self._scores.surrogate
            self._scores = _PoolScores(surrogate, self.pool.x)
        return self._scores


def _value(t: FrozenTrial) -> Optional[float]:
    """A finished trial's value for the fit: a complete trial's value, a pruned trial's last
    intermediate value; None for a failed trial, a pruned one that reported nothing, or a value
    that is not finite."""
    if t.state == TrialState.COMPLETE:
        value = t.value
    elif t.state == TrialState.PRUNED and t.intermediate_values:
        value = t.intermediate_values[max(t.intermediate_values)]
    else:
        return None
    return float(value) if value is not None and math.isfinite(value) else None


class _PoolScores(Scorer):
    """A fitted surrogate whose predictions of the pool's rows ``x`` are computed once and kept:
    a policy asks for them at every choice, and only a new finished trial changes them."""

    def __init__(self, surrogate, x: np.ndarray):
        self.surrogate, self.x, self.space = surrogate, x, surrogate.space
        self.has_members = surrogate.has_members
        self._prediction = self._members = None

    def predict_encoded(self, x, costs=None):
        if x is not self.x:
            return self.surrogate.predict_encoded(x, costs)
        if self._prediction is None:
            self._prediction = self.surrogate.predict_encoded(x)
        return self._prediction

    def predict_members(self, x, costs=None):
        if x is not self.x or costs is not None:
            return self.surrogate.predict_members(x, costs)
        if self._members is None:
            self._members = self.surrogate.predict_members(x)
        return self._members


__all__ = ["JointNASSampler", "POINT_ATTR"]
