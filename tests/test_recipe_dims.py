"""The recipe dimensions added for AutoTrain each change training: batch size, SGD momentum (and SGD
without Nesterov), Adam, cutout, gradient clipping; a recipe key the trainer ignores is refused."""
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import jointnas.evaluation.trainer as trainer
from jointnas.catalog import load_space
from jointnas.evaluation.data import TensorSplit, load_task
from jointnas.errors import SpaceError, UsageError
from jointnas.evaluation.train import TrainEvaluator
from jointnas.space import Candidate
from jointnas.evaluation.batches import TensorBatches, cutout
from jointnas.evaluation.optim import build_optimizer
from jointnas.evaluation.recipe import OPTIMIZERS, RECIPE_DEFAULTS, RECIPE_KEYS, check_recipe_dims, full_recipe
from jointnas.evaluation.trainer import train

REPO = Path(__file__).resolve().parents[1]
BASE = dict(optimizer="sgd_plain", lr=0.05, epochs=2)
NEW_DIMS = {"momentum": {"type": "float", "low": 0.0, "high": 0.95},
            "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
            "cutout": {"type": "float", "low": 0.0, "high": 0.5},
            "grad_clip": {"type": "float", "low": 0.0, "high": 5.0}}


def space_file(tmp_path, recipe: dict, name="rich") -> Path:
    """The fbnetv3 arch part with ``recipe`` as the recipe part, written as a space file."""
    doc = yaml.safe_load((REPO / "spaces" / "fbnetv3.yaml").read_text())
    doc.pop("presets")
    doc["name"], doc["recipe"] = name, recipe
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def rich_space(tmp_path_factory):
    recipe = {"optimizer": {"type": "categorical", "choices": list(OPTIMIZERS)},
              "lr": {"type": "float", "low": 0.001, "high": 0.2, "log": True},
              "epochs": {"type": "int", "low": 1, "high": 4}, **NEW_DIMS}
    return str(space_file(tmp_path_factory.mktemp("space"), recipe))


@pytest.fixture(scope="module")
def tiny():
    return replace(load_task("digits").shrink(train=96, val=64), batch_size=32)


@pytest.fixture(scope="module")
def small_arch(space):
    return {k: (d.low if hasattr(d, "low") else d.choices[0] if hasattr(d, "choices") else False)
            for k, d in space.arch.items()}


def run(arch, space, task, **recipe):
    full = dict(BASE, momentum=0.9, batch_size=32, cutout=0, grad_clip=0.0)
    full.update(recipe)
    return train(Candidate(dict(arch), full), task, space=load_space(space), epochs=1, device="cpu")


class StepSpy:
    """Counts optimiser steps and records the gradients' global norm at each one."""

    def __init__(self, monkeypatch):
        self.norms = []
        real = trainer.build_optimizer

        def build(model, recipe):
            opt = real(model, recipe)
            step = opt.step

            def recording_step(*a, **kw):
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
                return step(*a, **kw)
            opt.step = recording_step
            return opt
        monkeypatch.setattr(trainer, "build_optimizer", build)


# --------------------------------------------------------------------------- optimisers and momentum
def one_step(name, momentum=0.9, weight_decay=0.0, grad=1.0, lr=0.1):
    """Weight change of a 1x1 linear layer (weight 1) after one step with a constant gradient."""
    layer = nn.Linear(1, 1, bias=False)
    nn.init.ones_(layer.weight)
    opt = build_optimizer(layer, dict(optimizer=name, lr=lr, epochs=1, momentum=momentum, weight_decay=weight_decay))
    layer.weight.grad = torch.full_like(layer.weight, grad)
    opt.step()
    return layer.weight.item() - 1.0, opt


def test_sgd_momentum_and_nesterov_are_the_recipes():
    plain, opt = one_step("sgd_plain", momentum=0.5)
    assert plain == pytest.approx(-0.1) and not opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.5
    nesterov, opt = one_step("sgd", momentum=0.5)
    assert nesterov == pytest.approx(-0.1 * 1.5) and opt.defaults["nesterov"]  # g + m * buf on the first step
    assert one_step("sgd", momentum=0.8)[0] == pytest.approx(-0.1 * 1.8)
    assert one_step("sgd", momentum=0.0)[0] == pytest.approx(-0.1)  # momentum 0: plain SGD, no Nesterov error


