"""Fine search: every individual within budget, reproducible, better than where it started and
than random search on the same predictor; the array form of candidates and of their cost;
diverse top-k with ties broken by spread and FLOPs; export; the `jointnas fine` command and its
output hygiene."""
import dataclasses
import json
import os
import runpy
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from jointnas import Candidate, count_cost, count_cost_fvcore, sample_pool
from jointnas.budget import Budget, cheapest_arch
from jointnas.cli import main
from jointnas.export import export_candidates
from jointnas.families.cost import count_costs
from jointnas.families.mbconv_cost_arrays import mbconv_costs
from jointnas.fine.base import Strategy
from jointnas.fine.problem import Board, FineProblem, SearchSettings, finish
from jointnas.fine.sampling import random_rows
from jointnas.fine.search import fine_search
from jointnas.errors import UsageError
from jointnas.fine.random import RandomSearch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
    from jointnas.surrogates import Predictor

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
    problem = FineProblem(space, predictor, BUDGET)
    rows, _ = random_rows(problem, result.scored, np.random.default_rng(0), Board(problem), repair=False)
    assert len(rows) == result.scored
    mean, _ = predictor.predict(problem.genome.decode(rows))
    assert result.best.score > mean.max() + 0.01


def test_same_seed_same_result_other_seed_other_result(result, predictor, space):
    again = fine_search(predictor, space, BUDGET, settings=SearchSettings(seed=3, **QUICK))
    assert [s.candidate.key() for s in again.top] == [s.candidate.key() for s in result.top]
    assert [s.score for s in again.top] == [s.score for s in result.top]
    assert again.history == result.history
    other = fine_search(predictor, space, BUDGET, settings=SearchSettings(seed=4, **QUICK))
    assert [s.candidate.key() for s in other.top] != [s.candidate.key() for s in result.top]


def test_top_is_diverse_best_first(result, space):
    problem = FineProblem(space, None, BUDGET)
    rows, ok = problem.genome.from_candidates([s.candidate for s in result.top])
    assert ok.all()
    for i in range(len(rows)):
        others = np.delete(rows, i, axis=0)
        assert problem.genome.distance(others, rows[i]).min() >= 0.1 * problem.genome.width
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


def test_evaluation_limit_stops_the_search(predictor, space):
    r = fine_search(predictor, space, BUDGET, settings=SearchSettings(seed=1, population=20, evaluations=50))
    assert 50 <= r.scored < 50 + 20 and r.stop_reason.startswith("evaluation limit")


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


# ------------------------------------------------------------------ candidates as arrays
def test_rows_encode_decode_and_price_like_the_candidates_they_stand_for(space):
    problem = FineProblem(space, None, BUDGET)
    genome = problem.genome
    rows = genome.random(2000, np.random.default_rng(0))
    cands = genome.decode(rows)
    for c in cands[:50]:
        space.validate(c.arch, c.recipe)
    assert np.array_equal(genome.encode(rows), space.encode(cands))
    back, ok = genome.from_candidates(cands)
    assert ok.all() and np.array_equal(back, rows)
    assert np.array_equal(problem.costs(rows), count_costs(cands, space))


def test_vectorised_mbconv_cost_equals_the_scalar_closed_form_and_fvcore(space):
    archs = [c.arch for c in sample_pool(space, 3000, seed=4)]
    # beyond the space: even kernels (their k // 2 padding grows the map) and an empty stage
    rng = np.random.default_rng(1)
    for a in archs[:300]:
        a = dict(a)
        for i in rng.choice(7, size=2, replace=False):
            a[f"s{i}_kernel_rep"], a[f"s{i}_kernel"] = 4, int(rng.choice([2, 3, 4]))
        a["s4_depth"] = 0
        archs.append(a)
    archs.append(dict(archs[1], s4_depth=0))  # buildable (even kernels are not: no residual add)
    net, deploy = space.family.network, space.family.deploy
    vector = mbconv_costs(archs, net, deploy.in_channels, deploy.num_classes)
    scalar = np.array([[count_cost(a, space).flops, count_cost(a, space).params] for a in archs])
    assert np.array_equal(vector, scalar)
    for a, row in zip(archs[:1] + archs[-1:], vector[:1].tolist() + vector[-1:].tolist()):
        ref = count_cost_fvcore(a, space)
        assert [ref.flops, ref.params] == row


