"""`jointnas train`: the like-for-like honest check, saved weights, clean output, early refusals."""
import json
import sys
from pathlib import Path

import pytest
import torch

from jointnas.budget import cheapest_arch
from jointnas.space import Candidate
from jointnas.cli import main
from jointnas.evaluation.data import load_task
from jointnas.catalog import load_trained
from jointnas.evaluation.saved_model import save_trained
from jointnas.coarse.target import Target, compare, format_check
from jointnas.catalog import load_space
from jointnas.evaluation.trainer import train

@pytest.fixture(scope="module")
def quick(space):
    """The cheapest arch with a 6-epoch recipe (only 1-2 epochs of it are trained here)."""
    return space.candidate(cheapest_arch(space), dict(space.default_recipe(), epochs=6))


def _write(tmp_path, cand, name="candidate.json"):
    path = tmp_path / name
    path.write_text(cand.to_json())
    return path



# --------------------------------------------------------------------------- like for like
def test_the_honest_check_measures_validation_accuracy_at_the_predicted_epoch_and_subset(quick, tmp_path, capsys):
    target = Target(data="digits", epoch=1, epoch_cap=3, train_subset=48, seed=0)
    cand = Candidate(quick.arch, quick.recipe, quick.space, meta={"predicted_acc": 0.5, "predicted_std": 0.1,
                                                                  "target": target.to_dict()})
    path = _write(tmp_path, cand)
    # No --train-subset or --seed: the measurement takes the prediction's; two epochs run.
    assert main(["train", "--candidate", str(path), "--epochs", "2", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    check = row["honest_check"]
    assert row["train_subset"] == 48 and row["seed"] == 0 and len(row["curve"]) == 2
    assert check["compared"] and check["epoch"] == 1
    assert check["measured"] == row["curve"][0]["val_acc"]  # epoch 1 of the run, not its last epoch
    assert check["difference"] == pytest.approx(row["curve"][0]["val_acc"] - 0.5)
    assert row["test_acc"] is not None  # the later figure, reported on its own
    assert main(["train", "--candidate", str(path), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith("honest check")]
    assert len(lines) == 1 and "val accuracy after epoch 1 of the recipe's 6-epoch schedule" in lines[0]
    assert "first 48 training images" in lines[0] and "test_acc" not in lines[0]
    assert "stopped after 2 of the schedule's 6 epochs: final val_acc" in out and "test_acc" in out


def test_a_measurement_made_another_way_is_not_compared():
    curve = [{"epoch": 1, "val_acc": 0.4}, {"epoch": 2, "val_acc": 0.6}]
    meta = {"predicted_acc": 0.7, "target": Target("digits", epoch=2, train_subset=100, seed=1).to_dict()}
    same = Target("digits", train_subset=100, seed=1)
    assert compare(meta, curve, 6, same)["measured"] == 0.6
    for other, word in [(Target("digits", train_subset=100, seed=0), "seed"),
                        (Target("digits", seed=1), "train_subset"),
                        (Target("fashion-mnist", train_subset=100, seed=1), "data")]:
        check = compare(meta, curve, 6, other)
        assert not check["compared"] and word in check["reason"]
        assert "not compared" in format_check(check)
    assert "stopped after 1 epoch" in compare(meta, curve[:1], 6, same)["reason"]
    assert "does not say what its prediction means" in compare({"predicted_acc": 0.7}, curve, 6, same)["reason"]
    # A recipe shorter than the predicted epoch is measured at its own last epoch.
    assert compare(dict(meta, target=Target("digits", epoch=5).to_dict()), curve, 2,
                   Target("digits"))["measured"] == 0.6


# --------------------------------------------------------------------------- saved weights
def test_saved_weights_reload_into_the_built_model_with_identical_outputs(quick, space, tmp_path):
    task = load_task("digits").shrink(train=48)
    result = train(quick, task, epochs=1, keep_model=True, space=load_space(quick.space))
    assert result.status == "done", result.error
    save_trained(tmp_path / "saved", quick, result, result.model, space, num_classes=task.num_classes,
                 in_channels=task.in_channels)
    state = torch.load(tmp_path / "saved" / "weights.pt", weights_only=True)
    assert set(state) == set(result.model.state_dict())
    model, cand = load_trained(tmp_path / "saved")
    assert cand == quick
    trained = result.model.eval().to(memory_format=torch.contiguous_format)  # trained channels-last
    x = torch.randn(4, task.in_channels, result.resolution, result.resolution)
    with torch.no_grad():
        assert torch.equal(model(x), trained(x))


def test_train_save_writes_weights_candidate_recipe_and_curve(quick, tmp_path, capsys):
    path = _write(tmp_path, quick)
    out_dir = tmp_path / "out" / "model"
    assert main(["train", "--candidate", str(path), "--train-subset", "48", "--epochs", "1", "--save",
                 str(out_dir), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["saved"] == str(out_dir)
    assert sorted(p.name for p in out_dir.iterdir()) == ["candidate.json", "curve.json", "model.json",
                                                        "recipe.yaml", "weights.pt"]
    curve = json.loads((out_dir / "curve.json").read_text())
    assert curve["curve"] == row["curve"] and curve["training"]["train_subset"] == 48
    model, cand = load_trained(out_dir)
    assert cand == quick and sum(p.numel() for p in model.parameters()) > 0


def test_exported_onnx_model_computes_what_the_torch_model_does(space, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    from jointnas.export import export_candidates
    from jointnas.fine.problem import Scored

    arch = dict(cheapest_arch(space), resolution=space.arch["resolution"].low)
    cand = space.candidate(arch, space.default_recipe())
    torch.manual_seed(0)  # the exported (untrained) weights are the initial ones of this seed
    dirs = export_candidates([Scored(cand, 0.5, 0.1, 0.5, 1, 1)], tmp_path, space, onnx=True,
                             context={"target": None})
    graph = onnx.load(str(dirs[0] / "model.onnx"))
    onnx.checker.check_model(graph)
    torch.manual_seed(0)
    deploy = space.family.deploy
    model = space.family.build(arch, num_classes=deploy.num_classes, in_channels=deploy.in_channels,
                               input_size=arch["resolution"], trim_pad=True).eval()
    x = torch.randn(2, 3, arch["resolution"], arch["resolution"])  # a batch of 2: the batch size is free
    got = ReferenceEvaluator(graph).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (2, deploy.num_classes)
    assert abs(got - expected).max() < 1e-3 * max(1.0, abs(expected).max())


# --------------------------------------------------------------------------- output
def test_train_draws_no_progress_bar_when_stderr_is_not_a_terminal(quick, tmp_path, capsys):
    path = _write(tmp_path, quick)
    assert not sys.stderr.isatty()  # pytest's capture, as a log file or a pipe would be
    assert main(["train", "--candidate", str(path), "--train-subset", "48", "--epochs", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out)["status"] == "done"


def test_max_train_is_a_deprecated_name_of_train_subset(quick, tmp_path, capsys):
    path = _write(tmp_path, quick)
    assert main(["train", "--candidate", str(path), "--max-train", "48", "--epochs", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["train_subset"] == 48 and "use --train-subset" in captured.err


# --------------------------------------------------------------------------- early refusals
def test_a_negative_seed_is_refused(refused):
    refused(["train", "--preset", "FBNetV3_A", "--seed", "-1"], "--seed")


def test_an_unwritable_save_directory_is_refused_before_training(tmp_path, refused):
    (tmp_path / "file").write_text("x")
    refused(["train", "--preset", "FBNetV3_A", "--save", str(tmp_path / "file" / "model")],
                    "is a file")
    refused(["train", "--preset", "FBNetV3_A", "--save", str(tmp_path / "file")], "is a file")


def test_a_candidate_of_another_space_is_refused(quick, tmp_path, refused):
    path = _write(tmp_path, Candidate(quick.arch, quick.recipe, space="nb201"))
    refused(["train", "--candidate", str(path), "--space", "fbnetv3"], "belongs to space 'nb201'")


def test_an_image_folder_with_one_class_is_refused(tmp_path, refused):
    from PIL import Image

    (tmp_path / "only").mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8)).save(tmp_path / "only" / f"{i}.png")
    refused(["train", "--preset", "FBNetV3_A", "--data", f"imagefolder:{tmp_path}"],
                    "at least two")


def test_a_failed_download_leaves_no_empty_cache_folder(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    from jointnas.errors import UsageError

    def offline(root, train, download):
        Path(root, "cifar-10-batches-py").mkdir(parents=True, exist_ok=True)
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="network is unreachable"):
        load_task("cifar10", download=True)
    assert not (tmp_path / "data").exists()


def test_exported_candidates_say_what_their_prediction_means(quick, space, tmp_path):
    from jointnas.coarse.search import CoarseConfig
    from jointnas.export import export_candidates
    from jointnas.fine.problem import Scored
    from jointnas.store import RunStore

    config = CoarseConfig(evaluator="train:digits", evaluator_options={"train_subset": 200}, epoch_cap=3,
                          seed=4).to_dict()
    with RunStore.create(tmp_path / "run", config) as store:
        store.save_result("calibration", {"chosen_epoch": 2})
    entry = Scored(quick, 0.9, 0.01, 0.9, 1, 1)
    for source in ({"run": str(tmp_path / "run")}, {"predictor": str(tmp_path / "run" / "predictors" / "iter1.pt")}):
        d = export_candidates([entry], tmp_path / "out", space, context=source)[0]
        meta = Candidate.from_json((d / "candidate.json").read_text()).meta
        assert meta["target"] == Target("digits", "val", epoch=2, epoch_cap=3, train_subset=200, seed=4).to_dict()
    d = export_candidates([entry], tmp_path / "shipped", space, context={"predictor": "predictors/fbnetv3-digits.pt"})[0]
    target = Target.from_dict(Candidate.from_json((d / "candidate.json").read_text()).meta["target"])
    assert target == Target("digits") and target.epochs(9) == 9  # final accuracy of the full schedule