def test_adam_puts_decay_in_the_gradient_and_adamw_decouples_it():
    # zero gradient, weight 1: Adam normalises the L2 term into a full lr step, AdamW shrinks by lr * wd
    adam, opt = one_step("adam", weight_decay=1e-3, grad=0.0)
    assert isinstance(opt, torch.optim.Adam) and not isinstance(opt, torch.optim.AdamW)
    assert adam == pytest.approx(-0.1, rel=1e-3)
    assert one_step("adamw", weight_decay=1e-3, grad=0.0)[0] == pytest.approx(-0.1 * 1e-3, rel=1e-3)


def test_momentum_and_optimizer_change_the_learning_curve(small_arch, rich_space, tiny):
    curves = {(o, m): run(small_arch, rich_space, tiny, optimizer=o, momentum=m).curve
              for o, m in (("sgd_plain", 0.0), ("sgd_plain", 0.9), ("sgd", 0.9), ("adam", 0.9))}
    assert all(r and "val_loss" in r[0] for r in curves.values())
    losses = [c[-1]["train_loss"] for c in curves.values()]
    assert len(set(losses)) == len(losses)


# --------------------------------------------------------------------------- batch size
def test_recipe_batch_size_sets_the_steps_per_epoch(small_arch, rich_space, tiny, monkeypatch):
    spy = StepSpy(monkeypatch)
    for bs in (16, 32, 64):
        spy.norms.clear()
        result = train(Candidate(dict(small_arch), dict(BASE, momentum=0.9, batch_size=bs, cutout=0, grad_clip=0.0)),
                       tiny, space=load_space(rich_space), epochs=1, batch_size=8)  # the recipe wins over the argument
        assert result.status == "done" and len(spy.norms) == len(tiny.train) // bs


# --------------------------------------------------------------------------- cutout
def test_cutout_zeroes_one_square_per_sample():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(200, 2, 16, 16)
    out = cutout(x, 4, g)
    holes = (out[:, 0] == 0)
    assert torch.equal(holes, out[:, 1] == 0)  # every channel cut alike
    sizes = holes.sum(dim=(1, 2))
    assert sizes.max() == 16 and sizes.min() > 0  # a full 4x4 square inside, clipped at the border
    for hole in holes[sizes == 16][:20]:
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert len(rows) == len(cols) == 4 and rows[-1] - rows[0] == 3 and cols[-1] - cols[0] == 3
    assert len({tuple(h.nonzero()[0].tolist()) for h in holes}) > 50  # a different place per sample
    assert cutout(x, 0) is x


