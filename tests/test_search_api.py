"""Driving a coarse search from Python on a user's function: an evaluation budget, a clean stop,
a pool given as candidates, no result stage unless it means something, scores shown as scores."""
import re

import pytest

from jointnas import (CoarseConfig, CoarseSearch, FunctionEvaluator, Progress, StopSearch, UsageError,
                      space_from_dict)
from jointnas.coarse.summary import format_summary
from jointnas.surrogates.forest import ForestSurrogate

SPACE = {"name": "plane", "family": None,
         "arch": {"x": {"type": "int", "low": 0, "high": 9}},
         "recipe": {"y": {"type": "int", "low": 0, "high": 9}}}


def quiet():
    return Progress(bars=False, log=lambda line: None)


class Counted:
    """An objective (best at x=3, y=7; ``scale`` sets its units) that counts its calls and can
    stop the search at its ``stop_at``-th call."""

    def __init__(self, scale=1.0, stop_at=None):
        self.calls, self.scale, self.stop_at = [], scale, stop_at

    def __call__(self, candidate, report):
        self.calls.append(candidate.key())
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise StopSearch("enough for today")
        a = candidate.arch["x"] - 3
        b = candidate.recipe["y"] - 7
        return self.scale * (1.0 - (a * a + b * b) / 100)


def config(**kw):
    return CoarseConfig(**{"pool": 100, "batch": 1, "first_batch": 3, "seed": 0, "ensemble": 2, **kw})


@pytest.mark.parametrize("batch,first", [(1, 3), (4, 3), (3, 5)])
def test_a_run_with_max_trials_evaluates_exactly_that_many_candidates(tmp_path, batch, first):
    objective = Counted()
    with CoarseSearch.create(tmp_path / "run", space_from_dict(SPACE), FunctionEvaluator(objective),
                             config(max_trials=11, batch=batch, first_batch=first), progress=quiet()) as search:
        summary = search.run()
        trials = search.store.trials()
    assert len(objective.calls) == 11 and len(trials) == 11 and sum(summary["counts"].values()) == 11
    assert len(set(objective.calls)) == 11   # no candidate twice
    assert summary["config"]["iterations"] == max(t.iteration for t in trials)


def test_max_trials_below_what_the_first_fit_needs_is_refused_before_anything_is_made(tmp_path):
    with pytest.raises(UsageError, match="max_trials must be a whole number >= 3"):
        CoarseSearch.create(tmp_path / "run", space_from_dict(SPACE), FunctionEvaluator(Counted()),
                            config(max_trials=2), progress=quiet())
    assert not (tmp_path / "run").exists()


def test_stop_search_from_the_objective_ends_the_search_with_its_trials_kept_and_resumable(tmp_path):
    space, first = space_from_dict(SPACE), Counted(stop_at=7)
    lines = []
    with CoarseSearch.create(tmp_path / "run", space, FunctionEvaluator(first), config(max_trials=12),
                             progress=Progress(bars=False, log=lines.append)) as search:
        summary = search.run()   # returns: no exception reaches the caller
        done = search.store.trials("done")
    assert summary["stopped"]["reason"] == "enough for today" and len(done) == 6
    assert summary["counts"] == {"done": 6, "queued": 1}   # the stopped trial waits in the queue
    assert any("search stopped by the objective (enough for today): 6 finished" in line for line in lines)
    assert "stopped by the objective (enough for today)" in format_summary(summary)
    again = Counted()
    with CoarseSearch.open(tmp_path / "run", evaluator=FunctionEvaluator(again), progress=quiet()) as search:
        summary = search.run()
        trials = search.store.trials()
    assert summary["stopped"] is None and summary["counts"] == {"done": 12}
    assert again.calls[0] == first.calls[-1]          # the stopped candidate is evaluated first on resume
    assert len(again.calls) == 6 and len(trials) == 12  # the six kept trials are not evaluated again
    assert {t.key for t in done} <= {t.key for t in trials}


def test_a_pool_given_as_candidates_is_searched_without_costs_for_a_space_with_no_family(tmp_path):
    space = space_from_dict(SPACE)
    given = [{"arch": {"x": x}, "recipe": {"y": y}} for x in range(10) for y in range(1, 10, 2)]
    given = given + given[:5]   # repeats are searched once
    objective = Counted()
    with CoarseSearch.create(tmp_path / "run", space, FunctionEvaluator(objective),
                             config(max_trials=50, batch=5), pool=given, progress=quiet()) as search:
        summary = search.run()
        assert len(search.loop.pool) == 50 and search.config.pool == 50
    keys = {space.as_candidate(c).key() for c in given}
    assert set(objective.calls) == keys   # every candidate of the pool, each once, and nothing else
    assert summary["best"][0]["key"] == space.as_candidate({"arch": {"x": 3}, "recipe": {"y": 7}}).key()


