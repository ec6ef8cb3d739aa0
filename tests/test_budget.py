"""Budget parsing, and the space's cheapest candidate that bounds every budget from below."""
import numpy as np
import pytest

from jointnas import count_cost, count_cost_fvcore, sample_pool
from jointnas.budget import Budget, check_budget, cheapest_arch, cost_ordered_values, parse_flops, parse_params
from jointnas.errors import UsageError
from jointnas.families.cost import count_costs

VALID_FLOPS = [
    ("600MFLOPs", 600_000_000),
    ("600M", 600_000_000),
    ("0.6GFLOPs", 600_000_000),
    ("6e8", 600_000_000),
    ("6E8", 600_000_000),
    ("600mflops", 600_000_000),
    ("600 MFLOPS", 600_000_000),
    (" 600m ", 600_000_000),
    ("0.6gflop", 600_000_000),
    ("600000000", 600_000_000),
    ("1.5e3M", 1_500_000_000),
    ("250KFLOPs", 250_000),
    (".5G", 500_000_000),
    ("2T", 2_000_000_000_000),
]
INVALID_FLOPS = ["", "   ", "abc", "600MB", "600 MMACs", "-600M", "0", "0M", "0.0GFLOPs", "inf", "nan", "1e999",
                 "600M FLOPs extra", "6,000M", "M600", "600MM", "1e9e9", "6e", "FLOPs", "600 params"]


@pytest.mark.parametrize("text,value", VALID_FLOPS)
def test_parse_flops_accepts_documented_forms_case_insensitively(text, value):
    assert parse_flops(text) == value


@pytest.mark.parametrize("text", INVALID_FLOPS)
def test_parse_flops_rejects_garbage_naming_the_accepted_forms(text):
    with pytest.raises(UsageError) as e:
        parse_flops(text)
    message = str(e.value)
    assert repr(text) in message
    for form in ("600MFLOPs", "600M", "0.6GFLOPs", "6e8"):
        assert form in message


@pytest.mark.parametrize("text,value", [("5M", 5_000_000), ("5.5m", 5_500_000), ("500K", 500_000),
                                        ("5e6", 5_000_000), ("8M params", 8_000_000), ("8mparam", 8_000_000)])
def test_parse_params(text, value):
    assert parse_params(text) == value


@pytest.mark.parametrize("text", ["5MFLOPs", "five", "-5M", "0", "5MB", ""])
def test_parse_params_rejects_garbage(text):
    with pytest.raises(UsageError, match="accepted forms: 5M"):
        parse_params(text)


def test_budget_allows():
    b = Budget(100, 10)
    assert b.allows(100, 10) and not b.allows(101, 10) and not b.allows(100, 11)
    assert Budget(100).allows(100, 10**12)


# ------------------------------------------------------------------ cheapest candidate
def test_cheapest_arch_is_in_the_space_and_counted_exactly(space):
    arch = cheapest_arch(space)
    space.validate(arch, space.default_recipe())
    assert count_cost(arch, space) == count_cost_fvcore(arch, space)


def test_no_single_change_of_the_cheapest_arch_is_cheaper(space):
    arch = cheapest_arch(space)
    least = count_cost(arch, space)
    for name, dim in space.arch.items():
        values = dim.choices if hasattr(dim, "choices") else [False, True]
        for v in values:
            cost = count_cost(dict(arch, **{name: v}), space)
            assert cost.flops >= least.flops and cost.params >= least.params, (name, v)


def test_cheapest_arch_beats_a_large_pool(space):
    least = count_cost(cheapest_arch(space), space)
    costs = count_costs(sample_pool(space, 2000, seed=11), space)
    assert costs[:, 0].min() > least.flops and costs[:, 1].min() > least.params


def test_cost_order_is_monotone_on_random_archs(space):
    # Repair relies on it: stepping a dimension to its next costlier value never lowers FLOPs or params.
    rng = np.random.default_rng(0)
    orders = {n: cost_ordered_values(space, n) for n in space.arch}
    assert orders["s0_act"] is None and orders["s3_trim_pad"] == [True, False] and orders["s2_kernel"] == [3, 5]
    for cand in sample_pool(space, 30, seed=5):
        base = count_cost(cand.arch, space)
        for name, order in orders.items():
            if order is None:
                continue
            i = order.index(cand.arch[name])
            if i + 1 < len(order):
                up = count_cost(dict(cand.arch, **{name: order[i + 1]}), space)
                assert up.flops >= base.flops and up.params >= base.params, name
        # ... and a few random multi-dimension raises as well
        arch = dict(cand.arch)
        for name in rng.choice([n for n, o in orders.items() if o is not None], size=5, replace=False):
            arch[name] = orders[name][-1]
        raised = count_cost(arch, space)
        assert raised.flops >= base.flops and raised.params >= base.params


def test_check_budget_states_the_minimum(space):
    least = count_cost(cheapest_arch(space), space)
    assert check_budget(space, Budget(least.flops, least.params)) == least
    # The library states the minimum; the command line adds the flag that sets it (one error root,
    # library messages name no flags).
    from jointnas.cli import one_line

    with pytest.raises(UsageError) as e:
        check_budget(space, Budget(least.flops - 1))
    assert f"{least.flops / 1e6:.1f} MFLOPs" in str(e.value) and "--" not in str(e.value)
    assert "--budget" in one_line(e.value)
    with pytest.raises(UsageError) as e:
        check_budget(space, Budget(10**10, least.params - 1))
    assert f"{least.params / 1e6:.2f} M params" in str(e.value) and "--" not in str(e.value)
    assert "--max-params" in one_line(e.value)