def test_vectorised_mbconv_cost_refuses_an_input_too_small_for_an_arch(space):
    net, deploy = space.family.network, space.family.deploy
    arch = dict(sample_pool(space, 1, seed=0)[0].arch)
    fine_arch = dict(arch, resolution=64)
    # a 1x1 map after the stem, and trimmed padding: a 3x3 depthwise conv would get no pixel
    tiny = dict(arch, resolution=2, **{f"s{i}_{f}": v for i in range(7) for f, v in (("trim_pad", True), ("kernel", 3))})
    assert mbconv_costs([fine_arch], net, deploy.in_channels, deploy.num_classes).shape == (1, 2)
    with pytest.raises(UsageError, match="too small"):
        mbconv_costs([fine_arch, tiny], net, deploy.in_channels, deploy.num_classes)


def test_mutation_crossover_and_repair(space):
    problem = FineProblem(space, None, BUDGET)
    genome = problem.genome
    rng = np.random.default_rng(0)
    a, b = genome.random(2, rng)
    for _ in range(20):
        children = genome.mutate(np.repeat(a[None], 10, axis=0), 0.05, rng)
        assert (children != a).any(1).all()
        for c in genome.decode(children):
            space.validate(c.arch, c.recipe)
        mixed = genome.crossover(np.repeat(a[None], 10, axis=0), np.repeat(b[None], 10, axis=0), rng)
        assert ((mixed == a) | (mixed == b)).all()
    big = Candidate({k: (d.choices[-1] if hasattr(d, "choices") else not k.endswith("trim_pad"))
                     for k, d in space.arch.items()}, space.default_recipe())
    rows, _ = genome.from_candidates([big] * 4)
    costs = problem.costs(rows)
    assert costs[0, 0] > 4 * BUDGET.max_flops
    fixed, fixed_costs = problem.repair(rows, costs, rng)
    for c, cost in zip(genome.decode(fixed), fixed_costs):
        assert [count_cost(c.arch, space).flops, count_cost(c.arch, space).params] == cost.tolist()
        assert cost[0] <= BUDGET.max_flops and c.recipe == big.recipe
    assert len({r.tobytes() for r in fixed}) > 1  # random steps, not one fixed path


# ------------------------------------------------------------------ random search, the baseline
def test_the_ga_scores_at_least_as_well_as_random_search_with_as_many_evaluations(predictor, space, result):
    baseline = fine_search(predictor, space, BUDGET, settings=SearchSettings(seed=3, evaluations=result.scored),
                           strategy=RandomSearch(SearchSettings(evaluations=result.scored)))
    assert baseline.strategy == "random" and baseline.scored == result.scored
    for s in baseline.top:
        assert s.flops <= BUDGET.max_flops and s.flops == count_cost(s.candidate.arch, space).flops
    assert result.best.score >= baseline.best.score + 0.01


# ------------------------------------------------------------------ top-k: choices, not clones
class CeilingSurrogate:
    """A saturated predictor, like one fitted on digits: every candidate at 100 %; its spread
    grows with the learning rate's distance from 1e-2 (a known function of the candidate)."""

    def __init__(self, space):
        self.lr = [c["offset"] for c in space.encoding_schema() if c["name"] == "lr"][0]

    def predict_encoded(self, x):
        return np.ones(len(x)), 0.05 * np.abs(x[:, self.lr] - 0.5).round(1)