def test_cutout_is_a_fraction_of_the_image_side_and_only_in_training():
    task = load_task("digits")  # 8x8 images, trained at 56 px: a 0.25 cutout is a 14-px square
    split = TensorSplit(task.train.images[:64], task.train.labels[:64])
    train_b = TensorBatches(split, task, 56, torch.device("cpu"), 64, True,
                            torch.Generator().manual_seed(0), cutout=0.25)
    x, _ = next(iter(train_b))
    assert train_b.cutout == 14 and (x == 0).all(dim=1).sum(dim=(1, 2)).max() == 14 * 14
    wide = TensorSplit(torch.zeros(4, 1, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    assert TensorBatches(wide, task, 56, torch.device("cpu"), 4, True, cutout=0.25).cutout == 14  # same at 32 px
    eval_b = TensorBatches(split, task, 56, torch.device("cpu"), 64, False, cutout=0.25)
    plain = TensorBatches(split, task, 56, torch.device("cpu"), 64, False)
    assert torch.equal(next(iter(eval_b))[0], next(iter(plain))[0])


def test_cutout_changes_the_learning_curve(small_arch, rich_space, tiny):
    off = run(small_arch, rich_space, tiny, cutout=0)
    on = run(small_arch, rich_space, tiny, cutout=0.5)
    assert off.status == on.status == "done" and off.curve != on.curve


# --------------------------------------------------------------------------- gradient clipping
def test_grad_clip_bounds_every_step_in_training(small_arch, rich_space, tiny, monkeypatch):
    spy = StepSpy(monkeypatch)
    assert run(small_arch, rich_space, tiny, grad_clip=0.0, lr=0.2).status == "done"
    free = list(spy.norms)
    spy.norms.clear()
    clip = 0.5 * min(free)
    assert run(small_arch, rich_space, tiny, grad_clip=clip, lr=0.2).status == "done"
    assert len(spy.norms) == len(free) and max(spy.norms) == pytest.approx(clip, rel=1e-4)


# --------------------------------------------------------------------------- what a space may say
def test_optional_keys_default_to_off_and_unknown_keys_are_refused():
    assert full_recipe(BASE) == {**RECIPE_DEFAULTS, **BASE}
    assert RECIPE_DEFAULTS["cutout"] == 0 and RECIPE_DEFAULTS["grad_clip"] == 0
    with pytest.raises(UsageError, match="nesterov"):
        full_recipe(dict(BASE, nesterov=True))
    with pytest.raises(UsageError, match="lacks lr"):
        full_recipe({"optimizer": "sgd", "epochs": 2})
    assert full_recipe({"optimizer": "sgd", "lr": 0.1})["epochs"] is None


@pytest.mark.parametrize("extra, text", [
    ({"nesterov": {"type": "bool"}}, "recipe.nesterov: the trainer does not act on this key"),
    ({"optimizer": {"type": "categorical", "choices": ["sgd", "lion"]}}, "recipe.optimizer: unknown choice(s) lion"),
    ({"batch_size": {"type": "int", "low": 0, "high": 8}}, "recipe.batch_size: values must be at least 1"),
    ({"momentum": {"type": "float", "low": 0.0, "high": 1.0}}, "recipe.momentum: values must be below 1"),
    ({"cutout": {"type": "categorical", "choices": [0, 4, 8]}}, "recipe.cutout: values must be at most 1"),
])
def test_a_space_the_trainer_cannot_act_on_is_refused_naming_file_and_key(tmp_path, small_arch, tiny, extra, text):
    recipe = {"optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
              "lr": {"type": "float", "low": 0.01, "high": 0.1}, "epochs": {"type": "int", "low": 1, "high": 2}}
    path = space_file(tmp_path, {**recipe, **extra})
    space = load_space(str(path))
    with pytest.raises(SpaceError) as err:
        check_recipe_dims(space.recipe, space.source)
    assert str(path) in str(err.value) and text in str(err.value)
    values = {k: (d.low if hasattr(d, "low") else d.choices[0] if hasattr(d, "choices") else False)
              for k, d in space.recipe.items()}
    with pytest.raises(SpaceError, match="recipe"):  # training refuses it before building anything
        train(Candidate(dict(small_arch), values), tiny, space=space)
    with pytest.raises(SpaceError) as err:  # and so does a search, when it is set up
        TrainEvaluator("digits").check_space(space)
    assert str(path) in str(err.value) and text in str(err.value)


def test_a_space_with_only_the_required_keys_trains_the_schedule_it_is_given(tmp_path, small_arch, tiny,
                                                                              monkeypatch):
    recipe = {"optimizer": {"type": "categorical", "choices": ["adam", "adamw"]},
              "lr": {"type": "float", "low": 0.001, "high": 0.01}}
    space = str(space_file(tmp_path, recipe, name="bare"))
    lrs = []
    real = trainer.lr_at
    monkeypatch.setattr(trainer, "lr_at", lambda *a: lrs.append(a[3]) or real(*a))
    result = train(Candidate(dict(small_arch), dict(optimizer="adam", lr=0.003)), tiny, space=load_space(space), epochs=2)
    assert result.status == "done" and len(result.curve) == 2
    assert set(lrs) == {2}  # no epochs in the recipe: the schedule is the two epochs asked for
    with pytest.raises(UsageError, match="no epochs"):
        train(Candidate(dict(small_arch), dict(optimizer="adam", lr=0.003)), tiny, space=load_space(space))
    assert RECIPE_KEYS >= set(NEW_DIMS) | {"optimizer", "lr", "epochs", "weight_decay", "ema"}
