"""Predictor: learning on synthetic targets, proxy pretraining, ensemble spread, checkpoints."""
import copy

import numpy as np
import pytest
import torch
import yaml

from jointnas import sample_pool
from jointnas.errors import UsageError
from jointnas.surrogates import FORMAT_VERSION, Predictor, PredictorError, evaluate, ranking_metrics
from jointnas.families.cost import count_costs
from jointnas.catalog import load_surrogate, space_from_dict, spaces_dir as recipes_dir


# --------------------------------------------------------------------------- synthetic data
def _col(space, x, name, choice=None):
    entry = next(e for e in space.encoding_schema() if e["name"] == name)
    offset = entry["offset"]
    if choice is not None:
        dims = space.arch if entry["part"] == "arch" else space.recipe
        offset += dims[name].choices.index(choice)
    return x[:, offset]


def nonlinear_target(space, x, noise, seed):
    """A known nonlinear function of arch and recipe columns, in [0, 1]: an interaction of mean
    depth and width, and a learning-rate optimum that moves with the optimizer."""
    depth = np.mean([_col(space, x, f"s{i}_depth") for i in range(7)], axis=0)
    width = np.mean([_col(space, x, f"s{i}_channels") for i in range(7)], axis=0)
    best_lr = 0.3 + 0.4 * _col(space, x, "optimizer", "adamw")
    z = 2.0 * depth * width - 6.0 * (_col(space, x, "lr") - best_lr) ** 2
    z = (z - z.mean()) / z.std()
    return np.clip(0.5 + 0.2 * z + np.random.default_rng(seed).normal(0, noise, len(z)), 0, 1)


def flops_driven_target(space, x, costs, seed):
    """Accuracy that mostly follows log-FLOPs (as on ImageNet), plus a learning-rate optimum and noise."""
    cap = np.log(costs[:, 0].astype(float))
    cap = (cap - cap.mean()) / cap.std()
    z = 1.5 * np.tanh(cap) - 2.0 * (_col(space, x, "lr") - 0.5) ** 2
    z = (z - z.mean()) / z.std()
    return np.clip(0.6 + 0.1 * z + np.random.default_rng(seed).normal(0, 0.01, len(z)), 0, 1)


@pytest.fixture(scope="module")
def pool(space):
    return sample_pool(space, 4000, seed=3)


@pytest.fixture(scope="module")
def encoded(space, pool):
    return space.encode(pool)


@pytest.fixture(scope="module")
def costs(space, pool):
    return count_costs(pool, space)


@pytest.fixture(scope="module")
def pretrained(space, encoded, costs):
    """Encoder + proxy head pretrained on the first 3000 pool members (the rest is held out)."""
    return Predictor(space, ensemble=3, seed=0).pretrain(encoded[:3000], costs[:3000], epochs=40)


@pytest.fixture(scope="module")
def small_fit(space, encoded):
    y = nonlinear_target(space, encoded[:60], noise=0.01, seed=1)
    return Predictor(space, hidden=32, ensemble=2, seed=5).fit(encoded[:60], y, frozen_epochs=5, full_epochs=5)


# --------------------------------------------------------------------------- learning
def test_fine_tuning_learns_a_nonlinear_target(space, encoded):
    y = nonlinear_target(space, encoded[:800], noise=0.02, seed=0)
    p = Predictor(space, ensemble=2, seed=0).fit(encoded[:300], y[:300])
    mean, std = p.predict_encoded(encoded[300:800])
    m = ranking_metrics(y[300:800], mean)
    assert m["kendall_tau"] > 0.6, m
    assert m["mae"] < 0.08, m
    assert np.all(std > 0)
    assert p.info["fit"]["n"] == 300 and len(p.info["fit"]["val_loss"]) == 2


