"""Typed dimensions of a search space: each maps quasi-random numbers onto values, encodes
values for the predictor, checks membership, and stores values exactly in a float row."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from ..errors import SpaceError


# Below this many elements printing each is faster than the vectorised arithmetic.
ROUND_VECTOR_FROM = 64


def round_6g(v) -> np.ndarray:
    """``float(f"{x:.6g}")`` of each element, vectorised, and equal to it bit for bit.

    A finite nonzero ``x`` scaled by a power of ten ``10**k`` into [1e5, 1e6) rounds to a whole
    ``m``; ``m / 10**k`` (or ``m * 10**-k``) is then one correctly rounded operation on exact
    operands, the nearest float to the decimal that ``.6g`` prints, which is what ``float`` of it
    reads back. The scaling itself is rounded, so elements whose scaled value lies within 1e-6
    of a rounding tie, outside [1e5, 1e6), with ``|k| > 22`` (powers of ten no longer exact),
    zero or not finite go through the string instead.
    """
    v = np.asarray(v, dtype=np.float64)
    if v.size < ROUND_VECTOR_FROM:
        return np.array([float(f"{x:.6g}") for x in v.ravel()]).reshape(v.shape)
    a = np.abs(v)
    with np.errstate(all="ignore"):  # zeros, infinities and NaN fail the checks and are printed
        k = 5 - np.floor(np.log10(a))
        scale = 10.0 ** np.abs(k)
        up = k >= 0
        scaled = np.where(up, a * scale, a / scale)
        m = np.rint(scaled)
        ok = (np.abs(k) <= 22) & (scaled >= 1e5) & (scaled < 1e6) & (np.abs(scaled - m) < 0.5 - 1e-6)
        out = np.where(ok, np.copysign(np.where(up, m / scale, m * scale), v), v)
    for i in np.flatnonzero(~ok):
        out.flat[i] = float(f"{v.flat[i]:.6g}")
    return out


@dataclass(frozen=True)
class Dimension:
    name: str

    kind = "abstract"

    @property
    def width(self) -> int:
        """Length of this dimension's slice of the encoding vector."""
        return 1

    def from_unit(self, u: np.ndarray) -> list:
        """Map quasi-random numbers in [0, 1) to values (vectorised)."""
        raise NotImplementedError

    def encode(self, values: Sequence) -> np.ndarray:
        """Values -> array of shape (len(values), width) in [0, 1]."""
        raise NotImplementedError

    def contains(self, value) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class IntDim(Dimension):
    low: int = 0
    high: int = 0
    step: int = 1
    kind = "int"

    @property
    def choices(self) -> List[int]:
        return list(range(self.low, self.high + 1, self.step))

    def from_unit(self, u):
        n = (self.high - self.low) // self.step + 1
        idx = np.minimum((u * n).astype(np.int64), n - 1)
        return [int(self.low + i * self.step) for i in idx]

    def encode(self, values):
        v = np.asarray(values, dtype=np.float64)
        span = max(self.high - self.low, 1)
        return ((v - self.low) / span)[:, None]

    def contains(self, value):
        return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                and self.low <= value <= self.high and (value - self.low) % self.step == 0)

    def describe(self):
        return f"int {self.low}..{self.high} step {self.step}"


@dataclass(frozen=True)
class FloatDim(Dimension):
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    kind = "float"

    def from_unit(self, u):
        # Rounded to 6 significant digits so that JSON round-trips are exact and readable.
        return round_6g(self.unrounded(u)).tolist()

    def unrounded(self, u) -> np.ndarray:
        """The values at ``u`` before :meth:`from_unit` rounds them (with :func:`round_6g`)."""
        u = np.asarray(u)
        if self.log:
            return np.exp(np.log(self.low) + u * (np.log(self.high) - np.log(self.low)))
        return self.low + u * (self.high - self.low)

    def encode(self, values):
        v = np.asarray(values, dtype=np.float64)
        if self.log:
            v = (np.log(v) - np.log(self.low)) / (np.log(self.high) - np.log(self.low))
        else:
            v = (v - self.low) / (self.high - self.low)
        return v[:, None]

    def contains(self, value):
        return (isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
                and math.isfinite(value) and self.low <= value <= self.high)

    def describe(self):
        return f"float {self.low:g}..{self.high:g}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class CategoricalDim(Dimension):
    """``ordered``: the choices are a grid in order (a benchmark's 10 learning rates): encoded as
    one column, the choice's index scaled to [0, 1], so a surrogate sees neighbours as near."""

    choices: Tuple = ()
    ordered: bool = False
    kind = "categorical"

    @property
    def width(self):
        return 1 if self.ordered else len(self.choices)

    def from_unit(self, u):
        n = len(self.choices)
        idx = np.minimum((u * n).astype(np.int64), n - 1)
        return [self.choices[i] for i in idx]

    def encode(self, values):
        index = {c: i for i, c in enumerate(self.choices)}
        if self.ordered:
            return (np.asarray([index[v] for v in values], dtype=np.float64) / (len(self.choices) - 1))[:, None]
        out = np.zeros((len(values), len(self.choices)))
        out[np.arange(len(values)), [index[v] for v in values]] = 1.0
        return out

    def contains(self, value):
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in self.choices)

    def describe(self):
        return ("one of (ordered) " if self.ordered else "one of ") + ", ".join(map(str, self.choices))


