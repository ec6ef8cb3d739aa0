"""The open toolkit's seams, each running real code: a torchvision family searched by the
built-in trainer, a user's objective from Python and from the command line, the in-process
executor against worker processes, a space without a family, and bad input as one line."""
import json

import numpy as np
import pytest
import yaml

import toy_objective
from jointnas import CoarseConfig, CoarseSearch, FunctionEvaluator, SerialExecutor, TrainEvaluator
from jointnas.catalog import load_space, space_from_dict
from jointnas.cli import main
from jointnas.coarse.config import run_space
from jointnas.coarse.search import Progress
from jointnas.errors import SpaceError, UsageError
from jointnas.store import RunStore
from jointnas.evaluation.base import TrialRequest

TRAINER_RECIPE = {  # what the trainer acts on for these models (no dropout/drop path: shufflenet takes neither)
    "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
    "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-4, "log": True},
    "label_smoothing": {"type": "float", "low": 0.0, "high": 0.1},
    "mixup_alpha": {"type": "float", "low": 0.0, "high": 0.2},
    "ema": {"type": "bool"},
    "epochs": {"type": "int", "low": 1, "high": 2},
    "warmup_epochs": {"type": "int", "low": 0, "high": 1},
}
MODELS = ["mobilenet_v3_small", "shufflenet_v2_x0_5"]
SMALL = dict(pool=16, batch=3, iterations=2, epoch_cap=None, ensemble=2, seed=0)


def quiet(lines=None):
    return Progress(bars=False, log=(lines.append if lines is not None else (lambda line: None)))


def fvcore_flops(name, resolution=224):
    """fvcore run here, on torchvision's own model (1000 classes, 3 channels)."""
    import torch
    from fvcore.nn import FlopCountAnalysis
    from torchvision import models

    model = models.get_model(name, weights=None).eval()
    with torch.no_grad():
        a = FlopCountAnalysis(model, torch.zeros(1, 3, resolution, resolution))
        return int(a.unsupported_ops_warnings(False).uncalled_modules_warnings(False).total())


# ---------------------------------------------------------------------- (a) torchvision family
@pytest.fixture(scope="module")
def torchvision_run(tmp_path_factory):
    space = space_from_dict({"name": "tv-digits", "family": "torchvision",
                             "arch": {"model": {"type": "categorical", "choices": MODELS}},
                             "recipe": TRAINER_RECIPE})
    run = tmp_path_factory.mktemp("tv") / "run"
    search = CoarseSearch.create(run, space, TrainEvaluator("digits", train_subset=64, device="cpu"),
                                 CoarseConfig(**SMALL), executor=SerialExecutor(), progress=quiet())
    with search:
        summary = search.run()
    return run, space, summary


def test_a_torchvision_choice_of_models_is_searched_and_costed_by_fvcore(torchvision_run):
    run, space, summary = torchvision_run
    expected = {name: fvcore_flops(name) for name in MODELS}
    with RunStore.open(run) as store:
        trials = store.trials()
        assert len(trials) == 2 * SMALL["batch"] and all(t.status == "done" for t in trials)
        for t in trials:
            assert t.flops == expected[t.candidate.arch["model"]]
            assert all(0.0 <= e["score"] <= 1.0 for e in t.curve)
    assert summary["best"] and all(b["flops"] in expected.values() for b in summary["best"])
    assert (run / "predictor.pt").is_file()


def test_the_torchvision_runs_predictor_drives_the_fine_search(torchvision_run):
    from jointnas.budget import Budget
    from jointnas.fine.problem import SearchSettings
    from jointnas.fine.search import fine_search
    from jointnas.catalog import load_surrogate

    run, space, _ = torchvision_run
    predictor = load_surrogate(run / "predictor.pt", space)
    cheap = min(fvcore_flops(name) for name in MODELS)
    result = fine_search(predictor, space, Budget(cheap), settings=SearchSettings(population=8, generations=3,
                                                                                   top_k=2, seed=0))
    assert result.top and all(s.candidate.arch["model"] == "shufflenet_v2_x0_5" for s in result.top)
    assert all(s.flops == cheap for s in result.top)


def test_torchvision_space_files_refuse_unknown_models_and_arch_keys():
    base = {"name": "t", "family": "torchvision", "recipe": TRAINER_RECIPE}
    with pytest.raises(SpaceError, match="not among torchvision's classification models"):
        space_from_dict(dict(base, arch={"model": {"type": "categorical", "choices": ["resnet18", "nonet"]}}))
    with pytest.raises(SpaceError, match="arch: unknown dimension"):
        space_from_dict(dict(base, arch={"model": {"type": "categorical", "choices": MODELS},
                                         "width": {"type": "int", "low": 1, "high": 2}}))
    fixed = space_from_dict(dict(base, family={"name": "torchvision", "model": "resnet18"}))
    assert fixed.arch == {} and fixed.family.cost({}).flops == fvcore_flops("resnet18")


