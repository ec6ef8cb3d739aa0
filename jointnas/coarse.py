"""Coarse stage: FBNetV3's constrained iterative optimisation, resumable from its run store.

1. Sobol pool -> FLOPs/params of each candidate (the space's family) -> those over the budget dropped.
2. Surrogate pretrained on the proxies (checkpoint ``iter0``); a space without a family has
   no proxies, and its surrogate starts untrained.
3. Iteration 1: the policy's first batch (today: diverse, farthest-point over the encoding)
   evaluated to its full schedule; the early-stop epoch is calibrated on it (``calibration``).
4. Iterations 2..N: the policy's next batch given the surrogate (today: mean + explore * std),
   evaluated to the calibrated epoch; the surrogate is refitted each time.

Every step reads what is already in the store first, so running again on the same run
directory continues where a crash or Ctrl-C stopped it. ``CoarseSearch.create`` starts a run
and ``CoarseSearch.open`` continues one; the evaluator, surrogate factory, batch policy and
executor are injected.
"""
from __future__ import annotations

import copy
import inspect
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np

from .calibration import RANK_METRIC, calibrate, rank_correlation  # noqa: F401 - public names
from .errors import BudgetError, UsageError
from .executor import Executor, Job, JobDone
from .space import Candidate, SearchSpace
from .store import RunStore, Trial
from .strategies.batch import acquisition_batch, diverse_batch  # noqa: F401 - public names
from .trial import measured_score


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
    # batch/iterations/epoch_cap: sized for a 2-core CPU (BENCHMARKS.md, "Coarse search"); paper
    # scale is batch 48, 4 iterations, no cap.
    batch: int = 6
    iterations: int = 3
    epoch_cap: Optional[int] = 2       # None: every candidate's full recipe schedule
    rank_threshold: float = 0.9
    explore: float = 1.0
    ensemble: int = 5
    surrogate: str = "mlp"
    policy: str = "ucb"
    fidelities: Optional[list] = None  # cheaper training settings to calibrate (Fidelity dicts); None: the evaluator's
    final: bool = True                 # retrain the winner at full fidelity (+ test score) beside the baseline
    baseline: Optional[str] = None     # preset trained beside the winner; None: the space's first preset
    prior_pairs: Optional[str] = None  # JSONL of pairs trained before on this space and task: a warm start
    diverged_score: Optional[float] = None   # a diverged trial's score (chance level for a classifier)
    score_bounds: Optional[list] = None      # the evaluator's score range, e.g. [0, 1] for accuracies

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CoarseConfig":
        d = dict(d)
        if "data" in d:  # a run made before evaluators: its trainer settings become the evaluator's
            d["evaluator"] = f"train:{d.pop('data')}"
            d["evaluator_options"] = {"data_root": d.pop("data_root", None), "train_subset": d.pop("train_subset", None)}
            classes = d.pop("num_classes", None)
            d.setdefault("diverged_score", 1.0 / classes if classes else None)
            d.setdefault("score_bounds", [0.0, 1.0])
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UsageError(f"the run's settings have unknown key(s) {', '.join(sorted(unknown))}; "
                             "it was made by another version of jointnas")
        return cls(**d)


def run_space(store: RunStore) -> SearchSpace:
    """The space a run searched, as the run stored it (runs from before spaces were stored: by name)."""
    from . import catalog

    stored = store.get_meta("space")
    if stored is not None:
        return catalog.space_from_dict(json.loads(stored), f"the space stored in run {store.run_dir}")
    return catalog.load_space(store.config["space"])


# ---------------------------------------------------------------------- pool and budget
def check_budget(space: SearchSpace, budget: Optional[int], max_params: Optional[int]) -> None:
    """UsageError (naming the space's minimum) if no candidate of the space can meet the budget."""
    if budget is None and max_params is None:
        return
    from .budget import Budget, check_budget as check

    check(space, Budget(budget if budget is not None else sys.maxsize, max_params))


def build_pool(space: SearchSpace, config: CoarseConfig, progress: bool = True):
    """(feasible candidates, their (n, 2) [flops, params], number sampled); UsageError if none fits.
    A space without a family has no costs: they are all 0 and nothing is dropped."""
    pool = space.sample(config.pool, seed=config.seed)
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


