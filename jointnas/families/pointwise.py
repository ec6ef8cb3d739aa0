"""A 1x1 convolution computed as a matrix product on small feature maps on a CPU.

A 1x1 conv over a channels-last map is a matrix product of its (pixels, channels) view. On
maps of at most 3x3 pixels (the last stages and the pooled head at digits' 56 px), oneDNN's
convolution is 1.1-2.4x slower to train than ``F.linear`` on that view (the head's 1x1 conv
after pooling: 58 ms against 24 ms a step), and about as fast from 7x7 up
(BENCHMARKS.md, "Small-map paths"). The parameters, the state dict, the output and its
channels-last layout are ``nn.Conv2d``'s; tracing (fvcore, ONNX) and GPUs take ``nn.Conv2d``'s path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .depthwise import exporting

SMALL_MAP = 9  # pixels: up to 3x3 the matrix product is faster, from 7x7 it is not


class PointwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(in, out, 1, bias=...)``; faster on a CPU where a channels-last map has few pixels."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False):
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or x.shape[2] * x.shape[3] > SMALL_MAP or exporting()
                or not x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x)
        # (N, H, W, C) is a view of a channels-last map, and F.linear's output one of its result.
        return F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias).permute(0, 3, 1, 2)


def conv_bn_act(in_channels: int, out_channels: int, activation=None) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation(in, out, 1, activation_layer=...)`` (same layout and
    state-dict keys) around a :class:`PointwiseConv2d`."""
    layers = [PointwiseConv2d(in_channels, out_channels), nn.BatchNorm2d(out_channels)]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)
