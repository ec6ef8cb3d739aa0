"""Worker processes on this machine: :class:`LocalExecutor` runs ``workers`` long-lived
processes (spawn context), one GPU each when several exist, one torch thread each by default.

A worker that dies (killed, out of memory) is replaced, and its job is started again on the
replacement up to ``max_retries`` times before it is reported failed; a worker that died idle
is replaced before it is given a job. A worker says when it has taken a job, and only such a
start is an attempt: a job whose worker was found dead before it took the job (a kill just
before the submit) goes to the replacement without paying a retry. ``JobDone.attempts`` says
how many starts a job took.
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

# A job whose workers keep dying before they take it (a worker that cannot start here, a job
# whose unpickling kills the process) fails after this many replacements instead of looping.
UNTAKEN_LIMIT = 3


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
        self._starts: Dict[int, int] = {}           # trial id -> times a worker took it, while it runs
        self._untaken: Dict[int, int] = {}          # trial id -> workers that died before taking it
        self._taken: set = set()                    # worker indices that took the job they hold
        for i in range(workers):
            self._start(i)

    def _start(self, i: int) -> None:
        old = self._inboxes[i]
        if old is not None:  # a dead worker's: nobody reads it any more
            old.cancel_join_thread()
            old.close()
        self._taken.discard(i)
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
        for i in free:  # a worker that died idle is replaced before it is given work
            if not self._procs[i].is_alive():
                self._start(i)
        i = free[0]
        self._busy[i] = job
        self._starts[job.trial_id] = 0   # counted when the worker says it took the job
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
                pass
            # every time round, not only when nothing arrives: another worker's epoch reports
            # may never leave a second of silence
            events.extend(self._reap_dead())
            if deadline is not None and time.monotonic() >= deadline:
                break
        return events + self._drain()

    def _drain(self) -> List[JobDone]:
        """The events of the messages already waiting, without waiting for more."""
        events = []
        while True:
            try:
                event = self._to_event(self._outbox.get_nowait())
            except queue.Empty:
                return events
            if event is not None:
                events.append(event)

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
        if kind == "taken":
            self._taken.add(index)
            self._starts[trial_id] = self._starts.get(trial_id, 0) + 1
            self._untaken.pop(trial_id, None)
            return None
        if kind == "epoch":
            self._epochs[trial_id] = payload
            return None
        return self._finish(index, payload)

    def _finish(self, index: int, result: dict) -> JobDone:
        """The JobDone of the job worker ``index`` holds; the worker is free again."""
        job = self._busy.pop(index)
        self._taken.discard(index)
        self._epochs.pop(job.trial_id, None)
        self._untaken.pop(job.trial_id, None)
        return JobDone(job.trial_id, result, self.label(index), max(1, self._starts.pop(job.trial_id, 1)))

    def _reap_dead(self) -> List[JobDone]:
        """A worker that died (killed, out of memory) is replaced. Its job goes to the replacement:
        free when the dead worker had not taken it yet, else as a retry, or it fails once it has
        been started 1 + max_retries times."""
        dead = [i for i, p in enumerate(self._procs) if p is not None and not p.is_alive()]
        if not dead:
            return []
        out = self._drain()  # what they said before they died counts (a result, a job taken)
        for i in dead:
            code = self._procs[i].exitcode
            taken = i in self._taken
            self._start(i)
            job = self._busy.get(i)
            if job is None:
                continue  # died idle, or after its result was sent: nothing lost
            trial = job.trial_id
            self._epochs.pop(trial, None)
            starts = self._starts.get(trial, 0)
            if not taken:  # died before the job reached it: not the job's doing, not an attempt
                self._untaken[trial] = self._untaken.get(trial, 0) + 1
                if self._untaken[trial] < UNTAKEN_LIMIT:
                    self._inboxes[i].put(job)
                    continue
                why = f"before taking the job, {self._untaken[trial]} time(s) in a row"
            elif starts <= self.max_retries:
                self._inboxes[i].put(job)
                continue
            else:
                why = f"{starts} time(s)"
            error = (f"worker process died with exit code {code}"
                     + (" (killed; out of memory?)" if code == -signal.SIGKILL else "") + f", {why}")
            out.append(self._finish(i, failed(error, self._plans[i]["device"]).to_dict()))
        return out

    def attempts(self, trial_id: int) -> int:
        """Times a worker has taken a running job so far (its worker died the others)."""
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
        self._untaken.clear()
        self._taken.clear()
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


def name_process(name: str) -> None:
    """What ``ps -o comm`` and ``top`` show for this process (Linux; 15 characters; elsewhere nothing):
    a worker is ``jointnas-idle`` or ``jointnas-t<trial id>`` while it holds a trial, so a
    person, or a fault injector, can tell which workers are training."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass


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
        name_process("jointnas-idle")
        try:
            job = inbox.get()
        except Exception as e:  # noqa: BLE001 - e.g. an objective that cannot be unpickled here
            outbox.put(("lost", index, None, f"{type(e).__name__}: {e}"))
            continue
        if job is None:
            return
        outbox.put(("taken", index, job.trial_id, None))  # from here on, a death is this job's attempt
        name_process(f"jointnas-t{job.trial_id}")

        def report(entry, trial_id=job.trial_id):
            outbox.put(("epoch", index, trial_id, entry["epoch"]))

        outbox.put(("done", index, job.trial_id, run_job(job, plan["device"], on_epoch=report)))
