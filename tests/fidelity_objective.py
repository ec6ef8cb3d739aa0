"""An objective with known fidelities, for the fidelity calibration's tests.

At full fidelity the score after epoch e is ``peak * e / (e + 1)`` (toy_objective's). With half
the data (``report.fidelity["data"] == 0.5``) it is half that: the same ranking at half the
cost. With half the width the ranking is reversed: cheaper, but it must be refused. Each epoch
sleeps in proportion to its cost, so the measured costs are what the fidelity says."""
import time

from toy_objective import SPACE, peak  # noqa: F401 - SPACE is what the tests search

EPOCH_SECONDS = 0.05


def objective(candidate, report):
    data, width = report.fidelity.get("data", 1.0), report.fidelity.get("width", 1.0)
    best = peak(candidate.arch, candidate.recipe)
    value = best if width == 1.0 else 1.0 - best      # half width: the ranking turned upside down
    for epoch in range(1, int(candidate.recipe["epochs"]) + 1):
        time.sleep(EPOCH_SECONDS * data * width)
        report(epoch, data * value * epoch / (epoch + 1))
    return data * value * epoch / (epoch + 1)
