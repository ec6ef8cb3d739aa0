"""Closed form of fvcore's count of a DARTS network (``darts_net.Network`` in eval mode), pinned to
fvcore by ``tests/test_darts_family.py``.

fvcore counts one multiply-add as one flop: per conv ``k*k*c_in/groups*c_out*h_out*w_out`` (no
bias here), 2 per element for an eval-mode affine batch norm, 1 per input element for the global
pooling, ``in*out`` for the linear layer; ReLU, max/average pooling, the slicing and padding of
FactorizedReduce, the sums and concatenations are not counted. Params are the learnable ones
(batch-norm running statistics are buffers).

All normal cells share one genotype and all reduction cells another, so a network's cost is the
cost of its fixed parts (stem, every cell's preprocessing, head) plus, per edge, the cost of its
op summed over every cell of that kind: :class:`DartsCost` tabulates both once per family.
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

from .darts_genotypes import CONCAT, KINDS, OPS7, STEM_MULTIPLIER, cell_plan, genotype_of

Count = Tuple[int, int]   # (flops, params)


def _half(side: int) -> int:
    return (side + 1) // 2


def _bn(c: int, side: int) -> Count:
    return 2 * c * side * side, 2 * c


def _dil_conv(c: int, k: int, side_out: int) -> Count:
    """ReLU, depthwise kxk, pointwise, BN (DilConv; half of a SepConv)."""
    per_pixel = k * k * c + c * c
    bn = _bn(c, side_out)
    return per_pixel * side_out * side_out + bn[0], per_pixel + bn[1]


def _factorized_reduce(c_in: int, c_out: int, side_out: int) -> Count:
    """Two 1x1 stride-2 convs to ``c_out // 2`` each, BN."""
    bn = _bn(c_out, side_out)
    return c_in * c_out * side_out * side_out + bn[0], c_in * c_out + bn[1]


def _relu_conv_bn_1x1(c_in: int, c_out: int, side: int) -> Count:
    bn = _bn(c_out, side)
    return c_in * c_out * side * side + bn[0], c_in * c_out + bn[1]


def op_cost(op: str, c: int, side_out: int, strided: bool) -> Count:
    """One op of the DARTS space at ``c`` channels with output side ``side_out``."""
    if op in ("max_pool_3x3", "avg_pool_3x3"):
        return 0, 0
    if op == "skip_connect":
        return _factorized_reduce(c, c, side_out) if strided else (0, 0)
    kind, k = op.split("_")[0], int(op[-1])
    one = _dil_conv(c, k, side_out)
    return (2 * one[0], 2 * one[1]) if kind == "sep" else one


def _add(a: Count, b: Count) -> Count:
    return a[0] + b[0], a[1] + b[1]


class DartsCost:
    """Costs of the network with ``channels`` initial channels and ``cells`` cells on
    ``in_channels`` x ``resolution`` x ``resolution`` inputs and ``num_classes`` outputs."""

    def __init__(self, channels: int, cells: int, in_channels: int, num_classes: int, resolution: int):
        c_stem, side = STEM_MULTIPLIER * channels, resolution
        fixed = _add((9 * in_channels * c_stem * side * side, 9 * in_channels * c_stem), _bn(c_stem, side))
        # edge[(kind, op, from a cell input)] summed over the cells of that kind
        edge: Dict[Tuple[str, str, bool], Count] = {(kind, op, first): (0, 0) for kind in KINDS for op in OPS7
                                                    for first in (True, False)}
        side_prev = side
        for spec in cell_plan(channels, cells):
            pre0 = (_factorized_reduce(spec.c_prev_prev, spec.c, side_prev) if spec.reduction_prev
                    else _relu_conv_bn_1x1(spec.c_prev_prev, spec.c, side_prev))
            fixed = _add(_add(fixed, pre0), _relu_conv_bn_1x1(spec.c_prev, spec.c, side_prev))
            side_out = _half(side_prev) if spec.reduction else side_prev
            kind = "reduce" if spec.reduction else "normal"
            for op in OPS7:
                for first in (True, False):
                    edge[kind, op, first] = _add(edge[kind, op, first],
                                                 op_cost(op, spec.c, side_out, spec.reduction and first))
            side_prev = side_out
        c_last = len(CONCAT) * cell_plan(channels, cells)[-1].c
        head = (c_last * side_prev * side_prev + c_last * num_classes, c_last * num_classes + num_classes)
        self.fixed: Count = _add(fixed, head)
        self.edge = edge

    def of(self, arch: Mapping) -> Count:
        """(flops, params) of the network of arch values (see ``darts_genotypes``)."""
        flops, params = self.fixed
        for kind, pairs in zip(KINDS, genotype_of(arch)):
            for op, src in pairs:
                f, p = self.edge[kind, op, src < 2]
                flops, params = flops + f, params + p
        return flops, params
