"""The one place where names become objects: space files, model families, evaluators,
surrogates, batch policies, fine strategies and executors.

Each registry maps a name to ``"module:attribute"`` (imported on first use, so that listing
names costs nothing); adding an implementation is one line here, or a call to ``register``
from the user's own code.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Union

import yaml

from .errors import SpaceError, UsageError
from .space.core import SearchSpace
from .space.dims import parse_dim

# name -> "module:factory". A family factory takes the space file's ``family`` mapping.
FAMILIES: Dict[str, Union[str, Callable]] = {
    "mbconv": "jointnas.families.mbconv:MBConvFamily.from_spec",
    "torchvision": "jointnas.families.torchvision:TorchvisionFamily.from_spec",
    "fixed": "jointnas.families.fixed:FixedArch.from_spec",
    "cell": "jointnas.families.cell:CellFamily.from_spec",
    "mlp": "jointnas.families.mlp:MLPFamily.from_spec",
}
# name -> surrogate module, which has ``make(space, *, seed, ensemble, score_bounds) -> Surrogate``
# and ``load(path, space)`` for its checkpoints (or "module:factory", with the loader in
# SURROGATE_LOADERS). The name is also the ``kind`` its checkpoints carry.
SURROGATES: Dict[str, Union[str, Callable]] = {
    "mlp": "jointnas.surrogates.mlp.ensemble",
    "forest": "jointnas.surrogates.forest",
}
SURROGATE_LOADERS: Dict[str, Union[str, Callable]] = {}   # kind -> ``load(path, space)``, where not above
# kind -> ``load(path, space)`` of a scoring-only surrogate without torch (the fine stage); others: SURROGATE_LOADERS
SCORER_LOADERS: Dict[str, Union[str, Callable]] = {"mlp": "jointnas.surrogates.mlp.checkpoint:load_scorer"}
# name -> coarse batch policy class, built as ``cls(explore=...)``
POLICIES: Dict[str, Union[str, Callable]] = {
    "ucb": "jointnas.coarse.policies:DiverseThenUCB",
    "ei": "jointnas.coarse.policies:DiverseThenEI",
    "thompson": "jointnas.coarse.policies:DiverseThenThompson",
}
# name -> fine-stage strategy class, built as ``cls(settings: SearchSettings)``
STRATEGIES: Dict[str, Union[str, Callable]] = {
    "evolution": "jointnas.fine.evolution:Evolution",
    "random": "jointnas.fine.random:RandomSearch",
}
# name -> executor class, built as ``cls(workers=..., device=...)``
EXECUTORS: Dict[str, Union[str, Callable]] = {
    "local": "jointnas.execution.local:LocalExecutor",
    "serial": "jointnas.execution.local:SerialExecutor",
    "ray": "jointnas.execution.ray:RayExecutor",        # optional extra jointnas[ray]
}
# evaluator kind (the part of a spec before ':') -> ``make(argument, **options) -> Evaluator``;
# a spec whose kind is not here is ``module:function``, a Python objective.
EVALUATORS: Dict[str, Union[str, Callable]] = {
    "train": "jointnas.evaluation.evaluators:TrainEvaluator.from_spec",
    "tabular": "jointnas.evaluation.tabular:TabularEvaluator.from_spec",
}
FUNCTION_EVALUATOR = "jointnas.evaluation.evaluators:FunctionEvaluator.from_spec"


def resolve(registry: Dict[str, Union[str, Callable]], name: str, what: str) -> Callable:
    """The object registered under ``name`` (importing it on first use); UsageError listing names."""
    if name not in registry:
        raise UsageError(f"unknown {what} {name!r}; known: {', '.join(sorted(registry)) or 'none'}")
    entry = registry[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        registry[name] = entry = obj
    return entry


def register(registry: Dict[str, Union[str, Callable]], name: str, factory: Union[str, Callable]) -> None:
    registry[name] = factory


def register_family(name: str, factory: Union[str, Callable]) -> None:
    """``factory(spec: dict, where: str) -> ModelFamily``, where ``spec`` is the ``family`` mapping."""
    register(FAMILIES, name, factory)


# ---------------------------------------------------------------------- space files
def spaces_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "spaces"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "jointnas" / "spaces"


def available_spaces() -> List[str]:
    return sorted(p.stem for p in spaces_dir().glob("*.yaml"))


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """Safe loader that refuses duplicate mapping keys instead of keeping the last one. On
    libyaml's parser where PyYAML has it (same documents, about 6x faster than the pure-Python
    parser on a space file: a visible part of a command's start-up)."""


def _construct_unique_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise SpaceError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen[key] = True
    return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)

_TOP_KEYS = {"name", "description", "family", "deploy", "network", "arch", "recipe", "presets"}
_CACHE: Dict[tuple, SearchSpace] = {}