def test_predictions_are_fractions_even_when_members_extrapolate(space, encoded):
    y = nonlinear_target(space, encoded[:40], noise=0.02, seed=0)
    p = Predictor(space, ensemble=3, seed=0).fit(encoded[:40], y, frozen_epochs=5, full_epochs=5)
    p.target_stats = {"mean": 0.5, "std": 5.0}  # members' raw outputs now reach past both ends
    with torch.inference_mode():
        raw = np.stack([m(torch.from_numpy(encoded[:2000])).numpy() for m in p.members]) * 5.0 + 0.5
    assert raw.max() > 1.0 and raw.min() < 0.0
    mean, std = p.predict_encoded(encoded[:2000])
    assert mean.min() >= 0.0 and mean.max() <= 1.0 and np.all(std <= 0.5)
    above = raw.min(0) > 1.0  # every member says more than 100 %
    assert above.any() and np.all(mean[above] == 1.0) and np.all(std[above] == 0.0)


def test_early_stopping_split_only_from_enough_pairs(space, encoded):
    y = nonlinear_target(space, encoded[:60], noise=0.02, seed=0)
    small = Predictor(space, ensemble=2, seed=0)
    train_idx, val_idx = small._member_split(0, 60)
    assert len(val_idx) == 0 and sorted(train_idx) == list(range(60))  # every pair trains
    assert small.fit(encoded[:60], y, frozen_epochs=2, full_epochs=2).info["fit"]["val_loss"] == [None, None]
    eager = Predictor(space, ensemble=2, seed=0, early_stopping_from=50)
    train_idx, val_idx = eager._member_split(0, 60)
    assert len(val_idx) == 12 and sorted([*train_idx, *val_idx]) == list(range(60))
    losses = eager.fit(encoded[:60], y, frozen_epochs=2, full_epochs=2).info["fit"]["val_loss"]
    assert all(isinstance(v, float) for v in losses)
    with pytest.raises(PredictorError, match="early_stopping_from"):
        Predictor(space, early_stopping_from=0)


def test_pretraining_fits_proxies_on_held_out_pool(pretrained, encoded, costs):
    est = pretrained.predict_costs(encoded[3000:])
    assert est.shape == (1000, 2)
    tau_flops = ranking_metrics(costs[3000:, 0], est[:, 0])["kendall_tau"]
    tau_params = ranking_metrics(costs[3000:, 1], est[:, 1])["kendall_tau"]
    assert tau_flops > 0.8 and tau_params > 0.8, (tau_flops, tau_params)
    assert np.median(np.abs(est[:, 0] / costs[3000:, 0] - 1)) < 0.1


def test_pretraining_helps_with_few_pairs(space, pretrained, encoded, costs):
    """With 40 pairs of a FLOPs-driven target, the proxy-pretrained encoder ranks held-out pairs better."""
    held = slice(3000, 4000)
    y = flops_driven_target(space, encoded[held], costs[held], seed=2)
    train, test = np.arange(40), np.arange(400, 1000)
    x = encoded[held]
    with_pt = copy.deepcopy(pretrained).fit(x[train], y[train])
    without = Predictor(space, ensemble=3, seed=0).fit(x[train], y[train])
    tau_with = ranking_metrics(y[test], with_pt.predict_encoded(x[test])[0])["kendall_tau"]
    tau_without = ranking_metrics(y[test], without.predict_encoded(x[test])[0])["kendall_tau"]
    assert with_pt.pretrained and not without.pretrained
    assert tau_with > tau_without + 0.1, (tau_with, tau_without)


def test_ensemble_spread_is_positive_and_grows_when_extrapolating(space, encoded):
    """Inside the unit cube of encodings the spread is member disagreement; pushed outside the
    range the members were trained on, they disagree clearly more."""
    y = nonlinear_target(space, encoded[:150], noise=0.01, seed=3)
    p = Predictor(space, ensemble=3, seed=1).fit(encoded[:150], y, frozen_epochs=30, full_epochs=30)
    _, std_inside = p.predict_encoded(encoded[1000:1300])
    _, std_outside = p.predict_encoded(np.clip(encoded[1000:1300] * 3 - 1, -1, 2))
    assert np.all(std_inside > 0)
    assert std_outside.mean() > 2 * std_inside.mean(), (std_outside.mean(), std_inside.mean())


