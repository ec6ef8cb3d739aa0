"""JointNASSampler through Optuna's public API: studies, trials, their params and states."""
import math
import subprocess
import sys
import time

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from jointnas.errors import UsageError  # noqa: E402
from jointnas.integrations.optuna import POINT_ATTR, JointNASSampler  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

CHOICES = ["relu", 3, 0.5, None, True]


def every_kind(trial):
    """One parameter of each kind Optuna has; the value peaks inside each range."""
    x = trial.suggest_float("x", -5.0, 5.0)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    drop = trial.suggest_float("drop", 0.0, 0.5, step=0.05)
    layers = trial.suggest_int("layers", 1, 8)
    width = trial.suggest_int("width", 16, 256, step=16)
    batch = trial.suggest_int("batch", 8, 1024, log=True)
    act = trial.suggest_categorical("act", CHOICES)
    return (-(x - 1.3) ** 2 - (math.log10(lr) + 3) ** 2 - 10 * (drop - 0.2) ** 2 - 0.1 * (layers - 5) ** 2
            - ((width - 128) / 64) ** 2 - (math.log2(batch) - 6) ** 2 / 4 + (act is None))


def test_every_distribution_kind_is_sampled_inside_its_distribution():
    study = optuna.create_study(direction="maximize", sampler=JointNASSampler(seed=0, n_startup_trials=5))
    study.optimize(every_kind, n_trials=30)
    trials = study.trials
    assert len(trials) == 30
    for t in trials:
        p = t.params
        assert -5.0 <= p["x"] <= 5.0 and 1e-5 <= p["lr"] <= 1e-1
        assert 0.0 <= p["drop"] <= 0.5 and abs(p["drop"] / 0.05 - round(p["drop"] / 0.05)) < 1e-8
        assert isinstance(p["layers"], int) and 1 <= p["layers"] <= 8
        assert isinstance(p["width"], int) and 16 <= p["width"] <= 256 and p["width"] % 16 == 0
        assert isinstance(p["batch"], int) and 8 <= p["batch"] <= 1024
        assert any(p["act"] is c or (p["act"] == c and type(p["act"]) is type(c)) for c in CHOICES)
    # every trial after the first (which comes before any search space is known) is the sampler's choice
    assert all(POINT_ATTR in t.system_attrs for t in trials[1:])
    assert POINT_ATTR not in trials[0].system_attrs
    assert len({tuple(sorted(t.params.items(), key=str)) for t in trials}) == 30


def test_failed_and_pruned_trials_do_not_break_the_study_and_are_not_suggested_again():
    def objective(trial):
        x = trial.suggest_int("x", 0, 30)
        y = trial.suggest_categorical("y", ["a", "b"])
        if x % 7 == 3:
            raise ValueError("this configuration crashes")
        value = -abs(x - 20) + (y == "b")
        if x % 5 == 1:
            trial.report(value - 5, step=1)
            raise optuna.TrialPruned()
        if x % 5 == 2:
            raise optuna.TrialPruned()   # pruned before it reported anything
        return value

    study = optuna.create_study(direction="maximize", sampler=JointNASSampler(seed=3, n_startup_trials=4))
    study.optimize(objective, n_trials=40, catch=(ValueError,))
    states = {s: [t for t in study.trials if t.state == s] for s in optuna.trial.TrialState}
    assert states[optuna.trial.TrialState.FAIL] and states[optuna.trial.TrialState.PRUNED]
    assert len(study.trials) == 40
    points = [(t.params["x"], t.params["y"]) for t in study.trials if "y" in t.params]
    assert len(points) == len(set(points))
    assert study.best_params == {"x": 20, "y": "b"}


