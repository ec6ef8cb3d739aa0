"""The mbconv family's block structure and its closed-form cost: FLOPs and params of the
deployable model, exactly as fvcore counts them.

fvcore counts one multiply-add as one flop. ``MBConvFamily.fvcore_cost`` runs fvcore itself
(about a second per FBNetV3-size model); :func:`closed_form_cost` is the fast path used
everywhere else, checked against fvcore in ``tests/test_proxies.py``.

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

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Mapping, Tuple

from ..errors import UsageError
from .base import Cost, Deploy


@dataclass(frozen=True)
class Network:
    """Fixed structure of the MBConv network that the arch dimensions parameterise."""

    stage_strides: Tuple[int, ...] = (1, 2, 2, 2, 1, 2, 1)
    stem_stride: int = 2
    head_expansion: int = 6
    head_channels: int = 1984


def round_to_8(x: float) -> int:
    return int(x) if x % 8 == 0 else max(1, round(x / 8)) * 8


@dataclass(frozen=True)
class BlockSpec:
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expansion: float
    se: bool
    act: str
    padding: int

    @property
    def mid_channels(self) -> int:
        return round_to_8(self.in_channels * self.expansion)

    @property
    def se_channels(self) -> int:
        return round_to_8(int(self.mid_channels * 0.25 / self.expansion))

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_specs(arch: Mapping, network: Network = Network(), trim_pad: bool = True) -> Iterator[BlockSpec]:
    """The MBConv blocks of ``arch`` in order; ``trim_pad=False`` ignores the ``s<i>_trim_pad`` dims."""
    in_ch = arch["stem_channels"]
    for i, stride in enumerate(network.stage_strides):
        out_ch = arch[f"s{i}_channels"]
        for j in range(arch[f"s{i}_depth"]):
            first = j == 0
            k = arch[f"s{i}_kernel"] if first else arch[f"s{i}_kernel_rep"]
            e = arch[f"s{i}_expansion"] if first else arch[f"s{i}_expansion_rep"]
            pad = k // 2 - (1 if first and trim_pad and arch.get(f"s{i}_trim_pad", False) else 0)
            yield BlockSpec(in_ch, out_ch, k, stride if first else 1, e,
                            bool(arch[f"s{i}_se"]), arch[f"s{i}_act"], pad)
            in_ch = out_ch


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def min_input_size(arch: Mapping, network: Network = Network(), trim_pad: bool = True) -> int:
    """Smallest input side for which every convolution of ``arch`` sees an input at least its kernel.

    Only trimmed depthwise padding (``s<i>_trim_pad``) makes this larger than 1: FBNetV3's
    trimmed stride-2 convolutions need inputs of about 50 px or more.
    """
    specs = list(block_specs(arch, network, trim_pad))
    for size in range(1, 4096):
        x = conv_out(size, 3, network.stem_stride, 1)
        ok = x >= 1
        for b in specs:
            if not ok or x + 2 * b.padding < b.kernel:
                ok = False
                break
            x = conv_out(x, b.kernel, b.stride, b.padding)
        if ok and x >= 1:
            return size
    raise ValueError("arch has no valid input size below 4096")


# --------------------------------------------------------------------------- closed form
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
    out_size = conv_out(size, kernel, stride, padding)
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


def closed_form_cost(arch: Mapping, network: Network, deploy: Deploy) -> Cost:
    if arch["resolution"] < 1:
        raise UsageError(f"resolution must be a positive number of pixels, got {arch['resolution']}")
    size = conv_out(arch["resolution"], 3, network.stem_stride, 1)
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
    return Cost(flops, params)