def test_fit_is_reproducible_and_leaves_global_rng_alone(space, encoded):
    y = nonlinear_target(space, encoded[:40], noise=0.01, seed=4)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = Predictor(space, hidden=32, ensemble=2, seed=7).fit(encoded[:40], y, frozen_epochs=5, full_epochs=5)
    assert torch.rand(1) == before
    assert torch.get_num_threads() == threads  # fits run on one thread, then restore the caller's setting
    b = Predictor(space, hidden=32, ensemble=2, seed=7).fit(encoded[:40], y, frozen_epochs=5, full_epochs=5)
    np.testing.assert_array_equal(a.predict_encoded(encoded[40:80])[0], b.predict_encoded(encoded[40:80])[0])


def test_bootstrap_members_train_on_resamples(space, encoded):
    y = nonlinear_target(space, encoded[:40], noise=0.01, seed=4)
    p = Predictor(space, hidden=16, ensemble=3, seed=2, bootstrap=True)
    train_rows = [set(p._member_split(m, 40)[0].tolist()) for m in range(3)]
    assert all(len(rows) < 32 for rows in train_rows)  # 32 rows drawn with replacement: repeats
    _, std = p.fit(encoded[:40], y, frozen_epochs=3, full_epochs=3).predict_encoded(encoded[40:60])
    assert np.all(std > 0)


def test_candidates_and_encoded_rows_score_alike_and_rank_best_first(small_fit, pool, encoded):
    mean_c, std_c = small_fit.predict(pool[100:150])
    mean_x, std_x = small_fit.predict_encoded(encoded[100:150])
    np.testing.assert_allclose(mean_c, mean_x)
    np.testing.assert_allclose(std_c, std_x)
    order = small_fit.rank(pool[100:150])
    assert sorted(order) == list(range(50))
    assert np.all(np.diff(mean_c[order]) <= 0)
    optimistic = small_fit.rank(pool[100:150], explore=5.0)
    assert np.all(np.diff((mean_c + 5.0 * std_c)[optimistic]) <= 1e-12)


def test_batched_scoring_matches_one_batch(small_fit, encoded):
    whole = small_fit.predict_encoded(encoded[:500])
    chunked = small_fit.predict_encoded(encoded[:500], batch_size=7)
    np.testing.assert_allclose(whole[0], chunked[0], rtol=1e-6)


def _per_member_outputs(p, x):
    """What each member's torch module says, one module after another (the reference)."""
    with torch.inference_mode():
        return np.stack([m(torch.from_numpy(x)).numpy() for m in p.members])


def _ensemble_stats(p, raw):
    acc = np.clip(raw.astype(np.float64) * p.target_stats["std"] + p.target_stats["mean"], 0.0, 1.0)
    return acc.mean(0), acc.std(0)


@pytest.mark.parametrize("shape", [dict(hidden=64, ensemble=5), dict(hidden=16, ensemble=3, encoder_layers=1,
                                                                     head_layers=3), dict(hidden=8, ensemble=1)])
def test_stacked_scoring_equals_the_members_run_one_after_another(space, shape):
    p = Predictor(space, seed=0, **shape)
    with p._training(9):
        p.members = [p._new_member().requires_grad_(False).eval() for _ in range(shape["ensemble"])]
    p.target_stats = {"mean": 0.6, "std": 0.2}
    rng = np.random.default_rng(1)
    for n in (1, 225, 5000):  # 5000 rows span several of the stacked pass's chunks
        x = rng.random((n, space.encoding_width)).astype(np.float32)
        raw = _per_member_outputs(p, x)
        np.testing.assert_allclose(p._stacked_members().outputs(x), raw, rtol=1e-5, atol=1e-5)
        for fast, slow in zip(p.predict_encoded(x), _ensemble_stats(p, raw)):
            np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-6)


