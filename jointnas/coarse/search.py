"""The coarse stage run on an executor: :class:`CoarseSearch` trains what the ask/tell core
(:class:`~jointnas.coarse.loop.CoarseLoop`) says is due, with progress bars and the whole
run's ETA, then the result stage (:mod:`~jointnas.coarse.result`).

Every step reads what is already in the run store first, so running again on the same run
directory continues where a crash or Ctrl-C stopped it. ``CoarseSearch.create`` starts a run
and ``CoarseSearch.open`` continues one; the evaluator, surrogate factory, batch policy and
executor are injected.
"""
from __future__ import annotations

import shutil
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Union

from ..errors import JointnasError, StopSearch
from ..evaluation.base import Evaluator
from ..evaluation.fidelity import Fidelity
from ..execution.base import Executor, Job, JobDone
from ..execution.serial import SerialExecutor
from ..io import replacing
from ..progress import Progress
from ..space import SearchSpace
from ..store import RunStore, writing
from ..trial import STOPPED
from . import result
from .clock import RunClock, epoch_cost, flops_of, remaining_work
from .config import CoarseConfig
from .loop import CoarseLoop, Due, Task
from .summary import summary as run_summary

ExecutorArg = Union[Executor, Callable[[], Executor], None]
ETA_EVERY = 2.0   # seconds between two estimates of the run's remaining time


