import numpy as np
import pytest
import torch

from jointnas.families.cell import EDGES, OPS, CellDeploy, CellFamily


def _arch(ops):
    return dict(zip(EDGES, ops))


@pytest.mark.parametrize("op", OPS)
def test_a_cell_of_each_op_builds_runs_and_costs_exactly_what_fvcore_counts(op):
    fam = CellFamily()
    arch = _arch([op] * 6)
    model = fam.build(arch, num_classes=10, in_channels=1, input_size=32).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert fam.cost(arch) == fam.fvcore_cost(arch)


def test_mixed_cells_match_fvcore_for_every_deployable_model_of_the_benchmark():
    rng = np.random.default_rng(3)
    for deploy in (CellDeploy(), CellDeploy(num_classes=100), CellDeploy(num_classes=120, resolution=16)):
        fam = CellFamily(deploy=deploy)
        archs = [_arch(rng.choice(OPS, 6)) for _ in range(2)]
        for a in archs:
            assert fam.cost(a) == fam.fvcore_cost(a)
        vec = fam.costs(archs)
        assert [tuple(r) for r in vec] == [(fam.cost(a).flops, fam.cost(a).params) for a in archs]


def test_the_all_3x3_cell_has_nas_bench_201s_published_parameter_count():
    # NAS-Bench-201 lists 1.531546 M parameters for the all-nor_conv_3x3 cell on CIFAR-10.
    assert CellFamily().cost(_arch(["nor_conv_3x3"] * 6)).params == 1_531_546


def test_the_cell_network_learns_digits():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.nn.functional.interpolate(torch.tensor(x[:128], dtype=torch.float32).view(-1, 1, 8, 8) / 16, size=16)
    y = torch.tensor(y[:128])
    fam = CellFamily.from_spec({"name": "cell", "network": {"channels": 8, "cells": 1}})
    model = fam.build(_arch(["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "none", "nor_conv_3x3"]),
                      num_classes=10, in_channels=1, input_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_genotype_string_follows_nas_bench_201s_edge_order():
    arch = _arch(["nor_conv_3x3", "none", "nor_conv_3x3", "skip_connect", "none", "skip_connect"])
    assert CellFamily().genotype(arch) == ("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+"
                                           "|skip_connect~0|none~1|skip_connect~2|")


def test_describe_prices_an_nb201_preset_at_the_deployable_resolution(capsys):
    import json

    from jointnas.catalog import load_space
    from jointnas.cli import main

    assert main(["describe", "--space", "nb201", "--preset", "resnet", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    space = load_space("nb201")
    cost = space.family.cost(space.preset("resnet").arch)
    assert (row["resolution"], row["flops"], row["params"]) == (32, cost.flops, cost.params)