def make_family(spec, where: str = "family"):
    """A ModelFamily from a space file's ``family`` value: a name or a mapping with ``name``."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise SpaceError(f"{where}: expected a family name ({', '.join(sorted(FAMILIES))}) or a mapping "
                         "with 'name'")
    if spec["name"] not in FAMILIES:
        raise SpaceError(f"{where}: unknown family {spec['name']!r}; known: {', '.join(sorted(FAMILIES))}")
    return resolve(FAMILIES, spec["name"], "family")(spec, where)


def space_from_dict(doc: dict, source: str = "<memory>") -> SearchSpace:
    """A space from its mapping (a parsed space file, or ``SearchSpace.to_dict()``)."""
    if not isinstance(doc, dict):
        raise SpaceError(f"{source}: a space file must be a YAML mapping")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise SpaceError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
                         f"allowed: {', '.join(sorted(_TOP_KEYS))}")
    if "name" not in doc:
        raise SpaceError(f"{source}: missing top-level key 'name'")
    try:
        family_spec = doc.get("family")
        legacy = {k: doc[k] for k in ("deploy", "network") if k in doc}
        if legacy:
            # Space files from before families: `deploy` and `network` on top mean the mbconv family.
            if "family" in doc and family_spec is None:
                raise SpaceError(f"{', '.join(legacy)}: belong to a model family, but the space has family: null")
            family_spec = {"name": "mbconv"} if family_spec is None else (
                {"name": family_spec} if isinstance(family_spec, str) else dict(family_spec))
            family_spec.update(legacy)
        family = make_family(family_spec)
        parts = {}
        for part in ("arch", "recipe"):
            dims = doc.get(part) or {}
            if not isinstance(dims, dict):
                raise SpaceError(f"{part}: expected a mapping of dimensions")
            parts[part] = {str(n): parse_dim(part, str(n), s) for n, s in dims.items()}
        if not parts["arch"] and not parts["recipe"]:
            raise SpaceError("arch, recipe: a space needs at least one dimension")
        dup = set(parts["arch"]) & set(parts["recipe"])
        if dup:
            raise SpaceError(f"recipe: dimension name(s) {', '.join(sorted(dup))} also used in arch")
        space = SearchSpace(str(doc["name"]), parts["arch"], parts["recipe"], family, {},
                            str(doc.get("description") or ""), source)
        if family is not None:
            family.check_space(space)
    except SpaceError as e:
        raise SpaceError(f"{source}: {e}") from None
    presets = doc.get("presets") or {}
    if not isinstance(presets, dict):
        raise SpaceError(f"{source}: presets: expected a mapping of named candidates")
    for pname, p in presets.items():
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


def read_space_file(path: Path) -> SearchSpace:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpaceError(f"{path} is not a text file; a space is a YAML file (see spaces/fbnetv3.yaml)") from None
    except OSError as e:
        raise SpaceError(f"cannot read space file {path}: {e.strerror or e}") from None
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)
    except SpaceError as e:
        raise SpaceError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    return space_from_dict(doc, str(path))


def load_space(name_or_path: Union[str, Path, SearchSpace]) -> SearchSpace:
    """A space by name (``"fbnetv3"`` -> ``spaces/fbnetv3.yaml``), by file path, or as given."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = spaces_dir() / f"{text}.yaml"
        if not path.is_file():
            raise SpaceError(f"unknown space {text!r}; available: {', '.join(available_spaces())} "
                             "(or give the path of a .yaml file)")
    if not path.is_file():
        raise SpaceError(f"space file {path} does not exist")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)  # an edited file is read again
    if key not in _CACHE:
        _CACHE[key] = read_space_file(path)
    return _CACHE[key]


# ---------------------------------------------------------------------- evaluators, surrogates, ...
def make_evaluator(spec: str, **options):
    """An evaluator from a spec string: ``train:digits``, ``module:function`` (a Python objective
    ``module.function(candidate, report)``), or any ``kind:argument`` registered in EVALUATORS."""
    if not isinstance(spec, str) or ":" not in spec:
        raise UsageError(f"evaluator {spec!r}: expected KIND:ARGUMENT, e.g. train:digits, or "
                         "MODULE:FUNCTION for a Python objective")
    kind, arg = spec.split(":", 1)
    if kind in EVALUATORS:
        return resolve(EVALUATORS, kind, "evaluator")(arg, **options)
    return resolve({"function": FUNCTION_EVALUATOR}, "function", "evaluator")(spec, **options)


def surrogate_factory(name: str) -> Callable:
    """``make(space, *, seed, ensemble, score_bounds)`` of the surrogate registered as ``name``."""
    entry = resolve(SURROGATES, name, "surrogate")
    return getattr(entry, "make", entry)


def surrogate_loader(kind: str) -> Callable:
    """``load(path, space)`` for checkpoints of ``kind``."""
    if kind in SURROGATE_LOADERS:
        return resolve(SURROGATE_LOADERS, kind, "surrogate kind")
    if kind not in SURROGATES:
        raise UsageError(f"a checkpoint of surrogate kind {kind!r}, which this jointnas does not know; known: "
                         f"{', '.join(sorted(SURROGATES))}")
    entry = resolve(SURROGATES, kind, "surrogate")
    if not hasattr(entry, "load"):
        raise UsageError(f"surrogate {kind!r} is registered without a loader (add it to SURROGATE_LOADERS)")
    return entry.load


def scorer_loader(kind: str) -> Callable:
    """``load(path, space)`` of what scores checkpoints of ``kind`` (without torch where one is registered)."""
    if kind in SCORER_LOADERS:
        return resolve(SCORER_LOADERS, kind, "scorer kind")
    return surrogate_loader(kind)


def make_surrogate(name: str, space, **options):
    return surrogate_factory(name)(space, **options)


def make_policy(name: str, **options):
    return resolve(POLICIES, name, "batch policy")(**options)


def make_strategy(name: str, settings):
    return resolve(STRATEGIES, name, "fine strategy")(settings)


def make_executor(name: str, **options):
    return resolve(EXECUTORS, name, "executor")(**options)
