"""Fine search: every individual within budget, reproducible, better than where it started and
than random sampling; genetic operators; export; the `jointnas fine` command."""
import json
import runpy

import numpy as np
import pytest
import yaml

from jointnas import Candidate, count_cost, count_cost_fvcore, sample_pool
from jointnas.budget import Budget, cheapest_arch
from jointnas.cli import main
from jointnas.evolution import Variation
from jointnas.export import export_candidates
from jointnas.fine import SearchSettings, fine_search, random_feasible
from jointnas.cost import count_costs

BUDGET = Budget(600_000_000)
# Small enough for seconds per search, large enough to show real improvement.
QUICK = dict(population=40, generations=40, patience=8)


def synthetic_accuracy(space, candidates):
    """A target with the structure real accuracies have: more FLOPs help, the recipe has an optimum."""
    costs = count_costs(candidates, space)
    z = (np.log(costs[:, 0]) - np.log(3e8)) / np.log(4.0)
    lr = np.log10([c.recipe["lr"] for c in candidates])
    epochs = np.array([c.recipe["epochs"] for c in candidates])
    ema = np.array([c.recipe["ema"] for c in candidates], dtype=float)
    return np.clip(0.55 + 0.25 * np.tanh(z) - 0.06 * (lr + 1.5) ** 2 + 0.004 * epochs + 0.02 * ema, 0.0, 1.0)


@pytest.fixture(scope="module")
def predictor(space):
    from jointnas.predictor import Predictor

    pool = sample_pool(space, 600, seed=21)
    p = Predictor(space, hidden=48, ensemble=3, seed=0)
    p.pretrain(pool, count_costs(pool, space), epochs=4)
    return p.fit(pool[:240], synthetic_accuracy(space, pool[:240]), frozen_epochs=8, full_epochs=8)


@pytest.fixture(scope="module")
def predictor_file(predictor, tmp_path_factory):
    path = tmp_path_factory.mktemp("pred") / "p.pt"
    predictor.save(path)
    return path


@pytest.fixture(scope="module")
def result(predictor, space):
    return fine_search(predictor, space, BUDGET, settings=SearchSettings(seed=3, **QUICK))


# ------------------------------------------------------------------ the search
def test_every_individual_fits_the_budget(result, space):
    assert len(result.population) == QUICK["population"] and len(result.top) == 5
    for s in result.population + result.top:
        space.validate(s.candidate.arch, s.candidate.recipe)
        cost = count_cost(s.candidate.arch, space)
        assert (s.flops, s.params) == (cost.flops, cost.params)
        assert s.flops <= BUDGET.max_flops


def test_returned_candidates_fit_the_budget_by_fvcore_itself(result, space):
    for s in result.top[:3]:
        ref = count_cost_fvcore(s.candidate.arch, space)
        assert ref.flops == s.flops and ref.flops <= BUDGET.max_flops


def test_search_improves_on_its_start_and_on_random_sampling(result, predictor, space):
    assert result.best.score > result.initial_best.score + 0.03
    history = [h["best_score"] for h in result.history]
    assert history == sorted(history)  # elitist: the best never gets worse
    # As many random feasible candidates, scored by the same predictor, do worse.
    sample = random_feasible(Variation(space, BUDGET), result.scored, np.random.default_rng(0), repair=False)
    assert len(sample) == result.scored
    mean, _ = predictor.predict([c for c, _ in sample])
    assert result.best.score > mean.max() + 0.01


def test_same_seed_same_result_other_seed_other_result(result, predictor, space):
    again = fine_search(predictor, space, BUDGET, settings=SearchSettings(seed=3, **QUICK))
    assert [s.candidate.key() for s in again.top] == [s.candidate.key() for s in result.top]
    assert [s.score for s in again.top] == [s.score for s in result.top]
    assert again.history == result.history
    other = fine_search(predictor, space, BUDGET, settings=SearchSettings(seed=4, **QUICK))
    assert [s.candidate.key() for s in other.top] != [s.candidate.key() for s in result.top]


def test_top_is_distinct_architectures_best_first(result):
    assert len({s.candidate.arch_key() for s in result.top}) == len(result.top)
    scores = [s.score for s in result.top]
    assert scores == sorted(scores, reverse=True) and scores[0] == result.best.score


def test_params_budget_and_risk_averse_score(predictor, space):
    least = count_cost(cheapest_arch(space), space)
    budget = Budget(600_000_000, least.params + 1_500_000)
    r = fine_search(predictor, space, budget, settings=SearchSettings(seed=0, risk=2.0, population=20,
                                                                       generations=5))
    for s in r.population + r.top:
        assert s.params <= budget.max_params and s.flops <= budget.max_flops
        assert s.score == pytest.approx(s.mean - 2.0 * s.std)


