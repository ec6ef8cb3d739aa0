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


# ---- the family: space file, cost, search

def _space():
    from jointnas.catalog import load_space

    return load_space("darts")


def test_shipped_space_presets_are_the_published_genotypes():
    space = _space()
    assert set(space.presets) == set(PRESETS)
    for name, genotype in PRESETS.items():
        assert space.preset(name).arch == arch_of(genotype)


def _family(channels, cells, in_channels, resolution):
    from jointnas.families.darts import DartsFamily

    return DartsFamily.from_spec({"name": "darts", "network": {"channels": channels, "cells": cells},
                                  "deploy": {"in_channels": in_channels, "num_classes": 10,
                                             "resolution": resolution}})


@pytest.mark.parametrize("in_channels,resolution", [(3, 32), (1, 28), (3, 30)])
def test_closed_form_cost_is_fvcores_count_for_presets_and_sampled_genotypes(in_channels, resolution):
    from jointnas.space.pool import sample_pool

    family = _family(8, 5, in_channels, resolution)
    archs = [arch_of(g) for g in PRESETS.values()] + [c.arch for c in sample_pool(_space(), 3, seed=1)]
    fast = family.costs(archs)
    for arch, row in zip(archs, fast):
        ref = family.fvcore_cost(arch)
        assert family.cost(arch) == ref and tuple(row) == (ref.flops, ref.params)


def test_closed_form_cost_at_the_spaces_default_network_is_fvcores_count():
    family = _space().family
    for genotype in (DARTS_V2, PC_DARTS):
        assert family.cost(arch_of(genotype)) == family.fvcore_cost(arch_of(genotype))


def test_cifar10_evaluation_network_cost_matches_the_parameter_count_of_the_built_model():
    family = _family(36, 20, 3, 32)
    for genotype in (DARTS_V2, PC_DARTS):
        assert family.cost(arch_of(genotype)).params == _params(Network(genotype, 36, 20, 10))


def test_cheaper_op_in_the_cost_order_never_costs_more():
    space = _space()
    family = space.family
    base = arch_of(DARTS_V2)
    for name in ("normal_n3_op1", "reduce_n2_op1"):
        order = family.cost_order(name, space.arch[name])
        costs = [family.cost({**base, name: op}).flops for op in order]
        assert costs == sorted(costs) and costs[0] < costs[-1]
    assert family.cost_order("normal_n4_inputs", space.arch["normal_n4_inputs"]) is None


def test_a_space_without_a_genotype_dimension_is_refused_naming_it():
    from jointnas.catalog import space_from_dict
    from jointnas.errors import SpaceError

    doc = _space().to_dict()
    del doc["arch"]["reduce_n4_inputs"]
    with pytest.raises(SpaceError, match="arch.reduce_n4_inputs: required"):
        space_from_dict(doc)
    doc = _space().to_dict()
    doc["arch"]["normal_n3_inputs"]["choices"] = ["0,1", "0,3"]
    with pytest.raises(SpaceError, match="arch.normal_n3_inputs: must be categorical"):
        space_from_dict(doc)


def test_too_few_cells_for_two_reductions_is_refused():
    from jointnas.errors import SpaceError

    with pytest.raises(SpaceError, match="cells at least 3"):
        _family(8, 2, 3, 32)


def test_describe_names_the_familys_network_and_prices_a_preset(capsys):
    from jointnas.cli import main

    assert main(["describe", "--space", "darts"]) == 0
    assert "channels (C) 16, 8 cells" in capsys.readouterr().out
    assert main(["describe", "--space", "darts", "--preset", "DARTS_V2", "--json"]) == 0
    import json

    row = json.loads(capsys.readouterr().out)
    cost = _space().family.cost(arch_of(DARTS_V2))
    assert (row["flops"], row["params"]) == (cost.flops, cost.params)
    assert row["resolution"] == 32


def separable_share(candidate, report):
    """A known function of a genotype: the share of separable convs in the normal cell."""
    ops = [op for op, _ in genotype_of(candidate.arch).normal]
    score = sum(op.startswith("sep_conv") for op in ops) / len(ops)
    for epoch in (1, 2):
        report(epoch, score * epoch / 2)
    return score


def test_coarse_and_fine_search_the_darts_space(tmp_path, capsys):
    import json

    from jointnas.cli import main
    from jointnas.store import RunStore

    run = tmp_path / "run"
    assert main(["coarse", "--space", "darts", "--evaluator", "test_darts_family:separable_share",
                 "--surrogate", "forest", "--batch", "3", "--iterations", "2", "--pool", "200", "--run", str(run),
                 "--no-progress", "--json"]) == 0
    capsys.readouterr()
    with RunStore.open(run) as store:
        trials = store.trials()
    assert len(trials) == 6 and all(t.status == "done" for t in trials)
    budget = int(_space().family.cost(arch_of(DARTS_V2)).flops)
    assert main(["fine", "--run", str(run), "--budget", str(budget), "--population", "30", "--generations", "3",
                 "--json"]) == 0
    fine = json.loads(capsys.readouterr().out)
    assert fine["top"] and all(t["flops"] <= budget for t in fine["top"])
    for t in fine["top"]:
        arch = t["candidate"]["arch"]
        assert arch_of(genotype_of(arch)) == arch   # every result is a genotype the network builds from


def test_train_finds_the_presets_by_name_in_the_darts_space():
    from argparse import Namespace

    from jointnas.cli.train import load_candidate

    cand, space, label = load_candidate(Namespace(preset="PC_DARTS", space="darts", candidate=None))
    assert space.name == "darts" and label == "PC_DARTS"
    assert genotype_of(cand.arch) == genotype_of(arch_of(PC_DARTS))