class CoarseSearch:
    """A coarse run trained on an executor. Start a run with :meth:`create`, continue one with
    :meth:`open`; ``surrogate`` and ``policy`` as :class:`~jointnas.coarse.loop.CoarseLoop`
    takes them; ``executor``: an Executor or a callable making one when the first trial is
    due (default: a SerialExecutor). :attr:`loop` is the ask/tell core it drives."""

    def __init__(self, loop: CoarseLoop, executor: ExecutorArg = None):
        self.loop = loop
        self._executor_arg = executor
        self._executor: Optional[Executor] = None
        self._stop: Optional[str] = None   # an objective's StopSearch message, once one is seen
        self._eta_text: Optional[str] = None
        self._eta_at = 0.0
        self.clock = RunClock()

    @classmethod
    def create(cls, run_dir, space, evaluator: Evaluator, config: Union[CoarseConfig, dict, None] = None, *,
               pool=None, surrogate: Optional[Callable] = None, policy=None, executor: ExecutorArg = None,
               progress: Optional[Progress] = None) -> "CoarseSearch":
        """A new run in ``run_dir`` (absent or empty). ``pool`` = (candidates, costs, sampled) if
        already computed. The pool is sampled and costed before the directory is made, so a
        budget that no candidate meets leaves nothing behind."""
        return cls(CoarseLoop.create(run_dir, space, evaluator, config, pool=pool, surrogate=surrogate,
                                     policy=policy, progress=progress), executor)

    @classmethod
    def open(cls, run_dir, evaluator: Optional[Evaluator] = None, *, space: Optional[SearchSpace] = None,
             surrogate: Optional[Callable] = None, policy=None, executor: ExecutorArg = None,
             progress: Optional[Progress] = None) -> "CoarseSearch":
        """Continue the run in ``run_dir``. ``evaluator`` defaults to the one the run names; a
        run scored by a Python function that cannot be imported by name needs it passed again."""
        return cls(CoarseLoop.open(run_dir, evaluator, space=space, surrogate=surrogate, policy=policy,
                                   progress=progress), executor)

    def close(self) -> None:
        self.loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- the run's parts (the loop's)
    @property
    def store(self) -> RunStore:
        return self.loop.store

    @property
    def space(self) -> SearchSpace:
        return self.loop.space

    @property
    def evaluator(self) -> Evaluator:
        return self.loop.evaluator

    @property
    def config(self) -> CoarseConfig:
        return self.loop.config

    @property
    def final_predictor(self):
        return self.loop.final_predictor

    def log(self, line: str) -> None:
        self.loop.log(line)

    def chosen_fidelity(self) -> Optional[dict]:
        """The calibrated cheaper setting (None: full fidelity, or not calibrated yet)."""
        return self.loop.chosen_fidelity()

    def retry_failed(self) -> int:
        """Queue the run's failed trials again (their attempts keep counting); returns how many."""
        return self.loop.retry_failed()

    def summary(self, top: int = 5) -> dict:
        """The run as plain values (:func:`jointnas.coarse.summary.summary`)."""
        return run_summary(self.loop, top)

    # ---- running
    def run(self, pool=None) -> dict:
        """Run (or continue) the search and return its summary; ``pool`` as :meth:`create` takes it.

        An objective that raises :class:`jointnas.StopSearch` ends it cleanly: the trials running
        beside it finish and are recorded, the one that raised goes back to the queue, and the
        summary of what is measured is returned (``summary["stopped"]`` says why); running the
        run again (``CoarseSearch.open``) continues it."""
        requeued = self.store.requeue_running()
        if requeued:
            self.log(f"resume: {requeued} trial(s) interrupted while training go back to the queue")
        self._stop = None
        if self.store.get_meta("stopped") is not None:
            self.store.set_meta("stopped", None)   # continued: no longer stopped
        try:
            self.loop.start(pool)
            while not (due := self.loop.due()).complete:
                if due.cheaper:
                    self._train_cheaper(due.cheaper)
                elif due.trials:
                    self._train(due)
                else:  # a driver holds the run's lock: no one else can have them
                    raise JointnasError(f"{due.out} trial(s) of iteration {due.iteration} are out for training "
                                        "with no one to train them")
            winner = result.pending(self.loop) if self.config.final else None
            if winner is not None:
                result.retrain_winner(self.loop, *winner, train=self._run_all)
        except StopSearch as e:
            self._stopped(str(e))
        finally:
            failed = sys.exc_info()[0] is not None
            self._close_executor(failed)
            if failed or self._stop is not None:
                self.store.requeue_running()
        if self._stop is not None:
            return self.summary()
        last = self.store.predictor_path(self.config.iterations)
        if last is not None:  # copied every time: a run extended by more iterations gets its new final predictor
            with writing(self.final_predictor), replacing(self.final_predictor) as tmp:
                shutil.copyfile(last, tmp)
        self.store.set_meta("finished", time.time())
        return self.summary()

    def _eta(self, work: Callable[[], list], capacity: int) -> str:
        """The ETA text of the run's remaining ``work()``, worked out again at most every
        :data:`ETA_EVERY` seconds: it reads every trial, which trials of a table or a cheap
        function would otherwise pay for each time."""
        now = time.monotonic()
        if self._eta_text is None or now - self._eta_at >= ETA_EVERY:
            self._eta_text, self._eta_at = self.clock.eta(work(), capacity), now
        return self._eta_text

    def _stopped(self, reason: str) -> None:
        counts = self.store.counts()
        finished = sum(v for k, v in counts.items() if k not in ("queued", "running"))
        self.store.set_meta("stopped", {"reason": reason or None, "time": time.time(), "finished": finished})
        self.log(f"search stopped by the objective{f' ({reason})' if reason else ''}: {finished} finished "
                 "trial(s) kept; run it again to continue (CoarseSearch.open)")

    def _stop_seen(self, done: JobDone) -> bool:
        """Whether ``done`` is an objective's stop (then remembered: no more is submitted)."""
        if done.result.get("status") != STOPPED:
            return False
        if self._stop is None:
            self._stop = done.result.get("error") or ""
        return True

    def evaluate(self, tasks: List[Task], desc: str, line: Callable[[Task, dict], str]) -> Dict[int, dict]:
        """Train ``tasks`` that are not trials of the run (a later stage's trainings, e.g. autotrain's
        comparison with its baseline) on the run's executor; ``line(task, result)`` logs each.
        Returns the results by task id."""
        try:
            return self._run_all(list(tasks), desc, line)
        finally:
            self._close_executor(sys.exc_info()[0] is not None)

    def _close_executor(self, kill: bool) -> None:
        if self._executor is not None:
            self._executor.close(kill=kill)
            self._executor = None

    def _executor_now(self) -> Executor:
        if self._executor is None:
            arg = self._executor_arg
            self._executor = (SerialExecutor() if arg is None else arg if isinstance(arg, Executor) else arg())
        return self._executor

    def _job(self, task: Task) -> Job:
        return Job(task.id, task.candidate.to_dict(), self.space, self.evaluator, task.request)

    def _train(self, due: Due) -> None:
        """Train the iteration's queued trials, telling the loop each result."""
        it, ex = due.iteration, self._executor_now()
        queued = list(due.trials)
        total = len(self.store.trials(iteration=it))
        if ex.capacity > 1:
            # Longest first (by FLOPs x epochs), so that the batch's last trial does not leave the
            # other workers idle (BENCHMARKS.md, "The README's main command": 208 -> 178 s).
            queued.sort(key=lambda t: -(t.trial.flops or 0) * (t.trial.target_epochs
                                                               or self.loop.full_epochs(t.candidate) or 1))
        overall = self.loop.progress.bar(total=total, initial=total - len(queued), desc=f"iteration {it} training",
                                         unit="trial")
        running: Dict[int, object] = {}  # trial id -> its bar of epochs
        flops = {task.id: task.trial.flops for task in queued}
        try:
            while (queued and self._stop is None) or ex.in_flight:
                while queued and ex.free_slots > 0 and self._stop is None:
                    task = queued.pop(0)
                    where = ex.submit(self._job(task))
                    self.loop.started(task.id, where)
                    running[task.id] = self.loop.progress.bar(total=task.request.epochs, unit="epoch", leave=False,
                                                              desc=f"  trial {task.id} ({where})")
                for done in ex.poll(timeout=1.0):
                    bar = running.pop(done.trial_id, None)
                    if self._stop_seen(done):   # not recorded: the trial goes back to the queue
                        if bar is not None:
                            bar.close()
                        continue
                    self.loop.tell(done.trial_id, done.result, done.attempts)
                    if bar is not None:
                        bar.update(max(0, (done.result.get("epochs_run") or 0) - bar.n))
                        bar.close()
                    overall.update(1)
                    self.clock.record(done.result, flops.get(done.trial_id))
                    self.log(_trial_line(it, done, self.config.score_bounds == [0.0, 1.0])
                             + self._eta(lambda: remaining_work(self.loop), ex.capacity))
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
        if self._stop is not None:
            raise StopSearch(self._stop)

    def _train_cheaper(self, tasks: Sequence[Task]) -> None:
        """Train the first batch again at each cheaper fidelity (the fidelity calibration's tasks)."""
        fidelities = self.config.fidelities
        self.log(f"fidelity calibration: training the first batch again at {len(fidelities)} cheaper "
                 f"setting(s): {', '.join(Fidelity.from_dict(f).label() for f in fidelities)}")

        def line(task: Task, r: dict) -> str:
            self.loop.tell_cheaper(task, r)
            score = r.get("final_acc")
            return (f"  trial {task.trial.id} at {Fidelity.from_dict(task.request.fidelity).label()}: {r.get('status')}"
                    + (f" score {score:.3f}" if score is not None else "")
                    + (f" in {r['wall_time']:.1f} s" if r.get("wall_time") else ""))

        self._run_all(list(tasks), "fidelity calibration", line, stage="cheaper")

    def _run_all(self, tasks: List[Task], desc: str, line: Callable[[Task, dict], str],
                 stage: str = "result") -> Dict[int, dict]:
        """Train ``tasks`` on the executor; ``line(task, result)`` logs each; ``stage``: their name in
        :func:`~jointnas.coarse.clock.remaining_work`. Returns results by task id."""
        ex, todo, by_id, out = self._executor_now(), list(tasks), {t.id: t for t in tasks}, {}
        bar = self.loop.progress.bar(total=len(tasks), desc=desc, unit="run")
        try:
            while (todo and self._stop is None) or ex.in_flight:
                while todo and ex.free_slots > 0 and self._stop is None:
                    ex.submit(self._job(todo.pop(0)))
                for done in ex.poll(timeout=1.0):
                    if self._stop_seen(done):
                        continue
                    task = by_id[done.trial_id]
                    out[done.trial_id] = done.result
                    bar.update(1)
                    cal = self.loop.calibration()
                    self.clock.record(done.result, flops_of(self.loop, task.candidate),
                                      epoch_cost(cal, task.request.fidelity))
                    text = line(task, done.result)
                    # the stage's own trainings, less those done: the run's count has them all until it is recorded
                    left = [((t.request.epochs or 1) * epoch_cost(cal, t.request.fidelity), flops_of(self.loop, t.candidate))
                            for t in tasks if t.id not in out]
                    self.log(text + self._eta(lambda: remaining_work(self.loop, {stage: left}), ex.capacity))
        finally:
            bar.close()
        if self._stop is not None:
            raise StopSearch(self._stop)
        return out


def _trial_line(it: int, event: JobDone, accuracy: bool) -> str:
    r = event.result
    score = r.get("final_acc")
    line = (f"iter {it} trial {event.trial_id}: {r.get('status')}"
            + (f" {'val_acc' if accuracy else 'score'} {score:.3f}" if score is not None else "")
            + f" after {r.get('epochs_run') or len(r.get('curve') or [])} epoch(s)"
            + (f" in {r['wall_time']:.1f} s" if r.get("wall_time") else "") + f" on {r.get('device')}")
    if r.get("error"):
        line += f" ({r['error']})"
    if event.attempts > 1:
        line += f"; started {event.attempts} times (its worker died)"
    return line