def test_scoring_follows_members_changed_after_the_first_prediction(small_fit, encoded):
    p = copy.deepcopy(small_fit)
    x = encoded[:100]
    before = p.predict_encoded(x)[0]
    with torch.no_grad():
        p.members[0].head.out.bias += 1.0  # in place: the same tensor, a new version
    moved = p.predict_encoded(x)[0]
    assert not np.allclose(moved, before)
    np.testing.assert_allclose(moved, _ensemble_stats(p, _per_member_outputs(p, x))[0], atol=1e-6)
    p.members = p.members[1:]  # a member dropped
    np.testing.assert_allclose(p.predict_encoded(x)[0], _ensemble_stats(p, _per_member_outputs(p, x))[0],
                               atol=1e-6)


def test_a_predictor_loaded_under_inference_mode_scores_and_follows_changes(small_fit, encoded, tmp_path):
    small_fit.save(tmp_path / "p.pt")
    x = encoded[:50]
    with torch.inference_mode():  # its weights are inference tensors: no version counter to watch
        p = load_surrogate(tmp_path / "p.pt")
        before = p.predict_encoded(x)[0]
        np.testing.assert_allclose(before, small_fit.predict_encoded(x)[0], atol=1e-6)
        p.members[0].head.out.bias += 1.0
        np.testing.assert_allclose(p.predict_encoded(x)[0], _ensemble_stats(p, _per_member_outputs(p, x))[0],
                                   atol=1e-6)
    assert not np.allclose(p.predict_encoded(x)[0], before)


def test_evaluate_reports_kfold_metrics(space, pretrained, encoded, costs):
    held = slice(3000, 3060)
    y = flops_driven_target(space, encoded[held], costs[held], seed=5)
    out = evaluate(space, encoded[held], y, k=3, pretrain=pretrained, frozen_epochs=20, full_epochs=10)
    assert out["n"] == 60 and out["k"] == 3 and len(out["fit_seconds"]) == 3 and out["pretrained"]
    assert len(out["predictions"]) == 60
    for key in ("kendall_tau", "spearman_rho", "kendall_tau_pooled", "spearman_rho_pooled"):
        assert -1 <= out[key] <= 1
    assert out["kendall_tau"] > 0.4, out["kendall_tau"]
    np.testing.assert_allclose(out["mae_pooled"], np.mean(np.abs(np.array(out["predictions"]) - y)))
    scratch = evaluate(space, encoded[held], y, k=3, seed=1, hidden=16, ensemble=2, frozen_epochs=3, full_epochs=3)
    assert not scratch["pretrained"] and len(scratch["predictions"]) == 60
    with pytest.raises(PredictorError, match="either"):
        evaluate(space, encoded[held], y, pretrain=pretrained, hidden=8)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_are_usage_errors(space, encoded, small_fit):
    assert issubclass(PredictorError, UsageError)
    p = Predictor(space)
    with pytest.raises(PredictorError, match="not fitted"):
        p.predict_encoded(encoded[:3])
    with pytest.raises(PredictorError, match="percentages"):
        p.fit(encoded[:10], np.linspace(10, 90, 10))
    with pytest.raises(PredictorError, match="10 candidates but 9"):
        p.fit(encoded[:10], np.full(9, 0.5))
    with pytest.raises(PredictorError, match="NaN"):
        p.fit(encoded[:10], [0.5] * 9 + [float("nan")])
    with pytest.raises(PredictorError, match=r"shape \(n, 100\)"):
        small_fit.predict_encoded(encoded[:3, :50])
    with pytest.raises(PredictorError, match=r"costs must have shape \(10, 2\)"):
        p.pretrain(encoded[:10], np.ones(10))
    with pytest.raises(PredictorError, match="not pretrained"):
        p.predict_costs(encoded[:3])
    with pytest.raises(PredictorError, match="hidden"):
        Predictor(space, hidden=0)


