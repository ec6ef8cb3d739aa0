"""Worker processes on this machine: :class:`LocalExecutor` runs ``workers`` long-lived
processes (spawn context), one GPU each when several exist, one torch thread each by default.

A worker that dies (killed, out of memory) is replaced, and its job is started again on the
replacement up to ``max_retries`` times before it is reported failed; a worker that died idle
is replaced before it is given a job. ``JobDone.attempts`` says how many starts a job took.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from typing import Dict, List, Optional

from ..trial import failed
from .base import Executor, ExecutorSettings, Job, JobDone, run_job


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# One torch thread per worker process: on a shared CPU, torch's default (one thread per core)
# spin-waits for threads that other jobs hold and ran 7-16x slower (BENCHMARKS.md, "Threads").
DEFAULT_THREADS = 1


def plan_workers(workers: int, device: str, threads: Optional[int] = None) -> List[dict]:
    """Device and CPU-thread count of each worker: GPUs round-robin, ``threads`` torch threads
    each (default :data:`DEFAULT_THREADS`)."""
    import torch  # torch: `jointnas coarse` imports this module for usable_cpus before it trains

    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    threads = DEFAULT_THREADS if threads is None else max(1, int(threads))
    if gpus > 1:
        return [{"device": f"cuda:{i % gpus}", "threads": threads} for i in range(workers)]
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    return [{"device": device, "threads": threads} for _ in range(workers)]


class LocalExecutor(Executor):
    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> "LocalExecutor":
        return cls(workers=settings.workers or 1, device=settings.device, threads=settings.threads,
                   max_retries=settings.max_retries)

    def __init__(self, workers: int = 1, device: str = "auto", threads: Optional[int] = None,
                 max_retries: int = 2):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.max_retries = max_retries
        self._ctx = mp.get_context("spawn")
        self._plans = plan_workers(workers, device, threads)
        self._outbox = self._ctx.Queue()
        self._procs: List[Optional[mp.Process]] = [None] * workers
        self._inboxes: List = [None] * workers
        self._busy: Dict[int, Job] = {}        # worker index -> job
        self._epochs: Dict[int, int] = {}           # trial id -> epochs finished, while it runs
        self._starts: Dict[int, int] = {}           # trial id -> times started, while it runs
        for i in range(workers):
            self._start(i)

    def _start(self, i: int) -> None:
        old = self._inboxes[i]
        if old is not None:  # a dead worker's: nobody reads it any more
            old.cancel_join_thread()
            old.close()
        inbox = self._ctx.Queue()
        p = self._ctx.Process(target=_worker_main, name=f"jointnas-worker-{i}", daemon=True,
                              args=(i, self._plans[i], inbox, self._outbox, os.getpid()))
        p.start()
        self._procs[i], self._inboxes[i] = p, inbox

    @property
    def capacity(self) -> int:
        return len(self._procs)

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    @property
    def pids(self) -> List[Optional[int]]:
        """Process id of each worker (a replaced worker has a new one)."""
        return [p.pid if p is not None else None for p in self._procs]

    def label(self, i: int) -> str:
        return f"local-{i}:{self._plans[i]['device']}"

    def submit(self, job: Job) -> str:
        free = [i for i in range(self.capacity) if i not in self._busy]
        if not free:
            raise RuntimeError("no free worker; submit only while free_slots > 0")
        i = free[0]
        if not self._procs[i].is_alive():  # it died idle: its job goes to a replacement
            self._start(i)
        self._busy[i] = job
        self._starts[job.trial_id] = 1
        self._inboxes[i].put(job)
        return self.label(i)

    def poll(self, timeout: Optional[float] = None) -> List[JobDone]:
        deadline = None if timeout is None else time.monotonic() + timeout
        events: List[JobDone] = []
        while not events:
            wait = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            try:
                event = self._to_event(self._outbox.get(timeout=wait))
                if event is not None:
                    events.append(event)
            except queue.Empty:
                events.extend(self._reap_dead())
            if deadline is not None and time.monotonic() >= deadline:
                break
        while True:  # drain what else is already there, without waiting
            try:
                event = self._to_event(self._outbox.get_nowait())
            except queue.Empty:
                break
            if event is not None:
                events.append(event)
        return events

    def epochs_done(self, trial_id: int) -> int:
        return self._epochs.get(trial_id, 0)

    def _to_event(self, msg) -> Optional[JobDone]:
        """A result becomes a JobDone; an epoch report only updates :meth:`epochs_done`."""
        kind, index, trial_id, payload = msg
        job = self._busy.get(index)
        if kind == "lost" and job is not None:  # the worker could not unpickle the job it was sent
            trial_id, kind, payload = job.trial_id, "done", failed(
                f"the job could not be sent to a worker process ({payload}); is the objective importable?",
                self._plans[index]["device"]).to_dict()
        if job is None or job.trial_id != trial_id:
            return None  # a late message from a worker replaced after it died
        if kind == "epoch":
            self._epochs[trial_id] = payload
            return None
        del self._busy[index]
        self._epochs.pop(trial_id, None)
        return JobDone(trial_id, payload, self.label(index), self._starts.pop(trial_id, 1))

    def _reap_dead(self) -> List[JobDone]:
        """A worker that died (killed, out of memory) is replaced; its job starts again on the
        replacement, or fails once it has been started 1 + max_retries times."""
        out = []
        for i, p in enumerate(self._procs):
            if p is None or p.is_alive():
                continue
            code = p.exitcode
            self._start(i)
            job = self._busy.get(i)
            if job is None:
                continue  # died idle: nothing lost
            self._epochs.pop(job.trial_id, None)
            starts = self._starts.get(job.trial_id, 1)
            if starts <= self.max_retries:
                self._starts[job.trial_id] = starts + 1
                self._inboxes[i].put(job)
                continue
            del self._busy[i]
            self._starts.pop(job.trial_id, None)
            out.append(JobDone(job.trial_id, failed(
                f"worker process died with exit code {code}"
                + (" (killed; out of memory?)" if code == -signal.SIGKILL else "") + f", {starts} time(s)",
                self._plans[i]["device"]).to_dict(), self.label(i), starts))
        return out

    def attempts(self, trial_id: int) -> int:
        """Times a running job has been started so far (its worker died the others)."""
        return self._starts.get(trial_id, 0)

    def close(self, kill: bool = False) -> None:
        for i, p in enumerate(self._procs):
            if p is None:
                continue
            if kill:
                p.terminate()
            else:
                try:
                    self._inboxes[i].put(None)
                except (OSError, ValueError):
                    p.terminate()
        for p in self._procs:
            if p is None:
                continue
            p.join(timeout=None if not kill else 10)
            if p.is_alive():
                p.kill()
                p.join()
        self._procs = [None] * len(self._procs)
        self._busy.clear()
        self._epochs.clear()
        self._starts.clear()
        for q in [*self._inboxes, self._outbox]:
            if q is not None:
                q.close()
                q.join_thread()
        self._inboxes = [None] * len(self._inboxes)


# ---------------------------------------------------------------------- worker side
def _exit_with_parent(parent_pid: int) -> None:
    """A worker whose driver died (SIGKILL) stops instead of training on for nobody."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(0.5)


def _worker_main(index: int, plan: dict, inbox, outbox, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    import torch  # torch and tqdm: see plan_workers
    from tqdm import tqdm

    # tqdm's default lock is a multiprocessing semaphore that a worker process never releases;
    # the worker shows no bars, so a thread lock does (and the "leaked semaphore" warning goes).
    tqdm.set_lock(threading.RLock())
    torch.set_num_threads(plan["threads"])
    while True:
        try:
            job = inbox.get()
        except Exception as e:  # noqa: BLE001 - e.g. an objective that cannot be unpickled here
            outbox.put(("lost", index, None, f"{type(e).__name__}: {e}"))
            continue
        if job is None:
            return

        def report(entry, trial_id=job.trial_id):
            outbox.put(("epoch", index, trial_id, entry["epoch"]))

        outbox.put(("done", index, job.trial_id, run_job(job, plan["device"], on_epoch=report)))
