"""The whole run's ETA: seconds per epoch measured on the trials so far, times the epochs the
run still has to train (in full-fidelity epochs), shared by the executor's slots."""
from __future__ import annotations

import statistics
from typing import List


class RunClock:
    def __init__(self):
        self.seconds_per_epoch: List[float] = []   # per full-fidelity epoch, one per finished job

    def record(self, result: dict, epoch_cost: float = 1.0) -> None:
        """A finished job's result; ``epoch_cost``: its fidelity's cost per epoch relative to full."""
        epochs, wall = result.get("epochs_run") or 0, result.get("wall_time")
        if result.get("status") == "done" and epochs and wall and epoch_cost > 0:
            self.seconds_per_epoch.append(wall / epochs / epoch_cost)

    def eta(self, epochs_left: float, slots: int) -> str:
        """'; run ETA ...' for a log line ('' until a job has been timed)."""
        if not self.seconds_per_epoch or epochs_left <= 0:
            return ""
        seconds = epochs_left * statistics.median(self.seconds_per_epoch) / max(1, slots)
        return f"; whole run: about {seconds / 60:.1f} min left ({epochs_left:.0f} full-fidelity epochs to train)"