def test_the_trainer_refuses_recipe_dims_it_does_not_act_on_naming_file_and_key(tmp_path):
    path = tmp_path / "extra.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "family": {"name": "torchvision", "model": "resnet18"},
                                    "recipe": dict(TRAINER_RECIPE, nesterov={"type": "bool"})}))
    with pytest.raises(SpaceError, match=rf"{path}: recipe.nesterov: the trainer does not act on"):
        CoarseSearch.create(tmp_path / "run", load_space(path), TrainEvaluator("digits"), CoarseConfig(**SMALL))
    assert not (tmp_path / "run").exists()
    # A model regulariser the family's models do not take is refused the same way.
    path.write_text(yaml.safe_dump({"name": "x", "family": {"name": "torchvision", "model": "resnet18"},
                                    "recipe": dict(TRAINER_RECIPE, dropout={"type": "float", "low": 0.0,
                                                                            "high": 0.2})}))
    with pytest.raises(SpaceError, match=r"recipe.dropout: the torchvision family's models do not take it"):
        TrainEvaluator("digits").check_space(load_space(path))
    mobilenet = space_from_dict({"name": "m", "family": {"name": "torchvision", "model": "mobilenet_v3_small"},
                                 "recipe": dict(TRAINER_RECIPE, dropout={"type": "float", "low": 0.0, "high": 0.2})})
    TrainEvaluator("digits").check_space(mobilenet)  # MobileNet takes dropout


# ---------------------------------------------------------------------- (b) a user's objective
def test_a_python_objective_drives_a_coarse_run_and_resumes(tmp_path):
    space = space_from_dict(toy_objective.SPACE)
    lines = []
    run = tmp_path / "run"
    config = CoarseConfig(pool=64, batch=4, iterations=3, epoch_cap=None, ensemble=2, seed=1)
    with CoarseSearch.create(run, space, FunctionEvaluator(toy_objective.objective), config,
                             progress=quiet(lines)) as search:
        summary = search.run()
    assert any("not pretrained on proxies" in line and "no model family" in line for line in lines)
    with RunStore.open(run) as store:
        trials = store.trials()
        assert len(trials) == 12 and all(t.status == "done" for t in trials)
        cal = store.results("calibration")[-1]
        assert cal["reached"] and cal["chosen_epoch"] == 1   # the known function ranks alike at every epoch
        for t in trials:
            best = toy_objective.peak(t.candidate.arch, t.candidate.recipe)
            epochs = t.candidate.recipe["epochs"] if t.iteration == 1 else 1
            assert [e["score"] for e in t.curve] == pytest.approx([best * e / (e + 1) for e in range(1, epochs + 1)])
        assert run_space(store).to_dict() == space.to_dict() and store.config["evaluator"] == "toy_objective:objective"
    assert summary["counts"] == {"done": 12}
    # Reopened from the directory alone (the objective is found by name), extended by one iteration.
    with CoarseSearch.open(run, progress=quiet()) as search:
        search.store.update_config(iterations=4)
        search.config.iterations = 4
        assert search.run()["counts"] == {"done": 16}


def test_the_objective_flag_runs_the_same_search_and_the_report_shows_its_curves(tmp_path, capsys, monkeypatch):
    from jointnas.report import build_report

    space_file = tmp_path / "toy.yaml"
    space_file.write_text(yaml.safe_dump(toy_objective.SPACE))
    run = tmp_path / "run"
    argv = ["coarse", "--objective", "toy_objective:objective", "--space", str(space_file), "--run", str(run),
            "--pool", "64", "--batch", "4", "--iterations", "2", "--ensemble", "2", "--seed", "1",
            "--executor", "serial", "--no-progress", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out)  # stdout is the JSON alone: log lines go to stderr
    assert summary["counts"] == {"done": 8} and summary["config"]["evaluator"] == "toy_objective:objective"
    with RunStore.open(run) as store:
        assert all(len(t.curve) >= 1 and "score" in t.curve[0] for t in store.trials())
    report = build_report(run, tmp_path / "report.html")
    html = report.html_path.read_text()
    assert "learning_curves" in report.plots and "toy_objective:objective" in html
    # --budget on a space without a family: one line, exit 2, nothing written.
    other = tmp_path / "other"
    assert main(["coarse", "--objective", "toy_objective:objective", "--space", str(space_file), "--run", str(other),
                 "--budget", "100M", "--no-progress"]) == 2
    assert "has no model family" in capsys.readouterr().err and not other.exists()


def test_a_failing_objective_is_a_failed_trial_not_a_crash():
    def broken(candidate, report):
        report(1, 0.5)
        raise RuntimeError("out of ideas")

    space = space_from_dict(toy_objective.SPACE)
    result = FunctionEvaluator(broken).evaluate(space.sample(1)[0], space, TrialRequest(None, 0))
    assert result.status == "failed" and "out of ideas" in result.error and result.curve[0]["score"] == 0.5
    nan = FunctionEvaluator(lambda c, r: float("nan")).evaluate(space.sample(1)[0], space, TrialRequest(None, 0))
    assert nan.status == "diverged"