def test_stops_when_progress_stalls(predictor, space):
    r = fine_search(predictor, space, BUDGET, settings=SearchSettings(seed=1, population=20, generations=500,
                                                                      patience=3, tolerance=1.0))
    assert r.generations == 3 and r.stop_reason.startswith("converged")
    rates = [h["mutation_rate"] for h in r.history]
    assert rates[0] < rates[1] < rates[2]  # stalls raise the mutation rate


def test_measured_seeds_start_the_population_infeasible_ones_skipped(predictor, space):
    pool = sample_pool(space, 200, seed=8)
    costs = count_costs(pool, space)
    feasible = [c for c, f in zip(pool, costs[:, 0]) if f <= BUDGET.max_flops][:3]
    over = [c for c, f in zip(pool, costs[:, 0]) if f > BUDGET.max_flops][:2]
    assert len(feasible) == 3 and len(over) == 2
    r = fine_search(predictor, space, BUDGET, seeds=over[:1] + feasible + over[1:],
                    settings=SearchSettings(seed=0, population=12, generations=0))
    assert r.seeded == 3
    keys = {s.candidate.key() for s in r.population}
    assert {c.key() for c in feasible} <= keys and not {c.key() for c in over} & keys


def test_run_seeds_ranked_at_the_calibrated_epoch_not_by_final_accuracy(space, tmp_path):
    from jointnas.cli.fine import _measured_seeds
    from jointnas.store import RunStore

    pool = sample_pool(space, 3, seed=2)
    store = RunStore.create(tmp_path / "run", {})
    ids = store.add_trials(1, [(i, c, 1, 1) for i, c in enumerate(pool)])
    curves = {ids[0]: [0.30, 0.50, 0.95],  # full-length run: best final accuracy, worst at epoch 2
              ids[1]: [0.60, 0.80],        # early-stopped at the calibrated epoch
              ids[2]: [0.40, 0.70]}
    for trial_id, accs in curves.items():
        curve = [{"epoch": e + 1, "val_acc": a} for e, a in enumerate(accs)]
        store.record_result(trial_id, {"status": "done", "curve": curve, "final_acc": accs[-1]})
    assert [c.key() for c in _measured_seeds(store)] == [pool[0].key(), pool[1].key(), pool[2].key()]
    store.save_result("calibration", {"metric": "kendall_tau", "chosen_epoch": 2})
    assert [c.key() for c in _measured_seeds(store)] == [pool[1].key(), pool[2].key(), pool[0].key()]


# ------------------------------------------------------------------ operators
def test_mutation_crossover_and_repair(space):
    var = Variation(space, BUDGET)
    rng = np.random.default_rng(0)
    a, b = sample_pool(space, 2, seed=1)
    for _ in range(50):
        child = var.mutate(a, 0.05, rng)
        space.validate(child.arch, child.recipe)
        assert child.key() != a.key()
        mixed = var.crossover(a, b, rng)
        for part in ("arch", "recipe"):
            for k, v in getattr(mixed, part).items():
                assert v in (getattr(a, part)[k], getattr(b, part)[k])
    big = Candidate({k: (d.choices[-1] if hasattr(d, "choices") else not k.endswith("trim_pad"))
                     for k, d in space.arch.items()}, space.default_recipe())
    cost = var.cost(big)
    assert cost.flops > 4 * BUDGET.max_flops
    fixed, fixed_cost = var.repair(big, cost, rng)
    assert fixed_cost == count_cost(fixed.arch, space) and fixed_cost.flops <= BUDGET.max_flops
    assert fixed.recipe == big.recipe


# ------------------------------------------------------------------ export
def test_export_round_trips_and_builds_the_counted_model(result, space, tmp_path):
    dirs = export_candidates(result.top[:2], tmp_path / "out", space, context={"seed": 3})
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [c["dir"] for c in index["candidates"]] == [d.name for d in dirs]
    s = result.top[0]
    cand = Candidate.from_json((dirs[0] / "candidate.json").read_text())
    assert cand.key() == s.candidate.key()
    assert cand.meta["predicted_acc"] == s.mean and cand.meta["flops"] == s.flops and cand.meta["rank"] == 1
    assert yaml.safe_load((dirs[0] / "recipe.yaml").read_text()) == s.candidate.recipe
    build = json.loads((dirs[0] / "build.json").read_text())
    assert build["arch"] == s.candidate.arch and build["num_classes"] == space.family.deploy.num_classes
    module = runpy.run_path(str(dirs[0] / "build_model.py"))
    model = module["build"]().eval()
    expected = space.family.build(s.candidate.arch, num_classes=space.family.deploy.num_classes,
                                  in_channels=space.family.deploy.in_channels,
                                  input_size=s.candidate.arch["resolution"], trim_pad=True)
    assert [tuple(p.shape) for p in model.parameters()] == [tuple(p.shape) for p in expected.parameters()]
    assert sum(p.numel() for p in model.parameters()) == s.params


