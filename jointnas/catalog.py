"""The one place where names become objects: space files, model families, evaluators,
surrogates, batch policies, fine strategies and executors.

Each seam has a :class:`Registry` of names: its built-ins below (``"module:attribute"``, imported
on first use, so that listing names costs nothing), the implementations that installed packages
declare in the seam's entry-point group (``jointnas.families``, ``jointnas.surrogates``, ...),
and those registered with :func:`register` from the user's own code. Entry points are read the
first time a registry is listed or looked into, in whichever process does so (the command
line's, a worker's), so an installed plug-in needs no code run by its user.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import MutableMapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Type, Union

import yaml

from .budget import parse_flops
from .errors import RecipeError, SpaceError, UsageError
from .evaluation.function import FunctionEvaluator
from .evaluation.recipe_file import RecipeFile, recipe_from_dict, write_recipe_file
from .families.fixed import FixedArch
from .space.core import SearchSpace
from .surrogates.base import PredictorError, Scorer, Surrogate
from .surrogates.checkpoint import Checkpoint
from .space.dims import parse_dim

Entry = Union[str, Callable]


class Registry(MutableMapping):
    """Names -> implementations of one seam: objects, or ``"module:attribute"`` that
    :func:`resolve` imports. The names that installed distributions declare in the entry-point
    group ``group`` join the built-ins the first time the registry is read; a name declared
    twice (by jointnas and a distribution, or by two distributions) is refused."""

    def __init__(self, group: Optional[str], builtins: Dict[str, Entry]):
        self.group = group
        self._entries: Dict[str, Entry] = dict(builtins)
        self._read = group is None

    def _all(self) -> Dict[str, Entry]:
        if not self._read:
            self._entries.update(installed(self.group, taken=set(self._entries)))
            self._read = True
        return self._entries

    def __getitem__(self, name: str) -> Entry:
        return self._all()[name]

    def __setitem__(self, name: str, entry: Entry) -> None:
        self._all()[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._all()))

    def __len__(self) -> int:
        return len(self._all())


def installed(group: str, taken: Set[str]) -> Dict[str, str]:
    """``name -> "module:attribute"`` of the entry points that installed distributions declare in
    ``group``; a UsageError naming the distribution for a name in ``taken`` or declared twice."""
    found: Dict[str, str] = {}
    owners: Dict[str, str] = {}
    for ep, dist in _entry_points(group):
        if ep.name in taken or ep.name in found:
            raise UsageError(f"distribution {dist} declares {ep.name!r} in entry-point group {group}, a name that "
                             f"{owners.get(ep.name, 'jointnas itself')} already uses: one of them must be renamed")
        found[ep.name] = ep.module + (f":{ep.attr}" if ep.attr else "")
        owners[ep.name] = f"distribution {dist}"
    return found


def _entry_points(group: str) -> list:
    """(entry point, the name of the distribution declaring it) of each entry point in ``group``."""
    if sys.version_info >= (3, 10):
        return [(ep, ep.dist.name if ep.dist is not None else "?") for ep in entry_points(group=group)]
    return [(ep, "?") for ep in entry_points().get(group, ())]  # Python 3.9: no selection, no distribution


# name -> factory ``(spec, where) -> ModelFamily``, given the space file's ``family`` mapping
FAMILIES = Registry("jointnas.families", {
    "mbconv": "jointnas.families.mbconv:MBConvFamily.from_spec",
    "torchvision": "jointnas.families.torchvision:TorchvisionFamily.from_spec",
    "fixed": "jointnas.catalog:fixed_family",   # names its inner family, so it is made here
    "cell": "jointnas.families.cell:CellFamily.from_spec",
    "darts": "jointnas.families.darts:DartsFamily.from_spec",
    "mlp": "jointnas.families.mlp:MLPFamily.from_spec",
})
# name -> Surrogate subclass (jointnas.surrogates.base), made by its ``create(space, *, seed, ensemble,
# score_bounds)``. The name is its ``kind``, which its checkpoints carry and load_surrogate reads back.
SURROGATES = Registry("jointnas.surrogates", {
    "mlp": "jointnas.surrogates.mlp.ensemble:Predictor",
    "forest": "jointnas.surrogates.forest:ForestSurrogate",
})
# kind -> ``load(path, space)`` for checkpoints that no Surrogate subclass wrote (read as they are)
SURROGATE_LOADERS = Registry(None, {})
# name -> coarse batch policy class (a jointnas.coarse.policies.BatchPolicy), built as ``cls(explore=...)``
POLICIES = Registry("jointnas.policies", {
    "ucb": "jointnas.coarse.policies:DiverseThenUCB",
    "ei": "jointnas.coarse.policies:DiverseThenEI",
    "thompson": "jointnas.coarse.policies:DiverseThenThompson",
})
# name -> fine-stage strategy class (a jointnas.fine.base.Strategy), built as ``cls(settings: SearchSettings)``
STRATEGIES = Registry("jointnas.strategies", {
    "evolution": "jointnas.fine.evolution:Evolution",
    "random": "jointnas.fine.random:RandomSearch",
})
# name -> executor class (a jointnas.execution.base.Executor), built as ``cls(workers=..., device=...)``
EXECUTORS = Registry("jointnas.executors", {
    "local": "jointnas.execution.local:LocalExecutor",
    "serial": "jointnas.execution.serial:SerialExecutor",
    "ray": "jointnas.execution.ray:RayExecutor",        # optional extra jointnas[ray]
})
# evaluator kind (the part of a spec before ':') -> ``make(argument, **options) -> Evaluator``;
# a spec whose kind is not here is ``module:function``, a Python objective (FunctionEvaluator).
EVALUATORS = Registry("jointnas.evaluators", {
    "train": "jointnas.evaluation.train:TrainEvaluator.from_spec",
    "tabular": "jointnas.evaluation.tabular:TabularEvaluator.from_spec",
})


def resolve(registry: MutableMapping, name: str, what: str) -> Callable:
    """The object registered under ``name`` (importing it on first use); UsageError listing names."""
    if name not in registry:
        raise UsageError(f"unknown {what} {name!r}; known: {', '.join(sorted(registry)) or 'none'}")
    entry = registry[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise UsageError(f"{what} {name!r} is registered as {entry!r}, which cannot be imported: {e}") from None
        registry[name] = entry = obj
    return entry


def register(registry: MutableMapping, name: str, factory: Entry) -> None:
    """Register ``factory`` (an object or ``"module:attribute"``) as ``name`` in this process."""
    registry[name] = factory


def register_family(name: str, factory: Entry) -> None:
    """``factory(spec: dict, where: str) -> ModelFamily``, where ``spec`` is the ``family`` mapping."""
    register(FAMILIES, name, factory)


# ---------------------------------------------------------------------- space files
def spaces_dir() -> Path:
    from .shipped import folder

    return folder("spaces")


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

_TOP_KEYS = {"name", "description", "family", "deploy", "network", "arch", "recipe", "presets", "budget"}
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


def fixed_family(spec, where: str = "family") -> FixedArch:
    """The ``fixed`` family: one arch of an inner family, whose ``family`` value is made by
    :func:`make_family` too."""
    return FixedArch.from_spec(spec, where, make_family)


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
        space.budget = _space_budget(doc.get("budget"), family)
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


def _space_budget(value, family) -> Optional[int]:
    """A space file's ``budget:`` (FLOPs of its deployable model, e.g. 600MFLOPs) as a number."""
    if value is None:
        return None
    if family is None:
        raise SpaceError("budget: a space without a model family has no FLOPs to budget; remove it")
    try:
        return parse_flops(value)
    except UsageError as e:
        raise SpaceError(f"budget: {e}") from None


