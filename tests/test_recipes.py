"""Named training recipes (recipes/*.yaml): checked against a space like a space file, trained by
`jointnas train --recipe`, listed by `jointnas describe --recipes`, written by autotrain."""
import json

import pytest
import yaml

from jointnas.budget import cheapest_arch
from jointnas.catalog import available_recipes, load_recipe, load_space, read_recipe, recipes_dir, save_recipe
from jointnas.cli import main
from jointnas.errors import RecipeError


@pytest.fixture(scope="module")
def cheap_candidate(space, tmp_path_factory):
    """A candidate JSON file of the cheapest fbnetv3 arch, with a prediction made on 48 digits."""
    from jointnas.coarse.target import Target
    from jointnas.space import Candidate

    path = tmp_path_factory.mktemp("cand") / "candidate.json"
    meta = {"predicted_acc": 0.5, "target": Target("digits", train_subset=48, seed=3).to_dict()}
    path.write_text(Candidate(cheapest_arch(space), space.default_recipe(), space="fbnetv3", meta=meta).to_json())
    return path


def _recipe_file(tmp_path, recipe, name="mine", **top):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "description": "a test recipe", "recipe": recipe, **top}))
    return path


# --------------------------------------------------------------------------- shipped recipes
def test_the_fbnetv3_default_and_torchvision_reference_recipes_ship():
    assert {"fbnetv3-default", "torchvision-reference"} <= set(available_recipes())


@pytest.mark.parametrize("name", available_recipes())
def test_every_shipped_recipe_loads_against_the_fbnetv3_space_and_says_where_it_comes_from(name, space):
    found = read_recipe(name)
    assert found.name == name and found.description and found.source
    recipe = load_recipe(name, space)
    assert set(recipe) == set(space.recipe)
    space.validate(cheapest_arch(space), recipe, allow_outside=found.outside)
    for key, value in found.values.items():  # every value the file gives is the one trained, or one the
        if key in space.recipe:             # space has no dimension for (then the trainer's own)
            assert recipe[key] == value, key


def test_fbnetv3_default_is_the_default_recipe_that_presets_train_with(space):
    assert load_recipe("fbnetv3-default", space) == space.default_recipe() == space.preset("FBNetV3_A").recipe


def test_torchvision_reference_gives_torchvisions_optimizer_and_schedule_length(space):
    recipe = load_recipe("torchvision-reference", space)
    assert (recipe["optimizer"], recipe["lr"], recipe["weight_decay"], recipe["epochs"]) == ("sgd_plain", 0.1, 1e-4, 90)
    assert load_recipe("torchvision-reference", "autotrain")["momentum"] == 0.9  # a space with a momentum dimension