def test_ties_at_the_ceiling_go_to_lower_spread_then_fewer_flops_and_are_said(space, capsys):
    r = fine_search(CeilingSurrogate(space), space, BUDGET, settings=SearchSettings(seed=0, population=40,
                                                                                     generations=10, top_k=5))
    assert all(s.mean == 1.0 for s in r.top)
    keys = [(s.std, s.flops) for s in r.top]
    assert keys == sorted(keys)
    assert r.top[0].std == min(r.board.stats[:, 2])  # the least spread scored
    assert "5 of the top 5 tie" in r.ties() and "lower spread, then fewer FLOPs" in r.ties()
    # the cheapest at the least spread among everything scored comes first
    least = r.board.stats[r.board.stats[:, 2] == r.top[0].std]
    assert r.top[0].flops == least[:, 3].min()


def test_min_distance_keeps_near_clones_out_of_the_top(space, predictor):
    settings = SearchSettings(seed=2, population=40, generations=15, top_k=5)
    clones = fine_search(predictor, space, BUDGET, settings=SearchSettings(**{**settings.__dict__, "min_distance": 0}))
    choices = fine_search(predictor, space, BUDGET, settings=SearchSettings(**{**settings.__dict__,
                                                                               "min_distance": 0.2}))
    genome = FineProblem(space, None, BUDGET).genome

    def closest(res):
        rows, _ = genome.from_candidates([s.candidate for s in res.top])
        return min(genome.distance(np.delete(rows, i, 0), rows[i]).min() for i in range(len(rows)))

    assert closest(clones) < 0.2 * genome.width <= closest(choices)
    assert len(choices.top) == 5 and choices.top[0].score == clones.top[0].score


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
            store.record_result(i, {"status": "done", "curve": [{"epoch": 1, "val_acc": float(acc)}],
                                    "final_acc": float(acc), "epochs_run": 1})
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


# ------------------------------------------------------------------ output hygiene
def test_cli_random_strategy_beside_the_ga_on_the_same_predictor(capsys, predictor_file):
    common = ["--budget", "600M", "--predictor", str(predictor_file), "--json", "--seed", "3"]
    code, out, err = _run(capsys, *common, "--population", "40", "--generations", "40", "--patience", "8")
    assert code == 0, err
    ga = json.loads(out)
    code, out, err = _run(capsys, *common, "--strategy", "random", "--evaluations", str(ga["search"]["scored"]))
    assert code == 0, err
    rnd = json.loads(out)
    assert (ga["strategy"], rnd["strategy"]) == ("evolution", "random")
    assert rnd["search"]["scored"] == ga["search"]["scored"]
    assert ga["search"]["best_score"] >= rnd["search"]["best_score"]
    assert all(t["flops"] <= 600_000_000 for t in rnd["top"]) and len(rnd["top"]) == 5


def test_cli_draws_no_progress_bar_when_stderr_is_not_a_terminal(predictor_file, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jointnas", "fine", "--budget", "600M", "--predictor",
                           str(predictor_file), "--population", "20", "--generations", "5", "--json"],
                          capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "gen/s" not in proc.stderr and "it/s" not in proc.stderr
    json.loads(proc.stdout)  # stdout is the JSON document and nothing else


class FirstDraws(Strategy):
    """A strategy from outside the package: one batch of random rows within the budget."""

    name = "first-draws"
    label = "one batch of random draws"

    def search(self, problem, seeds=(), *, seed=0, top_k=5, progress=False):
        settings = dataclasses.replace(self.settings, seed=seed, top_k=top_k)
        start, board = time.perf_counter(), Board(problem)
        rows, costs = random_rows(problem, settings.population, np.random.default_rng(seed), board)
        board.score(rows, costs)
        return finish(problem, board, strategy=self.name, settings=settings, start=start, initial_best=board.best(),
                      history=[], generations=1, stop_reason="one batch drawn", seeded=0)


