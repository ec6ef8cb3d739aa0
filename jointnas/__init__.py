"""jointnas: joint architecture + training-recipe search guided by an accuracy predictor (FBNetV3-style)."""
import importlib
import warnings

# torchvision 0.29 scripts a few ops at import time, which torch 2.14 flags as deprecated;
# the warning is about torchvision's internals, not about anything a jointnas user can change.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

__version__ = "0.1.0"

# Public names and the module each lives in. They load on first use (PEP 562), so that
# `import jointnas` and `jointnas --help` do not pay for importing torch.
_EXPORTS = {
    "Candidate": "candidate", "Cost": "proxies", "Space": "space", "SpaceError": "space",
    "build_model": "model", "count_cost": "proxies", "count_cost_fvcore": "proxies", "count_costs": "proxies",
    "load_space": "space", "sample_pool": "pool", "Task": "data", "load_task": "data",
    "task_resolution": "data", "TrainResult": "trainer", "train": "trainer",
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
