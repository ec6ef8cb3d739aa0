"""A coarse run as its search reads it: the run store, the space, the evaluator and the
settings (:class:`~jointnas.coarse.config.CoarseConfig`), its pool and surrogate checkpoints,
and what its trials score (at the calibrated epoch and fidelity, :mod:`jointnas.coarse.ranking`).
:class:`CoarseRun` starts a run (:meth:`~CoarseRun.create`) or continues one
(:meth:`~CoarseRun.open`); :class:`~jointnas.coarse.loop.CoarseLoop` adds the loop's steps.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Type, TypeVar, Union

import numpy as np

from .. import catalog
from ..budget import format_flops, format_params
from ..errors import UsageError
from ..evaluation.base import Evaluator
from ..progress import Progress
from ..space import Candidate, SearchSpace
from ..store import RunStore, Trial
from ..surrogates.base import Surrogate
from .calibration import Calibration, read_calibration
from .config import CoarseConfig, given_pool, new_run_config, run_space, writable
from .extrapolate import ScheduleExtrapolator, from_pairs
from .ranking import best_trials, cheap_runs, score_at

FINAL_PREDICTOR = "predictor.pt"   # the run's copy of its last iteration's surrogate
R = TypeVar("R", bound="CoarseRun")


class CoarseRun:
    """A coarse run over its store. Start one with :meth:`create`, continue one with :meth:`open`.

    ``surrogate``: a factory ``make(space, *, seed, ensemble, score_bounds) -> Surrogate``
    (default: the catalog's entry for the run's ``surrogate`` name); ``policy``: a batch policy
    (default: the run's ``policy`` name with its ``explore``); ``pool``: a new run's candidates to
    search instead of a Sobol sample (a sequence of Candidates or mappings, e.g. every row of a
    recorded table; costed by the space's family, if any), or (candidates, costs, sampled) already
    computed.
    """

    def __init__(self, store: RunStore, space: SearchSpace, evaluator: Evaluator, *,
                 surrogate: Optional[Callable[..., Surrogate]] = None, policy=None,
                 progress: Optional[Progress] = None, pool=None):
        self.store, self.space, self.evaluator = store, space, evaluator
        self.config = CoarseConfig.from_dict(store.config)
        self.make_surrogate = surrogate or catalog.surrogate_factory(self.config.surrogate)
        self.policy = policy or catalog.make_policy(self.config.policy, explore=self.config.explore)
        self.progress = progress or Progress()
        self.pool: List[Candidate] = []
        self.costs = np.zeros((0, 2), dtype=np.int64)
        self._given_pool = pool
        self._encoded: Optional[np.ndarray] = None
        self._pretrained: Optional[Surrogate] = None
        self._fitted: Dict[int, Surrogate] = {}  # iteration -> its surrogate, as fitted or once read back
        self._extrapolator = (None, None)  # (epoch, its ScheduleExtrapolator or None), fitted once per epoch
        self._untried: Optional[np.ndarray] = None   # the loop's mask of pool rows not queued yet
        self._done_through = 0   # the loop's iterations known complete (this process holds the run's lock)
        self._held_out = None   # the loop's HeldOutSchedule, read from the records once

    # ---- starting and continuing
    @classmethod
    def create(cls: Type[R], run_dir, space: Union[SearchSpace, str], evaluator: Evaluator,
               config: Union[CoarseConfig, dict, None] = None, *, pool=None, surrogate: Optional[Callable] = None,
               policy=None, progress: Optional[Progress] = None) -> R:
        """A new run in ``run_dir`` (absent or empty). The pool (``pool`` as the class says, else
        sampled) is costed before the directory is made, so a budget that no candidate meets leaves
        nothing behind."""
        space = catalog.load_space(space)
        config = new_run_config(config, space, evaluator)
        writable(run_dir, lambda: RunStore.check_new_dir(run_dir))
        progress = progress or Progress()
        given = pool is not None
        pool = given_pool(space, config, pool, progress=progress.shown)
        if given:
            config.pool = pool[2]   # the candidates it was given, as ``pool`` is a sample's size
        store = writable(run_dir, lambda: RunStore.create(run_dir, config.to_dict(), lock=True))
        # As JSON text: the store sorts the keys of mappings, and a space's dimension order matters.
        store.set_meta("space", json.dumps(space.to_dict()))
        return cls(store, space, evaluator, surrogate=surrogate, policy=policy, progress=progress, pool=pool)

    @classmethod
    def open(cls: Type[R], run_dir, evaluator: Optional[Evaluator] = None, *, space: Optional[SearchSpace] = None,
             surrogate: Optional[Callable] = None, policy=None, progress: Optional[Progress] = None) -> R:
        """Continue the run in ``run_dir``. ``evaluator`` defaults to the one the run names; a
        run scored by a Python function that cannot be imported by name needs it passed again."""
        store = RunStore.open(run_dir, lock=True)  # one driver at a time; every file checked first
        try:
            config = CoarseConfig.from_dict(store.config)
            saved = run_space(store)
            if space is not None and space.fingerprint() != saved.fingerprint():
                raise UsageError(f"run {run_dir} searched another version of space {saved.name!r}; "
                                 "open it without a space, or start a new run")
            space = space or saved
            if evaluator is None:
                if config.evaluator is None:
                    raise UsageError(f"run {run_dir} was scored by a Python function that cannot be found by name; "
                                     "pass the evaluator again (CoarseSearch.open(run_dir, evaluator=...))")
                evaluator = catalog.make_evaluator(config.evaluator, **config.evaluator_options)
            evaluator.check_space(space)
        except BaseException:
            store.close()
            raise
        return cls(store, space, evaluator, surrogate=surrogate, policy=policy, progress=progress)

    def close(self) -> None:
        """Close the store (and release the run's lock)."""
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def log(self, line: str) -> None:
        """One line of the run's log (the ``progress``'s)."""
        self.progress.log(line)

    def start(self, pool=None) -> None:
        """Load the pool (a new run's is saved first: ``pool`` or the one given at creation, else
        sampled) and the pretrained surrogate (a new run's is pretrained and saved first). The
        loop's steps start here; once is enough."""
        if self._pretrained is None:
            self._load_pool(pool if pool is not None else self._given_pool)
            self._pretrained = self._pretrain()

    def pretrained(self) -> Surrogate:
        """The surrogate before any trial (iteration 0): what every fit starts from."""
        self.start()
        return self._pretrained

    def _load_pool(self, pool) -> None:
        if self.store.pool_info() is not None:
            self.pool, self.costs = self.store.load_pool(self.space)
            return
        cands, costs, sampled = given_pool(self.space, self.config, pool, progress=self.progress.shown)
        self.store.save_pool(self.space, cands, costs, sampled=sampled)
        self.pool, self.costs = cands, np.asarray(costs, dtype=np.int64)
        c = self.config
        limit = ", ".join(([f"<= {format_flops(c.budget)}"] if c.budget is not None else [])
                          + ([f"<= {format_params(c.max_params)}"] if c.max_params is not None else []))
        self.log(f"pool: {sampled} Sobol samples, {len(cands)} within the budget" + (f" ({limit})" if limit else
                                                                                       " (none set)"))

    def _pretrain(self) -> Surrogate:
        if self.store.predictor_path(0) is not None:
            return self.surrogate(0)
        c = self.config
        bounds = tuple(c.score_bounds) if c.score_bounds is not None else None
        p = self.make_surrogate(self.space, seed=c.seed, ensemble=c.ensemble, score_bounds=bounds)
        t = time.time()
        if self.space.family is None or self.space.arch_width == 0:
            why = ("the space has no model family, so there are no FLOPs/params proxies"
                   if self.space.family is None else "the space has no arch dimensions to learn costs from")
            stage = f"not pretrained: {why}"
            self.log(f"surrogate not pretrained on proxies: {why}")
        else:
            p.pretrain(self.pool, self.costs, progress=self.progress.shown)
            stage = "pretrained on proxies"
            self.log(f"{p.kind} predictor: {p.pretraining_note(len(self.pool))} ({time.time() - t:.1f} s)")
        path = self.store.predictor_file(0)
        p.save(path)
        self.store.register_predictor(0, path, stage=stage, n=len(self.pool))
        self._fitted[0] = p
        return p

    @property
    def encoded(self) -> np.ndarray:
        """The pool encoded with ``space.encode`` (what the batch policy chooses rows of)."""
        if self._encoded is None:
            self._encoded = self.space.encode(self.pool)
        return self._encoded

    def surrogate(self, iteration: int) -> Surrogate:
        """The surrogate fitted at ``iteration`` (0: the pretrained one): the one this process fitted,
        else read from its checkpoint once (a resumed run). A checkpoint predicts exactly what the
        surrogate that wrote it does, so keeping it costs no difference, only the re-reading."""
        if iteration not in self._fitted:
            self._fitted[iteration] = catalog.load_surrogate(self.store.predictor_path(iteration), self.space)
        return self._fitted[iteration]


    @property
    def final_predictor(self) -> Path:
        """Where the run keeps a copy of its last iteration's surrogate."""
        return self.store.run_dir / FINAL_PREDICTOR

    def final_surrogate(self) -> Optional[Surrogate]:
        """The last iteration's surrogate; None before it is fitted."""
        return self.surrogate(self.config.iterations) if self.store.predictor_path(self.config.iterations) else None

    # ---- what a trial scores
    def calibration(self) -> Optional[Calibration]:
        """The first batch's calibration (None before it)."""
        return read_calibration(self.store)

    def chosen_fidelity(self) -> Optional[dict]:
        """The calibrated cheaper setting (None: full fidelity, or not calibrated yet)."""
        cal = self.calibration()
        return cal.cheaper_fidelity if cal is not None else None

    def cheap_runs(self) -> Dict[int, dict]:
        """First-batch runs at the chosen fidelity, by trial id."""
        return cheap_runs(self.calibration(), self.store.results("fidelity_trial"))

    def score(self, trial: Trial) -> Optional[float]:
        """Surrogate target of a trial: its score at the calibrated epoch and fidelity
        (:mod:`jointnas.coarse.ranking`), a diverged one at the run's diverged score."""
        cal = self.calibration()
        return score_at(trial, cal.chosen_epoch if cal else None, self.cheap_runs(), self.config.diverged_score)

    def training_set(self, up_to: Optional[int] = None) -> Tuple[List[Trial], np.ndarray]:
        """Scored trials (of iterations <= ``up_to``: a checkpoint fitted again sees what it saw
        first) and their scores; after calibration only."""
        epoch, cheap = self.calibration().chosen_epoch, self.cheap_runs()   # read once, not per trial
        pairs = [(t, score_at(t, epoch, cheap, self.config.diverged_score)) for t in self.store.trials()
                 if up_to is None or t.iteration <= up_to]
        pairs = [(t, s) for t, s in pairs if s is not None]
        return [t for t, _ in pairs], np.array([s for _, s in pairs], dtype=np.float64)

    def ranked(self, top: Optional[int] = None) -> List[Tuple[Trial, float]]:
        """(trial, score) of the measured trials, best first (:mod:`jointnas.coarse.ranking`)."""
        cal = self.calibration()
        return best_trials(self.store.trials(), cal.chosen_epoch if cal else None, top, self.cheap_runs())

    def extrapolator(self) -> Optional[ScheduleExtrapolator]:
        """A :class:`~jointnas.coarse.extrapolate.ScheduleExtrapolator` fitted on the earlier pairs' whole
        curves at the calibrated epoch; None without earlier pairs (or too few whole curves), before
        calibration, or at a cheaper fidelity than theirs."""
        cal = self.calibration()
        epoch = cal.chosen_epoch if cal else None
        if not self.config.prior_pairs or epoch is None or self.chosen_fidelity() is not None:
            return None
        if self._extrapolator[0] != epoch:
            self._extrapolator = (epoch, from_pairs(self.config.prior_pairs, self.space, epoch,
                                                    self.config.diverged_score, self.config.seed))
        return self._extrapolator[1]

    def full_epochs(self, cand: Candidate) -> Optional[int]:
        """Epochs of a candidate's full schedule (its recipe's ``epochs`` when it has one), capped."""
        epochs = cand.recipe.get("epochs")
        if epochs is None:
            return self.config.epoch_cap
        epochs = int(epochs)
        return epochs if self.config.epoch_cap is None else min(epochs, self.config.epoch_cap)
