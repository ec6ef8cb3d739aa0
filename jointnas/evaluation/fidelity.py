"""Training fidelity: how cheaply a candidate is trained (:class:`Fidelity`), a value every
evaluator that understands it acts on. Which fidelity a run uses is calibrated on its first
batch (:mod:`jointnas.coarse.calibration`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Optional

from ..errors import UsageError


@dataclass(frozen=True)
class Fidelity:
    """How cheaply a candidate is trained: ``data`` = fraction of the training images,
    ``resolution`` = scale of its training resolution, ``width`` = channel multiplier of the
    model trained (the deployable model, its FLOPs and params are unchanged)."""

    data: float = 1.0
    resolution: float = 1.0
    width: float = 1.0

    def __post_init__(self):
        for name in ("data", "resolution", "width"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise UsageError(f"fidelity {name} must be a number in (0, 1], got {v!r}")

    @property
    def full(self) -> bool:
        return self == Fidelity()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[Mapping]) -> "Fidelity":
        d = dict(d or {})
        unknown = set(d) - {"data", "resolution", "width"}
        if unknown:
            raise UsageError(f"unknown fidelity setting(s) {', '.join(sorted(unknown))}; known: data, resolution, width")
        return cls(**{k: float(v) for k, v in d.items()})

    def label(self) -> str:
        parts = [f"{name} x{getattr(self, name):g}" for name in ("data", "resolution", "width")
                 if getattr(self, name) != 1.0]
        return ", ".join(parts) or "full"


def narrower(arch: dict, width: float, multiple: int = 8) -> dict:
    """``arch`` with every ``*_channels`` entry scaled by ``width`` (rounded to ``multiple``, at
    least ``multiple``): the model trained at a lower width fidelity."""
    if width == 1.0:
        return dict(arch)
    return {k: (max(multiple, int(round(v * width / multiple)) * multiple)
                if k.endswith("_channels") and isinstance(v, int) else v) for k, v in arch.items()}
