"""The ``darts`` family: DARTS ops, the discrete network of a genotype, arch dims, presets, cost."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from jointnas.families.darts_genotypes import (DARTS_V1, DARTS_V2, PC_DARTS, PRESETS, Genotype,  # noqa: E402
                                               arch_dim_names, arch_of, genotype_of)
from jointnas.families.darts_net import Network, cell_plan  # noqa: E402
from jointnas.families.darts_ops import OPS, PRIMITIVES  # noqa: E402


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("in_channels,side", [(1, 28), (3, 32)])
def test_discrete_network_runs_forward_on_small_images(in_channels, side):
    torch.manual_seed(0)
    for genotype in PRESETS.values():
        model = Network(genotype, channels=8, cells=5, num_classes=10, in_channels=in_channels).eval()
        with torch.no_grad():
            out = model(torch.randn(2, in_channels, side, side))
        assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_network_trains_one_step_with_drop_path():
    torch.manual_seed(0)
    model = Network(DARTS_V2, channels=8, cells=5, num_classes=10, in_channels=3, dropout=0.1, drop_path=0.2)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in model.stem.parameters())


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("side", [8, 7])
def test_every_op_keeps_channels_and_halves_the_side_at_stride_two(name, side):
    x = torch.randn(2, 6, side, side)
    for stride in (1, 2):
        y = OPS[name](6, stride, False)(x)
        assert y.shape == (2, 6, -(-side // stride), -(-side // stride))


def test_reduction_cells_sit_at_one_and_two_thirds_of_the_depth():
    plan = cell_plan(16, 8)
    assert [i for i, s in enumerate(plan) if s.reduction] == [2, 5]
    assert plan[-1].c == 64 and plan[3].reduction_prev and plan[0].c_prev == 48


def test_published_cifar10_networks_have_the_papers_parameter_counts():
    v2 = _params(Network(DARTS_V2, channels=36, cells=20, num_classes=10))
    pc = _params(Network(PC_DARTS, channels=36, cells=20, num_classes=10))
    print(f"DARTS_V2 {v2} params, PC_DARTS {pc} params")
    assert abs(v2 / 3.3e6 - 1) < 0.02
    assert abs(pc / 3.6e6 - 1) < 0.02


def test_arch_of_and_genotype_of_round_trip_up_to_pair_order_within_a_node():
    for genotype in (DARTS_V1, DARTS_V2, PC_DARTS):
        arch = arch_of(genotype)
        assert sorted(arch) == sorted(arch_dim_names())
        back = genotype_of(arch)
        for kind in ("normal", "reduce"):
            pairs, again = getattr(genotype, kind), getattr(back, kind)
            for k in range(4):
                assert sorted(pairs[2 * k: 2 * k + 2], key=lambda p: p[1]) == again[2 * k: 2 * k + 2]
        assert arch_of(back) == arch


def test_a_node_reading_one_input_twice_is_refused():
    normal = list(DARTS_V2.normal)
    normal[3] = ("sep_conv_3x3", 0)   # node 3: both edges from input 0
    with pytest.raises(ValueError, match="node 3.*distinct"):
        arch_of(Genotype(normal, DARTS_V2.reduce))
