"""The Pareto fine stage: a non-dominated front whose costs are the exact count, spanning the space
from its cheapest arch, better than random sampling at every budget, reproducible; the
`jointnas fine --pareto` command's table, JSON, plot and export, and its refusals."""
import argparse
import json
import os

import numpy as np
import pytest
import yaml

from jointnas import count_cost, count_cost_fvcore
from jointnas.budget import Budget, cheapest_arch
from jointnas.cli import main
from jointnas.cli.train import load_candidate
from jointnas.errors import UsageError
from jointnas import pareto_search
from jointnas.fine.pareto import front_ranks, hypervolume, nondominated
from jointnas.fine.problem import Board, FineProblem, SearchSettings
from jointnas.fine.sampling import random_rows
from jointnas.io import FLOPS_NOTE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, "predictors", "fbnetv3-digits.pt")
QUICK = dict(population=60, generations=25, patience=25, top_k=7)


class GrowingSurrogate:
    """A known function of the encoding with the shape real accuracies have: it grows (saturating)
    with the arch's encoded sizes, so with FLOPs, and has an optimum in the learning rate; its
    spread grows with the distance from that optimum."""

    def __init__(self, space):
        schema = space.encoding_schema()
        self.sizes = [c["offset"] for c in schema if c["part"] == "arch" and c["kind"] == "int"]
        self.lr = [c["offset"] for c in schema if c["name"] == "lr"][0]

    def predict_encoded(self, x):
        size = x[:, self.sizes].mean(1)
        off = np.abs(x[:, self.lr] - 0.5)
        return 0.5 + 0.4 * np.tanh(2.5 * size) - 0.2 * off ** 2, 0.01 + 0.05 * off


@pytest.fixture(scope="module")
def result(space):
    return pareto_search(GrowingSurrogate(space), space, settings=SearchSettings(seed=0, **QUICK))


def _dominated(a, b) -> bool:
    """Whether ``b`` dominates ``a``: no more FLOPs, no lower score, better in one."""
    return b.flops <= a.flops and b.score >= a.score and (b.flops < a.flops or b.score > a.score)


def test_front_is_non_dominated_by_predicted_score_and_exact_flops(result, space):
    front = result.front
    assert len(front) >= 10 and len(result.members) == 7
    assert all(not _dominated(a, b) for a in front for b in front if a is not b)
    assert [s.flops for s in front] == sorted(s.flops for s in front)
    assert all(s.candidate.key() in {f.candidate.key() for f in front} for s in result.members)


def test_every_reported_cost_is_the_exact_count(result, space):
    for s in result.front:
        exact = count_cost(s.candidate, space)
        assert (s.flops, s.params) == (exact.flops, exact.params)
    for s in (result.members[0], result.members[-1]):  # and fvcore itself, on the family's two ends
        ref = count_cost_fvcore(s.candidate.arch, space)
        assert (s.flops, s.params) == (ref.flops, ref.params)


def test_front_starts_at_the_cheapest_arch_and_members_spread_along_it(result, space):
    cheapest = count_cost(cheapest_arch(space), space).flops
    flops = [s.flops for s in result.members]
    assert flops[0] == result.front[0].flops == cheapest
    assert flops[-1] == result.front[-1].flops and flops[-1] > 2 * cheapest
    steps = np.diff(np.log(flops))
    assert (steps > 0).all() and steps.max() < 3 * np.log(flops[-1] / flops[0]) / len(steps)


def test_front_beats_random_sampling_within_each_budget_with_as_many_evaluations(result, space):
    """Five budgets along the front, each given a fifth of the front's evaluations of random
    candidates drawn within it: the front's best under each budget scores higher."""
    surrogate = GrowingSurrogate(space)
    for budget in np.geomspace(result.front[0].flops * 1.2, result.front[-1].flops, 5):
        problem = FineProblem(space, surrogate, Budget(int(budget)))
        G, costs = random_rows(problem, result.scored // 5, np.random.default_rng(1), Board(problem))
        _, _, score = problem.predict(G, costs)
        assert len(G) == result.scored // 5 and (costs[:, 0] <= budget).all()
        assert result.best_under(budget).score >= score.max() + 0.005, budget


def test_same_seed_same_front_other_seed_other_front(result, space):
    again = pareto_search(GrowingSurrogate(space), space, settings=SearchSettings(seed=0, **QUICK))
    other = pareto_search(GrowingSurrogate(space), space, settings=SearchSettings(seed=1, **QUICK))
    keys = lambda r: [s.candidate.key() for s in r.front]  # noqa: E731
    assert keys(again) == keys(result) and keys(other) != keys(result)


def test_params_front_under_a_flops_budget(space):
    budget = Budget(500_000_000)
    r = pareto_search(GrowingSurrogate(space), space, objective="params", budget=budget,
                      settings=SearchSettings(seed=0, population=40, generations=10, top_k=4))
    assert all(s.flops <= budget.max_flops for s in r.front)
    assert all(not (b.params <= a.params and b.score >= a.score and (b.params < a.params or b.score > a.score))
               for a in r.front for b in r.front if a is not b)
    assert [s.params for s in r.front] == sorted(s.params for s in r.front)
    assert r.to_dict()["objective"] == "params" and len(r.to_dict()["members"]) == len(r.members) <= 4


def test_non_domination_ranks_and_hypervolume_on_known_points():
    cost = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 1.0])
    score = np.array([0.5, 0.7, 0.6, 0.6, 0.9, 0.5])
    assert list(nondominated(cost, score)) == [0, 1, 4]
    # 5 repeats 0, so comes after it; 3 is beaten by 2, which 1 beats
    assert list(front_ranks(cost, score)) == [0, 0, 1, 2, 0, 1]
    # a score of 0.5 over the whole log box, then 1.0 from its middle: 0.75 of the box
    assert hypervolume(np.array([1.0, 10.0]), np.array([0.5, 1.0]), 1.0, 100.0) == pytest.approx(0.75)