# --------------------------------------------------------------------------- train --recipe
def test_train_with_a_shipped_recipe_trains_what_the_file_says(cheap_candidate, capsys):
    assert main(["train", "--candidate", str(cheap_candidate), "--recipe", "torchvision-reference",
                 "--epochs", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "done" and out["epochs_run"] == 1  # --epochs still stops the 90-epoch schedule
    # the prediction was for the candidate's own recipe: not compared; its data, subset and seed stay the defaults
    assert "honest_check" not in out and (out["train_subset"], out["seed"]) == (48, 3)
    file = yaml.safe_load((recipes_dir() / "torchvision-reference.yaml").read_text())["recipe"]
    trained = out["candidate"]["recipe"]
    assert {k: trained[k] for k in file if k in trained} == {k: v for k, v in file.items() if k in trained}
    assert trained["epochs"] == 90 and trained["optimizer"] == "sgd_plain"


def test_a_partial_recipe_file_takes_the_spaces_default_for_the_rest(tmp_path, space):
    recipe = load_recipe(_recipe_file(tmp_path, {"optimizer": "adamw", "lr": 0.003}), space)
    assert recipe == dict(space.default_recipe(), optimizer="adamw", lr=0.003)


def test_a_key_the_space_lacks_is_accepted_when_the_trainer_uses_that_value_without_it(tmp_path, space):
    recipe = load_recipe(_recipe_file(tmp_path, {"lr": 0.02, "momentum": 0.9, "grad_clip": 0, "cutout": 0}), space)
    assert recipe == dict(space.default_recipe(), lr=0.02)
    with pytest.raises(RecipeError, match="recipe.grad_clip=1.0: space fbnetv3 has no grad_clip dimension"):
        load_recipe(_recipe_file(tmp_path, {"lr": 0.02, "grad_clip": 1.0}), space)


def test_in_a_space_that_holds_the_schedule_the_files_epochs_is_the_schedule_and_is_checked(tmp_path, space):
    from jointnas.autotrain import fixed_arch_space

    held = fixed_arch_space(space, space.family, arch=space.presets["FBNetV3_A"]["arch"], epochs=3)
    path = _recipe_file(tmp_path, {"lr": 0.02, "epochs": 5})
    assert load_recipe(path, held) == dict(held.default_recipe(), lr=0.02) and read_recipe(path).epochs == 5
    with pytest.raises(RecipeError, match="recipe.epochs=0: a schedule is a whole number of epochs"):
        load_recipe(_recipe_file(tmp_path, {"lr": 0.02, "epochs": 0}), held)


def test_an_unknown_recipe_name_is_refused_listing_the_shipped_ones(refused):
    err = refused(["train", "--preset", "FBNetV3_A", "--recipe", "torchvison-reference"], "unknown recipe")
    assert "fbnetv3-default" in err and "torchvision-reference" in err


BAD = [
    ({"name": "x", "recipe": {"lr": 0.05}, "optimiser": "sgd"}, "unknown key(s) optimiser"),
    ({"name": "x", "recipe": {"lr": 0.05, "lr_schedule": "step"}}, "recipe.lr_schedule: unknown key"),
    ({"name": "x", "recipe": {"lr": 0.5}}, "recipe.lr=0.5: outside space fbnetv3's range"),
    ({"name": "x", "recipe": {"lr": "fast"}}, "recipe.lr='fast': not a value of its dimension"),
    ({"name": "x", "recipe": {"epochs": 2.5}}, "recipe.epochs=2.5: not a value"),
    ({"name": "x", "recipe": {"epochs": 0}, "outside": ["epochs"]},
     "recipe.epochs=0: the trainer needs a value at least 1"),
    ({"name": "x", "recipe": {"optimizer": "lamb"}, "outside": ["optimizer"]}, "the trainer knows sgd"),
    ({"name": "x", "recipe": {"momentum": 0.8}}, "space fbnetv3 has no momentum dimension"),
    ({"name": "x", "recipe": {"lr": 0.05}, "outside": ["epochs"]}, "outside: epochs not set"),
    ({"recipe": {"lr": 0.05}}, "missing key 'name'"),
]


@pytest.mark.parametrize("doc,text", BAD, ids=[t for _, t in BAD])
def test_a_bad_recipe_file_is_refused_before_training_naming_the_file_and_key(doc, text, tmp_path, refused):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    err = refused(["train", "--preset", "FBNetV3_A", "--recipe", str(path)], text)
    assert str(path) in err


def test_a_recipe_file_with_a_duplicate_key_or_bad_yaml_is_refused_naming_the_line(tmp_path, refused):
    path = tmp_path / "dup.yaml"
    path.write_text("name: x\nrecipe:\n  lr: 0.01\n  lr: 0.02\n")
    refused(["train", "--preset", "FBNetV3_A", "--recipe", str(path)], "duplicate key 'lr' at line 4")
    path.write_text("name: x\nrecipe: {lr: 0.01\n")
    refused(["train", "--preset", "FBNetV3_A", "--recipe", str(path)], "not valid YAML at line")


# --------------------------------------------------------------------------- save_recipe
@pytest.mark.parametrize("space_name", ["fbnetv3", "autotrain"])
def test_save_recipe_then_load_recipe_gives_back_the_same_recipe(space_name, tmp_path):
    space = load_space(space_name)
    for i, cand in enumerate(space.sample(5, seed=3)):
        path = save_recipe(tmp_path / f"r{i}.yaml", cand.recipe, space, source="a test")
        assert load_recipe(path, space) == cand.recipe
        assert read_recipe(path).source == "a test" and read_recipe(path).name == f"r{i}"


def test_save_recipe_refuses_what_would_not_load_back_and_writes_nothing(space, tmp_path):
    with pytest.raises(RecipeError, match="recipe.lr=5.0: outside"):
        save_recipe(tmp_path / "r.yaml", dict(space.default_recipe(), lr=5.0), space)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- describe
def test_describe_recipes_lists_each_shipped_recipe_with_its_description(capsys):
    assert main(["describe", "--recipes"]) == 0
    out = capsys.readouterr().out
    for name in available_recipes():
        assert f"{name}: {read_recipe(name).description}" in out
    assert main(["describe", "--recipes", "--space", "fbnetv3", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["torchvision-reference"]["recipe"]["epochs"] == 90


# --------------------------------------------------------------------------- autotrain
def test_the_recipe_autotrain_writes_is_a_recipe_file_that_train_takes(tmp_path, capsys):
    from test_autotrain import AUTOTRAIN  # the fast autotrain setup (the schedule held at 1 epoch)

    assert main(AUTOTRAIN + ["--run", str(tmp_path / "run"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    files = out["files"]
    space = load_space(files["space"])  # the searched space, which holds the schedule outside the recipe
    found = read_recipe(files["recipe"])
    assert found.epochs == 1 and "epochs" not in space.recipe
    assert load_recipe(files["recipe"], space) == {k: v for k, v in out["recipe"].items() if k != "epochs"}
    assert main(["train", "--candidate", files["candidate"], "--recipe", files["recipe"], "--train-subset", "48",
                 "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["status"] == "done" and trained["epochs_run"] == 1  # the file's schedule
    assert trained["candidate"]["recipe"] == load_recipe(files["recipe"], space)
