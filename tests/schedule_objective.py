"""An objective where a longer schedule ends better but looks worse early, as on digits.

The score after epoch e of a schedule of E epochs is ``end(x, E) * e / E`` with
``end = peak(x) * E / (E + 1)``: a linear ramp to an end that grows with E. At an early epoch
the ranking favours short schedules (``peak * e / (E + 1)``); at the end, long ones."""

SPACE = {"name": "schedule", "family": None,
         "arch": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
         "recipe": {"epochs": {"type": "int", "low": 2, "high": 12}}}


def end(arch, recipe) -> float:
    epochs = int(recipe["epochs"])
    return (1.0 - (arch["x"] - 0.3) ** 2) * epochs / (epochs + 1)


def objective(candidate, report):
    epochs, last = int(candidate.recipe["epochs"]), end(candidate.arch, candidate.recipe)
    for epoch in range(1, epochs + 1):
        report(epoch, last * epoch / epochs)
    return last
