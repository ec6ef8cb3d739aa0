"""jointnas: joint architecture + training-recipe search guided by an accuracy predictor (FBNetV3-style).

    from jointnas import CoarseSearch, TrainEvaluator, load_space
    search = CoarseSearch.create("runs/demo", load_space("fbnetv3"), TrainEvaluator("digits"))
    search.run()
"""
import importlib
import warnings

# torchvision 0.29 scripts a few ops at import time, which torch 2.14 flags as deprecated;
# the warning is about torchvision's internals, not about anything a jointnas user can change.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

__version__ = "0.1.0"

# Public names and the module each lives in. They load on first use (PEP 562), so that
# `import jointnas` and `jointnas --help` do not pay for importing torch.
_EXPORTS = {
    # spaces
    "SearchSpace": "space", "Space": "space", "Candidate": "space", "IntDim": "space", "FloatDim": "space",
    "CategoricalDim": "space", "BoolDim": "space", "sample_pool": "space",
    "load_space": "catalog", "space_from_dict": "catalog", "register_family": "catalog",
    # families and costs
    "ModelFamily": "families.base", "Cost": "families.base", "count_cost": "families.cost", "count_costs": "families.cost",
    "count_cost_fvcore": "families.cost", "build_model": "families.mbconv_net",
    # evaluation
    "Evaluator": "evaluation.base", "TrialRequest": "evaluation.base", "TrainEvaluator": "evaluation.train",
    "FunctionEvaluator": "evaluation.function",
    "TrialResult": "trial", "Task": "evaluation.data", "load_task": "evaluation.data", "task_resolution": "evaluation.data",
    "TrainResult": "evaluation.trainer", "train": "evaluation.trainer",
    # search
    "Predictor": "surrogates", "Surrogate": "surrogates.base", "load_surrogate": "catalog",
    "CoarseSearch": "coarse.search", "CoarseConfig": "coarse.search", "Study": "coarse.study", "Budget": "budget",
    "fine_search": "fine.search", "SearchSettings": "fine.problem", "pareto_search": "fine.pareto",
    "SerialExecutor": "execution.serial", "LocalExecutor": "execution.local", "Progress": "progress",
    "StopSearch": "errors",
    "oneshot_search": "oneshot.api", "OneShotSettings": "oneshot.settings",
    # errors
    "JointnasError": "errors", "UsageError": "errors", "SpaceError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
