"""AutoTrain: torchvision models train with every recipe dimension; `jointnas autotrain` runs the
coarse and fine stages over a fixed model's recipe and ends with a recipe and its train command."""
import json
import shlex

import pytest
import torch

from jointnas.cli import main

RECIPE = dict(optimizer="sgd_plain", lr=0.05, momentum=0.8, weight_decay=1e-4, batch_size=32, cutout=0.25,
              grad_clip=1.0, label_smoothing=0.1, mixup_alpha=0.2, ema=True, epochs=2, warmup_epochs=1)


def test_a_torchvision_model_trains_on_digits_with_every_new_recipe_dimension():
    from dataclasses import replace

    import torchvision

    from jointnas.autotrain import fixed_arch_space
    from jointnas.catalog import load_space
    from jointnas.evaluation.data import load_task
    from jointnas.families.torchvision import TorchvisionFamily
    from jointnas.space import Candidate
    from jointnas.evaluation.trainer import train

    base = load_space("autotrain")
    space = fixed_arch_space(base, TorchvisionFamily(), {"model": "resnet18"})
    assert set(RECIPE) == set(space.recipe) and space.arch == {}
    task = replace(load_task("digits").shrink(train=128, val=64), batch_size=64)
    result = train(Candidate({}, dict(RECIPE)), task, space=space, epochs=1, device="cpu", keep_model=True)
    assert result.status == "done", result.error
    assert len(result.curve) == 1 and 0 <= result.final_acc <= 1
    model = result.model
    assert isinstance(model, torchvision.models.ResNet)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 10


AUTOTRAIN = ["autotrain", "--arch", "mobilenet_v3_small", "--data", "digits", "--train-subset", "64", "--epochs", "1",
             "--resolution", "112", "--pool", "32", "--batch", "3", "--iterations", "2", "--population", "8",
             "--generations", "3", "--executor", "serial", "--no-progress"]


