"""A predictor scores plain dicts as it scores Candidates, and says which one does not fit the space."""
from pathlib import Path

import numpy as np
import pytest

from jointnas.errors import SpaceError
from jointnas.catalog import load_surrogate

SHIPPED = Path(__file__).resolve().parents[1] / "predictors" / "fbnetv3-digits.pt"


@pytest.fixture(scope="module")
def shipped():
    return load_surrogate(SHIPPED)


def test_plain_dicts_are_scored_like_candidates(shipped):
    cands = shipped.space.sample(3, seed=1)
    nested = [{"arch": dict(c.arch), "recipe": dict(c.recipe)} for c in cands]
    flat = [dict(c.arch, **c.recipe) for c in cands]
    expected = shipped.predict(cands)
    for dicts in (nested, flat):
        got = shipped.predict(dicts)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["arch"].update(s0_depth=99), "candidate 1: arch.s0_depth=99 is outside space fbnetv3"),
    (lambda d: d["recipe"].pop("lr"), "candidate 1: recipe of candidate lacks lr"),
    (lambda d: d["arch"].update(width_mult=2), "candidate 1: arch of candidate has unknown key(s) width_mult"),
    (lambda d: d.update(space="nb201"), "candidate 1 belongs to space 'nb201'"),
    (lambda d: d.update(extra=1), "candidate 1: expected {'arch'"),
])
def test_a_dict_that_does_not_fit_the_space_is_named(shipped, edit, message):
    dicts = [c.to_dict() for c in shipped.space.sample(2, seed=1)]
    edit(dicts[1])
    with pytest.raises(SpaceError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("{", r"\{").replace("[", r"\[")):
        shipped.predict(dicts)


def test_a_flat_dict_with_an_unknown_key_is_named(shipped):
    flat = dict(shipped.space.sample(1, seed=1)[0].arch, learning_rate=0.1)
    with pytest.raises(SpaceError, match="candidate 0: unknown key"):
        shipped.predict([flat])
