"""An executor without workers: each job runs in this process when it is polled (for
debugging, for objectives that cannot be pickled, for tests)."""
from __future__ import annotations

from typing import Dict, List, Optional

from .base import Executor, Job, JobDone, run_job


class SerialExecutor(Executor):
    """Runs one job at a time in this process, when :meth:`poll` is called: the same accounting
    as :class:`LocalExecutor` (one JobDone per job, failures as data) without worker processes."""

    def __init__(self, workers: int = 1, device: Optional[str] = None):
        self.device = None if device in (None, "auto") else device
        self._queue: List[Job] = []
        self._epochs: Dict[int, int] = {}

    @property
    def capacity(self) -> int:
        return 1

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, job: Job) -> str:
        if self._queue:
            raise RuntimeError("no free slot; submit only while free_slots > 0")
        self._queue.append(job)
        return "serial"

    def poll(self, timeout: Optional[float] = None) -> List[JobDone]:
        if not self._queue:
            return []
        job = self._queue[0]

        def report(entry):
            self._epochs[job.trial_id] = entry["epoch"]

        result = run_job(job, self.device, on_epoch=report)
        self._queue.pop(0)
        self._epochs.pop(job.trial_id, None)
        return [JobDone(job.trial_id, result, "serial")]

    def epochs_done(self, trial_id: int) -> int:
        return self._epochs.get(trial_id, 0)

    def close(self, kill: bool = False) -> None:
        self._queue.clear()
