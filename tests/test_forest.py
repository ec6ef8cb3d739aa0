import numpy as np
import pytest

from jointnas.surrogates.forest import ForestError, ForestSurrogate


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


def test_rows_scored_with_the_prices_the_fine_stage_has_score_as_rows_whose_costs_are_counted():
    from jointnas.catalog import load_space
    from jointnas.fine.problem import FineProblem

    space = load_space("fbnetv3")
    cands = space.sample(60, seed=3)
    costs = space.family.costs([c.arch for c in cands])
    y = np.log(costs[:, 0].astype(float)) + np.array([c.recipe["lr"] for c in cands])
    f = ForestSurrogate(space, trees=8).pretrain(cands, costs).fit(cands[:40], y[:40])
    x = space.encode(cands[40:])
    counted, priced = f.predict_encoded(x), f.predict_encoded(x, costs=costs[40:])
    assert np.allclose(counted[0], priced[0]) and np.allclose(counted[1], priced[1])
    assert np.allclose(f.predict_members(x), f.predict_members(x, costs[40:]))   # Thompson draws too
    problem = FineProblem(space, f)   # the fine stage hands its prices over
    G, inside = problem.genome.from_candidates(cands[40:])
    assert inside.all()
    assert np.array_equal(problem.costs(G), costs[40:])
    assert np.allclose(problem.predict(G, problem.costs(G))[0], counted[0])


def _pool(space, n, seed):
    cands, y = _data(space, n, seed)
    costs = space.family.costs([c.arch for c in cands])
    return cands, y, costs, space.encode(cands)


def test_an_update_regrows_the_oldest_fifth_of_the_trees_and_the_pool_scores_follow_them():
    import copy

    space = _space()
    cands, y, costs, x = _pool(space, 400, 2)
    f = ForestSurrogate(space, trees=10, refresh=0.2).pretrain(cands, costs).fit(cands[:100], y[:100])
    f.predict_encoded(x, costs)   # the pool scored once: its per-tree predictions are kept
    before = list(f._model)
    f.update(cands[:110], y[:110])
    changed = [a is not b for a, b in zip(before, f._model)]
    assert sum(changed) == 2 and f.info["fit"]["kind"] == "partial"
    kept = f.predict_encoded(x, costs)
    fresh = copy.deepcopy(f).predict_encoded(x, costs)   # a copy keeps no scores: all trees traversed
    np.testing.assert_allclose(kept[0], fresh[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(kept[1], fresh[1], rtol=1e-7, atol=1e-9)
    f.update(cands[:125], y[:125])   # 1.25x the rows of the last full fit: every tree again
    assert all(a is not b for a, b in zip(before, f._model)) and f.info["fit"]["kind"] == "full"


def test_an_updated_forest_saved_and_loaded_predicts_what_it_did_in_memory(tmp_path):
    space = _space()
    cands, y, costs, x = _pool(space, 300, 3)
    f = ForestSurrogate(space, trees=10).pretrain(cands, costs).fit(cands[:60], y[:60])
    f.update(cands[:70], y[:70] + 5.0)   # the newer trees fit scores on another scale
    f.save(tmp_path / "forest.pt")
    g = ForestSurrogate.load(tmp_path / "forest.pt", space)
    for a, b in zip(f.predict_encoded(x, costs), g.predict_encoded(x, costs)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_the_proxies_trend_ranks_larger_models_than_any_fitted_above_them():
    from scipy.stats import kendalltau

    space = _space()
    cands = space.sample(600, seed=4)
    costs = space.family.costs([c.arch for c in cands])
    y = np.log(costs[:, 0].astype(float))   # scores rise with FLOPs, beyond what was measured too
    small = np.argsort(y)[:300]
    large = np.argsort(y)[450:]
    taus = {}
    for trend in (1.0, None):
        f = ForestSurrogate(space, trees=20, trend=trend).pretrain(cands, costs)
        f.fit([cands[i] for i in small], y[small])
        taus[trend] = kendalltau(f.predict([cands[i] for i in large])[0], y[large]).statistic
    assert taus[1.0] > 0.9
    assert taus[1.0] > taus[None] + 0.2   # trees alone predict near constants beyond the rows they saw


@pytest.mark.parametrize("option, value", [("trend", 0.0), ("trend", -1.0), ("refresh", 0.0), ("refresh", 1.5),
                                           ("refit_growth", 0.5)])
def test_forest_options_out_of_range_are_refused_by_name(option, value):
    with pytest.raises(ForestError, match=option):
        ForestSurrogate(_space(), **{option: value})
