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

from .depthwise import DepthwiseConv2d
from .pointwise import PointwiseConv2d, conv_bn_act
from .mbconv_cost import BlockSpec, Network, block_specs, round_to_8

ACTIVATION_LAYERS = {"hswish": nn.Hardswish, "relu": nn.ReLU, "swish": nn.SiLU}


# torchvision.ops' SqueezeExcitation and StochasticDepth("row") with the same state-dict keys and
# the same draws from the random generator, here because importing torchvision costs every
# process (the driver and each worker) about 2 s before its first trial.
class SqueezeExcite(nn.Module):
    """Channel gates from the pooled map: ``x * hardsigmoid(fc2(act(fc1(pool(x)))))``."""

    def __init__(self, channels: int, squeezed: int, activation):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = PointwiseConv2d(channels, squeezed, True), PointwiseConv2d(squeezed, channels, True)
        self.activation, self.scale_activation = activation(), nn.Hardsigmoid()

    def forward(self, x):
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class DropPath(nn.Module):
    """In training, zero a residual branch per sample with probability ``p`` and scale the rest by ``1 / (1 - p)``."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * (mask.div_(keep) if keep > 0.0 else mask)


class MBConv(nn.Module):
    def __init__(self, spec: BlockSpec, drop_path: float = 0.0):
        super().__init__()
        act = ACTIVATION_LAYERS[spec.act]
        mid = spec.mid_channels
        layers: List[nn.Module] = []
        if mid != spec.in_channels:
            layers.append(conv_bn_act(spec.in_channels, mid, act))
        layers.append(nn.Sequential(  # torchvision's Conv2dNormActivation layout, with the depthwise conv of .depthwise
            DepthwiseConv2d(mid, mid, spec.kernel, spec.stride, spec.padding, groups=mid, bias=False),
            nn.BatchNorm2d(mid), act(inplace=True)))
        if spec.se:
            layers.append(SqueezeExcite(mid, spec.se_channels, act))
        layers.append(conv_bn_act(mid, spec.out_channels))
        self.body = nn.Sequential(*layers)
        self.residual = spec.residual
        self.drop_path = DropPath(drop_path) if self.residual and drop_path > 0 else nn.Identity()

    def forward(self, x):
        y = self.body(x)
        return x + self.drop_path(y) if self.residual else y


class MBConvNet(nn.Module):
    def __init__(self, arch: dict, num_classes: int, in_channels: int, network: Network = Network(),
                 dropout: float = 0.0, drop_path: float = 0.0, trim_pad: bool = True):
        super().__init__()
        specs = list(block_specs(arch, network, trim_pad))
        self.stem = nn.Sequential(nn.Conv2d(in_channels, arch["stem_channels"], 3, network.stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(arch["stem_channels"]), nn.Hardswish(inplace=True))
        # Stochastic-depth rate grows linearly with block index (as in EfficientNet/timm).
        self.blocks = nn.Sequential(*[MBConv(s, drop_path * i / max(len(specs) - 1, 1))
                                      for i, s in enumerate(specs)])
        last = specs[-1].out_channels
        head_mid = round_to_8(last * network.head_expansion)
        self.head = nn.Sequential(
            conv_bn_act(last, head_mid, nn.Hardswish),
            nn.AdaptiveAvgPool2d(1),
            PointwiseConv2d(head_mid, network.head_channels, bias=True),
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