# ---------------------------------------------------------------------- the loop
@dataclass
class Progress:
    """Where the loop reports: one-line logs (stdout) and tqdm bars (stderr)."""

    bars: bool = True
    log: Callable[[str], None] = field(default=None)

    def __post_init__(self):
        if self.log is None:
            from tqdm import tqdm

            self.log = lambda line: tqdm.write(line, file=sys.stdout)

    @property
    def shown(self) -> bool:
        """Bars only on a terminal: in a log file their carriage returns are noise."""
        return self.bars and sys.stderr.isatty()

    def bar(self, **kw):
        from tqdm import tqdm

        return tqdm(disable=not self.shown, file=sys.stderr, dynamic_ncols=True, **kw)


def _call(fn, *args, **optional):
    """``fn(*args, **those optional keywords fn accepts)``: surrogates need not take ``progress``."""
    try:
        accepted = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        accepted = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    return fn(*args, **{k: v for k, v in optional.items() if takes_any or k in accepted})


ExecutorArg = Union[Executor, Callable[[], Executor], None]


def _writable(run_dir, make):
    """``make()``, with an OS refusal (read-only place, /proc, ...) turned into a UsageError."""
    try:
        return make()
    except OSError as e:
        raise UsageError(f"cannot make a run directory at {run_dir}: {e.strerror or e}; choose a directory "
                         "you can write to") from None


