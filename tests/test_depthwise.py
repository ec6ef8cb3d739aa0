"""The fast depthwise conv trains exactly like nn.Conv2d and is nn.Conv2d everywhere else."""
import pytest
import torch
from torch import nn

from jointnas.families.depthwise import DepthwiseConv2d, depthwise_weight_grad

# (channels, input size, kernel, stride, padding): kernel larger than the output map (the fast
# path) with full and trimmed padding, strides 1 and 2, and ordinary shapes beside them.
SHAPES = [(8, 4, 5, 1, 2), (8, 4, 5, 2, 2), (8, 2, 3, 1, 1), (8, 4, 5, 2, 1), (8, 7, 5, 2, 1),
          (8, 4, 3, 1, 0), (8, 9, 3, 1, 1), (8, 14, 5, 2, 2)]


def _pair(c, k, s, p):
    torch.manual_seed(0)
    ref = nn.Conv2d(c, c, k, s, p, groups=c, bias=False)
    fast = DepthwiseConv2d(c, c, k, s, p, groups=c, bias=False)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


@pytest.mark.parametrize("c,size,k,s,p", SHAPES)
def test_the_fast_weight_gradient_equals_torchs(c, size, k, s, p):
    x = torch.randn(3, c, size, size, dtype=torch.float64)
    w = torch.randn(c, 1, k, k, dtype=torch.float64, requires_grad=True)
    out = nn.functional.conv2d(x, w, None, s, p, 1, c)
    g = torch.randn_like(out)
    (expected,) = torch.autograd.grad(out, w, g)
    torch.testing.assert_close(depthwise_weight_grad(x, g, k, s, p), expected)


@pytest.mark.parametrize("c,size,k,s,p", SHAPES)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_a_training_step_gives_torchs_output_and_gradients(c, size, k, s, p, layout):
    ref, fast = _pair(c, k, s, p)
    x = torch.randn(4, c, size, size).contiguous(memory_format=layout)
    xr, xf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yr, yf = ref(xr), fast(xf)
    torch.testing.assert_close(yf, yr)
    g = torch.randn_like(yr)
    yr.backward(g)
    yf.backward(g)
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xf.grad, xr.grad)


def test_gradcheck_on_the_fast_path():
    from jointnas.families.depthwise import _DepthwiseConv

    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: _DepthwiseConv.apply(a, b, 2, 2), (x, w))


def test_the_fast_path_is_taken_only_when_training_on_a_cpu_with_grad(monkeypatch):
    from jointnas.families import depthwise

    calls = []
    real = depthwise._DepthwiseConv.apply
    monkeypatch.setattr(depthwise._DepthwiseConv, "apply", lambda *a: calls.append(1) or real(*a))
    conv = DepthwiseConv2d(4, 4, 5, 1, 2, groups=4, bias=False)
    x = torch.randn(1, 4, 2, 2)
    conv(x)
    assert len(calls) == 1
    conv.eval()
    conv(x)
    conv.train()
    with torch.no_grad():
        conv(x)
    torch.jit.trace(conv, x)  # what fvcore's count and an ONNX export see
    conv(torch.randn(1, 4, 8, 8))  # kernel 5 < an 8x8 output: torch's own path
    assert len(calls) == 1


def test_the_mbconv_model_keeps_its_state_dict_layout():
    from torchvision.ops.misc import Conv2dNormActivation

    from jointnas.catalog import load_space

    space = load_space("fbnetv3")
    model = space.family.build(space.preset("FBNetV3_A").arch, num_classes=10, in_channels=1, input_size=56)
    convs = [m for m in model.modules() if isinstance(m, nn.Sequential) and isinstance(m[0], DepthwiseConv2d)]
    assert len(convs) == len(model.blocks)  # one per MBConv block
    dw = convs[-1]
    plain = Conv2dNormActivation(dw[0].in_channels, dw[0].out_channels, dw[0].kernel_size, dw[0].stride,
                                 dw[0].padding, groups=dw[0].groups, activation_layer=type(dw[2]))
    assert plain.state_dict().keys() == dw.state_dict().keys()
    plain.load_state_dict(dw.state_dict())