def test_cli_names_a_registered_strategy_by_its_own_label(capsys, predictor_file):
    from jointnas import catalog

    catalog.register(catalog.STRATEGIES, FirstDraws.name, FirstDraws)
    try:
        with pytest.raises(SystemExit):
            main(["fine", "--help"])
        assert FirstDraws.name in capsys.readouterr().out.split("--strategy")[-1]
        code, out, err = _run(capsys, "--budget", "600M", "--predictor", str(predictor_file), "--strategy",
                              FirstDraws.name, "--population", "20")
    finally:
        catalog.STRATEGIES.pop(FirstDraws.name)
    assert code == 0, err
    assert f"fine search ({FirstDraws.name})" in out and f"{FirstDraws.label}, 20 candidates scored" in out
    assert "random search" not in out and "generations" not in out


@pytest.mark.parametrize("flag,value", [("--population", "1000000000"), ("--population", "1e9"),
                                        ("--generations", "1000000000"), ("--evaluations", "1e12"),
                                        ("--top-k", "100000000"), ("--min-distance", "2")])
def test_cli_refuses_absurd_sizes_with_one_line(capsys, predictor_file, flag, value):
    with pytest.raises(SystemExit) as exit_:
        main(["fine", "--budget", "600M", "--predictor", str(predictor_file), flag, value])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out == ""
    assert flag in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("case", ["out_is_a_folder", "out_under_a_file", "export_is_a_file", "export_under_a_file",
                                  "out_in_proc"])
def test_cli_refuses_unusable_output_paths_before_searching(capsys, predictor_file, tmp_path, monkeypatch, case):
    import jointnas.fine.search

    monkeypatch.setattr(jointnas.fine.search, "fine_search", lambda *a, **k: pytest.fail("searched before refusing"))
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    flag, path = {"out_is_a_folder": ("--out", tmp_path), "out_under_a_file": ("--out", a_file / "r.json"),
                  "export_is_a_file": ("--export", a_file), "export_under_a_file": ("--export", a_file / "dir"),
                  "out_in_proc": ("--out", "/proc/no/such/r.json")}[case]
    before = sorted(tmp_path.rglob("*"))
    code, out, err = _run(capsys, "--budget", "600M", "--predictor", str(predictor_file), flag, str(path))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert flag in err and str(path) in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


# ------------------------------------------------------------------ spaces of other families
class PeakSurrogate:
    """A known function of the toy space's encoding: the objective's peak at x = 0.3, y = 0.7."""

    def predict_encoded(self, x):
        return 1.0 - (x[:, 0] - 0.3) ** 2 - (x[:, 1] - 0.7) ** 2, np.zeros(len(x))


def test_a_space_without_family_is_searched_without_a_budget():
    import toy_objective
    from jointnas.catalog import space_from_dict

    space = space_from_dict(toy_objective.SPACE)
    r = fine_search(PeakSurrogate(), space, None, settings=SearchSettings(seed=0, population=40, generations=30))
    best = r.top[0].candidate
    assert abs(best.arch["x"] - 0.3) < 0.05 and abs(best.recipe["y"] - 0.7) < 0.05
    assert r.best.score > r.initial_best.score and all(s.flops is None for s in r.top)
    assert r.to_dict()["budget"] is None
    with pytest.raises(UsageError, match="no model family"):
        fine_search(PeakSurrogate(), space, BUDGET, settings=SearchSettings(population=8, generations=1))


