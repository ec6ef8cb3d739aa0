"""Trials on Ray: one long-lived actor per concurrent trial, on this machine or on a cluster.

Each actor asks Ray for ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (a fraction lets
several small candidates share one GPU). A job carries the space and evaluator objects, so a
user's objective runs on the cluster as it does locally; the actor process keeps the data sets
its evaluators loaded, so a data set is read once per actor, not once per trial. Results come
back to the driver as plain dicts and the driver alone writes the store; per-epoch progress is
a counter on the actor that :meth:`poll` asks for without waiting.

A worker or node that dies mid-trial loses the actor: it is replaced and the trial runs again,
up to ``max_retries`` times, then comes back ``failed`` with the error. ``close(kill=True)``
(Ctrl-C) kills the actors at once; the store still says which trials were running, so the run
resumes from it. Where this machine's own Ray node dies (its raylet), nothing can run any more:
:meth:`poll` notices within :data:`LIVENESS_EVERY` seconds of Ray marking the node dead and raises
:class:`ExecutorError`, and the run resumes from its store.

The actors import the jointnas this process imported: Ray puts the driver's working directory
first on its workers' ``sys.path``, where a folder named ``jointnas`` (a clone) would win, so a
Ray instance this executor starts or joins gets a worker set-up hook that imports jointnas from
where the driver found it; and the first actor is asked where its jointnas is before any trial
(another one on this machine, or one that does not import, is refused in one line).

Ray is an optional dependency: this module imports it only when an executor is made.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import UsageError
from ..evaluation import train
from .base import Executor, ExecutorError, ExecutorSettings, Job, JobDone, run_job
from .local import usable_cpus
from ..trial import failed

INSTALL = "pip install 'jointnas[ray]'"
PACKAGE = str(Path(__file__).resolve().parents[1])   # the jointnas directory this process imported
LIVENESS_EVERY = 5.0    # seconds between checks that this machine's Ray node is alive, while trials run
STARTUP_CHECK = 120.0   # seconds the first actor has to say where its jointnas is (else: not checked)


def import_ray():
    """The ray module, or a UsageError that says how to install it."""
    try:
        import ray  # the optional extra jointnas[ray]: missing, it is the error below
    except ImportError:
        raise UsageError(f"Ray is not installed; install it with: {INSTALL}") from None
    return ray


def fitting_workers(resources: dict, cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster's resources (``ray.cluster_resources()``) hold at once."""
    fits = int(resources.get("CPU", 0) / cpus_per_trial + 1e-9) if cpus_per_trial > 0 else None
    if gpus_per_trial > 0:
        by_gpu = int(resources.get("GPU", 0) / gpus_per_trial + 1e-9)
        fits = by_gpu if fits is None else min(fits, by_gpu)
    return 0 if fits is None else fits


def trial_threads(cpus_per_trial: float, threads: Optional[int] = None) -> int:
    """Torch threads of a Ray trial: ``threads``, else the whole part of its CPUs (at least 1)."""
    return threads or max(1, int(cpus_per_trial))


class TrialWorker:
    """The actor: trains one trial at a time; a second thread answers progress questions."""

    def __init__(self, threads: int, device: str):
        import torch  # torch: in the actor; the driver's `jointnas coarse` checks its flags with this module

        torch.set_num_threads(threads)
        self.device = device
        self.epochs: Dict[int, int] = {}  # trial id -> epochs finished, while it trains
        self.trained = 0

    def run(self, job: Job) -> dict:
        self.epochs[job.trial_id] = 0

        def report(entry):
            self.epochs[job.trial_id] = entry["epoch"]

        try:
            return run_job(job, self.device, on_epoch=report)
        finally:
            self.epochs.pop(job.trial_id, None)
            self.trained += 1

    def progress(self) -> Dict[int, int]:
        return dict(self.epochs)

    def info(self) -> dict:
        # the evaluators of this (the actor's) process keep the data sets they loaded
        return {"pid": os.getpid(), "trained": self.trained, "datasets_loaded": len(train._TASKS),
                "package": PACKAGE, "host": socket.gethostname()}


@dataclass
class _Running:
    job: Job
    ref: object        # ObjectRef of TrialWorker.run
    attempt: int


