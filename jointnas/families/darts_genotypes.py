"""DARTS genotypes, their arch dimensions and the network's layout (no torch here: costs and
spaces read them).

A genotype lists, per cell kind (normal, reduce), the two ``(op, input)`` pairs of each of the
intermediate nodes 2..5, in node order (8 pairs); input 0 and 1 are the outputs of the two
previous cells, input ``k >= 2`` is node ``k``; the cell's output concatenates nodes 2..5.

Arch dimensions (one set per cell kind, ``<kind>`` = ``normal`` or ``reduce``, ``<n>`` = 2..5):

- ``<kind>_n<n>_inputs``: which two distinct earlier nodes node ``n`` reads, one categorical over
  the pairs ``"i,j"`` (``i < j < n``): 3, 6 and 10 pairs for nodes 3, 4, 5. Node 2 can only read
  ``0,1`` and has no such dimension.
- ``<kind>_n<n>_op1`` / ``<kind>_n<n>_op2``: the op on the edge from ``i`` / from ``j``, each
  one of the 7 ops other than ``none``.

A node is the sum of its two edges, so the order of a node's two pairs in a genotype does not
change the network: ``arch_of`` forgets it and ``genotype_of`` lists the lower input first.
"""
from __future__ import annotations

from itertools import combinations
from typing import Dict, List, Mapping, NamedTuple, Tuple

from ..errors import SpaceError

OPS7 = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
        "dil_conv_3x3", "dil_conv_5x5")
KINDS = ("normal", "reduce")
NODES = (2, 3, 4, 5)
CONCAT = NODES

STEM_MULTIPLIER = 3
Pair = Tuple[str, int]


class Genotype(NamedTuple):
    normal: List[Pair]
    reduce: List[Pair]


class CellSpec(NamedTuple):
    c_prev_prev: int      # channels of input 0 (two cells back)
    c_prev: int           # channels of input 1 (the previous cell)
    c: int                # channels of every node (the cell outputs 4 * c)
    reduction: bool
    reduction_prev: bool  # input 0 has twice the resolution of input 1


def reduction_cells(cells: int) -> Tuple[int, int]:
    return cells // 3, 2 * cells // 3


def cell_plan(channels: int, cells: int) -> List[CellSpec]:
    """The widths of each cell of a network with ``channels`` initial channels (the released
    code's ``C``; the stem has ``3 * C``) and ``cells`` cells: the one place that says them, read
    by the network, its closed-form cost and a supernet."""
    c_pp = c_p = STEM_MULTIPLIER * channels
    c, reduction_prev, plan = channels, False, []
    for i in range(cells):
        reduction = i in reduction_cells(cells)
        if reduction:
            c *= 2
        plan.append(CellSpec(c_pp, c_p, c, reduction, reduction_prev))
        c_pp, c_p, reduction_prev = c_p, len(CONCAT) * c, reduction
    return plan


def input_pairs(node: int) -> List[str]:
    """The values of node ``node``'s inputs dimension: ``"i,j"`` for every ``i < j < node``."""
    return [f"{i},{j}" for i, j in combinations(range(node), 2)]


def arch_dim_names() -> List[str]:
    names = []
    for kind in KINDS:
        for n in NODES:
            if n > 2:
                names.append(f"{kind}_n{n}_inputs")
            names += [f"{kind}_n{n}_op1", f"{kind}_n{n}_op2"]
    return names


