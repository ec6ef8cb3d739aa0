"""The coarse loop as ask/tell over a run store, FBNetV3's constrained iterative optimisation:

1. Sobol pool -> FLOPs/params of each candidate (the space's family) -> those over the budget dropped.
2. Surrogate pretrained on the proxies (checkpoint ``iter0``); a space without a family has
   no proxies, and its surrogate starts untrained.
3. Iteration 1: the policy's first batch (today: diverse, farthest-point over the encoding)
   evaluated to its full schedule; the early-stop epoch and the cheaper fidelity are calibrated
   on it (:mod:`~jointnas.coarse.calibration`).
4. Iterations 2..N: the policy's next batch given the surrogate (today: mean + explore * std),
   evaluated to the calibrated epoch; the surrogate is refitted each time (``Surrogate.update``
   after the first fit). With ``max_trials`` the last batch is cut so that exactly that many
   trials are evaluated, and the run ends there.

Nothing is trained here. :meth:`CoarseLoop.due` does every step that needs no new measurement
(queue a batch, calibrate, fit) and says what it waits for: trials to train (each with its
:class:`~jointnas.evaluation.base.TrialRequest`), or the first batch again at cheaper fidelities;
:meth:`~CoarseLoop.tell` records a measurement. :class:`~jointnas.coarse.search.CoarseSearch`
trains what is due on an executor, :class:`~jointnas.coarse.study.Study` hands it to its user.
Every step reads the store first, so a loop opened on a run continues where it stopped.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..errors import UsageError
from ..evaluation.base import TrialRequest
from ..evaluation.fidelity import Fidelity
from ..space import Candidate
from ..store import Trial
from ..surrogates.prior import WithPrior, load_prior_pairs
from .calibration import Calibration, calibrate, calibrate_fidelity, fidelity_lines
from .config import MIN_TRIALS
from .held_out import HeldOutSchedule, fit_lines, held_out, measure_held_out
from .pool_scorer import PoolScorer, untried_mask
from .run import CoarseRun
CHEAPER_ID = 1_000_000  # a cheaper run of trial t at the k-th fidelity has the id -(k * CHEAPER_ID + t)


@dataclass(frozen=True)
class Task:
    """One evaluation the loop asks for: ``id`` names it to an executor (a trial's own id, or a
    negative one for a run that is not a trial), its ``candidate`` and ``request``."""

    id: int
    candidate: Candidate
    request: TrialRequest
    trial: Optional[Trial] = None   # the trial it measures (None: a run of the result stage)


@dataclass(frozen=True)
class Due:
    """What the loop waits for (:meth:`CoarseLoop.due`)."""

    iteration: Optional[int] = None   # None: every iteration is complete
    trials: Tuple[Task, ...] = ()     # the iteration's queued trials, in the order to train them
    out: int = 0                      # its trials out for training (started, not told yet)
    cheaper: Tuple[Task, ...] = ()    # first-batch trials to train again at a cheaper fidelity

    @property
    def complete(self) -> bool:
        return self.iteration is None


class CoarseLoop(CoarseRun):
    """The coarse run's steps as ask/tell: :meth:`due` says what to train, :meth:`tell` records it."""

    # ---- ask and tell
    def due(self) -> Due:
        """Take every step that needs no new measurement (queue the next batch, calibrate once
        the first batch is measured, fit the surrogate once an iteration is) and return what
        the loop waits for; ``Due()`` (complete) once every iteration is."""
        self.start()
        it = self._done_through + 1   # earlier iterations stay complete: not read again each time
        while it <= self.config.iterations:
            if not self.store.trials(iteration=it):
                if it > 1 and self.trials_left() == 0:
                    self.end_at(it - 1)
                    break
                self.queue_batch(it)
            queued = self.store.trials("queued", iteration=it)
            out = len(self.store.trials("running", iteration=it))
            if queued or out:
                return Due(it, tuple(Task(t.id, t.candidate, self.request(t), t) for t in queued), out)
            short = self.shortfall(it)
            if short:  # too few finished to calibrate or fit on: more candidates, not a dead run
                if self.trials_left() == 0:
                    raise UsageError(f"the evaluation budget ({self.config.max_trials} trials) is spent and too "
                                     f"few finished with a score to go on{self._errors()}; raise max_trials")
                if not self.queue_batch(it, short):
                    raise UsageError(f"every candidate of the pool has been tried and too few finished with a "
                                     f"score to go on{self._errors()}; sample a larger pool")
                continue
            if it == 1 and self.calibration() is None:
                cheaper = self._cheaper_tasks()
                if cheaper:
                    return Due(1, cheaper=cheaper)
                self.calibrate()
            if self.store.predictor_path(it) is None:
                self.fit(it)
            self._done_through = it
            it += 1
        return Due()

    def request(self, trial: Trial) -> TrialRequest:
        """What training ``trial`` asks: its full (capped) schedule in the first batch, else the
        calibrated epoch at the calibrated fidelity."""
        epochs = self.full_epochs(trial.candidate)
        if trial.target_epochs is not None:
            epochs = trial.target_epochs if epochs is None else min(epochs, trial.target_epochs)
        fidelity = self.chosen_fidelity() if trial.iteration > 1 else None
        return TrialRequest(epochs, self.config.seed, fidelity=fidelity)

    def started(self, trial_id: int, where: str) -> None:
        """Trial ``trial_id`` is out for training (``where``: a worker's label)."""
        self.store.mark_running(trial_id, where)

    def tell(self, trial_id: int, result: dict, attempts: int = 1) -> None:
        """Record a trial's result (``TrialResult.to_dict()``); ``attempts``: the times it was started."""
        self.store.record_result(trial_id, result, retries=attempts - 1)

    def tell_cheaper(self, task: Task, result: dict) -> None:
        """Record a first-batch trial's run at a cheaper fidelity (a :attr:`Due.cheaper` task)."""
        self.store.save_result("fidelity_trial", {"trial": task.trial.id, "fidelity": task.request.fidelity, **{
            k: result.get(k) for k in ("status", "curve", "final_acc", "epochs_run", "wall_time", "error")}})

    def retry_failed(self) -> int:
        """Queue the run's failed trials again (their attempts keep counting); returns how many."""
        n = self.store.requeue_failed()
        self._done_through = 0   # an iteration with a trial queued again is not complete any more
        if n:
            self.log(f"{n} failed trial(s) queued again")
        return n

    def extend(self, iterations: int) -> None:
        """Raise the run's iterations to ``iterations`` (never lowered: a run can only be extended)."""
        if iterations < self.config.iterations:
            raise UsageError(f"the run has {self.config.iterations} iterations already; a run can only be extended")
        if iterations != self.config.iterations:
            self.store.update_config(iterations=iterations)
            self.config.iterations = iterations

    def exhausted(self) -> bool:
        """Whether every candidate of the pool has been queued."""
        return not self.untried().any()

    def untried(self) -> np.ndarray:
        """Mask of the pool rows not queued yet (read from the store once, then kept as trials are queued)."""
        self.start()
        if self._untried is None:
            self._untried = untried_mask(len(self.pool), self.store.trial_pool_indices())
        return self._untried

    def trials_left(self) -> Optional[int]:
        """Trials the evaluation budget (``max_trials``) still allows; None without one."""
        if self.config.max_trials is None:
            return None
        return max(0, self.config.max_trials - self.store.trial_count())

    def end_at(self, iteration: int) -> None:
        """The budget is spent after ``iteration``: the run ends there (its last iteration from now
        on, with the held-out measure every last iteration gets)."""
        if iteration != self.config.iterations:
            self.store.update_config(iterations=iteration)
            self.config.iterations = iteration
            self.log(f"evaluation budget spent: {self.config.max_trials} trials; the run ends at iteration {iteration}")
        self.measure(iteration)

    # ---- the steps
    def shortfall(self, it: int) -> int:
        """How many more finished trials iteration ``it`` needs: MIN_TRIALS done to calibrate on
        (iteration 1), MIN_TRIALS scored (done or diverged) to fit the surrogate on."""
        need = 0
        if it == 1 and self.calibration() is None:
            done = [t for t in self.store.trials("done", iteration=1) if t.curve and t.final_acc is not None]
            need = MIN_TRIALS - len(done)
        elif it == 1 and self.store.predictor_path(it) is None and self.calibration() is not None:
            # (a later iteration adds to the training set its predecessor was fitted on, which had enough)
            need = MIN_TRIALS - len(self.training_set(up_to=it)[0])
        return max(0, need)

    def queue_batch(self, it: int, more: int = 0) -> int:
        """Queue iteration ``it``'s batch, or ``more`` candidates beside it (either cut to what the
        evaluation budget allows); returns how many."""
        untried = self.untried()
        k = more or (self.config.first_batch_size if it == 1 else self.config.batch)
        left = self.trials_left()
        k = k if left is None else min(k, left)
        if it == 1:
            # The first batch's choice, extended: farthest-point sampling continues where the batch stopped.
            have = len(self.store.trials(iteration=1)) if more else 0
            lead = [i for i in self.first_rows() if untried[i]][:k]
            idx = lead + [i for i in self.policy.first(self.encoded, have + k, self.config.seed)
                          if untried[i] and i not in lead][:k - len(lead)]
            how = self.policy.describe_first() + (f", led by {len(lead)} given candidate(s)" if lead else "")
            epochs = None
        else:
            surrogate = PoolScorer(self.surrogate(it - 1), self.encoded, self.costs)
            tried = len(self.pool) - int(untried.sum())
            rng = np.random.default_rng([self.config.seed, it] + ([tried] if more else []))
            idx = self.policy.choose(self.encoded, untried.copy(), k, surrogate, rng)
            how = self.policy.describe()
            cal = self.calibration()
            epochs = cal.chosen_epoch
            if cal.cheaper_fidelity:
                how += f", at fidelity {cal.fidelity_label}"
        if not idx:
            self.log(f"iteration {it}: every pool candidate has been trained; nothing left to choose")
            return 0
        self.store.add_trials(it, [(i, self.pool[i], self.costs[i, 0], self.costs[i, 1]) for i in idx], epochs)
        untried[idx] = False
        self.log(f"iteration {it}: queued {len(idx)} {'more ' if more else ''}candidates {how}"
                 + (" (too few of its trials finished to go on)" if more else "") + ", "
                 + ("full schedule" + (f" capped at {self.config.epoch_cap} epochs" if self.config.epoch_cap else "")
                    if epochs is None else f"{epochs} epochs (calibrated early stop)"))
        return len(idx)

    def first_rows(self) -> list:
        """Pool rows of the run's ``first_candidates`` (the first batch trains them first)."""
        if not self.config.first_candidates:
            return []
        keys = {self.space.as_candidate(c, i).key() for i, c in enumerate(self.config.first_candidates or ())}
        return [i for i, c in enumerate(self.pool) if c.key() in keys]

    def _cheaper_tasks(self) -> Tuple[Task, ...]:
        """The first batch's finished trials at each cheaper fidelity of the run, less those told."""
        if not self.config.fidelities:
            return ()
        told = {(r["trial"], json.dumps(r["fidelity"], sort_keys=True)) for r in self.store.results("fidelity_trial")}
        first = self.store.trials("done", iteration=1)
        tasks = []
        for k, fid in enumerate(self.config.fidelities, start=1):
            fid = Fidelity.from_dict(fid).to_dict()
            for t in first:
                if (t.id, json.dumps(fid, sort_keys=True)) not in told:
                    request = dataclasses.replace(self.request(t), fidelity=fid)
                    tasks.append(Task(-(k * CHEAPER_ID + t.id), t.candidate, request, t))
        return tuple(tasks)

    def calibrate(self) -> Calibration:
        """Calibrate the early-stop epoch on the first batch and, where it was trained at cheaper
        fidelities, the fidelity; the record is stored and returned."""
        first = self.store.trials(iteration=1)
        cal = Calibration.from_dict(calibrate(first, self.config.rank_threshold))
        if cal.n_trials == 0:
            raise UsageError("no trial of the first batch finished training, so there is nothing to calibrate "
                             f"on{self._errors()}")
        for line in cal.lines():
            self.log(line)
        cheap = self.store.results("fidelity_trial")
        if cheap and cal.n_trials >= MIN_TRIALS:
            full = [{"trial": t.id, "curve": t.curve, "wall_time": t.wall_time}
                    for t in first if t.status == "done" and t.curve]
            fc = calibrate_fidelity(full, cheap, self.config.rank_threshold)
            self.store.save_result("fidelity_calibration", fc)
            for line in fidelity_lines(fc):
                self.log(line)
            cal = cal.with_fidelity(fc)
            self.log(f"chosen fidelity: {cal.fidelity_label} at epoch {cal.chosen_epoch} "
                     f"({fc['chosen_cost']:.2f}x the cost of full training, {cal.metric} >= {cal.threshold:g})")
        self.store.save_result("calibration", cal.to_dict())
        return cal

    def fit(self, it: int) -> None:
        """Fit the surrogate on what iterations <= ``it`` measured (its checkpoint ``iter<it>``):
        the first fit from the pretrained template, later ones as ``Surrogate.update`` of the
        previous iteration's surrogate. Its ``predictor_eval`` record has the tau of the previous
        surrogate on this iteration's batch and, when :class:`~jointnas.coarse.held_out.HeldOutSchedule`
        says so, a k-fold held-out measure."""
        trials, y = self.training_set(up_to=it)
        if len(trials) < MIN_TRIALS:
            raise UsageError(f"only {len(trials)} trial(s) finished with a score, too few to fit the "
                             f"surrogate{self._errors()}")
        cands = [t.candidate for t in trials]
        t0 = time.time()
        template, note, n_prior = self.fit_template(cands)
        record = held_out(trials, y, it, previous=self.surrogate(it - 1) if it > 1 else None)
        if it > 1 and not n_prior:
            # the previous iteration's surrogate continues (the stored checkpoint keeps what it was)
            surrogate = self.surrogate(it - 1).update(cands, y, progress=self.progress.shown)
            self._fitted.pop(it - 1, None)
        else:
            surrogate = copy.deepcopy(template).fit(cands, y, progress=self.progress.shown)
        record["fit_seconds"] = time.time() - t0
        path = self.store.predictor_file(it)
        surrogate.save(path)
        self._fitted[it] = surrogate
        if self.schedule().due(len(trials), last=it == self.config.iterations):
            record = self._measured(record, template, trials, y)
        self.store.register_fit(it, path, record, n_train=len(trials))
        for line in fit_lines(record, note, n_prior, self.config.batch, self.schedule()):
            self.log(line)

    def fit_template(self, cands):
        """(the unfitted surrogate every cold fit on ``cands`` starts from, a note for the log, the
        number of earlier pairs it holds: those of ``cands`` left out)."""
        template, note, n_prior = self.pretrained(), "", 0
        if self.config.prior_pairs and self.chosen_fidelity() is not None:
            note = " (earlier pairs not used: they are at full fidelity, the run's trials are not)"
        elif self.config.prior_pairs:
            pc, py = load_prior_pairs(self.config.prior_pairs, self.space, self.calibration().chosen_epoch,
                                      self.config.diverged_score, exclude=(c.key() for c in cands))
            template, n_prior = WithPrior(copy.deepcopy(template), pc, py), len(pc)
            note = f" + {len(pc)} earlier pairs ({self.config.prior_pairs}, warm start)"
        return template, note, n_prior

    def schedule(self) -> HeldOutSchedule:
        """When a fit is measured held out (read from the run's records once)."""
        if self._held_out is None:
            self._held_out = HeldOutSchedule.from_records(self.store.results("predictor_eval"))
        return self._held_out

    def measure(self, it: int) -> None:
        """Give iteration ``it``'s fit its k-fold held-out measure if it has none (on demand: the
        run's last iteration when a budget ended it early)."""
        record = next((r for r in self.store.results("predictor_eval") if r["iteration"] == it), None)
        if record is None or record.get("k") is not None:
            return
        trials, y = self.training_set(up_to=it)
        record = self._measured(record, self.fit_template([t.candidate for t in trials])[0], trials, y)
        self.store.save_result("predictor_eval", record, replace="iteration")

    def _measured(self, record: dict, template, trials, y) -> dict:
        out = measure_held_out(record, template, trials, y, self.config.seed)
        self.schedule().record(out)
        return out

    def _errors(self) -> str:
        errors = sorted({t.error for t in self.store.trials() if t.error})
        return f"; errors: {'; '.join(errors)[:300]}" if errors else ""