# ------------------------------------------------------------------ command line
def _run(capsys, *argv):
    code = main(["fine", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv,needle", [
    (["--budget", "lots"], "accepted forms: 600MFLOPs, 600M, 0.6GFLOPs, 6e8"),
    (["--budget", "100MFLOPs"], "below the cheapest candidate"),
    (["--budget", "600M", "--max-params", "2M"], "below the smallest candidate"),
    (["--budget", "600M", "--max-params", "many"], "accepted forms: 5M"),
    (["--budget", "600M", "--predictor", "no/such/file.pt"], "no such file"),
    (["--budget", "600M", "--torchscript"], "--torchscript goes with --export"),
])
def test_cli_bad_input_exits_2_with_one_line(capsys, space, predictor_file, argv, needle):
    if "--predictor" not in argv:
        argv += ["--predictor", str(predictor_file)]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1
    if "cheapest" in needle:
        least = count_cost(cheapest_arch(space), space)
        assert f"{least.flops / 1e6:.1f} MFLOPs" in err


def test_cli_with_predictor_file_json_out_and_export(capsys, predictor_file, tmp_path):
    code, out, err = _run(capsys, "--budget", "0.6GFLOPs", "--predictor", str(predictor_file), "--json",
                          "--population", "16", "--generations", "3", "--top-k", "2", "--out",
                          str(tmp_path / "r.json"), "--export", str(tmp_path / "x"))
    assert code == 0, err
    payload = json.loads(out)
    assert payload == json.loads((tmp_path / "r.json").read_text())
    assert payload["budget"]["max_flops"] == 600_000_000 and len(payload["top"]) == 2
    assert all(t["flops"] <= 600_000_000 for t in payload["top"])
    assert payload["predictor"] == str(predictor_file)
    assert len(list((tmp_path / "x").glob("rank*/candidate.json"))) == 2


def test_cli_table_from_a_run_saves_the_result_into_it(capsys, predictor, space, tmp_path, monkeypatch):
    from jointnas.store import RunStore

    run = tmp_path / "runs" / "coarse-1"
    pool = sample_pool(space, 60, seed=2)
    costs = count_costs(pool, space)
    accs = synthetic_accuracy(space, pool)
    with RunStore.create(run, {"space": "fbnetv3", "seed": 0}) as store:
        ids = store.add_trials(1, [(i, c, int(f), int(p)) for i, (c, (f, p)) in enumerate(zip(pool, costs))])
        for i, acc in zip(ids, accs):
            store.record_result(i, {"status": "done", "curve": [], "final_acc": float(acc), "epochs_run": 1})
        path = store.predictor_file(1)
        predictor.save(path)
        store.register_predictor(1, path)
    monkeypatch.chdir(tmp_path)  # --run defaults to the latest run under ./runs
    code, out, err = _run(capsys, "--budget", "600M", "--population", "12", "--generations", "2")
    assert code == 0, err
    assert "pred acc" in out and "MFLOPs" in out and "one multiply-add = one flop" in out
    with RunStore.open(run) as store:
        saved = store.results("fine")
    assert len(saved) == 1 and saved[0]["run"] == str(run.relative_to(tmp_path))
    n_feasible = int((costs[:, 0] <= 600_000_000).sum())
    assert saved[0]["measured_seeds"] == min(n_feasible, SearchSettings.init_best) > 0


def test_cli_without_a_run_uses_the_shipped_predictor(capsys, tmp_path, monkeypatch):
    from jointnas.cli.fine import shipped_predictor

    path = shipped_predictor("fbnetv3")
    if path is None:
        pytest.skip("no shipped predictor in predictors/")
    monkeypatch.chdir(tmp_path)  # no runs/ here
    code, out, err = _run(capsys, "--budget", "600MFLOPs", "--population", "12", "--generations", "2", "--json")
    assert code == 0, err
    assert "shipped predictor" in err and json.loads(out)["predictor"] == str(path)