def test_autotrain_on_digits_runs_coarse_and_fine_and_ends_with_a_recipe_and_its_train_command(tmp_path, capsys):
    from jointnas.catalog import load_space
    from jointnas.store import RunStore

    run = tmp_path / "run"
    assert main(AUTOTRAIN + ["--run", str(run), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "skips proxy pretraining" in captured.err and "fine:" in captured.err
    with RunStore.open(run) as store:  # the coarse stage: both iterations trained
        assert sorted(t.iteration for t in store.trials(status="done")) == [1, 1, 1, 2, 2, 2]
        assert store.predictor_path(2) is not None
        assert store.config["surrogate"] == "forest"  # autotrain's default
    space = load_space(out["files"]["space"])
    recipe = out["recipe"]
    assert set(recipe) == set(space.recipe) | {"epochs"} and recipe["epochs"] == 1
    space.validate({}, {k: v for k, v in recipe.items() if k != "epochs"})
    assert 0.0 <= out["predicted"] <= 1.0 and out["fine"]["generations"] >= 1
    assert out["chosen_by"].startswith(("fine search's pick", "best trained recipe", "baseline ("))
    assert out["comparison"]["returned"] in ("answer", "baseline") and out["comparison"]["epochs"] == 1
    assert out["chosen_by"] in captured.err
    command = shlex.split(out["command"])
    assert command[:2] == ["jointnas", "train"] and "--candidate" in command
    assert main(command[1:]) == 0  # the printed command trains the recipe
    assert "test_acc" in capsys.readouterr().out


@pytest.mark.parametrize("arch", ["resnet19", "FBNetV3_Z", "resnet18,,mobilenet_v2", "FBNetV3_A,resnet18", ""])
def test_malformed_arch_names_exit_2_with_the_valid_ones(arch, tmp_path, capsys):
    assert main(["autotrain", "--arch", arch, "--run", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    if "," not in arch or arch.startswith("resnet18,,"):
        assert "resnet18" in err and "mobilenet_v3_small" in err and "FBNetV3_A" in err
    assert not (tmp_path / "r").exists()


def test_with_the_arch_fixed_the_predictor_ranks_recipes_from_their_features_alone():
    import math

    from jointnas.autotrain import fixed_arch_space
    from jointnas.coarse.calibration import rank_correlation
    from jointnas.catalog import load_space, make_surrogate
    from jointnas.families.torchvision import TorchvisionFamily

    space = fixed_arch_space(load_space("autotrain"), TorchvisionFamily(), {"model": "resnet18"})
    assert space.arch_width == 0
    costs = space.family.costs([{}] * 3)
    assert (costs == costs[0]).all()  # one arch: the proxies carry no signal

    def accuracy(c):  # a made-up landscape: SGD wants a high learning rate, the others a low one
        sign = 1 if c.recipe["optimizer"] in ("sgd", "sgd_plain") else -1
        return 0.5 + 0.1 * sign * math.log10(c.recipe["lr"])

    cands = space.sample(80, seed=0)
    y = [accuracy(c) for c in cands]
    surrogate = make_surrogate("mlp", space, seed=0, ensemble=3).fit(cands[:60], y[:60])
    mean, _ = surrogate.predict(cands[60:])
    assert rank_correlation(mean, y[60:]) > 0.5


def test_the_fine_pick_is_the_answer_only_when_the_predictor_ranks_held_out_recipes():
    from jointnas.autotrain import MIN_PREDICTOR_TAU, choose
    from jointnas.space import Candidate

    fine, trained = Candidate({}, {"lr": 0.3}), Candidate({}, {"lr": 0.01})
    good = [{"kendall_tau": None}, {"kendall_tau": MIN_PREDICTOR_TAU + 0.1}]
    assert choose(fine, trained, good)[0] is fine
    for evals in ([{"kendall_tau": MIN_PREDICTOR_TAU - 0.1}], [{"kendall_tau": None}], None):
        cand, why = choose(fine, trained, evals)
        assert cand is trained and "not trusted" in why
    assert choose(fine, None, None)[0] is fine


def test_a_trusted_predictor_s_pick_is_not_taken_when_it_expects_less_than_the_best_trained_recipe_measured():
    from jointnas.autotrain import MIN_PREDICTOR_TAU, choose
    from jointnas.space import Candidate

    fine, trained = Candidate({}, {"lr": 0.3}), Candidate({}, {"lr": 0.01})
    good = [{"kendall_tau": MIN_PREDICTOR_TAU + 0.1}]
    cand, why = choose(fine, trained, good, expected=0.56, measured=0.95)
    assert cand is trained and "0.560" in why and "0.950" in why
    assert choose(fine, trained, good, expected=0.97, measured=0.95)[0] is fine


def _recipe_objective(candidate, report):
    """A made-up landscape over two recipe dimensions (no training)."""
    import math

    return 0.5 + 0.1 * math.log10(candidate.recipe["lr"]) * (1 if candidate.recipe["ema"] else -1)


def test_autotrain_ranks_recipes_with_a_forest_unless_the_config_names_the_mlp(tmp_path):
    from jointnas.autotrain import autotrain, default_config, fixed_arch_space
    from jointnas.catalog import load_space
    from jointnas.evaluation.function import FunctionEvaluator
    from jointnas.execution.serial import SerialExecutor
    from jointnas.families.torchvision import TorchvisionFamily
    from jointnas.fine.problem import SearchSettings
    from jointnas.catalog import load_surrogate

    space = fixed_arch_space(load_space("autotrain"), TorchvisionFamily(), {"model": "resnet18"}, epochs=1)
    evaluator = FunctionEvaluator(_recipe_objective, score_bounds=(0.0, 1.0))
    settings = SearchSettings(population=8, generations=2, patience=2, init_best=2, seed=0)
    for name, config in (("forest", default_config(pool=32, batch=4, iterations=2, epoch_cap=1)),
                         ("mlp", default_config(pool=32, batch=4, iterations=2, epoch_cap=1, surrogate="mlp"))):
        run = tmp_path / name
        result = autotrain(run, space, evaluator, config, fine_settings=settings, executor=SerialExecutor,
                           epochs=1, log=lambda line: None)
        assert load_surrogate(run / "predictor.pt", space).kind == name
        assert result.recipe["epochs"] == 1


def test_an_unknown_surrogate_exits_2_naming_the_known_ones(tmp_path, capsys):
    assert main(["autotrain", "--arch", "resnet18", "--surrogate", "gp", "--run", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "forest" in err and "mlp" in err
    assert not (tmp_path / "r").exists()


def _default_is_best(space):
    """A landscape over the recipe whose highest point is the space's default recipe, with a
    test score beside the validation one (what an evaluator that trains reports)."""
    from jointnas.evaluation.base import Evaluator
    from jointnas.trial import TrialResult

    default = space.encode([space.candidate({}, space.default_recipe())])[0]

    class DefaultIsBest(Evaluator):
        score_bounds = (0.0, 1.0)

        def evaluate(self, candidate, space_, request, on_epoch=None):
            import numpy as np

            distance = float(np.abs(space.encode([candidate])[0] - default).sum())
            score = 0.95 - 0.05 * distance + 0.001 * request.seed
            curve = [{"epoch": e, "score": score * e / (request.epochs or 1)} for e in range(1, (request.epochs or 1) + 1)]
            extra = {"test_score": score - 0.01} if request.test else {}
            return TrialResult("done", curve, curve[-1]["score"], len(curve), 0.0, "python", extra=extra)

    return DefaultIsBest()


def _small_autotrain(run, space, evaluator, seeds=2, lines=None):
    from jointnas.autotrain import autotrain, default_config
    from jointnas.execution.serial import SerialExecutor
    from jointnas.fine.problem import SearchSettings

    config = default_config(pool=64, batch=4, iterations=2, epoch_cap=2, fidelities=[])
    settings = SearchSettings(population=8, generations=3, patience=2, init_best=2, seed=0)
    return autotrain(run, space, evaluator, config, fine_settings=settings, executor=SerialExecutor, epochs=2,
                     seeds=seeds, log=(lines.append if lines is not None else lambda line: None))


def test_the_default_recipe_is_trained_in_the_first_batch(tmp_path):
    from jointnas.autotrain import fixed_arch_space
    from jointnas.catalog import load_space
    from jointnas.families.torchvision import TorchvisionFamily
    from jointnas.store import RunStore

    space = fixed_arch_space(load_space("autotrain"), TorchvisionFamily(), {"model": "resnet18"}, epochs=2)
    _small_autotrain(tmp_path / "run", space, _default_is_best(space), seeds=0)
    default = space.candidate({}, space.default_recipe()).key()
    with RunStore.open(tmp_path / "run") as store:
        first = store.trials(iteration=1)
        assert len(first) == 4 and default in [t.candidate.key() for t in first]
        assert default not in [t.candidate.key() for t in store.trials() if t.iteration > 1]


def test_where_the_default_recipe_is_best_autotrain_returns_it_and_says_the_search_did_not_beat_it(tmp_path):
    from jointnas.autotrain import fixed_arch_space
    from jointnas.catalog import load_space
    from jointnas.families.torchvision import TorchvisionFamily

    space = fixed_arch_space(load_space("autotrain"), TorchvisionFamily(), {"model": "resnet18"}, epochs=2)
    lines = []
    result = _small_autotrain(tmp_path / "run", space, _default_is_best(space), lines=lines)
    assert {k: v for k, v in result.recipe.items() if k != "epochs"} == space.default_recipe()
    comparison = result.comparison
    if comparison["answer"]["recipe"] != comparison["baseline"]["recipe"]:  # the search found another recipe
        assert comparison["returned"] == "baseline" and comparison["validation"]["difference"] < 0
        assert [line for line in lines if "does NOT beat the baseline" in line]


def test_a_result_holds_the_baseline_and_its_test_score_and_report_shows_both(tmp_path):
    from jointnas.autotrain import fixed_arch_space
    from jointnas.catalog import load_space
    from jointnas.families.torchvision import TorchvisionFamily
    from jointnas.report import build_report

    space = fixed_arch_space(load_space("autotrain"), TorchvisionFamily(), {"model": "resnet18"}, epochs=2)
    run = tmp_path / "run"
    result = _small_autotrain(run, space, _default_is_best(space), seeds=2)
    stored = json.loads((run / "autotrain" / "result.json").read_text())["comparison"]
    assert stored == json.loads(json.dumps(result.comparison))
    assert stored["baseline"]["recipe"] == space.default_recipe() and stored["seeds"] == [0, 1]
    for who in ("answer", "baseline"):
        assert [r["test_score"] is not None for r in stored[who]["runs"]] == [True, True]
    test = stored["test"]
    assert test["difference"] == pytest.approx(test["answer"] - test["baseline"]) and test["spread"] is not None
    report = build_report(run)
    page = report.html_path.read_text()
    shown = "\n".join(report.result)
    for pct in (test["answer"], test["baseline"]):
        assert f"{100 * pct:.2f} %" in shown and f"{100 * pct:.2f} %" in page
    assert "baseline (the space's default recipe)" in shown


def test_autotrain_prints_the_named_baseline_recipe_beside_the_answer(tmp_path, capsys):
    args = AUTOTRAIN + ["--run", str(tmp_path / "run"), "--seeds", "1", "--baseline-recipe", "torchvision-reference"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "baseline (recipe torchvision-reference)" in out and "difference on test" in out
    stored = json.loads((tmp_path / "run" / "autotrain" / "result.json").read_text())["comparison"]
    assert stored["baseline"]["recipe"]["lr"] == 0.1 and stored["baseline"]["recipe"]["optimizer"] == "sgd_plain"
    assert stored["epochs"] == 1 and stored["test"]["baseline"] is not None


def test_an_unknown_baseline_recipe_exits_2_before_any_training(tmp_path, capsys):
    assert main(AUTOTRAIN + ["--run", str(tmp_path / "r"), "--baseline-recipe", "no-such-recipe"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--baseline-recipe" in err and "torchvision-reference" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("stored, resolution", [(8, 56), (28, 28), (28, 56), (32, 64)])
def test_the_autotrain_space_s_cutout_never_blanks_more_than_a_seventh_of_the_image_whatever_its_size(
        stored, resolution):
    # digits (8 px), Fashion-MNIST (28 px) and CIFAR-10 (32 px) at their training resolutions: the
    # largest cutout is 0.375 of the side (14 % of the area), not 12 stored pixels (all of a digit)
    from jointnas.catalog import load_space
    from jointnas.evaluation.batches import TensorBatches
    from jointnas.evaluation.data import TensorSplit, load_task

    largest = max(load_space("autotrain").recipe["cutout"].choices)
    split = TensorSplit(torch.full((64, 1, stored, stored), 200, dtype=torch.uint8), torch.zeros(64, dtype=torch.long))
    batches = TensorBatches(split, load_task("digits"), resolution, torch.device("cpu"), 64, True,
                            torch.Generator().manual_seed(0), cutout=largest)
    x, _ = next(iter(batches))
    blanked = (x == 0).all(dim=1).float().mean(dim=(1, 2))
    assert 0 < blanked.max() <= 0.375 ** 2 + 2 / resolution  # one rounded pixel row at most
    assert blanked.max() >= 0.375 ** 2 - 2 / resolution      # and the square is there, at full size somewhere