def test_two_jobs_never_get_the_same_point():
    def objective(trial):
        a, b, c = (trial.suggest_int(n, 0, 4) for n in "abc")
        time.sleep(0.003)  # long enough for the other thread to ask while this trial runs
        return -(a - 3) ** 2 - (b - 1) ** 2 - (c - 2) ** 2

    study = optuna.create_study(direction="maximize", sampler=JointNASSampler(seed=0, n_startup_trials=4))
    # two distinct first points: with nothing finished, both threads' first trials are sampled independently
    study.enqueue_trial({"a": 0, "b": 0, "c": 0})
    study.enqueue_trial({"a": 4, "b": 4, "c": 4})
    study.optimize(objective, n_trials=60, n_jobs=2)
    points = [tuple(t.params[n] for n in "abc") for t in study.trials]
    assert len(points) == 60
    assert len(set(points)) == 60


def test_the_same_seed_gives_the_same_trials_and_another_seed_others():
    def run(seed):
        study = optuna.create_study(direction="maximize", sampler=JointNASSampler(seed=seed, n_startup_trials=4))
        study.optimize(every_kind, n_trials=15)
        return [t.params for t in study.trials]

    first = run(7)
    assert run(7) == first
    assert run(8) != first


def sphere(trial):
    """Minimum 0 at (0.7, -0.3, 0.2, 0.5) and choice 'c'."""
    xs = [trial.suggest_float(f"x{i}", -2.0, 2.0) for i in range(4)]
    c = trial.suggest_categorical("c", ["a", "b", "c", "d"])
    return sum((x - m) ** 2 for x, m in zip(xs, (0.7, -0.3, 0.2, 0.5))) + (0.0 if c == "c" else 1.0)


def test_it_finds_a_clear_minimum_far_sooner_than_random_search():
    def best(sampler):
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.optimize(sphere, n_trials=30)
        return study.best_value

    seeds = range(5)
    ours = np.median([best(JointNASSampler(seed=s)) for s in seeds])
    random = np.median([best(optuna.samplers.RandomSampler(seed=s)) for s in seeds])
    assert ours < 0.5 * random, (ours, random)


def test_a_study_goes_on_with_another_sampler():
    study = optuna.create_study(sampler=JointNASSampler(seed=0, n_startup_trials=3))
    study.optimize(sphere, n_trials=8)
    study.sampler = optuna.samplers.TPESampler(seed=0)
    study.optimize(sphere, n_trials=4)
    assert len(study.trials) == 12
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_multi_objective_studies_and_bad_settings_are_refused():
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=JointNASSampler(seed=0))
    with pytest.raises(UsageError, match="single-objective"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1)
    with pytest.raises(UsageError, match="n_startup_trials"):
        JointNASSampler(n_startup_trials=1)
    with pytest.raises(UsageError, match="unknown surrogate 'gbm'"):
        JointNASSampler(surrogate="gbm")
    with pytest.raises(UsageError, match="unknown batch policy"):
        JointNASSampler(policy="greedy")


def test_importing_jointnas_does_not_import_optuna():
    code = "import sys, jointnas, jointnas.integrations; print('optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ask_and_tell_with_fixed_distributions_go_on_after_the_sampler_is_pickled():
    # what Ray Tune's OptunaSearch does: ask(fixed_distributions=...), tell, and pickle its searcher
    import pickle

    space = {"x": optuna.distributions.FloatDistribution(-2.0, 2.0),
             "k": optuna.distributions.IntDistribution(1, 64, log=True),
             "c": optuna.distributions.CategoricalDistribution(["a", "b", "c"])}
    study = optuna.create_study(direction="minimize", sampler=JointNASSampler(seed=0, n_startup_trials=3))
    for i in range(16):
        if i == 8:
            study.sampler = pickle.loads(pickle.dumps(study.sampler))
        trial = study.ask(fixed_distributions=space)
        p = trial.params
        study.tell(trial, (p["x"] - 0.5) ** 2 + abs(math.log2(p["k"]) - 3) + (p["c"] != "b"))
    assert len(study.trials) == 16
    assert all(POINT_ATTR in t.system_attrs for t in study.trials[1:])