class CoarseSearch:
    """The loop over a run store. Start a run with :meth:`create`, continue one with :meth:`open`.

    ``surrogate``: a factory ``make(space, *, seed, ensemble, score_bounds) -> Surrogate``
    (default: the catalog's entry for the run's ``surrogate`` name); ``policy``: a batch policy
    (default: the run's ``policy`` name with its ``explore``); ``executor``: an Executor or a
    callable making one when the first trial is due (default: a SerialExecutor).
    """

    def __init__(self, store: RunStore, space: SearchSpace, evaluator, *, surrogate: Optional[Callable] = None,
                 policy=None, executor: ExecutorArg = None, progress: Optional[Progress] = None):
        from . import catalog

        self.store = store
        self.space = space
        self.evaluator = evaluator
        self.config = CoarseConfig.from_dict(store.config)
        self.make_surrogate = surrogate or catalog.resolve(catalog.SURROGATES, self.config.surrogate, "surrogate")
        self.policy = policy or catalog.make_policy(self.config.policy, explore=self.config.explore)
        self._executor_arg = executor
        self.progress = progress or Progress()
        self._executor: Optional[Executor] = None
        self.pool: List[Candidate] = []
        self.costs = np.zeros((0, 2), dtype=np.int64)
        self._encoded: Optional[np.ndarray] = None
        from .run_clock import RunClock

        self.clock = RunClock()

    # ---- starting and continuing
    @classmethod
    def create(cls, run_dir, space, evaluator, config: Union[CoarseConfig, dict, None] = None, *, pool=None,
               surrogate: Optional[Callable] = None, policy=None, executor: ExecutorArg = None,
               progress: Optional[Progress] = None) -> "CoarseSearch":
        """A new run in ``run_dir`` (absent or empty). ``pool`` = (candidates, costs, sampled) if
        already computed. The pool is sampled and costed before the directory is made, so a
        budget that no candidate meets leaves nothing behind."""
        from .catalog import load_space

        space = load_space(space)
        if isinstance(config, dict):
            config = CoarseConfig.from_dict(config)
        config = copy.deepcopy(config) if config is not None else CoarseConfig()
        evaluator.check_space(space)
        if space.family is None and (config.budget is not None or config.max_params is not None):
            raise BudgetError(f"space {space.name} has no model family, so there are no FLOPs or params to "
                              "budget; drop the budget")
        check_budget(space, config.budget, config.max_params)
        config.space = space.name
        spec = evaluator.spec() if hasattr(evaluator, "spec") else None
        config.evaluator = spec
        config.evaluator_options = dict(evaluator.options()) if spec and hasattr(evaluator, "options") else {}
        config.diverged_score = getattr(evaluator, "diverged_score", None)
        if config.fidelities is None:
            config.fidelities = list(evaluator.fidelities()) if hasattr(evaluator, "fidelities") else []
        bounds = getattr(evaluator, "score_bounds", None)
        config.score_bounds = [float(b) for b in bounds] if bounds is not None else None
        _writable(run_dir, lambda: RunStore.check_new_dir(run_dir))
        progress = progress or Progress()
        if pool is None:
            pool = build_pool(space, config, progress=progress.shown)
        store = _writable(run_dir, lambda: RunStore.create(run_dir, config.to_dict()))
        # As JSON text: the store sorts the keys of mappings, and a space's dimension order matters.
        store.set_meta("space", json.dumps(space.to_dict()))
        return cls(store, space, evaluator, surrogate=surrogate, policy=policy, executor=executor,
                   progress=progress)._with_pool(pool)

    @classmethod
    def open(cls, run_dir, evaluator=None, *, space: Optional[SearchSpace] = None,
             surrogate: Optional[Callable] = None, policy=None, executor: ExecutorArg = None,
             progress: Optional[Progress] = None) -> "CoarseSearch":
        """Continue the run in ``run_dir``. ``evaluator`` defaults to the one the run names; a
        run scored by a Python function that cannot be imported by name needs it passed again."""
        from . import catalog

        store = RunStore.open(run_dir)
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
        return cls(store, space, evaluator, surrogate=surrogate, policy=policy, executor=executor,
                   progress=progress)

    def _with_pool(self, pool) -> "CoarseSearch":
        self._pending_pool = pool
        return self

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- helpers
    def log(self, line: str) -> None:
        self.progress.log(line)

    def full_epochs(self, cand: Candidate) -> Optional[int]:
        """Epochs of a candidate's full schedule (its recipe's ``epochs`` when it has one), capped."""
        epochs = cand.recipe.get("epochs")
        if epochs is None:
            return self.config.epoch_cap
        epochs = int(epochs)
        return epochs if self.config.epoch_cap is None else min(epochs, self.config.epoch_cap)

    @property
    def encoded(self) -> np.ndarray:
        if self._encoded is None:
            self._encoded = self.space.encode(self.pool)
        return self._encoded

    def score(self, trial: Trial, epoch: int) -> Optional[float]:
        """Surrogate target of a trial: its score at the calibrated epoch and fidelity, so that
        every trial is scored alike (a first-batch trial by its run at the calibrated fidelity)."""
        if trial.iteration == 1 and self.chosen_fidelity() is not None:
            cheap = self._cheap_runs().get(trial.id)   # None: not measured at that fidelity, so not comparable
            return None if cheap is None else measured_score(cheap["status"], cheap["curve"], epoch,
                                                             self.config.diverged_score)
        return measured_score(trial.status, trial.curve, epoch, self.config.diverged_score)

    def chosen_fidelity(self) -> Optional[dict]:
        """The calibrated cheaper setting (None: full fidelity, or not calibrated yet)."""
        fid = (self.calibration() or {}).get("fidelity")
        return fid if fid and any(v != 1.0 for v in fid.values()) else None

    def _cheap_runs(self) -> Dict[int, dict]:
        """First-batch runs at the chosen fidelity, by trial id."""
        fid = self.chosen_fidelity()
        if fid is None:
            return {}
        return {r["trial"]: r for r in self.store.results("fidelity_trial") if r["fidelity"] == fid}

    @property
    def final_predictor(self) -> Path:
        return self.store.run_dir / "predictor.pt"

    def calibration(self) -> Optional[dict]:
        found = self.store.results("calibration")
        return found[-1] if found else None

    def _load_surrogate(self, iteration: int):
        from .predictor.base import load_surrogate

        return load_surrogate(self.store.predictor_path(iteration), self.space)

    def _new_executor(self) -> Executor:
        from .executor import SerialExecutor

        arg = self._executor_arg
        if arg is None:
            return SerialExecutor()
        return arg if isinstance(arg, Executor) else arg()

    # ---- stages
    def run(self, pool=None) -> dict:
        """Run (or continue) the search; ``pool`` = (candidates, costs, sampled) if already computed."""
        requeued = self.store.requeue_running()
        if requeued:
            self.log(f"resume: {requeued} trial(s) interrupted while training go back to the queue")
        try:
            self._load_pool(pool if pool is not None else getattr(self, "_pending_pool", None))
            pretrained = self._pretrained()
            for it in range(1, self.config.iterations + 1):
                self._iteration(it, pretrained)
            if self.config.final and not self.store.results("final"):
                self._final()
        finally:
            failed = sys.exc_info()[0] is not None
            if self._executor is not None:
                self._executor.close(kill=failed)
                self._executor = None
            if failed:
                self.store.requeue_running()
        last = self.store.predictor_path(self.config.iterations)
        if last is not None:  # copied every time: a run extended by more iterations gets its new final predictor
            tmp = self.final_predictor.with_suffix(".pt.tmp")
            shutil.copyfile(last, tmp)
            tmp.replace(self.final_predictor)
        self.store.set_meta("finished", time.time())
        return self.summary()

    def _load_pool(self, pool) -> None:
        if self.store.pool_info() is not None:
            self.pool, self.costs = self.store.load_pool(self.space)
            return
        if pool is None:
            pool = build_pool(self.space, self.config, progress=self.progress.shown)
        cands, costs, sampled = pool
        self.store.save_pool(self.space, cands, costs, sampled=sampled)
        self.pool, self.costs = cands, np.asarray(costs, dtype=np.int64)
        self.log(f"pool: {sampled} Sobol samples, {len(cands)} within the budget")

    def _pretrained(self):
        path = self.store.predictor_path(0)
        if path is not None:
            return self._load_surrogate(0)
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
            _call(p.pretrain, self.pool, self.costs, progress=self.progress.shown)
            stage = "pretrained on proxies"
            self.log(f"predictor encoder pretrained on FLOPs/params of {len(self.pool)} candidates "
                     f"({time.time() - t:.1f} s)")
        path = self.store.predictor_file(0)
        p.save(path)
        self.store.register_predictor(0, path, stage=stage, n=len(self.pool))
        return p

    def _iteration(self, it: int, pretrained) -> None:
        if not self.store.trials(iteration=it):
            self._queue_batch(it)
        self._train_queued(it)
        if it == 1 and self.calibration() is None:
            self._train_fidelities()
            self._calibrate()
        if self.store.predictor_path(it) is None:
            self._fit(it, pretrained)

    def _queue_batch(self, it: int) -> None:
        tried = self.store.trial_keys()
        untried = np.array([c.key() not in tried for c in self.pool])
        if it == 1:
            idx = self.policy.first(self.encoded, self.config.batch, self.config.seed)
            how = self.policy.describe_first()
            epochs = None
        else:
            surrogate = self._load_surrogate(it - 1)
            rng = np.random.default_rng([self.config.seed, it])
            idx = self.policy.choose(self.encoded, untried, self.config.batch, surrogate, rng)
            how = self.policy.describe()
            epochs = self.calibration()["chosen_epoch"]
            fid = self.chosen_fidelity()
            if fid:
                how += f", at fidelity {self.calibration().get('fidelity_label')}"
        if not idx:
            self.log(f"iteration {it}: every pool candidate has been trained; nothing left to choose")
            return
        self.store.add_trials(it, [(i, self.pool[i], self.costs[i, 0], self.costs[i, 1]) for i in idx], epochs)
        self.log(f"iteration {it}: queued {len(idx)} candidates {how}, "
                 + ("full schedule" + (f" capped at {self.config.epoch_cap} epochs" if self.config.epoch_cap else "")
                    if epochs is None else f"{epochs} epochs (calibrated early stop)"))

    def _job(self, trial: Trial) -> Job:
        epochs = self.full_epochs(trial.candidate)
        if trial.target_epochs is not None:
            epochs = trial.target_epochs if epochs is None else min(epochs, trial.target_epochs)
        fidelity = self.chosen_fidelity() if trial.iteration > 1 else None
        return Job(trial.id, trial.candidate.to_dict(), self.space, self.evaluator, epochs, self.config.seed,
                   fidelity=fidelity)

    def _train_queued(self, it: int) -> None:
        queued = self.store.trials("queued", iteration=it)
        if not queued:
            return
        total = len(self.store.trials(iteration=it))
        if self._executor is None:
            self._executor = self._new_executor()
        ex = self._executor
        overall = self.progress.bar(total=total, initial=total - len(queued), desc=f"iteration {it} training",
                                    unit="trial")
        running: Dict[int, object] = {}  # trial id -> its bar of epochs
        try:
            while queued or ex.in_flight:
                while queued and ex.free_slots > 0:
                    trial = queued.pop(0)
                    job = self._job(trial)
                    where = ex.submit(job)
                    self.store.mark_running(trial.id, where)
                    running[trial.id] = self.progress.bar(total=job.epochs, desc=f"  trial {trial.id} ({where})",
                                                          unit="epoch", leave=False)
                for done in ex.poll(timeout=1.0):
                    self.store.record_result(done.trial_id, done.result)
                    bar = running.pop(done.trial_id, None)
                    if bar is not None:
                        bar.update(max(0, (done.result.get("epochs_run") or 0) - bar.n))
                        bar.close()
                    overall.update(1)
                    self.clock.record(done.result, 1.0)
                    self.log(self._trial_line(it, done) + self.clock.eta(self._remaining_work(), ex.capacity))
                for trial_id, bar in running.items():
                    behind = ex.epochs_done(trial_id) - bar.n
                    if behind > 0:
                        bar.update(behind)
                    else:
                        bar.refresh()  # the elapsed time moves on
        finally:
            for bar in running.values():
                bar.close()
            overall.close()

    # ---- the whole run's remaining work, for its ETA
    def _epoch_cost(self, fidelity: Optional[dict]) -> float:
        """Cost of one epoch at ``fidelity`` relative to full: measured once calibrated, else estimated."""
        if not fidelity:
            return 1.0
        cal = self.calibration() or {}
        if cal.get("fidelity") == fidelity and cal.get("epoch_cost"):
            return float(cal["epoch_cost"])
        from .fidelity import Fidelity

        f = Fidelity.from_dict(fidelity)
        return f.data * f.resolution ** 2 * f.width ** 2

    def _remaining_work(self) -> float:
        """Full-fidelity epochs the run still has to train (queued, later iterations, calibration, final)."""
        c, cal = self.config, self.calibration()
        trials = self.store.trials()
        first = [t for t in trials if t.iteration == 1]
        full = max([self.full_epochs(t.candidate) or 1 for t in first] or [c.epoch_cap or 3])
        epochs = cal["chosen_epoch"] if cal else full
        left = 0.0
        for t in trials:
            if t.status in ("queued", "running"):
                e = self.full_epochs(t.candidate) or full
                left += (min(e, t.target_epochs) if t.target_epochs else e) * (
                    self._epoch_cost(self.chosen_fidelity()) if t.iteration > 1 else 1.0)
        if cal is None:
            left += sum(len(first) * full * self._epoch_cost(f) for f in (c.fidelities or []))
        queued_iterations = max([t.iteration for t in trials] or [0])
        left += max(0, c.iterations - queued_iterations) * c.batch * epochs * self._epoch_cost(self.chosen_fidelity())
        if c.final and not self.store.results("final"):
            left += 2 * full
        return left

    def _run_jobs(self, jobs: List[Job], desc: str, line) -> Dict[int, dict]:
        """Run ``jobs`` (ids of one's choosing) on the executor; ``line(job, result)`` logs each."""
        if self._executor is None:
            self._executor = self._new_executor()
        ex, todo, by_id, out = self._executor, list(jobs), {j.trial_id: j for j in jobs}, {}
        bar = self.progress.bar(total=len(jobs), desc=desc, unit="run")
        try:
            while todo or ex.in_flight:
                while todo and ex.free_slots > 0:
                    ex.submit(todo.pop(0))
                for done in ex.poll(timeout=1.0):
                    job = by_id[done.trial_id]
                    out[done.trial_id] = done.result
                    bar.update(1)
                    self.clock.record(done.result, self._epoch_cost(job.fidelity))
                    # _remaining_work counts all of these jobs until the stage is recorded: less those done
                    done_work = sum((by_id[i].epochs or 1) * self._epoch_cost(by_id[i].fidelity) for i in out)
                    self.log(line(job, done.result) + self.clock.eta(self._remaining_work() - done_work, ex.capacity))
        finally:
            bar.close()
        return out

    def _train_fidelities(self) -> None:
        """Train the first batch again at each cheaper fidelity (stored as ``fidelity_trial`` results)."""
        if not self.config.fidelities:
            return
        from .fidelity import Fidelity

        done = {(r["trial"], json.dumps(r["fidelity"], sort_keys=True)) for r in self.store.results("fidelity_trial")}
        first = [t for t in self.store.trials("done", iteration=1)]
        jobs = []
        for k, fid in enumerate(self.config.fidelities, start=1):
            fid = Fidelity.from_dict(fid).to_dict()
            for t in first:
                if (t.id, json.dumps(fid, sort_keys=True)) not in done:
                    job = self._job(t)
                    job.trial_id, job.fidelity = -(k * 1_000_000 + t.id), fid
                    jobs.append(job)
        if not jobs:
            return
        self.log(f"fidelity calibration: training the first batch again at {len(self.config.fidelities)} cheaper "
                 f"setting(s): {', '.join(Fidelity.from_dict(f).label() for f in self.config.fidelities)}")

        def line(job, r):
            trial = -job.trial_id % 1_000_000
            self.store.save_result("fidelity_trial", {"trial": trial, "fidelity": job.fidelity, **{
                k: r.get(k) for k in ("status", "curve", "final_acc", "epochs_run", "wall_time", "error")}})
            score = r.get("final_acc")
            return (f"  trial {trial} at {Fidelity.from_dict(job.fidelity).label()}: {r.get('status')}"
                    + (f" score {score:.3f}" if score is not None else "")
                    + (f" in {r['wall_time']:.1f} s" if r.get("wall_time") else ""))

        self._run_jobs(jobs, "fidelity calibration", line)

    def _trial_line(self, it: int, event: JobDone) -> str:
        r = event.result
        score = r.get("final_acc")
        name = "val_acc" if self.config.score_bounds == [0.0, 1.0] else "score"
        line = (f"iter {it} trial {event.trial_id}: {r.get('status')}"
                + (f" {name} {score:.3f}" if score is not None else "")
                + f" after {r.get('epochs_run') or len(r.get('curve') or [])} epoch(s)"
                + (f" in {r['wall_time']:.1f} s" if r.get("wall_time") else "") + f" on {r.get('device')}")
        if r.get("error"):
            line += f" ({r['error']})"
        return line

    def _calibrate(self) -> None:
        cal = calibrate(self.store.trials(iteration=1), self.config.rank_threshold)
        if cal["n_trials"] == 0:
            raise UsageError("no trial of the first batch finished training, so there is nothing to calibrate "
                             f"on{self._errors()}")
        curve = ", ".join(f"{e}:{c:.2f}" for e, c in zip(cal["epochs"], cal["correlation"]))
        self.log(f"early-stop calibration ({cal['metric']} of score at epoch e vs final, "
                 f"{cal['n_trials']} trials): {curve or 'n/a'}")
        verdict = (f"reaches {cal['threshold']:g} at epoch {cal['chosen_epoch']}" if cal["reached"]
                   else cal.get("note", f"never reaches {cal['threshold']:g} before the last epoch"))
        self.log(f"early-stop epoch {cal['chosen_epoch']} of {cal['full_epochs']}: {verdict}")
        cal["fidelity"], cal["fidelity_label"], cal["epoch_cost"] = None, "full", 1.0
        cheap = self.store.results("fidelity_trial")
        if cheap and cal["n_trials"] >= 3:
            from .fidelity import calibrate_fidelity

            first = [{"trial": t.id, "curve": t.curve, "wall_time": t.wall_time}
                     for t in self.store.trials("done", iteration=1) if t.curve]
            fc = calibrate_fidelity(first, cheap, self.config.rank_threshold)
            self.store.save_result("fidelity_calibration", fc)
            for label in dict.fromkeys(o["label"] for o in fc["options"]):   # per setting: its cheapest pass, else its best
                mine = [o for o in fc["options"] if o["label"] == label]
                ok = [o for o in mine if o["accepted"]]
                o = min(ok, key=lambda o: o["relative_cost"]) if ok else max(mine, key=lambda o: o["tau"])
                self.log(f"  fidelity {label}: " + (f"accepted from epoch {o['epoch']}" if ok else "refused") +
                         f" (tau {o['tau']:.2f} at epoch {o['epoch']}, cost {o['relative_cost']:.2f}x of full)")
            chosen = fc["chosen"]
            cal["chosen_epoch"], cal["fidelity_label"] = chosen["epoch"], chosen["label"]
            if chosen["label"] != "full":
                cal["fidelity"] = chosen["fidelity"]
                cal["epoch_cost"] = fc["chosen_cost"] * fc["full_epochs"] / chosen["epoch"]
            cal["fidelity_cost"] = fc["chosen_cost"]
            self.log(f"chosen fidelity: {chosen['label']} at epoch {chosen['epoch']} "
                     f"({fc['chosen_cost']:.2f}x the cost of full training, {cal['metric']} >= {cal['threshold']:g})")
        self.store.save_result("calibration", cal)

    def _errors(self) -> str:
        errors = sorted({t.error for t in self.store.trials() if t.error})
        return f"; errors: {'; '.join(errors)[:300]}" if errors else ""

    def training_set(self):
        epoch = self.calibration()["chosen_epoch"]
        pairs = [(t, self.score(t, epoch)) for t in self.store.trials()]
        pairs = [(t, s) for t, s in pairs if s is not None]
        return [t for t, _ in pairs], np.array([s for _, s in pairs], dtype=np.float64)

    def _fit(self, it: int, pretrained) -> None:
        from .predictor.evaluate import cross_validate

        trials, y = self.training_set()
        if len(trials) < 3:
            raise UsageError(f"only {len(trials)} trial(s) finished with a score, too few to fit the "
                             f"surrogate{self._errors()}")
        cands = [t.candidate for t in trials]
        t0 = time.time()
        prior_note = ""
        if self.config.prior_pairs:
            from .predictor.prior import WithPrior, load_prior_pairs

            pc, py = load_prior_pairs(self.config.prior_pairs, self.space, self.calibration()["chosen_epoch"],
                                      self.config.diverged_score)
            tried = {c.key() for c in cands}
            keep = [i for i, c in enumerate(pc) if c.key() not in tried]
            pretrained = WithPrior(copy.deepcopy(pretrained), [pc[i] for i in keep], py[keep])
            prior_note = f" + {len(keep)} earlier pairs ({self.config.prior_pairs}, warm start)"
        surrogate = _call(copy.deepcopy(pretrained).fit, cands, y, progress=self.progress.shown)
        path = self.store.predictor_file(it)
        surrogate.save(path)
        fit_seconds = time.time() - t0
        record = {"iteration": it, "n_train": len(trials), "fit_seconds": fit_seconds, "kendall_tau": None,
                  "spearman_rho": None, "mae": None, "k": None,
                  "method": "k-fold cross-validation, pooled out-of-fold predictions"}
        if len(trials) >= 4:  # every fold must keep >= 3 pairs to fit on
            metrics = cross_validate(pretrained, cands, y, k=5, seed=self.config.seed)
            record.update(kendall_tau=metrics["kendall_tau_pooled"], spearman_rho=metrics["spearman_rho_pooled"],
                          mae=metrics["mae_pooled"], k=metrics["k"])
        if it > 1:
            # How well the previous surrogate ranked the batch it chose, before seeing it measured.
            batch = [(t, s) for t, s in zip(trials, y) if t.iteration == it]
            if len(batch) >= 2:
                prev = self._load_surrogate(it - 1)
                mean, _ = prev.predict([t.candidate for t, _ in batch])
                record["next_batch_tau"] = rank_correlation(mean, [s for _, s in batch])
        self.store.save_result("predictor_eval", record)
        self.store.register_predictor(it, path, n_train=len(trials))
        held_out = (f"held-out Kendall tau {record['kendall_tau']:.2f} ({record['k']}-fold)"
                    if record["k"] else "too few trials for a held-out measure")
        if "next_batch_tau" in record:
            held_out += f", tau on the batch it chose {record['next_batch_tau']:.2f}"
        self.log(f"iteration {it}: predictor fitted on {len(trials)} trials{prior_note}; {held_out}")
        chance = chance_line(record.get("kendall_tau"), len(trials), self.config.batch, it)
        if chance:
            self.log(chance)

    # ---- the result: the winner retrained at full fidelity, beside the space's default
    def _baseline(self) -> Optional[Candidate]:
        name = self.config.baseline or next(iter(self.space.presets), None)
        return self.space.preset(name) if name else None

    def _final(self) -> None:
        best = self.summary(top=1)["best"]
        if not best:
            self.log("no trial finished with a score: nothing to retrain")
            return
        trial = next(t for t in self.store.trials() if t.id == best[0]["trial"])
        winner = trial.candidate
        epochs = self.full_epochs(winner)
        jobs = [Job(-1, winner.to_dict(), self.space, self.evaluator, epochs, self.config.seed, test=True)]
        baseline = self._baseline()
        if baseline is not None:
            b_epochs = self.full_epochs(baseline)
            b_epochs = epochs if b_epochs is None else min(b_epochs, epochs) if epochs else b_epochs
            jobs.append(Job(-2, baseline.to_dict(), self.space, self.evaluator, b_epochs, self.config.seed, test=True))
        predicted = None
        path = self.store.predictor_path(self.config.iterations)
        if path is not None:
            predicted = float(self._load_surrogate(self.config.iterations).predict([winner])[0][0])
        self.log(f"final: retraining the winner (trial {trial.id}) at full fidelity for {epochs or 'its'} epochs"
                 + (f", beside the baseline {self.config.baseline or next(iter(self.space.presets))} "
                    "(its default recipe, same epochs)" if baseline is not None else ""))
        names = {-1: "winner", -2: "baseline"}
        results = self._run_jobs(jobs, "final retraining", lambda job, r: f"  {names[job.trial_id]}: "
                                 f"{r.get('status')} val {r.get('final_acc') or 0:.4f}, test "
                                 f"{r.get('test_score') if r.get('test_score') is not None else '-'}")
        record = {"trial": trial.id, "key": trial.key, "predicted": predicted, "searched_score": best[0]["score"],
                  "fidelity_label": (self.calibration() or {}).get("fidelity_label", "full"),
                  "epoch": (self.calibration() or {}).get("chosen_epoch")}
        for job in jobs:
            r = results.get(job.trial_id, {})
            record[names[job.trial_id]] = {"candidate": job.candidate, "epochs": job.epochs,
                                 **{k: r.get(k) for k in ("status", "final_acc", "test_score", "wall_time",
                                                          "epochs_run", "error")}}
        if baseline is not None:
            record["baseline"]["name"] = self.config.baseline or next(iter(self.space.presets))
        self.store.save_result("final", record)

    # ---- summary
    def summary(self, top: int = 5) -> dict:
        cal = self.calibration() or {}
        epoch = cal.get("chosen_epoch")
        trials = self.store.trials()
        scored = [(t, self.score(t, epoch)) for t in trials if t.status == "done"] if epoch else []
        scored = [(t, sc) for t, sc in scored if sc is not None]   # one comparable score: same fidelity and epoch
        scored.sort(key=lambda ts: -ts[1])
        return {"run": str(self.store.run_dir), "config": self.store.config, "calibration": cal,
                "counts": self.store.counts(), "iterations": sorted({t.iteration for t in trials}),
                "best": [{"trial": t.id, "iteration": t.iteration, "score": s, "final_acc": t.final_acc,
                          "epochs_run": t.epochs_run, "flops": t.flops, "params": t.params, "key": t.key}
                         for t, s in scored[:top]],
                "predictor_eval": self.store.results("predictor_eval"),
                "predictor": str(self.final_predictor),
                "final": (self.store.results("final") or [None])[-1]}



# From the measured curve (BENCHMARKS.md, "Predictor": held-out tau 0.17-0.24 at 25 real pairs,
# 0.29-0.37 at 50, 0.39-0.49 at 75 on digits): what a useful predictor needs.
USEFUL_TAU, PAIRS_FOR_USEFUL_TAU = 0.3, 50


def chance_line(tau: Optional[float], n: int, batch: int, iteration: int) -> Optional[str]:
    """A plain line when the predictor is still near chance, with how many more trials it needs."""
    if tau is not None and tau >= USEFUL_TAU:
        return None
    more = max(PAIRS_FOR_USEFUL_TAU - n, batch)
    iterations = iteration + -(-more // batch)
    measured = "no held-out measure yet" if tau is None else f"held-out tau {tau:.2f}"
    return (f"predictor still near chance ({measured} on {n} trials): about {more} more trials are needed for a "
            f"useful one (tau >= {USEFUL_TAU} took ~{PAIRS_FOR_USEFUL_TAU} trained pairs on digits, BENCHMARKS.md); "
            f"continue this run to {iterations} iterations")


def format_summary(s: dict) -> str:
    from .coarse_summary import format_summary as fmt

    return fmt(s)
