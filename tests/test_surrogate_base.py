"""A user's surrogate written against the Surrogate base class alone (numpy, no private helper):
made, fitted, saved and read back through the catalog once registered."""
import numpy as np
import pytest
import torch

import toy_objective
from jointnas import catalog
from jointnas.catalog import space_from_dict
from jointnas.errors import UsageError
from jointnas.surrogates.base import PredictorError, Surrogate
from jointnas.surrogates.checkpoint import checkpoint_kind


class NearestMean(Surrogate):
    """Mean and spread of the scores of the ``k`` nearest fitted rows."""

    kind = "test-nearest"

    def __init__(self, space, *, k: int = 3, seed: int = 0):
        self.space, self.k, self.x, self.y = space, k, None, None

    def fit(self, candidates, y, *, progress=False):
        self.x, self.y = self.space.encode(list(candidates)).astype(np.float64), np.asarray(y, dtype=np.float64)
        return self

    def predict(self, candidates, costs=None):
        q = self.space.encode(list(candidates)).astype(np.float64)
        near = np.argsort(((q[:, None, :] - self.x[None]) ** 2).sum(-1), axis=1, kind="stable")[:, :self.k]
        return self.y[near].mean(1), self.y[near].std(1)

    def state(self):
        return {"k": self.k, "x": self.x, "y": self.y}

    @classmethod
    def from_state(cls, state, space):
        s = cls(space, k=state["k"])
        s.x, s.y = state["x"], state["y"]
        return s


@pytest.fixture
def space():
    return space_from_dict(toy_objective.SPACE)


def test_a_user_surrogate_saves_and_loads_back_through_the_catalog(tmp_path, space, monkeypatch):
    monkeypatch.setattr(catalog, "SURROGATES", dict(catalog.SURROGATES))   # the registration ends with the test
    catalog.register(catalog.SURROGATES, NearestMean.kind, NearestMean)
    pool = space.sample(40, seed=0)
    y = [toy_objective.peak(c.arch, c.recipe) for c in pool]
    s = catalog.make_surrogate(NearestMean.kind, space, seed=0, ensemble=5, score_bounds=(0.0, 1.0))
    s = s.pretrain(pool, np.ones((len(pool), 2))).fit(pool[:30], y[:30])
    assert s.pretraining_note(40) == "does not use the FLOPs/params of 40 candidates"
    s.save(tmp_path / "s.pt")
    assert checkpoint_kind(tmp_path / "s.pt") == NearestMean.kind
    assert torch.load(tmp_path / "s.pt", weights_only=True)["kind"] == NearestMean.kind

    back = catalog.load_surrogate(tmp_path / "s.pt", space)
    scorer = catalog.load_scorer(tmp_path / "s.pt", space)
    assert type(back) is NearestMean and type(scorer) is NearestMean and back.k == 3
    expected = s.predict(pool[30:])
    for got in (back.predict(pool[30:]), scorer.predict_encoded(space.encode(pool[30:]))):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    assert not NearestMean.has_members and not NearestMean.takes_costs
    np.testing.assert_array_equal(back.predict_members(space.encode(pool[30:])), expected[0][None])


def test_a_user_surrogate_is_checked_like_the_built_ins(tmp_path, space, monkeypatch):
    pool = space.sample(10, seed=1)
    s = NearestMean(space).fit(pool, np.linspace(0, 1, 10))
    s.save(tmp_path / "s.pt")
    with pytest.raises(UsageError, match="test-nearest.*known"):  # not registered: the catalog names what it knows
        catalog.load_surrogate(tmp_path / "s.pt", space)
    monkeypatch.setitem(catalog.SURROGATES, NearestMean.kind, NearestMean)
    data = torch.load(tmp_path / "s.pt", weights_only=True)
    data["y"][0] += 1.0
    torch.save(data, tmp_path / "s.pt")
    with pytest.raises(PredictorError, match="checksum"):
        catalog.load_surrogate(tmp_path / "s.pt", space)
    s.x = {"rows": object()}
    with pytest.raises(PredictorError, match=r"state\['x'\]\['rows'\].*not object"):
        s.save(tmp_path / "other.pt")