def test_a_space_without_family_has_no_front():
    import toy_objective
    from jointnas.catalog import space_from_dict

    space = space_from_dict(toy_objective.SPACE)
    with pytest.raises(UsageError, match="no model family"):
        pareto_search(lambda x: x, space)


# ------------------------------------------------------------------ command line
def _run(capsys, *argv):
    code = main(["fine", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_pareto_prints_the_table_writes_json_plot_and_members(capsys, tmp_path):
    code, out, err = _run(capsys, "--pareto", "--predictor", SHIPPED, "--population", "30", "--generations", "5",
                          "--out", str(tmp_path / "front.json"), "--export", str(tmp_path / "family"))
    assert code == 0, err
    assert FLOPS_NOTE in out and "member" in out and "MFLOPs" in out and "± spread" in out
    payload = json.loads((tmp_path / "front.json").read_text())
    assert payload["objective"] == "flops" and payload["flops_counting"] == FLOPS_NOTE
    members = payload["members"]
    assert members and [m["name"] for m in members][0] == "A"
    for rank, m in enumerate(members, 1):
        assert m["key"] in out and f"{m['flops'] / 1e6:.1f}" in out
        # what `jointnas train --candidate` reads: the member itself, in its space
        path = tmp_path / "family" / f"rank{rank}-{m['key']}" / "candidate.json"
        cand, space, _ = load_candidate(argparse.Namespace(preset=None, candidate=path, space=None))
        assert cand.key() == m["key"] and count_cost(cand, space).flops == m["flops"]
    pytest.importorskip("matplotlib")
    assert (tmp_path / "front-front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_pareto_json_against_params(capsys):
    code, out, err = _run(capsys, "--pareto", "params", "--predictor", SHIPPED, "--population", "20",
                          "--generations", "2", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["objective"] == "params" and payload["front"] and "no plot drawn" in err


def test_cli_pareto_refuses_another_strategy_with_one_line(capsys):
    code, out, err = _run(capsys, "--pareto", "--strategy", "random", "--predictor", SHIPPED)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--strategy" in err


def test_cli_pareto_refuses_a_space_without_family_with_one_line(capsys, tmp_path):
    import toy_objective
    from jointnas.catalog import space_from_dict
    from jointnas.surrogates import Predictor

    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_objective.SPACE, sort_keys=False))
    space = space_from_dict(toy_objective.SPACE, str(path))
    pool = space.sample(20, seed=0)
    Predictor(space, hidden=8, ensemble=2, seed=0).fit(pool, [0.5] * 20, frozen_epochs=1, full_epochs=1).save(
        tmp_path / "p.pt")
    before = sorted(tmp_path.rglob("*"))
    code, out, err = _run(capsys, "--pareto", "--predictor", str(tmp_path / "p.pt"), "--space", str(path),
                          "--out", str(tmp_path / "r.json"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "no model family" in err
    assert sorted(tmp_path.rglob("*")) == before


def test_cli_pareto_from_a_run_seeds_from_it_and_saves_the_front_and_plot_into_it(capsys, space, tmp_path):
    import shutil

    from jointnas import sample_pool
    from jointnas.families.cost import count_costs
    from jointnas.store import RunStore

    run = tmp_path / "runs" / "coarse-1"
    pool = sample_pool(space, 30, seed=2)
    costs = count_costs(pool, space)
    with RunStore.create(run, {"space": "fbnetv3", "seed": 0}) as store:
        ids = store.add_trials(1, [(i, c, int(f), int(p)) for i, (c, (f, p)) in enumerate(zip(pool, costs))])
        for k, i in enumerate(ids):
            acc = 0.5 + 0.01 * k
            store.record_result(i, {"status": "done", "curve": [{"epoch": 1, "val_acc": acc}], "final_acc": acc,
                                    "epochs_run": 1})
        store.predictor_file(1).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHIPPED, store.predictor_file(1))
        store.register_predictor(1, store.predictor_file(1))
    code, out, err = _run(capsys, "--pareto", "--run", str(run), "--population", "30", "--generations", "3")
    assert code == 0, err
    assert "member" in out and "of the run's measured candidates seeded" in out
    with RunStore.open(run) as store:
        saved = store.results("fine-pareto")
    assert len(saved) == 1 and saved[0]["measured_seeds"] == SearchSettings.init_best and saved[0]["members"]
    pytest.importorskip("matplotlib")
    assert (run / "pareto-front.png").is_file() and str(run / "pareto-front.png") in err