# ---------------------------------------------------------------------- (c) executors
def _run_with(tmp_path, name, executor):
    space = space_from_dict(toy_objective.SPACE)
    config = CoarseConfig(pool=32, batch=3, iterations=2, ensemble=2, seed=2)
    with CoarseSearch.create(tmp_path / name, space, FunctionEvaluator(toy_objective.objective), config,
                             executor=executor, progress=quiet()) as search:
        search.run()
    with RunStore.open(tmp_path / name) as store:
        return [(t.iteration, t.key, t.status, t.epochs_run, t.target_epochs, t.attempts,
                 [e["score"] for e in t.curve]) for t in store.trials()], store.counts()


def test_serial_and_worker_executors_run_the_same_search_with_the_same_accounting(tmp_path):
    from jointnas.execution.local import LocalExecutor

    serial = _run_with(tmp_path, "serial", SerialExecutor())
    local = _run_with(tmp_path, "local", lambda: LocalExecutor(workers=2, device="cpu"))
    assert serial == local and serial[1] == {"done": 6}


# ---------------------------------------------------------------------- spaces and bad input
def test_a_space_round_trips_through_its_dict(space):
    again = space_from_dict(space.to_dict())
    assert again.fingerprint() == space.fingerprint() and again.presets.keys() == space.presets.keys()
    assert [c.key() for c in again.sample(8, seed=3)] == [c.key() for c in space.sample(8, seed=3)]


def test_a_budget_on_a_space_without_family_is_a_usage_error(tmp_path):
    space = space_from_dict(toy_objective.SPACE)
    with pytest.raises(UsageError, match="no model family"):
        CoarseSearch.create(tmp_path / "r", space, FunctionEvaluator(toy_objective.objective),
                            CoarseConfig(budget=10**8))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("make_argv, needle", [
    (lambda d: ["describe", "--space", str(_binary(d))], "is not a text file"),
    (lambda d: ["coarse", "--run", "/proc/jointnas-x", "--no-progress", "--pool", "8", "--iterations", "1"], "cannot make a run"),
    (lambda d: ["coarse", "--objective", "no_such_module:f", "--run", str(d / "r")], "cannot import module"),
    (lambda d: ["coarse", "--surrogate", "nope", "--run", str(d / "r")], "unknown surrogate 'nope'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make_argv, needle):
    assert main(make_argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def _binary(d):
    path = d / "space.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    return path


def test_a_run_in_a_read_only_directory_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    import errno
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root writes through file modes: refuse as a read-only mount would

        def read_only_mkdir(path, *a, **k):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

        monkeypatch.setattr(os, "mkdir", read_only_mkdir)
    assert main(["coarse", "--run", str(ro / "run"), "--no-progress", "--pool", "8", "--iterations", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot make a run" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (ro / "run").exists()


# ---------------------------------------------------------------------- surrogates and old runs
def test_checkpoints_name_their_kind_and_load_through_the_catalog(tmp_path):
    from jointnas import Predictor
    from jointnas.catalog import load_surrogate
    from jointnas.surrogates.checkpoint import checkpoint_kind

    space = space_from_dict(toy_objective.SPACE)
    pool = space.sample(12, seed=0)
    y = [toy_objective.peak(c.arch, c.recipe) for c in pool]
    p = Predictor(space, ensemble=2, score_bounds=None).fit(pool, y, frozen_epochs=2, full_epochs=2)
    p.save(tmp_path / "p.pt")
    assert checkpoint_kind(tmp_path / "p.pt") == "mlp"
    back = load_surrogate(tmp_path / "p.pt", space)
    assert back.kind == "mlp" and np.allclose(back.predict(pool)[0], p.predict(pool)[0])
    # A checkpoint written before kinds existed is an mlp one.
    shipped = sorted((__import__("pathlib").Path(__file__).resolve().parents[1] / "predictors").glob("*.pt"))
    assert shipped and checkpoint_kind(shipped[0]) == "mlp"


def test_a_run_config_from_before_evaluators_is_read_as_a_trainer_run():
    cfg = CoarseConfig.from_dict({"space": "fbnetv3", "data": "digits", "data_root": None, "train_subset": 256,
                                  "num_classes": 10, "pool": 64, "seed": 0, "budget": None, "max_params": None,
                                  "batch": 4, "iterations": 2, "epoch_cap": None, "rank_threshold": 0.9,
                                  "explore": 1.0, "ensemble": 2})
    assert cfg.evaluator == "train:digits" and cfg.evaluator_options == {"data_root": None, "train_subset": 256}
    assert cfg.diverged_score == pytest.approx(0.1) and cfg.surrogate == "mlp" and cfg.policy == "ucb"
