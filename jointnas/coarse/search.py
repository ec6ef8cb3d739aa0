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
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np

from .calibration import RANK_METRIC, calibrate, rank_correlation  # noqa: F401 - public names
from .config import CoarseConfig, build_pool, check_budget, run_space, writable  # noqa: F401
from ..errors import BudgetError, UsageError
from ..execution.local import Executor, Job, JobDone
from ..progress import Progress
from ..space import Candidate, SearchSpace
from ..store.run_store import RunStore, Trial, writing
from . import result as final
from .ranking import best_trials, cheap_runs, chosen_fidelity, score_at
from .policies import acquisition_batch, diverse_batch  # noqa: F401 - public names


# ---------------------------------------------------------------------- the loop
MIN_TRIALS = 3  # finished trials it takes to rank epochs (calibration) or fit the surrogate


def found_line(counts: Dict[str, int]) -> str:
    """What a resume finds: "4 finished (3 done, 1 failed), 2 re-queued (interrupted while training), 1 queued"
    (the trials a dead driver left running are the ones it re-queues)."""
    from ..store.run_store import FINISHED

    finished = {k: counts[k] for k in FINISHED if counts.get(k)}
    line = f"{sum(finished.values())} finished"
    if finished:
        line += " (" + ", ".join(f"{v} {k}" for k, v in finished.items()) + ")"
    line += f", {counts.get('running', 0)} re-queued (interrupted while training)"
    if counts.get("queued"):
        line += f", {counts['queued']} queued"
    return line


def _call(fn, *args, **optional):
    """``fn(*args, **those optional keywords fn accepts)``: surrogates need not take ``progress``."""
    try:
        accepted = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        accepted = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    return fn(*args, **{k: v for k, v in optional.items() if takes_any or k in accepted})


ExecutorArg = Union[Executor, Callable[[], Executor], None]


