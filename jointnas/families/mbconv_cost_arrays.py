"""The closed-form MBConv cost (fvcore's FLOPs and params of the deployable model) over arrays:
one call prices a whole population, all stages at once, about a microsecond per model.

It follows the scalar closed form rule for rule (convolution weights x output pixels, 2 per
element of an affine batch norm, 1 per pooled element, linear in x out; fvcore counts one
multiply-add as one flop) and is pinned equal to it, and so to fvcore, by ``tests/test_fine.py``.

A block's FLOPs are ``a * input pixels + b * output pixels + c`` and its params do not depend
on the map size, so the ``depth - 1`` identical repeat blocks of a stage (stride 1, ``k // 2``
padding: the map keeps its size for odd kernels and grows by one pixel for even ones) are
summed in closed form, and only the map size and input channels run stage by stage.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np

from ..errors import UsageError
from .columns import ArchColumns

Columns = Mapping[str, np.ndarray]
FIELDS = ("channels", "depth", "kernel", "expansion", "kernel_rep", "expansion_rep", "se", "trim_pad")


def _floordiv(x, d):
    """``x // d`` for whole numbers below 2**50 held as float64: exact there (a quotient's rounding
    cannot reach the next whole number), and over ten times faster than numpy's float floor
    division, which works out a remainder first."""
    return np.floor(x / d)


def _round_to_8(x: np.ndarray) -> np.ndarray:
    """``round_to_8`` elementwise: x if a multiple of 8, else the nearest multiple (at least 8)."""
    eighth = x * 0.125  # exact: a power of two; x is a multiple of 8 exactly when this is whole
    near = np.maximum(1, np.round(eighth)) * 8  # np.round, like Python's round, rounds half to even
    return np.where(np.floor(eighth) == eighth, np.trunc(x), near)


def _block(in_ch, out_ch, kernel, expansion, se):
    """Per block: FLOPs coefficients of input pixels and output pixels, constant FLOPs, params."""
    mid = _round_to_8(in_ch * expansion)
    expand = mid != in_ch
    w_exp, w_dw, w_proj = in_ch * mid, mid * kernel * kernel, mid * out_ch
    squeeze = _round_to_8(np.trunc(mid * 0.25 / expansion))
    per_in = np.where(expand, w_exp + 2 * mid, 0)
    per_out = w_dw + 2 * mid + np.where(se, mid, 0) + w_proj + 2 * out_ch
    const = np.where(se, 2 * mid * squeeze, 0)
    params = (np.where(expand, w_exp + 2 * mid, 0) + w_dw + 2 * mid + np.where(se, 2 * mid * squeeze + squeeze + mid, 0)
              + w_proj + 2 * out_ch)
    return per_in, per_out, const, params


def _fields(col, stages: int) -> dict:
    """field -> (stages, n) float64 matrix of the stage dimensions (trim_pad False where absent).
    Stage-major: each stage's values are one contiguous row for the stage-by-stage recursion."""
    n = len(col["resolution"])
    names = [f"s{i}_{f}" for f in FIELDS for i in range(stages)]
    present = [m for m in names if m in col]
    missing = [m for m in names if m not in col]
    if any(not m.endswith("_trim_pad") for m in missing):
        raise KeyError(next(m for m in missing if not m.endswith("_trim_pad")))
    if isinstance(col, ArchColumns):
        rows = col.stack(present).T  # one gather
    else:
        rows = np.stack([np.asarray(col[m]) for m in present]) if present else np.zeros((0, n))
    rows = np.concatenate([rows.astype(np.float64, copy=False), np.zeros((1, n))])  # the last row: absent
    where = {m: i for i, m in enumerate(present)}
    table = rows[[where.get(m, len(present)) for m in names]].reshape(len(FIELDS), stages, n)
    return dict(zip(FIELDS, table))


def _as_columns(archs: Union[Columns, Sequence[Mapping]]) -> Mapping:
    if isinstance(archs, Mapping):
        return archs
    archs = list(archs)
    return {k: np.asarray([a[k] for a in archs]) for k in (archs[0] if archs else ("resolution",))}


