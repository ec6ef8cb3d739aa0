"""The closed-form proxies must equal fvcore's counts exactly, at any resolution."""
import numpy as np
import pytest

from jointnas import count_cost, count_cost_fvcore, count_costs, sample_pool
from jointnas.errors import UsageError

PRESETS = [f"FBNetV3_{x}" for x in "ABCDEFG"]
# Off the 224..272 step-8 grid, odd sizes included: stride-2 convs then round down and the
# trimmed depthwise padding (k // 2 - 1) changes the output size differently than on even inputs.
OFF_GRID = [193, 225, 231, 238, 257, 263, 289, 301]


def _pool_archs(space, n=50, seed=7):
    """Pool members; every other one moved off the sampled resolution grid."""
    archs = []
    for i, c in enumerate(sample_pool(space, n, seed=seed)):
        arch = dict(c.arch)
        if i % 2:
            arch["resolution"] = OFF_GRID[(i // 2) % len(OFF_GRID)]
        archs.append(arch)
    return archs


def _assert_matches_fvcore(space, arch, label):
    fast, ref = count_cost(arch, space), count_cost_fvcore(arch, space)
    assert fast == ref, (f"{label} at resolution {arch['resolution']}: fast path {fast} != fvcore {ref} "
                         f"(flops diff {fast.flops - ref.flops}, params diff {fast.params - ref.params})")


@pytest.mark.parametrize("name", PRESETS)
def test_fast_path_equals_fvcore_on_presets(space, name):
    _assert_matches_fvcore(space, space.preset(name).arch, name)


def test_fast_path_equals_fvcore_on_pool_members_at_many_resolutions(space):
    archs = _pool_archs(space)
    resolutions = {a["resolution"] for a in archs}
    assert len(resolutions) >= 10 and any(r % 2 for r in resolutions)
    for i, arch in enumerate(archs):
        _assert_matches_fvcore(space, arch, f"pool member {i} (seed 7)")


def test_count_costs_matches_count_cost_row_by_row_and_is_deterministic(space):
    pool = sample_pool(space, 300, seed=3)
    costs = count_costs(pool, space)
    assert costs.shape == (300, 2) and costs.dtype == np.int64
    for c, row in zip(pool, costs):
        cost = count_cost(c.arch, space)
        assert (cost.flops, cost.params) == tuple(row), c.key()
    assert np.array_equal(count_costs(pool, space), costs)
    # arch dicts are accepted as well as candidates
    assert np.array_equal(count_costs([c.arch for c in pool], space), costs)
    assert len(np.unique(costs[:, 0])) > 250


def test_count_costs_reports_progress_on_stderr_only(space, capsys):
    count_costs(sample_pool(space, 20, seed=0), space, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "proxies" in err and "20/20" in err


def test_cost_grows_with_resolution_and_params_do_not(space):
    arch = dict(space.preset("FBNetV3_A").arch)
    small, large = count_cost({**arch, "resolution": 224}, space), count_cost({**arch, "resolution": 272}, space)
    assert large.flops > small.flops and large.params == small.params


def test_too_small_input_is_a_clear_error(space):
    arch = {**space.preset("FBNetV3_A").arch, "resolution": 8}
    with pytest.raises(UsageError, match="too small"):
        count_cost(arch, space)
