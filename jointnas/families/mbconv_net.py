"""The mbconv family's builder: an arch dict -> a torch MBConv network (FBNetV3 conventions).

Conventions (``../shared/fbnetv3_models.json``): hard-swish 3x3 stride-2 stem; stages of
inverted-residual blocks whose first block carries the stage stride (and, with
``s<i>_trim_pad``, a depthwise padding one smaller than ``k // 2``); squeeze-excite on the
depthwise output; a head of 1x1 conv to ``round_to_8(last * 6)``, global pooling, 1x1 conv to
``head_channels`` with hard-swish, dropout and a linear classifier.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn
from torchvision.ops import SqueezeExcitation, StochasticDepth
from torchvision.ops.misc import Conv2dNormActivation

from .depthwise import DepthwiseConv2d
from .mbconv_cost import BlockSpec, Network, block_specs, round_to_8

ACTIVATION_LAYERS = {"hswish": nn.Hardswish, "relu": nn.ReLU, "swish": nn.SiLU}


class MBConv(nn.Module):
    def __init__(self, spec: BlockSpec, drop_path: float = 0.0):
        super().__init__()
        act = ACTIVATION_LAYERS[spec.act]
        mid = spec.mid_channels
        layers: List[nn.Module] = []
        if mid != spec.in_channels:
            layers.append(Conv2dNormActivation(spec.in_channels, mid, 1, activation_layer=act))
        layers.append(nn.Sequential(  # Conv2dNormActivation's layout, with the depthwise conv of .depthwise
            DepthwiseConv2d(mid, mid, spec.kernel, spec.stride, spec.padding, groups=mid, bias=False),
            nn.BatchNorm2d(mid), act(inplace=True)))
        if spec.se:
            layers.append(SqueezeExcitation(mid, spec.se_channels, activation=act, scale_activation=nn.Hardsigmoid))
        layers.append(Conv2dNormActivation(mid, spec.out_channels, 1, activation_layer=None))
        self.body = nn.Sequential(*layers)
        self.residual = spec.residual
        self.drop_path = StochasticDepth(drop_path, "row") if self.residual and drop_path > 0 else nn.Identity()

    def forward(self, x):
        y = self.body(x)
        return x + self.drop_path(y) if self.residual else y


class MBConvNet(nn.Module):
    def __init__(self, arch: dict, num_classes: int, in_channels: int, network: Network = Network(),
                 dropout: float = 0.0, drop_path: float = 0.0, trim_pad: bool = True):
        super().__init__()
        specs = list(block_specs(arch, network, trim_pad))
        self.stem = Conv2dNormActivation(in_channels, arch["stem_channels"], 3, network.stem_stride, 1,
                                         activation_layer=nn.Hardswish)
        # Stochastic-depth rate grows linearly with block index (as in EfficientNet/timm).
        self.blocks = nn.Sequential(*[MBConv(s, drop_path * i / max(len(specs) - 1, 1))
                                      for i, s in enumerate(specs)])
        last = specs[-1].out_channels
        head_mid = round_to_8(last * network.head_expansion)
        self.head = nn.Sequential(
            Conv2dNormActivation(last, head_mid, 1, activation_layer=nn.Hardswish),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(head_mid, network.head_channels, 1, bias=True),
            nn.Hardswish(),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(network.head_channels, num_classes)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


def build_model(arch: dict, num_classes: int = 1000, in_channels: int = 3, *, network: Optional[Network] = None,
                dropout: float = 0.0, drop_path: float = 0.0, trim_pad: bool = True) -> MBConvNet:
    """Build the network for ``arch`` of an mbconv space; ``network`` defaults to FBNetV3's.

    ``trim_pad=False`` builds every depthwise conv with ``k // 2`` padding, for task models whose
    input is smaller than :func:`min_input_size` allows with the trimmed padding.
    """
    return MBConvNet(arch, num_classes, in_channels, network or Network(), dropout, drop_path, trim_pad)