def test_a_function_evaluator_has_no_result_stage_by_default_and_its_scores_print_as_scores(tmp_path):
    space = space_from_dict(SPACE)
    objective = Counted(scale=600.0)
    with CoarseSearch.create(tmp_path / "plain", space, FunctionEvaluator(objective), config(max_trials=8),
                             progress=quiet()) as search:
        summary = search.run()
    assert summary["config"]["final"] is False and summary["final"] is None and len(objective.calls) == 8
    asked = Counted(scale=600.0)
    with CoarseSearch.create(tmp_path / "asked", space, FunctionEvaluator(asked), config(max_trials=8, final=True),
                             progress=quiet()) as search:
        text = format_summary(search.run())
    assert len(asked.calls) == 9   # the winner once more, as asked
    result = text[text.index("result: winner"):]
    assert not re.search(r"\d\.\d\d %", result)   # no score as a percentage (the 80 % interval's level is one)
    assert "validation at the end of its schedule (epoch 1): measured 5" in result   # 5xx, not 5xx00.00 %
    header = next(line for line in text.splitlines() if "trial" in line and "key" in line)
    assert "score@1" in header and "acc" not in header


class CountingForest(ForestSurrogate):
    updates = 0

    def update(self, candidates, y, *, progress=False):
        CountingForest.updates += 1
        return super().update(candidates, y, progress=progress)


def test_refits_after_the_first_go_through_update_and_few_of_them_are_cross_validated(tmp_path):
    def make(space, *, seed, ensemble, score_bounds):
        return CountingForest(space, seed=seed)

    CountingForest.updates = 0
    with CoarseSearch.create(tmp_path / "run", space_from_dict(SPACE), FunctionEvaluator(Counted()),
                             config(max_trials=40), surrogate=make, progress=quiet()) as search:
        summary = search.run()
    evals = summary["predictor_eval"]
    assert len(evals) == 38 and CountingForest.updates == 37   # one cold fit, then one update per evaluation
    measured = [e["n_train"] for e in evals if e["k"] is not None]
    assert measured[0] == 4 and measured[-1] == 40 and len(measured) < 15
    assert all(b >= 1.25 * a for a, b in zip(measured, measured[1:-1]))
    assert all("next_batch_tau" not in e or e["next_batch_tau"] is None or -1 <= e["next_batch_tau"] <= 1
               for e in evals)


def test_a_run_on_an_evaluator_that_answers_at_once_refits_after_every_trial_unless_told_otherwise():
    from jointnas.catalog import load_space
    from jointnas.coarse.config import CoarseConfig, new_run_config
    from jointnas.evaluation.function import FunctionEvaluator
    from jointnas.evaluation.tabular import TabularEvaluator

    space = load_space("hpobench-mlp")
    table = new_run_config(None, space, TabularEvaluator("hpobench-mlp/vehicle"))
    assert (table.batch, table.explore) == (1, 0.5)
    lookup = new_run_config(None, space, FunctionEvaluator(lambda c, r: 0.5, answers_at_once=True))
    assert (lookup.batch, lookup.explore) == (1, 0.5)
    training = new_run_config(None, space, FunctionEvaluator(lambda c, r: 0.5))
    assert (training.batch, training.explore) == (6, 1.0)
    told = new_run_config(CoarseConfig(batch=4, explore=0.5), space, TabularEvaluator("hpobench-mlp/vehicle"))
    assert (told.batch, told.explore) == (4, 0.5)


def test_a_new_run_given_its_settings_as_a_mapping_gets_the_defaults_for_what_it_leaves_out():
    from jointnas.catalog import load_space
    from jointnas.coarse.config import CoarseConfig, new_run_config
    from jointnas.errors import UsageError
    from jointnas.evaluation.tabular import TabularEvaluator

    space, table = load_space("nb201"), TabularEvaluator("nb201/cifar10")
    config = new_run_config({"pool": 100, "max_trials": 10}, space, table)
    assert config.surrogate == CoarseConfig().surrogate == "forest"   # not a stored run's legacy default
    with pytest.raises(UsageError, match="unknown coarse setting.*bacth"):
        new_run_config({"bacth": 2}, space, table)
