import json
import warnings

import numpy as np
import pytest

from jointnas import Candidate, SpaceError, sample_pool


def test_same_seed_same_pool(space):
    a = sample_pool(space, 100, seed=7)
    b = sample_pool(space, 100, seed=7)
    assert [c.key() for c in a] == [c.key() for c in b]


def test_different_seed_different_pool(space):
    a = {c.key() for c in sample_pool(space, 100, seed=1)}
    b = {c.key() for c in sample_pool(space, 100, seed=2)}
    assert len(a & b) == 0


@pytest.mark.parametrize("n", [1, 3, 100, 1000])
def test_distinct_valid_and_no_warning_for_any_size(space, n):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's power-of-two warning must not reach users
        pool = sample_pool(space, n, seed=0)
    assert len(pool) == n
    assert len({c.key() for c in pool}) == n
    for c in pool[:50]:
        space.validate(c.arch, c.recipe)


def test_pool_covers_every_choice(space):
    pool = sample_pool(space, 256, seed=0)
    for name, dim in list(space.arch.items()) + list(space.recipe.items()):
        part = "arch" if name in space.arch else "recipe"
        values = {getattr(c, part)[name] for c in pool}
        if hasattr(dim, "choices"):
            assert values == set(dim.choices), name
        elif dim.kind == "bool":
            assert values == {False, True}, name


def test_pool_is_low_discrepancy(space):
    # Sobol points cover the unit cube more evenly than i.i.d. uniform ones: the mean of each
    # encoded float dimension should sit much closer to the middle than random noise would.
    pool = sample_pool(space, 1024, seed=0)
    x = space.encode(pool)
    schema = {s["name"]: s for s in space.encoding_schema()}
    for name in ("lr", "weight_decay", "dropout", "mixup_alpha"):
        col = x[:, schema[name]["offset"]]
        assert abs(col.mean() - 0.5) < 0.01, name


def test_bad_pool_size(space):
    with pytest.raises(ValueError, match="positive integer"):
        sample_pool(space, 0)


def test_json_round_trip(space, tmp_path):
    for c in sample_pool(space, 20, seed=3) + [space.preset("FBNetV3_A")]:
        back = Candidate.from_json(c.to_json())
        assert back == c and back.key() == c.key()
        assert back.arch == c.arch and back.recipe == c.recipe
        assert {k: type(v) for k, v in back.arch.items()} == {k: type(v) for k, v in c.arch.items()}
        back.validate(space)


def test_key_is_order_independent_and_ignores_meta(space):
    c = space.preset("FBNetV3_B")
    shuffled = Candidate(dict(reversed(list(c.arch.items()))), dict(reversed(list(c.recipe.items()))),
                         space=c.space, meta={"note": "x"})
    assert shuffled.key() == c.key()
    changed = Candidate(dict(c.arch, s1_depth=c.arch["s1_depth"] + 1), c.recipe, space=c.space)
    assert changed.key() != c.key()


def test_numpy_scalars_are_normalised(space):
    c = space.preset("FBNetV3_C")
    np_arch = {k: (np.int64(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in c.arch.items()}
    assert Candidate(np_arch, c.recipe, space=c.space).key() == c.key()
    json.loads(Candidate(np_arch, c.recipe).to_json())


def test_validate_rejects_outside_values(space):
    c = space.preset("FBNetV3_A")
    with pytest.raises(SpaceError, match="s1_channels=25 is outside"):
        Candidate(dict(c.arch, s1_channels=25), c.recipe).validate(space)
    with pytest.raises(SpaceError, match="unknown key"):
        Candidate(dict(c.arch, bogus=1), c.recipe).validate(space)
    with pytest.raises(SpaceError, match="lacks lr"):
        Candidate(c.arch, {k: v for k, v in c.recipe.items() if k != "lr"}).validate(space)