@dataclass(frozen=True)
class BoolDim(Dimension):
    kind = "bool"

    def from_unit(self, u):
        return [bool(x >= 0.5) for x in u]

    def encode(self, values):
        return np.asarray(values, dtype=np.float64)[:, None]

    def contains(self, value):
        return isinstance(value, (bool, np.bool_))

    def describe(self):
        return "bool"


_DIM_KEYS = {"int": {"type", "low", "high", "step"}, "float": {"type", "low", "high", "log"},
             "categorical": {"type", "choices", "ordered"}, "bool": {"type"}}


def _whole(where: str, name: str, key: str, value) -> int:
    """An int bound as written: 2.5 is refused rather than truncated to 2."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise SpaceError(f"{where}.{name}.{key}: {value!r} is not a whole number; an int dimension needs whole "
                         "bounds (use type: float for a continuous range)")
    return int(value)


def parse_dim(where: str, name: str, spec) -> Dimension:
    if not isinstance(spec, dict) or "type" not in spec:
        raise SpaceError(f"{where}.{name}: expected a mapping with 'type' (int, float, categorical, bool)")
    kind = spec["type"]
    if kind not in _DIM_KEYS:
        raise SpaceError(f"{where}.{name}.type: unknown type {kind!r}; use int, float, categorical or bool")
    unknown = set(spec) - _DIM_KEYS[kind]
    if unknown:
        raise SpaceError(f"{where}.{name}: unknown key(s) {', '.join(sorted(unknown))} for a {kind} dimension; "
                         f"allowed: {', '.join(sorted(_DIM_KEYS[kind]))}")
    try:
        if kind == "int":
            low, high, step = (_whole(where, name, key, spec[key]) if key in spec else 1
                               for key in ("low", "high", "step"))
            if step <= 0 or high < low or (high - low) % step:
                raise SpaceError(f"{where}.{name}: empty or ragged range low={low} high={high} step={step} "
                                 "(need low <= high, step > 0, high - low a multiple of step)")
            return IntDim(name, low, high, step)
        if kind == "float":
            low, high, log = float(spec["low"]), float(spec["high"]), bool(spec.get("log", False))
            if not (low < high) or (log and low <= 0):
                raise SpaceError(f"{where}.{name}: empty range low={low:g} high={high:g}"
                                 + (" (log needs low > 0)" if log else " (need low < high)"))
            return FloatDim(name, low, high, log)
        if kind == "categorical":
            choices = spec["choices"]
            if not isinstance(choices, list) or len(choices) < 2 or len(set(map(repr, choices))) != len(choices):
                raise SpaceError(f"{where}.{name}.choices: need a list of at least two distinct values")
            ordered = spec.get("ordered", False)
            if not isinstance(ordered, bool):
                raise SpaceError(f"{where}.{name}.ordered: expected true or false, got {ordered!r}")
            return CategoricalDim(name, tuple(choices), ordered)
        return BoolDim(name)
    except KeyError as e:
        raise SpaceError(f"{where}.{name}: missing key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        if isinstance(e, SpaceError):
            raise
        raise SpaceError(f"{where}.{name}: {e}") from None




def value_column(dim: Dimension, values: Sequence) -> np.ndarray:
    """Values -> float64 column: the value, or the choice index of a categorical (exact and
    invertible: every int, and every 6-significant-digit float, fits a float64)."""
    if isinstance(dim, CategoricalDim):
        index = {repr(ch): i for i, ch in enumerate(dim.choices)}
        return np.asarray([index[repr(v)] for v in values], dtype=np.float64)
    return np.asarray(values, dtype=np.float64)


def column_values(dim: Dimension, column: np.ndarray) -> list:
    """Inverse of :func:`value_column`."""
    if isinstance(dim, CategoricalDim):
        return [dim.choices[int(i)] for i in column]
    if isinstance(dim, BoolDim):
        return [bool(v) for v in column]
    if isinstance(dim, IntDim):
        return [int(v) for v in column]
    return [float(v) for v in column]


def dim_to_dict(dim: Dimension) -> dict:
    """The YAML mapping that :func:`parse_dim` reads back into ``dim``."""
    if isinstance(dim, IntDim):
        return {"type": "int", "low": dim.low, "high": dim.high, "step": dim.step}
    if isinstance(dim, FloatDim):
        return {"type": "float", "low": dim.low, "high": dim.high, "log": dim.log}
    if isinstance(dim, CategoricalDim):
        return {"type": "categorical", "choices": list(dim.choices), **({"ordered": True} if dim.ordered else {})}
    return {"type": "bool"}
