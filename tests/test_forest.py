import numpy as np
import pytest

from jointnas.predictor.forest import ForestError, ForestSurrogate


def _space():
    from jointnas.catalog import load_space

    return load_space("hpobench-mlp")


def _data(space, n, seed):
    cands = space.sample(n, seed=seed)
    x = space.encode(cands)
    y = x[:, 0] * 0.5 + np.sin(3 * x[:, 1]) * 0.3 + 0.1 * x[:, 2]
    return cands, y


@pytest.mark.parametrize("method", ["extra", "random"])
def test_the_forest_ranks_a_known_function_and_spreads_where_it_has_no_data(method):
    from scipy.stats import kendalltau

    space = _space()
    cands, y = _data(space, 300, 0)
    f = ForestSurrogate(space, trees=30, method=method, proxies=False).fit(cands[:150], y[:150])
    mean, std = f.predict(cands[150:])
    assert kendalltau(mean, y[150:]).statistic > 0.6
    assert (std > 0).mean() > 0.5


def test_proxies_become_features_and_a_saved_forest_predicts_the_same_after_loading(tmp_path):
    import torch

    space = _space()
    cands, y = _data(space, 120, 1)
    costs = space.family.costs([c.arch for c in cands])
    f = ForestSurrogate(space, trees=12, method="random").pretrain(cands, costs).fit(cands[:80], y[:80])
    assert f.features(cands[:3]).shape[1] == space.encoding_width + 2
    path = tmp_path / "forest.pt"
    f.save(path)
    assert torch.load(path, weights_only=True)["kind"] == "forest"
    g = ForestSurrogate.load(path, space)
    for a, b in zip(f.predict(cands[80:]), g.predict(cands[80:])):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_an_unfitted_forest_says_so():
    with pytest.raises(ForestError, match="not fitted"):
        ForestSurrogate(_space()).predict_encoded(np.zeros((1, 3)))