class CoarseSearch:
    """The loop over a run store. Start a run with :meth:`create`, continue one with :meth:`open`.

    ``surrogate``: a factory ``make(space, *, seed, ensemble, score_bounds) -> Surrogate``
    (default: the catalog's entry for the run's ``surrogate`` name); ``policy``: a batch policy
    (default: the run's ``policy`` name with its ``explore``); ``executor``: an Executor or a
    callable making one when the first trial is due (default: a SerialExecutor).
    """

    def __init__(self, store: RunStore, space: SearchSpace, evaluator, *, surrogate: Optional[Callable] = None,
                 policy=None, executor: ExecutorArg = None, progress: Optional[Progress] = None):
        from .. import catalog

        self.store = store
        self.space = space
        self.evaluator = evaluator
        self.config = CoarseConfig.from_dict(store.config)
        self.make_surrogate = surrogate or catalog.surrogate_factory(self.config.surrogate)
        self.policy = policy or catalog.make_policy(self.config.policy, explore=self.config.explore)
        self._executor_arg = executor
        self.progress = progress or Progress()
        self._executor: Optional[Executor] = None
        self.pool: List[Candidate] = []
        self.costs = np.zeros((0, 2), dtype=np.int64)
        self._encoded: Optional[np.ndarray] = None
        from .clock import RunClock

        self.clock = RunClock()
        self._extrapolator = (None, None)  # (epoch, its ScheduleExtrapolator or None), fitted once per epoch

    # ---- starting and continuing
    @classmethod
    def create(cls, run_dir, space, evaluator, config: Union[CoarseConfig, dict, None] = None, *, pool=None,
               surrogate: Optional[Callable] = None, policy=None, executor: ExecutorArg = None,
               progress: Optional[Progress] = None) -> "CoarseSearch":
        """A new run in ``run_dir`` (absent or empty). ``pool`` = (candidates, costs, sampled) if
        already computed. The pool is sampled and costed before the directory is made, so a
        budget that no candidate meets leaves nothing behind."""
        from ..catalog import load_space

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
        if config.fidelities is None:  # earlier pairs were measured at full fidelity: they fix it
            config.fidelities = (list(evaluator.fidelities()) if hasattr(evaluator, "fidelities")
                                 and not config.prior_pairs else [])
        bounds = getattr(evaluator, "score_bounds", None)
        config.score_bounds = [float(b) for b in bounds] if bounds is not None else None
        writable(run_dir, lambda: RunStore.check_new_dir(run_dir))
        progress = progress or Progress()
        if pool is None:
            pool = build_pool(space, config, progress=progress.shown)
        store = writable(run_dir, lambda: RunStore.create(run_dir, config.to_dict(), lock=True))
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
        from .. import catalog

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
        """Surrogate target of a trial: its score at the calibrated epoch and fidelity
        (:mod:`jointnas.coarse.ranking`), a diverged one at the run's diverged score."""
        return score_at(trial, epoch, self.cheap_runs(), self.config.diverged_score)

    def chosen_fidelity(self) -> Optional[dict]:
        """The calibrated cheaper setting (None: full fidelity, or not calibrated yet)."""
        return chosen_fidelity(self.calibration())

    def cheap_runs(self) -> Dict[int, dict]:
        """First-batch runs at the chosen fidelity, by trial id."""
        return cheap_runs(self.calibration(), self.store.results("fidelity_trial"))

    @property
    def final_predictor(self) -> Path:
        return self.store.run_dir / "predictor.pt"

    def calibration(self) -> Optional[dict]:
        found = self.store.results("calibration")
        return found[-1] if found else None

    def extrapolator(self):
        """A :class:`~jointnas.coarse.extrapolate.ScheduleExtrapolator` fitted on the earlier pairs' whole
        curves at the calibrated epoch; None without earlier pairs (or too few whole curves), before
        calibration, or at a cheaper fidelity than theirs."""
        epoch = (self.calibration() or {}).get("chosen_epoch")
        if not self.config.prior_pairs or epoch is None or self.chosen_fidelity() is not None:
            return None
        if self._extrapolator[0] != epoch:
            from .extrapolate import from_pairs

            self._extrapolator = (epoch, from_pairs(self.config.prior_pairs, self.space, epoch,
                                                    self.config.diverged_score, self.config.seed))
        return self._extrapolator[1]

    def _load_surrogate(self, iteration: int):
        from ..surrogates.base import load_surrogate

        return load_surrogate(self.store.predictor_path(iteration), self.space)

    def _new_executor(self) -> Executor:
        from ..execution.local import SerialExecutor

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
            winner = final.pending(self) if self.config.final else None
            if winner is not None:
                final.retrain_winner(self, *winner)
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
            with writing(tmp):
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
            how = ("encoder pretrained on" if getattr(p, "kind", None) == "mlp"
                   else "given as features the")
            self.log(f"{getattr(p, 'kind', None) or 'surrogate'} predictor: {how} FLOPs/params of {len(self.pool)} "
                     f"candidates ({time.time() - t:.1f} s)")
        path = self.store.predictor_file(0)
        p.save(path)
        self.store.register_predictor(0, path, stage=stage, n=len(self.pool))
        return p

    def retry_failed(self) -> int:
        """Queue the run's failed trials again (their attempts keep counting); returns how many."""
        n = self.store.requeue_failed()
        if n:
            self.log(f"{n} failed trial(s) queued again")
        return n

    def _iteration(self, it: int, pretrained) -> None:
        if not self.store.trials(iteration=it):
            self._queue_batch(it)
        self._train_queued(it)
        while self._shortfall(it):  # too few finished to calibrate or fit on: more candidates, not a dead run
            if not self._queue_batch(it, self._shortfall(it)):
                raise UsageError(f"every candidate of the pool has been tried and too few finished with a score to "
                                 f"go on{self._errors()}; sample a larger pool")
            self._train_queued(it)
        if it == 1 and self.calibration() is None:
            self._train_fidelities()
            self._calibrate()
        if self.store.predictor_path(it) is None:
            self._fit(it, pretrained)

    def _shortfall(self, it: int) -> int:
        """How many more finished trials iteration ``it`` needs: MIN_TRIALS done to calibrate on
        (iteration 1), MIN_TRIALS scored (done or diverged) to fit the surrogate on."""
        need = 0
        if it == 1 and self.calibration() is None:
            done = [t for t in self.store.trials("done", iteration=1) if t.curve and t.final_acc is not None]
            need = MIN_TRIALS - len(done)
        elif self.store.predictor_path(it) is None and self.calibration() is not None:
            need = MIN_TRIALS - len(self.training_set(up_to=it)[0])
        return max(0, need)

    def _queue_batch(self, it: int, more: int = 0) -> int:
        """Queue iteration ``it``'s batch, or ``more`` candidates beside it; returns how many."""
        tried = self.store.trial_keys()
        untried = np.array([c.key() not in tried for c in self.pool])
        k = more or (self.config.first_batch_size if it == 1 else self.config.batch)
        if it == 1:
            # The first batch's choice, extended: farthest-point sampling continues where the batch stopped.
            have = len(self.store.trials(iteration=1)) if more else 0
            idx = [i for i in self.policy.first(self.encoded, have + k, self.config.seed) if untried[i]][:k]
            how = self.policy.describe_first()
            epochs = None
        else:
            surrogate = self._load_surrogate(it - 1)
            rng = np.random.default_rng([self.config.seed, it] + ([len(tried)] if more else []))
            idx = self.policy.choose(self.encoded, untried, k, surrogate, rng)
            how = self.policy.describe()
            epochs = self.calibration()["chosen_epoch"]
            fid = self.chosen_fidelity()
            if fid:
                how += f", at fidelity {self.calibration().get('fidelity_label')}"
        if not idx:
            self.log(f"iteration {it}: every pool candidate has been trained; nothing left to choose")
            return 0
        self.store.add_trials(it, [(i, self.pool[i], self.costs[i, 0], self.costs[i, 1]) for i in idx], epochs)
        self.log(f"iteration {it}: queued {len(idx)} {'more ' if more else ''}candidates {how}"
                 + (" (too few of its trials finished to go on)" if more else "") + ", "
                 + ("full schedule" + (f" capped at {self.config.epoch_cap} epochs" if self.config.epoch_cap else "")
                    if epochs is None else f"{epochs} epochs (calibrated early stop)"))
        return len(idx)

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
        if ex.capacity > 1:
            # Longest first (by FLOPs x epochs), so that the batch's last trial does not leave the
            # other workers idle (BENCHMARKS.md, "The README's main command": 208 -> 178 s).
            queued.sort(key=lambda t: -(t.flops or 0) * (t.target_epochs or self.full_epochs(t.candidate) or 1))
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
                    self.store.record_result(done.trial_id, done.result, retries=getattr(done, "attempts", 1) - 1)
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
        from ..evaluation.fidelity import Fidelity

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
            chosen = final.choose(self)
            left += 2 * ((chosen[0].candidate.recipe.get("epochs") if chosen else None) or full)
        return left

    def run_jobs(self, jobs: List[Job], desc: str, line) -> Dict[int, dict]:
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
        from ..evaluation.fidelity import Fidelity

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

        self.run_jobs(jobs, "fidelity calibration", line)

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
        if getattr(event, "attempts", 1) > 1:
            line += f"; started {event.attempts} times (its worker died)"
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
            from ..evaluation.fidelity import calibrate_fidelity

            first = [{"trial": t.id, "curve": t.curve, "wall_time": t.wall_time}
                     for t in self.store.trials("done", iteration=1) if t.curve]
            fc = calibrate_fidelity(first, cheap, self.config.rank_threshold)
            self.store.save_result("fidelity_calibration", fc)
            # per setting: its cheapest pass, else its best
            for label in dict.fromkeys(o["label"] for o in fc["options"]):
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

    def training_set(self, up_to: Optional[int] = None):
        """Scored trials (of iterations <= ``up_to``: a checkpoint fitted again sees what it saw first)."""
        epoch, cheap = self.calibration()["chosen_epoch"], self.cheap_runs()   # read once, not per trial
        pairs = [(t, score_at(t, epoch, cheap, self.config.diverged_score)) for t in self.store.trials()
                 if up_to is None or t.iteration <= up_to]
        pairs = [(t, s) for t, s in pairs if s is not None]
        return [t for t, _ in pairs], np.array([s for _, s in pairs], dtype=np.float64)

    def _fit(self, it: int, pretrained) -> None:
        from ..surrogates.evaluate import cross_validate

        trials, y = self.training_set(up_to=it)
        if len(trials) < 3:
            raise UsageError(f"only {len(trials)} trial(s) finished with a score, too few to fit the "
                             f"surrogate{self._errors()}")
        cands = [t.candidate for t in trials]
        t0 = time.time()
        prior_note, n_prior = "", 0
        if self.config.prior_pairs and self.chosen_fidelity() is not None:
            prior_note = " (earlier pairs not used: they are at full fidelity, the run's trials are not)"
        elif self.config.prior_pairs:
            from ..surrogates.prior import WithPrior, load_prior_pairs

            pc, py = load_prior_pairs(self.config.prior_pairs, self.space, self.calibration()["chosen_epoch"],
                                      self.config.diverged_score, exclude=(c.key() for c in cands))
            pretrained = WithPrior(copy.deepcopy(pretrained), pc, py)
            n_prior = len(pc)
            prior_note = f" + {len(pc)} earlier pairs ({self.config.prior_pairs}, warm start)"
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
        self.store.save_result("predictor_eval", record, replace="iteration")
        self.store.register_predictor(it, path, n_train=len(trials))
        held_out = (f"held-out Kendall tau {record['kendall_tau']:.2f} ({record['k']}-fold)"
                    if record["k"] else "too few trials for a held-out measure")
        if "next_batch_tau" in record:
            held_out += f", tau on the batch it chose {record['next_batch_tau']:.2f}"
        self.log(f"iteration {it}: predictor fitted on {len(trials)} trials{prior_note}; {held_out}")
        chance = chance_line(record.get("kendall_tau"), len(trials) + n_prior, self.config.batch, it)
        if chance:
            self.log(chance)

    def final_surrogate_path(self) -> Optional[Path]:
        return self.store.predictor_path(self.config.iterations)

    def final_surrogate(self):
        return self._load_surrogate(self.config.iterations)

    # ---- summary
    def summary(self, top: int = 5) -> dict:
        cal = self.calibration() or {}
        epoch = cal.get("chosen_epoch")
        trials = self.store.trials()
        scored = best_trials(trials, epoch, cheap=self.cheap_runs())[:top]  # the report ranks by the same rule
        extrapolator = self.extrapolator()
        expected = (extrapolator.predict([t.candidate for t, _ in scored], [v for _, v in scored])
                    if extrapolator is not None and scored else [None] * len(scored))
        return {"run": str(self.store.run_dir), "config": self.store.config, "calibration": cal,
                "counts": self.store.counts(), "iterations": sorted({t.iteration for t in trials}),
                "best": [{"trial": t.id, "iteration": t.iteration, "score": s, "final_acc": t.final_acc,
                          "epochs_run": t.epochs_run, "schedule": t.candidate.recipe.get("epochs"),
                          "expected_final": None if e is None else float(e), "flops": t.flops, "params": t.params,
                          "key": t.key} for (t, s), e in zip(scored, expected)],
                "predictor_eval": sorted(self.store.results("predictor_eval"), key=lambda e: e["iteration"]),
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
    return (f"predictor still near chance ({measured}, fitted on {n} pairs): about {more} more trials are "
            f"needed for a useful one (tau >= {USEFUL_TAU} took ~{PAIRS_FOR_USEFUL_TAU} trained pairs on digits, "
            f"BENCHMARKS.md); continue this run to {iterations} iterations")


def format_summary(s: dict) -> str:
    from .summary import format_summary as fmt

    return fmt(s)