# --------------------------------------------------------------------------- checkpoints
def test_save_load_round_trip_gives_identical_predictions(tmp_path, space, pretrained, encoded):
    y = nonlinear_target(space, encoded[:50], noise=0.01, seed=6)
    p = copy.deepcopy(pretrained).fit(encoded[:50], y, frozen_epochs=5, full_epochs=5)
    path = tmp_path / "sub" / "p.pt"
    p.save(path)
    for q in (load_surrogate(path), Predictor.load(path, space=space), load_surrogate(str(path), space="fbnetv3")):
        assert q.config == p.config and q.pretrained and q.fitted
        for a, b in zip(p.predict_encoded(encoded[100:300]), q.predict_encoded(encoded[100:300])):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(p.predict_costs(encoded[:20]), q.predict_costs(encoded[:20]))
    # plain tensors and Python values only: readable without running code
    state = torch.load(path, weights_only=True)
    assert state["format_version"] == FORMAT_VERSION
    assert state["space"]["fingerprint"] == space.fingerprint()
    assert state["space"]["encoding_schema"] == space.encoding_schema()
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind


def test_pretrained_only_predictor_round_trips(tmp_path, pretrained, encoded):
    path = tmp_path / "pretrained.pt"
    pretrained.save(path)
    q = load_surrogate(path)
    assert q.pretrained and not q.fitted
    np.testing.assert_array_equal(q.predict_costs(encoded[:20]), pretrained.predict_costs(encoded[:20]))
    with pytest.raises(PredictorError, match="not fitted"):
        q.predict_encoded(encoded[:3])


def _modified_space(change):
    doc = yaml.safe_load((recipes_dir() / "fbnetv3.yaml").read_text())
    change(doc)
    return space_from_dict(doc, "modified")


@pytest.mark.parametrize("change, mentions", [
    (lambda d: d["recipe"].__setitem__("lr", {"type": "float", "low": 1e-4, "high": 0.5, "log": True}), "'lr'"),
    (lambda d: d["arch"].__setitem__("s6_depth", {"type": "int", "low": 1, "high": 3}), "'s6_depth'"),
    (lambda d: d["deploy"].__setitem__("num_classes", 10), "network or deploy"),
])
def test_load_rejects_another_space(tmp_path, small_fit, change, mentions):
    path = tmp_path / "p.pt"
    small_fit.save(path)
    other = _modified_space(change)
    with pytest.raises(PredictorError, match="trained on space 'fbnetv3'") as err:
        Predictor.load(path, space=other)
    assert mentions in str(err.value) and "retrain" in str(err.value)


def test_load_rejects_truncated_file(tmp_path, small_fit):
    path = tmp_path / "p.pt"
    small_fit.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PredictorError, match="damaged, truncated"):
        Predictor.load(path)


def test_load_rejects_altered_weights(tmp_path, small_fit):
    path = tmp_path / "p.pt"
    small_fit.save(path)
    state = torch.load(path, weights_only=True)
    name = next(iter(state["members"][0]))
    state["members"][0][name][0, 0] += 1.0
    torch.save(state, path)
    with pytest.raises(PredictorError, match="checksum"):
        Predictor.load(path)


def test_load_rejects_other_format_versions_and_foreign_files(tmp_path, small_fit):
    path = tmp_path / "p.pt"
    small_fit.save(path)
    state = torch.load(path, weights_only=True)
    state["format_version"] = 0
    torch.save(state, path)
    with pytest.raises(PredictorError, match="format version 0.*reads version 1"):
        Predictor.load(path)
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(PredictorError, match="not a jointnas predictor"):
        Predictor.load(path)
    torch.save(np.random.default_rng(0), path)  # arbitrary pickled object: refused, not executed
    with pytest.raises(PredictorError, match="is not a jointnas checkpoint") as refused:
        Predictor.load(path)
    assert "weights_only" not in str(refused.value)  # torch's unsafe workaround is not passed on
    with pytest.raises(PredictorError, match="no predictor checkpoint"):
        Predictor.load(tmp_path / "missing.pt")
