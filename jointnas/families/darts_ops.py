"""The ops of the DARTS CNN search space (Liu et al., ICLR 2019), as its released code defines them.

Every op maps ``C`` channels to ``C`` channels; at ``stride`` 2 it halves the resolution (the
edges out of a reduction cell's two inputs). ``affine`` is the batch norms' learnable scale and
shift: on in a discrete network, off in a supernet (where the op weights play that part).

- ``none``: zeros (at stride 2 of the strided input's size);
- ``max_pool_3x3`` / ``avg_pool_3x3``: 3x3 pooling, padding 1 (the average ignores padding);
- ``skip_connect``: the identity, or at stride 2 a :class:`FactorizedReduce`;
- ``sep_conv_3x3`` / ``sep_conv_5x5``: ReLU, depthwise kxk (stride), pointwise, BN, then
  ReLU, depthwise kxk, pointwise, BN;
- ``dil_conv_3x3`` / ``dil_conv_5x5``: ReLU, depthwise kxk with dilation 2 (stride), pointwise, BN.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch import nn

# Index order of the released code (the supernet's op weights follow it).
PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
              "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


class ReLUConvBN(nn.Sequential):
    """ReLU, a ``k``x``k`` conv without bias, BN."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0, affine: bool = True):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, k, stride, padding, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


class DilConv(nn.Sequential):
    """ReLU, a depthwise ``k``x``k`` conv (``dilation``, ``stride``), a pointwise conv, BN."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, padding: int, dilation: int,
                 affine: bool = True):
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_in, k, stride, padding, dilation=dilation, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=affine))


class SepConv(nn.Sequential):
    """Two :class:`DilConv` without dilation, the first one strided: the DARTS separable conv."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, padding: int, affine: bool = True):
        super().__init__(DilConv(c_in, c_in, k, stride, padding, 1, affine),
                         DilConv(c_in, c_out, k, 1, padding, 1, affine))


class Zero(nn.Module):
    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing every other pixel: ReLU, then two stride-2 1x1 convs to
    ``c_out // 2`` channels each, the second on the input shifted by one pixel, concatenated, BN.

    An odd side is padded by one zero row/column before the shift (the released code assumes
    even sides); on even sides this is the released op exactly.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x if x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0 else F.pad(x, (0, x.shape[3] % 2, 0, x.shape[2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted[:, :, 1:, 1:])], dim=1))


OPS: Dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": lambda c, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}
