"""Proxies: FLOPs and params of the deployable model, exactly as fvcore counts them.

fvcore counts one multiply-add as one flop. ``count_cost_fvcore`` runs fvcore itself (about a
second per FBNetV3-size model); ``count_cost`` / ``count_costs`` are the closed-form fast path
used everywhere else, checked against fvcore in ``tests/test_proxies.py``.

fvcore's rules that the closed form follows (``fvcore/nn/jit_handles.py``), for batch 1:

- convolution: ``prod(weight shape) * prod(output spatial)``; the bias is not counted;
- batch norm in eval mode with affine weights: 2 per input element;
- adaptive average pooling: 1 per input element;
- linear: ``in_features * out_features``;
- everything else in this network (activations, the residual add, the squeeze-excite
  multiply, flatten, dropout) is not counted.

Params are ``parameter_count(model)[""]``: every ``nn.Parameter``, i.e. conv weights, conv
biases where a conv has one (squeeze-excite and the pooled head conv), batch-norm weight and
bias (running statistics are buffers) and the classifier's weight and bias.
"""
from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Tuple

import numpy as np
import torch
from tqdm import tqdm

from .errors import UsageError
from .model import BlockSpec, block_specs, build_model, round_to_8
from .space import Space, load_space


@dataclass(frozen=True)
class Cost:
    flops: int
    params: int


def deploy_model(arch: dict, space: Space):
    return build_model(arch, space.deploy.num_classes, space.deploy.in_channels, network=space.network).eval()


def count_cost_fvcore(arch: dict, space="fbnetv3") -> Cost:
    """Reference count: fvcore's FlopCountAnalysis total and parameter_count of the deploy model."""
    from fvcore.nn import FlopCountAnalysis, parameter_count

    space = load_space(space)
    model = deploy_model(arch, space)
    x = torch.zeros(1, space.deploy.in_channels, arch["resolution"], arch["resolution"])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = int(analysis.total())
    return Cost(flops, int(parameter_count(model)[""]))


# --------------------------------------------------------------------------- closed form
def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _conv_bn(c_in: int, c_out: int, kernel: int, out_size: int, groups: int = 1) -> Tuple[int, int]:
    """(flops, params) of a bias-free conv followed by an affine batch norm (Conv2dNormActivation)."""
    weights = c_out * (c_in // groups) * kernel * kernel
    pixels = out_size * out_size
    return weights * pixels + 2 * c_out * pixels, weights + 2 * c_out


@lru_cache(maxsize=1 << 16)
def _block_cost(in_ch: int, out_ch: int, kernel: int, stride: int, expansion, se: bool, padding: int,
                size: int) -> Tuple[int, int, int]:
    """(flops, params, output size) of one MBConv block on a ``size`` x ``size`` input.

    The activation does not change either count, so it is left out of the cache key.
    """
    spec = BlockSpec(in_ch, out_ch, kernel, stride, expansion, se, "relu", padding)
    mid = spec.mid_channels
    out_size = _conv_out(size, kernel, stride, padding)
    if out_size < 1:
        raise UsageError(f"the input is too small for this architecture: a {kernel}x{kernel} stride-{stride} "
                         f"depthwise conv with padding {padding} gets {size}x{size} pixels; "
                         "use a larger resolution")
    flops = params = 0
    if mid != in_ch:
        f, p = _conv_bn(in_ch, mid, 1, size)
        flops, params = flops + f, params + p
    f, p = _conv_bn(mid, mid, kernel, out_size, groups=mid)
    flops, params = flops + f, params + p
    if se:
        squeeze = spec.se_channels
        # global pool over the depthwise output, then two 1x1 convs with bias on a 1x1 map
        flops += mid * out_size * out_size + 2 * mid * squeeze
        params += 2 * mid * squeeze + squeeze + mid
    f, p = _conv_bn(mid, out_ch, 1, out_size)
    return flops + f, params + p, out_size


def _arch_of(candidate) -> dict:
    return candidate.arch if hasattr(candidate, "arch") else candidate


def _count(arch: dict, space: Space) -> Tuple[int, int]:
    network, deploy = space.network, space.deploy
    if arch["resolution"] < 1:
        raise UsageError(f"resolution must be a positive number of pixels, got {arch['resolution']}")
    size = _conv_out(arch["resolution"], 3, network.stem_stride, 1)
    flops, params = _conv_bn(deploy.in_channels, arch["stem_channels"], 3, size)
    last = arch["stem_channels"]
    for spec in block_specs(arch, network):
        f, p, size = _block_cost(spec.in_channels, spec.out_channels, spec.kernel, spec.stride,
                                 spec.expansion, spec.se, spec.padding, size)
        flops, params, last = flops + f, params + p, spec.out_channels
    head_mid = round_to_8(last * network.head_expansion)
    f, p = _conv_bn(last, head_mid, 1, size)
    flops += f + head_mid * size * size + head_mid * network.head_channels + network.head_channels * deploy.num_classes
    params += (p + head_mid * network.head_channels + network.head_channels
               + network.head_channels * deploy.num_classes + deploy.num_classes)
    return flops, params


def count_cost(arch, space="fbnetv3") -> Cost:
    """FLOPs and params of the deployable model for ``arch`` (a dict or a Candidate), as fvcore reports them."""
    return Cost(*_count(_arch_of(arch), load_space(space)))


def count_costs(candidates: Iterable, space="fbnetv3", progress: bool = False) -> np.ndarray:
    """``count_cost`` for many candidates (or arch dicts): an (n, 2) int64 array of [flops, params]."""
    space = load_space(space)
    candidates = list(candidates)
    out = np.empty((len(candidates), 2), dtype=np.int64)
    for i, c in enumerate(tqdm(candidates, desc="proxies", unit="cand", file=sys.stderr,
                               disable=not progress, mininterval=0.5)):
        out[i] = _count(_arch_of(c), space)
    return out