def arch_of(genotype: Genotype) -> Dict[str, str]:
    """The arch values of ``genotype`` (ValueError naming the pair unless it is a DARTS genotype
    without ``none`` and with two distinct earlier inputs per node)."""
    arch: Dict[str, str] = {}
    for kind, pairs in zip(KINDS, genotype):
        pairs = [tuple(p) for p in pairs]
        if len(pairs) != 2 * len(NODES):
            raise ValueError(f"{kind} cell: expected 8 (op, input) pairs, got {len(pairs)}")
        for k, n in enumerate(NODES):
            (op_a, in_a), (op_b, in_b) = pairs[2 * k], pairs[2 * k + 1]
            for op, i in ((op_a, in_a), (op_b, in_b)):
                if op not in OPS7:
                    raise ValueError(f"{kind} cell, node {n}: op {op!r} is not one of {', '.join(OPS7)}")
                if not 0 <= int(i) < n:
                    raise ValueError(f"{kind} cell, node {n}: input {i} is not an earlier node (0..{n - 1})")
            if int(in_a) == int(in_b):
                raise ValueError(f"{kind} cell, node {n}: both edges read input {in_a}; DARTS keeps two distinct")
            (op1, i), (op2, j) = sorted([(op_a, int(in_a)), (op_b, int(in_b))], key=lambda p: p[1])
            if n > 2:
                arch[f"{kind}_n{n}_inputs"] = f"{i},{j}"
            arch[f"{kind}_n{n}_op1"], arch[f"{kind}_n{n}_op2"] = op1, op2
    return arch


def genotype_of(arch: Mapping) -> Genotype:
    """The genotype of arch values (each node's lower input first)."""
    cells = []
    for kind in KINDS:
        pairs: List[Pair] = []
        for n in NODES:
            i, j = (0, 1) if n == 2 else (int(v) for v in str(arch[f"{kind}_n{n}_inputs"]).split(","))
            pairs += [(str(arch[f"{kind}_n{n}_op1"]), i), (str(arch[f"{kind}_n{n}_op2"]), j)]
        cells.append(pairs)
    return Genotype(*cells)


def check_arch_dims(space) -> None:
    """SpaceError naming the dimension unless ``space.arch`` holds exactly the genotype dimensions,
    each categorical over (a subset of) its allowed values."""
    names = arch_dim_names()
    for name in names:
        if name not in space.arch:
            raise SpaceError(f"arch.{name}: required dimension is missing (a DARTS genotype has the dimensions "
                             f"<normal|reduce>_n<2..5>_op1/op2 and <normal|reduce>_n<3..5>_inputs)")
        dim = space.arch[name]
        allowed = input_pairs(int(name.split("_")[1][1:])) if name.endswith("_inputs") else OPS7
        if dim.kind != "categorical" or set(dim.choices) - set(allowed):
            raise SpaceError(f"arch.{name}: must be categorical over (a subset of) {', '.join(allowed)}")
    unknown = set(space.arch) - set(names)
    if unknown:
        raise SpaceError(f"arch: unknown dimension(s) {', '.join(sorted(unknown))}; the darts family "
                         f"understands {', '.join(names[:3])}, ... ({len(names)} in all)")


def _g(normal: str, reduce: str) -> Genotype:
    short = {"sep3": "sep_conv_3x3", "sep5": "sep_conv_5x5", "dil3": "dil_conv_3x3", "dil5": "dil_conv_5x5",
             "max": "max_pool_3x3", "avg": "avg_pool_3x3", "skip": "skip_connect"}

    def pairs(text: str) -> List[Pair]:
        out = []
        for item in text.split():
            op, i = item.split(":")
            out.append((short[op], int(i)))
        return out

    return Genotype(pairs(normal), pairs(reduce))


# The published cells, as PC-DARTS's genotypes.py names them (pairs in node order).
DARTS_V1 = _g("sep3:1 sep3:0 skip:0 sep3:1 skip:0 sep3:1 sep3:0 skip:2",
              "max:0 max:1 skip:2 max:0 max:0 skip:2 skip:2 avg:0")
DARTS_V2 = _g("sep3:0 sep3:1 sep3:0 sep3:1 sep3:1 skip:0 skip:0 dil3:2",
              "max:0 max:1 skip:2 max:1 max:0 skip:2 skip:2 max:1")
PC_DARTS = _g("sep3:1 skip:0 sep3:0 dil3:1 sep5:0 sep3:1 avg:0 dil3:1",
              "sep5:1 max:0 sep5:1 sep5:2 sep3:0 sep3:3 sep3:1 sep3:2")
PRESETS = {"DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2, "PC_DARTS": PC_DARTS}
