"""Search spaces: typed dimensions grouped into ``arch`` and ``recipe``, loaded from YAML.

A space file (see ``recipes/fbnetv3.yaml``) has the sections ``name``, ``description``,
``deploy`` (what FLOPs/params are counted for), ``network`` (fixed structure the arch
dimensions fill in), ``arch``, ``recipe`` and optional ``presets``.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import yaml


class SpaceError(ValueError):
    """A search-space file or value is malformed; the message names file and key."""


# --------------------------------------------------------------------------- dimensions
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
        if self.log:
            v = np.exp(np.log(self.low) + u * (np.log(self.high) - np.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        # Rounded to 6 significant digits so that JSON round-trips are exact and readable.
        return [float(f"{x:.6g}") for x in v]

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
    choices: Tuple = ()
    kind = "categorical"

    @property
    def width(self):
        return len(self.choices)

    def from_unit(self, u):
        n = len(self.choices)
        idx = np.minimum((u * n).astype(np.int64), n - 1)
        return [self.choices[i] for i in idx]

    def encode(self, values):
        index = {c: i for i, c in enumerate(self.choices)}
        out = np.zeros((len(values), len(self.choices)))
        out[np.arange(len(values)), [index[v] for v in values]] = 1.0
        return out

    def contains(self, value):
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in self.choices)

    def describe(self):
        return "one of " + ", ".join(map(str, self.choices))


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


# --------------------------------------------------------------------------- the space
@dataclass(frozen=True)
class Network:
    """Fixed structure of the MBConv network that the arch dimensions parameterise."""

    stage_strides: Tuple[int, ...] = (1, 2, 2, 2, 1, 2, 1)
    stem_stride: int = 2
    head_expansion: int = 6
    head_channels: int = 1984


@dataclass(frozen=True)
class Deploy:
    """The deployable model that budgets (FLOPs, params) refer to."""

    in_channels: int = 3
    num_classes: int = 1000
    reference_resolution: int = 224


STAGE_FIELDS = ("channels", "depth", "kernel", "expansion", "kernel_rep", "expansion_rep", "se", "act")
ACTIVATIONS = ("hswish", "relu", "swish")


@dataclass
class Space:
    name: str
    arch: Dict[str, Dimension]
    recipe: Dict[str, Dimension]
    network: Network = field(default_factory=Network)
    deploy: Deploy = field(default_factory=Deploy)
    presets: Dict[str, dict] = field(default_factory=dict)
    description: str = ""
    source: str = "<memory>"

    # ---- dimensions
    @property
    def dims(self) -> List[Dimension]:
        return list(self.arch.values()) + list(self.recipe.values())

    @property
    def arch_width(self) -> int:
        return sum(d.width for d in self.arch.values())

    @property
    def recipe_width(self) -> int:
        return sum(d.width for d in self.recipe.values())

    @property
    def encoding_width(self) -> int:
        return self.arch_width + self.recipe_width

    def fingerprint(self) -> str:
        """Stable hash of everything that affects encodings and proxies."""
        spec = {
            "arch": [(d.name, d.kind, d.describe()) for d in self.arch.values()],
            "recipe": [(d.name, d.kind, d.describe()) for d in self.recipe.values()],
            "network": self.network.__dict__, "deploy": self.deploy.__dict__,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def encoding_schema(self) -> List[dict]:
        """Column layout of the encoding, for checkpoints and humans."""
        schema, offset = [], 0
        for part, dims in (("arch", self.arch), ("recipe", self.recipe)):
            for d in dims.values():
                schema.append({"name": d.name, "part": part, "kind": d.kind, "offset": offset,
                               "width": d.width, "range": d.describe()})
                offset += d.width
        return schema

    # ---- validation and encoding
    def validate(self, arch: Mapping, recipe: Mapping, *, allow_outside: Sequence[str] = ()) -> None:
        for part, dims, values in (("arch", self.arch, arch), ("recipe", self.recipe, recipe)):
            missing = [k for k in dims if k not in values]
            extra = [k for k in values if k not in dims]
            if missing:
                raise SpaceError(f"{part} of candidate lacks {', '.join(missing)} (space {self.name})")
            if extra:
                raise SpaceError(f"{part} of candidate has unknown key(s) {', '.join(extra)} (space {self.name})")
            for k, d in dims.items():
                if k not in allow_outside and not d.contains(values[k]):
                    raise SpaceError(f"{part}.{k}={values[k]!r} is outside space {self.name}: {d.describe()}")

    def encode(self, candidates: Sequence) -> np.ndarray:
        """Encode candidates (objects with ``arch`` and ``recipe`` dicts) as float32 rows."""
        cols = []
        for part, dims in (("arch", self.arch), ("recipe", self.recipe)):
            for k, d in dims.items():
                cols.append(d.encode([getattr(c, part)[k] for c in candidates]))
        if not candidates:
            return np.zeros((0, self.encoding_width), dtype=np.float32)
        return np.concatenate(cols, axis=1).astype(np.float32)

    def preset(self, name: str):
        from .candidate import Candidate

        if name not in self.presets:
            raise SpaceError(f"space {self.name} has no preset {name!r}; known: {', '.join(self.presets) or 'none'}")
        p = self.presets[name]
        return Candidate(dict(p["arch"]), dict(p.get("recipe") or self.default_recipe()), space=self.name)

    def default_recipe(self) -> dict:
        """Mid-range recipe (first choice for categoricals, geometric mid for log floats)."""
        out = {}
        for k, d in self.recipe.items():
            if isinstance(d, CategoricalDim):
                out[k] = d.choices[0]
            elif isinstance(d, BoolDim):
                out[k] = False
            else:
                out[k] = d.from_unit(np.array([0.5]))[0]
        return out

    def stage_count(self) -> int:
        return len(self.network.stage_strides)


# --------------------------------------------------------------------------- loading
class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loader that refuses duplicate mapping keys instead of keeping the last one."""