def read_space_file(path: Path) -> SearchSpace:
    return space_from_dict(_read_yaml(path, "space", "spaces/fbnetv3.yaml", SpaceError), str(path))


def _read_yaml(path: Path, what: str, example: str, error: Type[Exception]):
    """The parsed YAML document of a ``what`` file (safe load, duplicate keys refused); ``error``
    naming the file for an unreadable, non-text or invalid one."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{path} is not a text file; a {what} is a YAML file (see {example})") from None
    except OSError as e:
        raise error(f"cannot read {what} file {path}: {e.strerror or e}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except SpaceError as e:
        raise error(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML{_yaml_where(e)}") from None


def _yaml_where(e: yaml.YAMLError) -> str:
    """' at line L, column C: what the parser found (while parsing ...)', as far as the error says."""
    if not isinstance(e, yaml.MarkedYAMLError) or e.problem_mark is None or e.problem is None:
        return f": {str(e).splitlines()[0]}"
    mark = e.problem_mark
    return (f" at line {mark.line + 1}, column {mark.column + 1}: {e.problem}"
            + (f" ({e.context})" if e.context else ""))


def _named_file(text: str, folder: Path, unknown: Callable[[], Exception],
                missing: Callable[[Path], Exception]) -> Path:
    """A YAML file given by path (ending in .yaml/.yml, or an existing file) or by name
    (``folder/<name>.yaml``); ``unknown()`` raised for a name not there, ``missing(path)`` for a path."""
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = folder / f"{text}.yaml"
        if not path.is_file():
            raise unknown()
    if not path.is_file():
        raise missing(path)
    return path


def load_space(name_or_path: Union[str, Path, SearchSpace]) -> SearchSpace:
    """A space by name (``"fbnetv3"`` -> ``spaces/fbnetv3.yaml``), by file path, or as given."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    text = str(name_or_path)
    path = _named_file(text, spaces_dir(), lambda: SpaceError(
        f"unknown space {text!r}; available: {', '.join(available_spaces())} (or give the path of a .yaml file)"),
        lambda p: SpaceError(f"space file {p} does not exist"))
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)  # an edited file is read again
    if key not in _CACHE:
        _CACHE[key] = read_space_file(path)
    return _CACHE[key]


