"""A user's objective as a test uses one: a known function of the candidate, with a curve.

The score after epoch e is ``peak(x, y) * e / (e + 1)`` over a 3-epoch schedule, so the ranking is the
same at every epoch and the best candidate is the one nearest (0.3, 0.7)."""


def peak(arch, recipe) -> float:
    return 1.0 - (arch["x"] - 0.3) ** 2 - (recipe["y"] - 0.7) ** 2


def objective(candidate, report):
    best = peak(candidate.arch, candidate.recipe)
    for epoch in range(1, int(candidate.recipe["epochs"]) + 1):
        report(epoch, best * epoch / (epoch + 1))
    return best * epoch / (epoch + 1)


SPACE = {"name": "toy", "family": None,
         "arch": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
         "recipe": {"y": {"type": "float", "low": 0.0, "high": 1.0},
                    "epochs": {"type": "int", "low": 3, "high": 3}}}