class RayExecutor(Executor):
    """``workers`` actors (default: as many as the cluster's CPUs/GPUs hold at the per-trial request),
    each training with ``threads`` torch threads (default: the whole part of ``cpus_per_trial``).

    ``address`` None starts a private local Ray instance (``init_options`` go to ``ray.init``);
    "auto" or "ray://HOST:PORT" joins an existing cluster. Where Ray is already initialised in
    this process, that instance is used and left running on close.
    """

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> "RayExecutor":
        return cls(workers=settings.workers, device=settings.device, address=settings.address,
                   cpus_per_trial=settings.cpus_per_trial, gpus_per_trial=settings.gpus_per_trial,
                   threads=settings.threads, max_retries=settings.max_retries)

    def __init__(self, workers: Optional[int] = None, device: Optional[str] = "auto", *,
                 address: Optional[str] = None, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                 threads: Optional[int] = None, max_retries: int = 2, init_options: Optional[dict] = None):
        if cpus_per_trial < 0 or gpus_per_trial < 0 or cpus_per_trial + gpus_per_trial <= 0:
            raise UsageError("a Ray trial needs a positive number of CPUs or GPUs "
                             f"(got cpus {cpus_per_trial}, gpus {gpus_per_trial})")
        wanted = "cuda" if gpus_per_trial > 0 else "cpu"
        if device not in (None, "auto", wanted):
            raise UsageError(f"device {device!r}: Ray trials train on {wanted} here, as the GPUs per trial "
                             f"({gpus_per_trial:g}) ask")
        if max_retries < 0:
            raise UsageError(f"max_retries must be >= 0, got {max_retries}")
        ray = import_ray()
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            _init(ray, address, init_options)
        if workers is None:
            workers = fitting_workers(ray.cluster_resources(), cpus_per_trial, gpus_per_trial)
            if workers < 1:
                res = ray.cluster_resources()
                self._shutdown()
                raise UsageError(f"the Ray cluster has {res.get('CPU', 0):g} CPU(s) and {res.get('GPU', 0):g} "
                                 f"GPU(s), too few for one trial asking {cpus_per_trial:g} CPU(s) and "
                                 f"{gpus_per_trial:g} GPU(s)")
        self.max_retries = max_retries
        self.device = wanted
        self._threads = trial_threads(cpus_per_trial, threads)  # a trial's numbers on a CPU depend on it
        self._actor_class = ray.remote(TrialWorker).options(
            num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_concurrency=2, max_restarts=0)
        self._actors: List = [self._new_actor() for _ in range(workers)]
        self._busy: Dict[int, _Running] = {}     # actor slot -> its trial
        self._epochs: Dict[int, int] = {}        # trial id -> epochs finished, as last heard
        self._asked: Dict[int, object] = {}      # actor slot -> pending ObjectRef of progress()
        # this machine's Ray node (None for a ray:// client, whose lost connection raises by itself)
        self._node = None if ray.util.client.ray.is_connected() else ray.get_runtime_context().get_node_id()
        self._next_check = 0.0
        try:
            self._check_package()
        except BaseException:
            self.close(kill=True)
            raise

    def _new_actor(self):
        return self._actor_class.remote(self._threads, self.device)

    # ---- Executor
    @property
    def capacity(self) -> int:
        return len(self._actors)

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    def label(self, slot: int) -> str:
        return f"ray-{slot}:{self.device}"

    def submit(self, job: Job) -> str:
        free = [i for i in range(self.capacity) if i not in self._busy]
        if not free:
            raise RuntimeError("no free worker; submit only while free_slots > 0")
        slot = free[0]
        self._busy[slot] = _Running(job, self._actors[slot].run.remote(job), attempt=1)
        return self.label(slot)

    def poll(self, timeout: Optional[float] = None) -> List[JobDone]:
        ray = self._ray
        self._collect_progress()
        events: List[JobDone] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._busy and not events:
            wait = LIVENESS_EVERY if deadline is None else min(LIVENESS_EVERY, max(0.0, deadline - time.monotonic()))
            by_ref = {r.ref: slot for slot, r in self._busy.items()}
            ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=wait)
            if ready:  # and whatever else is finished already
                ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
            else:  # nothing finished: is there still a cluster to finish anything?
                self._check_cluster()
            for ref in ready:
                event = self._finish(by_ref[ref])
                if event is not None:
                    events.append(event)
            if deadline is not None and time.monotonic() >= deadline:
                break
        return events

    def epochs_done(self, trial_id: int) -> int:
        return self._epochs.get(trial_id, 0)

    def close(self, kill: bool = False) -> None:
        ray = self._ray
        pending = [] if kill else [r.ref for r in self._busy.values()]
        while pending and self._node_alive():  # as the local executor does: running trials end first
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=LIVENESS_EVERY)
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor already gone is what we want
                pass
        self._actors, self._busy, self._asked = [], {}, {}
        self._epochs.clear()
        self._shutdown()

    # ---- inside
    def worker_info(self) -> List[dict]:
        """pid, trials trained and data sets loaded of each actor (waits for busy ones to answer)."""
        return self._ray.get([a.info.remote() for a in self._actors])

    def _finish(self, slot: int) -> Optional[JobDone]:
        """The JobDone of the trial in ``slot``, or None where its lost worker gets another try."""
        ray = self._ray
        running = self._busy[slot]
        try:
            result = ray.get(running.ref)
        except ray.exceptions.RayTaskError as e:  # raised inside the actor, outside run_job's guard
            result = failed(_brief(e), self.device).to_dict()
        except ray.exceptions.RayError as e:      # the actor's process or node is gone
            self._replace(slot)
            if running.attempt <= self.max_retries:
                running.attempt += 1
                running.ref = self._actors[slot].run.remote(running.job)
                self._epochs.pop(running.job.trial_id, None)
                return None
            result = failed(f"Ray worker lost on each of {running.attempt} attempt(s); last: "
                            f"{type(e).__name__}: {_brief(e)}", self.device).to_dict()
        del self._busy[slot]
        self._asked.pop(slot, None)
        self._epochs.pop(running.job.trial_id, None)
        done = JobDone(running.job.trial_id, result, self.label(slot))
        done.attempts = running.attempt  # starts it took (the local executor's JobDone.attempts)
        return done

    def _replace(self, slot: int) -> None:
        try:
            self._ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001 - already dead
            pass
        self._actors[slot] = self._new_actor()
        self._asked.pop(slot, None)

    def _check_package(self) -> None:
        """Refuses, in one line, actors that cannot start or that import another jointnas on this
        machine than this process did (a folder named jointnas in the working directory)."""
        ray = self._ray
        ref = self._actors[0].info.remote()
        ready, _ = ray.wait([ref], timeout=STARTUP_CHECK)
        if not ready:
            return  # still waiting for room on a busy cluster: not checked
        try:
            info = ray.get(ref)
        except ray.exceptions.RayError as e:
            raise ExecutorError(f"a Ray worker could not start: {_last_line(e)}") from None
        if info["host"] == socket.gethostname() and info["package"] != PACKAGE:
            raise ExecutorError(f"Ray workers import jointnas from {info['package']}, not from {PACKAGE} as this "
                                "process does; start from a directory without a folder named jointnas")

    def _node_alive(self) -> bool:
        """Whether this machine's Ray node is alive, as Ray's control store says (it marks a node
        whose raylet died dead after missing its health checks, about 15 s)."""
        if self._node is None:
            return True
        try:
            return any(n["NodeID"] == self._node and n["Alive"] for n in self._ray.nodes())
        except Exception:  # noqa: BLE001 - no control store to ask: no cluster
            return False

    def _check_cluster(self) -> None:
        """ExecutorError once this machine's Ray node is dead (checked every LIVENESS_EVERY seconds)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + LIVENESS_EVERY
        if not self._node_alive():
            raise ExecutorError(f"the Ray cluster was lost: this machine's Ray node died (its raylet) with "
                                f"{len(self._busy)} trial(s) running; finished trials are saved, and the run "
                                "continues from its store once Ray can start again")

    def _collect_progress(self) -> None:
        """Read the progress answers that have arrived and ask the busy actors again (no waiting)."""
        ray = self._ray
        if self._asked:
            ready, _ = ray.wait(list(self._asked.values()), num_returns=len(self._asked), timeout=0)
            ready = set(ready)
            for slot, ref in list(self._asked.items()):
                if ref not in ready:
                    continue
                del self._asked[slot]
                try:
                    progress = ray.get(ref)
                except ray.exceptions.RayError:
                    continue  # the actor died; _finish deals with its trial
                running = self._busy.get(slot)
                if running is not None and running.job.trial_id in progress:
                    self._epochs[running.job.trial_id] = progress[running.job.trial_id]
        for slot in self._busy:
            if slot not in self._asked:
                self._asked[slot] = self._actors[slot].progress.remote()

    def _shutdown(self) -> None:
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False


def _import_jointnas_from(parent: str):
    """A Ray worker set-up hook that imports jointnas from ``parent``, where this process found it,
    before Ray puts the driver's working directory first on the worker's sys.path (a closure, so
    that Ray sends it by value: a reference would import jointnas to find it). Where ``parent``
    holds no jointnas (another machine), the worker imports as it would have."""
    def hook():
        import sys

        sys.path.insert(0, parent)
        try:
            import jointnas  # noqa: F401 - imported now, it is the one every later import finds
        except Exception:  # noqa: BLE001 - a hook that raises would stop the worker
            sys.modules.pop("jointnas", None)
        finally:
            sys.path.remove(parent)
    return hook


def _init(ray, address: Optional[str], options: Optional[dict]) -> None:
    """ray.init, keeping this process's SIGTERM handler (ray.init replaces it with sys.exit); its
    workers import this process's jointnas (see the module's notes) unless ``options`` set a hook."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    options = dict(options or {})
    if not str(address).startswith("ray://"):  # a client's workers do not get its working directory
        runtime_env = dict(options.get("runtime_env") or {})
        runtime_env.setdefault("worker_process_setup_hook", _import_jointnas_from(str(Path(PACKAGE).parent)))
        options["runtime_env"] = runtime_env
    try:
        if address is None:
            kwargs = {"num_cpus": usable_cpus(), "include_dashboard": False, "logging_level": logging.WARNING}
            ray.init(**{**kwargs, **options})
        else:
            ray.init(address=address, logging_level=logging.WARNING, **options)
    except ConnectionError as e:
        raise UsageError(f"cannot reach the Ray cluster at {address}: {_brief(e)}") from None
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _last_line(e: BaseException, limit: int = 400) -> str:
    """The last line of Ray's message, cut short: the error under its traceback (``ImportError: ...``)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[-1] if lines else type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _brief(e: BaseException, limit: int = 400) -> str:
    """Ray's message on one line, cut short (its messages run to tracebacks and advice)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