# ---------------------------------------------------------------------- recipe files
def recipes_dir() -> Path:
    from .shipped import folder

    return folder("recipes")


def available_recipes() -> List[str]:
    """The names of the shipped recipes (``recipes/<name>.yaml``)."""
    folder = recipes_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def read_recipe(name_or_path: Union[str, Path]) -> RecipeFile:
    """A recipe file by name (``"torchvision-reference"`` -> ``recipes/torchvision-reference.yaml``)
    or by path, parsed and checked for its own structure (its values are checked against a space
    by :meth:`RecipeFile.for_space`)."""
    text = str(name_or_path)
    path = _named_file(text, recipes_dir(), lambda: RecipeError(
        f"unknown recipe {text!r}; shipped: {', '.join(available_recipes()) or 'none'} "
        "(or give the path of a .yaml recipe file)"), lambda p: RecipeError(f"recipe file {p} does not exist"))
    return recipe_from_dict(_read_yaml(path, "recipe", "recipes/torchvision-reference.yaml", RecipeError), str(path))


def load_recipe(name_or_path: Union[str, Path], space) -> dict:
    """The recipe named ``name_or_path`` (a shipped recipe's name or a recipe file) as a point of
    ``space``'s recipe part (a SearchSpace, a space name or file): the file's values, checked
    against the space's recipe dimensions, and the space's default for the dimensions it leaves out."""
    return read_recipe(name_or_path).for_space(load_space(space))


def save_recipe(path, recipe: dict, space, source: str = "", **details) -> Path:
    """Write ``recipe`` (values of ``space``'s recipe dimensions) as a recipe file at ``path``,
    atomically, after checking that :func:`load_recipe` reads it back against ``space``.
    ``details``: ``name`` (default: the file's stem), ``description``, ``spaces``, ``outside``."""
    write_recipe_file(path, recipe, load_space(space), source=source, **details)
    return Path(path)


def load_trained(path, space=None):
    """(model with the saved weights in eval mode, its :class:`Candidate`) from a directory that
    :func:`jointnas.evaluation.saved_model.save_trained` wrote; its space is ``space`` (a name, a
    file or a SearchSpace) or the one the directory records."""
    from .evaluation import saved_model  # torch: only where a saved model is read

    build, candidate, state = saved_model.read_trained(path)
    space = load_space(space) if space is not None else space_from_dict(build["space"])
    model = saved_model.build_untrained(build, space)
    model.load_state_dict(state)
    return model, candidate


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
    return FunctionEvaluator.from_spec(spec, **options)


def surrogate_class(name: str) -> Type[Surrogate]:
    """The Surrogate subclass registered as ``name``."""
    cls = resolve(SURROGATES, name, "surrogate")
    if not (isinstance(cls, type) and issubclass(cls, Surrogate)):
        raise UsageError(f"surrogate {name!r} is registered as {cls!r}, which is not a subclass of "
                         "jointnas.surrogates.base.Surrogate")
    return cls


def surrogate_factory(name: str) -> Callable:
    """``create(space, *, seed, ensemble, score_bounds)`` of the surrogate registered as ``name``."""
    return surrogate_class(name).create


def make_surrogate(name: str, space, **options) -> Surrogate:
    return surrogate_factory(name)(space, **options)


def load_surrogate(path, space=None) -> Surrogate:
    """The surrogate saved at ``path``, of the kind the file names, checked against ``space`` (a
    SearchSpace, a space name or file; default: the space the file names)."""
    return _load_checkpoint(path, space, scorer=False)


def load_scorer(path, space=None) -> Scorer:
    """What the fine stage needs of the surrogate saved at ``path`` (``predict_encoded``, ``predict``):
    its class's ``scorer_from_checkpoint``, which for the MLP predictor needs no torch."""
    return _load_checkpoint(path, space, scorer=True)


def _load_checkpoint(path, space, scorer: bool):
    checkpoint = Checkpoint.read(path, PredictorError)
    kind = checkpoint.kind
    if kind in SURROGATE_LOADERS:
        return resolve(SURROGATE_LOADERS, kind, "surrogate kind")(path, space)
    if kind not in SURROGATES:
        raise UsageError(f"a checkpoint of surrogate kind {kind!r}, which this jointnas does not know; known: "
                         f"{', '.join(sorted(SURROGATES))}")
    cls = surrogate_class(kind)
    if not isinstance(space, SearchSpace):
        try:
            space = load_space(space or checkpoint.space_name)
        except SpaceError:
            if space is not None:
                raise
            raise PredictorError(f"{path} was trained on space {checkpoint.space_name!r}, which is not available "
                                 "here; pass that space (space=...)") from None
    return cls.scorer_from_checkpoint(checkpoint, space) if scorer else cls.from_checkpoint(checkpoint, space)


def make_policy(name: str, **options):
    return resolve(POLICIES, name, "batch policy")(**options)


def make_strategy(name: str, settings):
    return resolve(STRATEGIES, name, "fine strategy")(settings)


def make_executor(name: str, **options):
    return resolve(EXECUTORS, name, "executor")(**options)