def mbconv_costs(archs: Union[Columns, Sequence[Mapping]], network, in_channels: int, num_classes: int) -> np.ndarray:
    """(n, 2) int64 [flops, params] of the deployable MBConv models of ``archs``: arch dicts, or
    columns (name -> array of n values; a mapping that also offers ``stack(names) -> (n, k)``
    array is read a field at a time). ``network`` has ``stage_strides``, ``stem_stride``,
    ``head_expansion`` and ``head_channels``."""
    col = _as_columns(archs)
    res = np.asarray(col["resolution"]).astype(np.float64, copy=False)
    if len(res) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # Counts stay below 2**53, so float64 arithmetic on them is exact (and cheaper than casting).
    if np.any(res < 1):
        raise UsageError("resolution must be a positive number of pixels")
    S = len(network.stage_strides)
    F = _fields(col, S)
    C, D, K, KR = F["channels"], F["depth"], F["kernel"], F["kernel_rep"]
    SE, trim = F["se"] != 0, F["trim_pad"]
    stem = np.asarray(col["stem_channels"]).astype(np.float64, copy=False)
    stride = np.asarray(network.stage_strides, dtype=np.float64)

    # Stage by stage: input channels and map size of each stage's first block and of its repeats.
    present = D >= 1
    in_ch, size_in, size_rep = np.empty_like(C), np.empty_like(C), np.empty_like(C)
    size = _floordiv(res - 1, network.stem_stride) + 1   # 3x3 stem, padding 1
    last = stem
    growth = 1 - (KR - 2 * _floordiv(KR, 2))
    pad = 2 * (_floordiv(K, 2) - trim) - K  # a first block's output: (size + pad) // stride + 1
    repeats = np.maximum(D - 1, 0)
    grown = repeats * growth                 # what its repeats add to the map size
    too_small = np.zeros(len(res), dtype=bool)
    for i in range(S):
        in_ch[i], size_in[i] = last, size
        first_out = _floordiv(size + pad[i], stride[i]) + 1
        too_small |= present[i] & (first_out < 1)
        size_rep[i] = first_out
        size = np.where(present[i], first_out + grown[i], size)
        last = np.where(present[i], C[i], last)
    if too_small.any():
        raise UsageError("the input is too small for an architecture: a depthwise conv gets fewer pixels "
                         "than its kernel; use a larger resolution")

    E = F["expansion"]
    a, b, c, p = _block(in_ch, C, K, E, SE)
    f_first = a * size_in ** 2 + b * size_rep ** 2 + c
    ER = F["expansion_rep"]
    ar, br, cr, pr = _block(C, C, KR, ER, SE)
    m, s, g = repeats, size_rep, growth
    # sums of squared sizes over the m repeats: inputs s, s+g, ..., outputs s+g, ..., s+mg (exact integers)
    sum_in = m * s * s + s * g * m * (m - 1) + _floordiv(g * (m - 1) * m * (2 * m - 1), 6)
    sum_out = m * s * s + s * g * m * (m + 1) + _floordiv(g * m * (m + 1) * (2 * m + 1), 6)
    f_rep = ar * sum_in + br * sum_out + m * cr
    flops = (np.where(present, f_first, 0) + f_rep).sum(0)
    params = (np.where(present, p, 0) + m * pr).sum(0)

    pix = size * size
    stem_w = stem * in_channels * 9
    stem_pixels = (_floordiv(res - 1, network.stem_stride) + 1) ** 2
    flops = flops + (stem_w + 2 * stem) * stem_pixels
    params = params + stem_w + 2 * stem
    head_mid = _round_to_8(last * network.head_expansion)
    hc, nc = network.head_channels, num_classes
    flops = flops + (last * head_mid + 2 * head_mid) * pix + head_mid * pix + head_mid * hc + hc * nc
    params = params + last * head_mid + 2 * head_mid + head_mid * hc + hc + hc * nc + nc
    return np.stack([flops, params], axis=1).astype(np.int64)