def _construct_unique_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise SpaceError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)

_DIM_KEYS = {"int": {"type", "low", "high", "step"}, "float": {"type", "low", "high", "log"},
             "categorical": {"type", "choices"}, "bool": {"type"}}
_TOP_KEYS = {"name", "description", "deploy", "network", "arch", "recipe", "presets"}


def _parse_dim(where: str, name: str, spec) -> Dimension:
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
            low, high, step = int(spec["low"]), int(spec["high"]), int(spec.get("step", 1))
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
            return CategoricalDim(name, tuple(choices))
        return BoolDim(name)
    except KeyError as e:
        raise SpaceError(f"{where}.{name}: missing key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        if isinstance(e, SpaceError):
            raise
        raise SpaceError(f"{where}.{name}: {e}") from None


def _parse_fixed(where: str, cls, spec) -> Any:
    spec = spec or {}
    if not isinstance(spec, dict):
        raise SpaceError(f"{where}: expected a mapping")
    allowed = set(cls.__dataclass_fields__)
    unknown = set(spec) - allowed
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    if "stage_strides" in spec:
        spec = dict(spec, stage_strides=tuple(spec["stage_strides"]))
    return cls(**spec)


def space_from_dict(doc: dict, source: str = "<memory>") -> Space:
    if not isinstance(doc, dict):
        raise SpaceError(f"{source}: a space file must be a YAML mapping")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise SpaceError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
                         f"allowed: {', '.join(sorted(_TOP_KEYS))}")
    for key in ("name", "arch", "recipe"):
        if key not in doc:
            raise SpaceError(f"{source}: missing top-level key {key!r}")
    try:
        network = _parse_fixed("network", Network, doc.get("network"))
        deploy = _parse_fixed("deploy", Deploy, doc.get("deploy"))
        parts = {}
        for part in ("arch", "recipe"):
            if not isinstance(doc[part], dict) or not doc[part]:
                raise SpaceError(f"{part}: expected a non-empty mapping of dimensions")
            parts[part] = {n: _parse_dim(part, n, s) for n, s in doc[part].items()}
        dup = set(parts["arch"]) & set(parts["recipe"])
        if dup:
            raise SpaceError(f"recipe: dimension name(s) {', '.join(sorted(dup))} also used in arch")
        _check_arch_structure(parts["arch"], network)
    except SpaceError as e:
        raise SpaceError(f"{source}: {e}") from None
    space = Space(str(doc["name"]), parts["arch"], parts["recipe"], network, deploy, {},
                  str(doc.get("description", "")), source)
    for pname, p in (doc.get("presets") or {}).items():
        if not isinstance(p, dict) or "arch" not in p:
            raise SpaceError(f"{source}: presets.{pname}: expected a mapping with 'arch'")
        outside = tuple(p.get("outside", ()))
        unknown = set(p) - {"arch", "recipe", "outside", "note"}
        if unknown:
            raise SpaceError(f"{source}: presets.{pname}: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            space.validate(p["arch"], p.get("recipe") or space.default_recipe(), allow_outside=outside)
        except SpaceError as e:
            raise SpaceError(f"{source}: presets.{pname}: {e}") from None
        space.presets[pname] = {"arch": dict(p["arch"]), "recipe": p.get("recipe"), "outside": outside}
    return space


def _check_arch_structure(arch: Dict[str, Dimension], network: Network) -> None:
    for key in ("resolution", "stem_channels"):
        if key not in arch:
            raise SpaceError(f"arch.{key}: required dimension is missing")
    for i in range(len(network.stage_strides)):
        for f in STAGE_FIELDS:
            if f"s{i}_{f}" not in arch:
                raise SpaceError(f"arch.s{i}_{f}: required for stage {i} of {len(network.stage_strides)} "
                                 f"(each stage needs {', '.join(STAGE_FIELDS)})")
        act = arch[f"s{i}_act"]
        if not isinstance(act, CategoricalDim) or set(act.choices) - set(ACTIVATIONS):
            raise SpaceError(f"arch.s{i}_act: must be categorical over {', '.join(ACTIVATIONS)}")
    known = {"resolution", "stem_channels"} | {f"s{i}_{f}" for i in range(len(network.stage_strides))
                                               for f in STAGE_FIELDS + ("trim_pad",)}
    unknown = set(arch) - known
    if unknown:
        raise SpaceError(f"arch: unknown dimension(s) {', '.join(sorted(unknown))}; the model builder "
                         "understands resolution, stem_channels and s<i>_<" + "|".join(STAGE_FIELDS + ("trim_pad",)) + ">")


def recipes_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "recipes"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "jointnas" / "recipes"


def available_spaces() -> List[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


_CACHE: Dict[str, Space] = {}


def load_space(name_or_path: Union[str, Path, Space]) -> Space:
    """Load a space by name (``"fbnetv3"`` -> ``recipes/fbnetv3.yaml``) or by file path."""
    if isinstance(name_or_path, Space):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = recipes_dir() / f"{text}.yaml"
        if not path.is_file():
            raise SpaceError(f"unknown space {text!r}; available: {', '.join(available_spaces())} "
                             "(or pass the path of a .yaml file)")
    if not path.is_file():
        raise SpaceError(f"space file {path} does not exist")
    key = str(path.resolve())
    if key not in _CACHE:
        try:
            doc = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
        except SpaceError as e:
            raise SpaceError(f"{path}: {e}") from None
        except yaml.YAMLError as e:
            raise SpaceError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
        _CACHE[key] = space_from_dict(doc, str(path))
    return _CACHE[key]
