"""A depthwise convolution whose weight gradient stays fast on small feature maps on a CPU.

oneDNN computes a depthwise conv's weight gradient 10-50x slower than its forward pass when
the kernel is larger than the output map (a 5x5 kernel on the 4x4 and 2x2 maps of the last
stages at digits' 56 px: 34-109 ms against 2-10 ms here, BENCHMARKS.md "Depthwise weight
gradient"). There the gradient is summed one kernel tap at a time over the taps that touch
the image. Everything else (forward, input gradient, other shapes, GPUs, tracing for fvcore or
ONNX, evaluation) is ``nn.Conv2d``'s own; the parameters and state dict are ``nn.Conv2d``'s.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def depthwise_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel: int, stride: int,
                          padding: int) -> torch.Tensor:
    """dL/dW, shape (C, 1, k, k), of ``conv2d(x, W, stride, padding, groups=C)`` given dL/dout."""
    _, channels, height, width = x.shape
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, padding, padding, padding, padding))
    grad = grad_out.permute(0, 2, 3, 1)
    span_h, span_w = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
    taps = x.new_zeros(kernel, kernel, channels)
    for i in range(kernel):
        if i + span_h <= padding or i >= padding + height:
            continue  # this row of taps only ever meets the zero padding
        for j in range(kernel):
            if j + span_w <= padding or j >= padding + width:
                continue
            window = padded[:, i:i + span_h:stride, j:j + span_w:stride, :]
            taps[i, j] = (window * grad).sum((0, 1, 2))
    return taps.permute(2, 0, 1).unsqueeze(1).contiguous()


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride: int, padding: int):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [s, s], [p, p], [1, 1], False, [0, 0], weight.shape[0],
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(x, grad_out, weight.shape[-1], s, p)
        return grad_x, grad_w, None, None


def exporting() -> bool:
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling() \
        or torch.onnx.is_in_onnx_export()


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(c, c, k, stride, padding, groups=c, bias=False)`` with square kernel, stride
    and integer padding; trains faster on a CPU where the kernel exceeds the output map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not torch.is_grad_enabled() or x.device.type != "cpu" or exporting():
            return super().forward(x)
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        if self.bias is None and k > (x.shape[2] + 2 * p - k) // s + 1:
            return _DepthwiseConv.apply(x, self.weight, s, p)
        return super().forward(x)
