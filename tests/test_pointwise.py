"""The 1x1 conv as a matrix product trains like nn.Conv2d and is nn.Conv2d everywhere else."""
import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from jointnas.families import pointwise
from jointnas.families.pointwise import PointwiseConv2d, conv_bn_act


def _pair(ci, co, bias):
    torch.manual_seed(0)
    ref = nn.Conv2d(ci, co, 1, bias=bias)
    fast = PointwiseConv2d(ci, co, bias)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


@pytest.mark.parametrize("side", [1, 2, 3, 4, 7])  # up to 3x3 the matrix product, then nn.Conv2d's own
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("bias", [False, True])
def test_a_training_step_gives_torchs_output_gradients_and_layout(side, layout, bias):
    ref, fast = _pair(6, 5, bias)
    x = torch.randn(4, 6, side, side).contiguous(memory_format=layout)
    xr, xf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yr, yf = ref(xr), fast(xf)
    torch.testing.assert_close(yf, yr)
    assert yf.is_contiguous(memory_format=layout)
    g = torch.randn_like(yr)
    yr.backward(g)
    yf.backward(g)
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad)
    torch.testing.assert_close(xf.grad, xr.grad)
    if bias:
        torch.testing.assert_close(fast.bias.grad, ref.bias.grad)


def test_the_matrix_product_is_used_only_on_small_maps_and_not_when_tracing(monkeypatch):
    calls = []
    linear = torch.nn.functional.linear
    monkeypatch.setattr(pointwise, "F", SimpleNamespace(linear=lambda *a: calls.append(1) or linear(*a)))
    conv = PointwiseConv2d(4, 3).to(memory_format=torch.channels_last)
    small = torch.randn(2, 4, 3, 3).contiguous(memory_format=torch.channels_last)
    conv(small)
    conv.eval()
    with torch.no_grad():
        conv(small)  # evaluation too: the forward pass alone is faster
    assert len(calls) == 2
    traced = torch.jit.trace(conv, small, check_trace=False)  # what fvcore's count and an ONNX export see
    assert "aten::_convolution" in str(traced.graph) and "linear" not in str(traced.graph)
    conv(torch.randn(2, 4, 4, 4))  # 16 pixels: nn.Conv2d's own path
    assert len(calls) == 2


def test_the_mbconv_model_computes_and_saves_what_plain_convs_do():
    from jointnas.catalog import load_space

    space = load_space("fbnetv3")
    torch.manual_seed(0)
    model = space.family.build(space.preset("FBNetV3_A").arch, num_classes=10, in_channels=1, input_size=56)
    model = model.to(memory_format=torch.channels_last)
    plain = copy.deepcopy(model)
    n = 0
    for m in plain.modules():
        if isinstance(m, PointwiseConv2d):
            m.__class__, n = nn.Conv2d, n + 1
    assert n > 2 * len(model.blocks)  # expansions, projections, squeeze-excites and the head
    assert plain.state_dict().keys() == model.state_dict().keys()
    x = torch.randn(8, 1, 56, 56).contiguous(memory_format=torch.channels_last)
    for mode in (True, False):
        model.train(mode), plain.train(mode)
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(1)
        b = plain(x)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_conv_bn_act_has_torchvisions_layout():
    for act in (None, nn.Hardswish):
        ours, theirs = conv_bn_act(8, 16, act), Conv2dNormActivation(8, 16, 1, activation_layer=act)
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        assert [type(m) for m in ours][1:] == [type(m) for m in theirs][1:]
        theirs.load_state_dict(ours.state_dict())
