"""The presets are the published FBNetV3 models, built layer for layer by the conventions."""
import pytest
import torch
from torch import nn
from jointnas.families.mbconv_net import DropPath, SqueezeExcite

from jointnas import build_model
from jointnas.families.mbconv_cost import min_input_size
from jointnas.families.mbconv_net import MBConv
from jointnas.families.fbnetv3_presets import arch_from_block_list

PRESETS = [f"FBNetV3_{x}" for x in "ABCDEFG"]


def r8(x):
    return int(x) if x % 8 == 0 else max(1, round(x / 8)) * 8


def expected_blocks(model_json):
    """Per-block (in, mid, out, k, stride, pad, se_channels or None) straight from the block list."""
    out, in_ch = [], model_json["stem_channels"]
    for k, se, c, s, n, e, pad in model_json["blocks"]:
        for i in range(n):
            mid = r8(in_ch * e)
            out.append((in_ch, mid, c, k, s if i == 0 else 1, (pad if pad is not None and i == 0 else k // 2),
                        r8(int(mid * 0.25 / e)) if se else None))
            in_ch = c
    return out


def actual_blocks(model):
    rows = []
    for blk in model.blocks:
        layers = list(blk.body)
        dw = next(m for m in blk.body.modules() if isinstance(m, nn.Conv2d) and m.groups > 1)
        first = layers[0][0]
        se = next((m for m in layers if isinstance(m, SqueezeExcite)), None)
        project = layers[-1][0]
        rows.append((first.in_channels, dw.in_channels, project.out_channels, dw.kernel_size[0], dw.stride[0],
                     dw.padding[0], se.fc1.out_channels if se else None))
    return rows


@pytest.mark.parametrize("name", PRESETS)
def test_presets_match_published_block_lists(space, published_models, name):
    spec = published_models[name]
    assert space.preset(name).arch == arch_from_block_list(spec, space.family.network)
    model = build_model(space.preset(name).arch, 1000, 3, network=space.family.network)
    stem = model.stem
    assert (stem[0].in_channels, stem[0].out_channels, stem[0].kernel_size, stem[0].stride, stem[0].padding) == \
        (3, spec["stem_channels"], (3, 3), (2, 2), (1, 1))
    assert isinstance(stem[1], nn.BatchNorm2d) and isinstance(stem[2], nn.Hardswish)
    assert actual_blocks(model) == expected_blocks(spec)
    for blk, exp in zip(model.blocks, expected_blocks(spec)):
        in_ch, mid, out, _, stride, _, _ = exp
        has_expand = mid != in_ch
        assert (len([m for m in blk.body if not isinstance(m, SqueezeExcite)]) == 3) == has_expand
        assert blk.residual == (stride == 1 and in_ch == out)
        acts = [type(m) for m in blk.modules() if isinstance(m, (nn.ReLU, nn.SiLU, nn.Hardswish))]
        assert acts and set(acts) == {nn.Hardswish}
        project = list(blk.body)[-1]
        assert len(project) == 2 and isinstance(project[1], nn.BatchNorm2d)  # project: conv + BN, no activation
        for se in (m for m in blk.modules() if isinstance(m, SqueezeExcite)):
            assert isinstance(se.scale_activation, nn.Hardsigmoid) and se.fc1.bias is not None
    last = spec["blocks"][-1][2]
    head_conv = model.head[0][0]
    assert (head_conv.in_channels, head_conv.out_channels) == (last, r8(last * 6))
    assert isinstance(model.head[1], nn.AdaptiveAvgPool2d)
    assert (model.head[2].in_channels, model.head[2].out_channels) == (r8(last * 6), spec["head_channels"])
    assert isinstance(model.head[3], nn.Hardswish)
    assert (model.classifier.in_features, model.classifier.out_features) == (1984, 1000)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_run_forward(space, name):
    cand = space.preset(name)
    model = build_model(cand.arch, 1000, 3, network=space.family.network).eval()
    res = cand.arch["resolution"]
    with torch.no_grad():
        y = model(torch.randn(1, 3, res, res))
    assert y.shape == (1, 1000) and torch.isfinite(y).all()


def test_presets_inside_space_except_g_resolution(space):
    for name in PRESETS[:-1]:
        c = space.preset(name)
        space.validate(c.arch, c.recipe)
    g = space.preset("FBNetV3_G")
    outside = [k for k, d in space.arch.items() if not d.contains(g.arch[k])]
    assert outside == ["resolution"]


def test_task_shaped_model_and_regularisers(space):
    arch = space.preset("FBNetV3_A").arch
    model = build_model(arch, num_classes=10, in_channels=1, network=space.family.network, dropout=0.3, drop_path=0.2,
                        trim_pad=False)
    assert model.stem[0].in_channels == 1 and model.classifier.out_features == 10
    assert model.dropout.p == 0.3
    n = len(model.blocks)
    for i, blk in enumerate(model.blocks):
        if blk.residual:  # rate grows linearly with depth, reaching drop_path at the last block
            rate = blk.drop_path.p if isinstance(blk.drop_path, DropPath) else 0.0
            assert rate == pytest.approx(0.2 * i / (n - 1))
        else:
            assert not isinstance(blk.drop_path, DropPath)
    model.train()
    y = model(torch.randn(4, 1, 16, 16))
    assert y.shape == (4, 10)


def test_activation_choice_is_built(space):
    arch = dict(space.preset("FBNetV3_A").arch, s2_act="relu", s4_act="swish")
    model = build_model(arch, 10, 3, network=space.family.network)
    stage_of = []
    for i, n in enumerate(arch[f"s{s}_depth"] for s in range(7)):
        stage_of += [i] * n
    for blk, stage in zip(model.blocks, stage_of):
        kinds = {type(m) for m in blk.modules() if isinstance(m, (nn.ReLU, nn.SiLU, nn.Hardswish))}
        assert kinds == {{2: nn.ReLU, 4: nn.SiLU}.get(stage, nn.Hardswish)}
    assert all(isinstance(b, MBConv) for b in model.blocks)


@pytest.mark.parametrize("name", ["FBNetV3_A", "FBNetV3_F"])
def test_min_input_size_is_exact(space, name):
    arch = space.preset(name).arch
    smallest = min_input_size(arch, space.family.network)
    assert smallest > 1  # trimmed depthwise padding needs room
    model = build_model(arch, 10, 1, network=space.family.network).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, smallest, smallest)).shape == (1, 10)
        with pytest.raises(RuntimeError):
            model(torch.zeros(1, 1, smallest - 1, smallest - 1))
        untrimmed = build_model(arch, 10, 1, network=space.family.network, trim_pad=False).eval()
        assert min_input_size(arch, space.family.network, trim_pad=False) == 1
        assert untrimmed(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_squeeze_excite_and_drop_path_compute_what_torchvision_ops_do():
    from torchvision.ops import SqueezeExcitation, StochasticDepth

    torch.manual_seed(0)
    ours, theirs = SqueezeExcite(16, 8, nn.SiLU), SqueezeExcitation(16, 8, nn.SiLU, nn.Hardsigmoid)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 16, 3, 3).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours(x), theirs(x))
    for p in (0.0, 0.3, 1.0):
        torch.manual_seed(1)
        a = DropPath(p).train()(x)
        torch.manual_seed(1)
        torch.testing.assert_close(a, StochasticDepth(p, "row").train()(x))
    assert DropPath(0.3).eval()(x) is x