def test_cli_fine_on_a_space_without_family_needs_no_budget_and_refuses_one(capsys, tmp_path):
    import toy_objective
    from jointnas.catalog import space_from_dict
    from jointnas.surrogates import Predictor

    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_objective.SPACE, sort_keys=False))
    space = space_from_dict(toy_objective.SPACE, str(path))
    pool = space.sample(40, seed=0)
    peak = [toy_objective.peak(c.arch, c.recipe) for c in pool]
    p = Predictor(space, hidden=16, ensemble=2, seed=0).fit(pool, peak, frozen_epochs=5, full_epochs=5)
    p.save(tmp_path / "p.pt")
    argv = ["--predictor", str(tmp_path / "p.pt"), "--space", str(path), "--population", "20", "--generations", "5"]
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["budget"] is None and payload["top"][0]["flops"] is None
    code, out, err = _run(capsys, *argv, "--budget", "600M")
    assert code == 2 and out == "" and "no model family" in err and len(err.strip().splitlines()) == 1
    code, out, err = _run(capsys, *argv)
    assert code == 0 and "no budget" in out


def test_fine_prices_a_torchvision_space_with_the_familys_own_costs():
    from jointnas.catalog import space_from_dict

    space = space_from_dict({"name": "tv", "family": "torchvision",
                             "arch": {"model": {"type": "categorical", "choices": ["mobilenet_v3_small",
                                                                                   "shufflenet_v2_x0_5"]}},
                             "recipe": {"lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
                                        "epochs": {"type": "int", "low": 1, "high": 5}}})
    costs = {m: space.family.cost({"model": m}) for m in space.arch["model"].choices}
    cheap = min(costs.values(), key=lambda c: c.flops)

    class LrSurrogate:  # prefers the larger model and lr near 0.03, so the budget must bind
        def predict_encoded(self, x):
            return 0.5 + 0.2 * x[:, 0] - (x[:, 2] - 0.5) ** 2, np.zeros(len(x))

    r = fine_search(LrSurrogate(), space, Budget(cheap.flops), settings=SearchSettings(seed=0, population=12,
                                                                                        generations=5, top_k=2))
    assert r.top and all((s.flops, s.params) == (cheap.flops, cheap.params) for s in r.top)
    assert {s.candidate.arch["model"] for s in r.top} == {min(costs, key=lambda m: costs[m].flops)}


def test_cli_fine_imports_neither_torch_nor_scikit_learn_nor_the_coarse_stage(predictor_file, tmp_path):
    """Start-up time: a fine search from a checkpoint needs none of these (torch alone is 2-3 s)."""
    unused = ('torch', 'torchvision', 'sklearn', 'jointnas.coarse.search', 'jointnas.store.run_store', 'jointnas.execution.local')
    code = ("import sys; from jointnas.cli import main; "
            f"main(['fine', '--budget', '600M', '--predictor', {str(predictor_file)!r}, '--population', '8', "
            "'--generations', '1', '--json']); "
            f"sys.stderr.write(repr(sorted(m for m in {unused!r} if m in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().endswith("[]"), proc.stderr


class SavedPeak(PeakSurrogate):
    """A surrogate of another kind than the MLP ensemble, read back through the catalog."""

    kind = "test-peak"

    def __init__(self, space):
        self.space = space

    @classmethod
    def load(cls, path, space):
        import torch

        from jointnas.catalog import load_space

        state = torch.load(path, weights_only=True)
        return cls(load_space(space or state["space"]))


def test_cli_fine_scores_with_any_surrogate_kind_the_catalog_loads(capsys, tmp_path, monkeypatch):
    import toy_objective
    import torch

    from jointnas import catalog

    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_objective.SPACE, sort_keys=False))
    torch.save({"kind": SavedPeak.kind, "space": str(path)}, tmp_path / "peak.pt")
    monkeypatch.setitem(catalog.SURROGATE_LOADERS, SavedPeak.kind, SavedPeak.load)
    code, out, err = _run(capsys, "--predictor", str(tmp_path / "peak.pt"), "--space", str(path), "--json",
                          "--population", "40", "--generations", "30")
    assert code == 0, err
    best = json.loads(out)["top"][0]["candidate"]
    assert abs(best["arch"]["x"] - 0.3) < 0.05 and abs(best["recipe"]["y"] - 0.7) < 0.05
