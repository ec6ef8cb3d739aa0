"""The trainer on real digits: learning, every recipe dimension acting, failures as statuses, CLI."""
import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from jointnas.families.mbconv_net import DropPath

import jointnas.evaluation.trainer as trainer
from jointnas.space import Candidate
from jointnas.cli import main
from jointnas.evaluation.data import TensorSplit, load_task
from jointnas.errors import UsageError
from jointnas.families.mbconv_net import build_model
from jointnas.space import CategoricalDim, IntDim, SpaceError
from jointnas.evaluation.batches import TensorBatches, mixup_batch, random_flip, random_shift
from jointnas.evaluation.optim import ModelEma, build_optimizer, ema_decay, lr_at, param_groups
from jointnas.catalog import load_space
from jointnas.evaluation.trainer import TrainResult, init_weights, mixed_loss, recalibrate_bn

PLAIN = dict(optimizer="sgd", lr=0.1, weight_decay=1e-5, label_smoothing=0.0, mixup_alpha=0.0, dropout=0.0,
             stochastic_depth=0.0, ema=False, epochs=6, warmup_epochs=0)
RICH = dict(optimizer="sgd", lr=0.05, weight_decay=1e-4, label_smoothing=0.15, mixup_alpha=0.4, dropout=0.3,
            stochastic_depth=0.2, ema=True, epochs=6, warmup_epochs=1)


@pytest.fixture(scope="module")
def digits():
    return load_task("digits")


@pytest.fixture(scope="module")
def tiny(digits):
    return replace(digits.shrink(train=96, val=64), batch_size=32)


@pytest.fixture(scope="module")
def small_arch(space):
    """The cheapest arch of the space: lowest value of every dimension."""
    def low(d):
        if isinstance(d, IntDim):
            return d.low
        return d.choices[0] if isinstance(d, CategoricalDim) else False
    return {k: low(d) for k, d in space.arch.items()}



def train(candidate, task, **kwargs):
    """The trainer, with the candidate's space read by name here (names become spaces at the edges)."""
    kwargs.setdefault("space", load_space(candidate.space))
    return trainer.train(candidate, task, **kwargs)

def cand(arch, **recipe):
    return Candidate(dict(arch), dict(PLAIN, **recipe), space="fbnetv3")


# --------------------------------------------------------------------------- learning
def test_preset_beats_chance_in_two_epochs(space, digits):
    task = digits.shrink(train=512)
    result = train(cand(space.preset("FBNetV3_A").arch), task, epochs=2, device="cpu")
    assert result.status == "done" and result.error is None
    assert [row["epoch"] for row in result.curve] == [1, 2] and result.epochs_run == 2
    assert set(result.curve[0]) == {"epoch", "val_acc", "val_loss", "train_loss"}
    assert result.final_acc == result.curve[-1]["val_acc"]
    assert result.final_acc > 0.4  # chance is 0.1
    assert result.resolution == 56 and result.device == "cpu" and result.wall_time > 0
    again = TrainResult.from_dict(json.loads(json.dumps(result.to_dict(), allow_nan=False)))
    assert again == result


def test_same_seed_same_curve(small_arch, tiny):
    a = train(cand(small_arch, mixup_alpha=0.3, dropout=0.2, stochastic_depth=0.1), tiny, epochs=2, seed=3)
    b = train(cand(small_arch, mixup_alpha=0.3, dropout=0.2, stochastic_depth=0.1), tiny, epochs=2, seed=3)
    c = train(cand(small_arch, mixup_alpha=0.3, dropout=0.2, stochastic_depth=0.1), tiny, epochs=2, seed=4)
    assert a.status == b.status == c.status == "done"
    assert a.curve == b.curve
    assert a.curve != c.curve


def test_each_curve_entry_is_reported_as_soon_as_measured(small_arch, tiny):
    seen = []
    result = train(cand(small_arch), tiny, epochs=2, on_epoch=lambda entry: seen.append((entry, len(seen))))
    assert result.status == "done"
    assert [entry for entry, _ in seen] == result.curve and [i for _, i in seen] == [0, 1]


def test_validating_only_the_last_epoch_trains_the_same_model(small_arch, tiny, monkeypatch):
    recipe = dict(mixup_alpha=0.3, dropout=0.2, stochastic_depth=0.1, ema=True, epochs=3)
    every = train(cand(small_arch, **recipe), tiny, seed=3, test=True)
    calls = []
    monkeypatch.setattr(trainer, "recalibrate_bn", lambda *a: calls.append(1) or recalibrate_bn(*a))
    seen = []
    once = train(cand(small_arch, **recipe), tiny, seed=3, test=True, validate_every_epoch=False, on_epoch=seen.append)
    assert once.status == every.status == "done"
    assert len(calls) == 1 and once.curve == every.curve[-1:] == seen and once.curve[0]["epoch"] == 3
    assert once.epochs_run == every.epochs_run == 3
    assert (once.final_acc, once.test_acc) == (every.final_acc, every.test_acc)


# --------------------------------------------------------------------------- failure is data
def test_absurd_lr_diverges_without_raising(small_arch, tiny):
    result = train(cand(small_arch, lr=1e6), tiny, epochs=3)
    assert result.status == "diverged"
    assert "non-finite" in result.error
    assert result.final_acc is None and result.epochs_run == len(result.curve) < 3
    json.dumps(result.to_dict(), allow_nan=False)


@pytest.mark.parametrize("exc, status, text", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom", "out of memory"),
    (ValueError("boom"), "failed", "ValueError: boom"),
])
def test_errors_during_training_become_statuses(small_arch, tiny, monkeypatch, exc, status, text):
    real, calls = trainer.evaluate, []

    def evaluate_then_fail(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise exc
        return real(*args, **kw)

    monkeypatch.setattr(trainer, "evaluate", evaluate_then_fail)
    result = train(cand(small_arch), tiny, epochs=3)
    assert result.status == status and text in result.error
    assert [row["epoch"] for row in result.curve] == [1] and result.final_acc is None


def test_bad_input_raises_before_training(small_arch, tiny):
    with pytest.raises(UsageError, match="optimizer"):
        train(cand(small_arch, optimizer="lion"), tiny)
    with pytest.raises(SpaceError, match="lacks"):
        train(Candidate(small_arch, {k: v for k, v in PLAIN.items() if k != "lr"}, space="fbnetv3"), tiny)
    with pytest.raises(UsageError, match="epochs"):
        train(cand(small_arch), tiny, epochs=0)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            train(cand(small_arch), tiny, device="cuda")


# --------------------------------------------------------------------------- recipe dimensions, end to end
class Spy:
    """Records what the trainer's pieces receive during one run."""

    def __init__(self, monkeypatch):
        self.lrs, self.lams, self.smoothing, self.evaluated, self.emas, self.optimizers = [], [], [], [], [], []
        spy = self
        real_build, real_mixup, real_loss, real_eval = (trainer.build_optimizer, trainer.mixup_batch,
                                                        trainer.mixed_loss, trainer.evaluate)

        def build(model, recipe):
            opt = real_build(model, recipe)
            step = opt.step

            def recording_step(*a, **kw):
                spy.lrs.append([g["lr"] for g in opt.param_groups])
                return step(*a, **kw)
            opt.step = recording_step
            spy.optimizers.append((opt, model))
            return opt

        def mixup(*a, **kw):
            out = real_mixup(*a, **kw)
            spy.lams.append(out[3])
            return out

        def loss(logits, y_a, y_b, lam, label_smoothing):
            spy.smoothing.append(label_smoothing)
            return real_loss(logits, y_a, y_b, lam, label_smoothing)

        def evaluate(model, *a, **kw):
            spy.evaluated.append(model)
            return real_eval(model, *a, **kw)

        class RecordingEma(ModelEma):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                spy.emas.append(self)

        for name, fn in (("build_optimizer", build), ("mixup_batch", mixup), ("mixed_loss", loss),
                         ("evaluate", evaluate), ("ModelEma", RecordingEma)):
            monkeypatch.setattr(trainer, name, fn)


@pytest.fixture(scope="module")
def runs(small_arch, tiny):
    """One run with every regulariser on and one plain run, both spied, 2 epochs of a 6-epoch schedule."""
    out = {}
    for name, recipe in (("rich", RICH), ("plain", PLAIN)):
        with pytest.MonkeyPatch.context() as mp:
            spy = Spy(mp)
            result = train(Candidate(dict(small_arch), dict(recipe), space="fbnetv3"), tiny, epochs=2, keep_model=True)
        out[name] = (result, spy)
    return out


def test_optimizer_and_lr_schedule_act(runs, tiny):
    result, spy = runs["rich"]
    assert result.status == "done"
    (opt, model), = spy.optimizers
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    steps_per_epoch = len(tiny.train) // tiny.batch_size
    expected = [lr_at(i, RICH["lr"], steps_per_epoch, RICH["epochs"], RICH["warmup_epochs"])
                for i in range(2 * steps_per_epoch)]
    assert [lrs[0] for lrs in spy.lrs] == pytest.approx(expected)
    assert all(lrs[0] == lrs[1] for lrs in spy.lrs)
    assert expected[0] < expected[steps_per_epoch - 1]  # warmup rises, then cosine falls but not to 0 in 2 of 6
    assert expected[-1] > 0.5 * RICH["lr"]
    plain_lrs = [lrs[0] for lrs in runs["plain"][1].lrs]
    assert plain_lrs[0] == PLAIN["lr"] and plain_lrs[-1] < PLAIN["lr"]


def test_weight_decay_groups_in_training(runs):
    (opt, model), = runs["rich"][1].optimizers
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == RICH["weight_decay"] and no_decay["weight_decay"] == 0.0
    bn_and_bias = {id(p) for m in model.modules() for n, p in m.named_parameters(recurse=False)
                   if isinstance(m, _BatchNorm) or n == "bias"}
    assert {id(p) for p in no_decay["params"]} == bn_and_bias
    assert all(p.ndim > 1 for p in decay["params"])


def test_label_smoothing_and_mixup_reach_the_loss(runs):
    rich, plain = runs["rich"][1], runs["plain"][1]
    assert set(rich.smoothing) == {RICH["label_smoothing"]} and set(plain.smoothing) == {0.0}
    assert all(0.0 < lam < 1.0 for lam in rich.lams) and len(set(rich.lams)) > 1
    assert set(plain.lams) == {1.0}


def test_dropout_and_drop_path_rates_reach_the_model(runs):
    rich_model, plain_model = runs["rich"][0].model, runs["plain"][0].model
    assert rich_model.dropout.p == RICH["dropout"] and plain_model.dropout.p == 0.0
    rates = [m.p for m in rich_model.modules() if isinstance(m, DropPath)]
    assert rates and max(rates) <= RICH["stochastic_depth"] and min(rates) > 0
    assert not any(isinstance(m, DropPath) for m in plain_model.modules())


def test_ema_weights_are_the_ones_evaluated(runs):
    result, spy = runs["rich"]
    (ema,) = spy.emas
    (_, raw) = spy.optimizers[0]
    assert len(spy.evaluated) == 2 and all(m is ema.module for m in spy.evaluated)
    assert result.model is ema.module and ema.updates == len(spy.lrs)
    diffs = [(e - r).abs().max().item() for e, r in zip(ema.module.parameters(), raw.parameters())]
    assert max(diffs) > 1e-4
    plain_result, plain_spy = runs["plain"]
    assert not plain_spy.emas
    assert all(m is plain_spy.optimizers[0][1] for m in plain_spy.evaluated)
    assert plain_result.model is plain_spy.optimizers[0][1]


def test_epochs_sets_the_schedule_length(small_arch, digits):
    task = digits.shrink(train=32, val=32)
    full = train(cand(small_arch, epochs=6), task)
    capped = train(cand(small_arch, epochs=6), task, epochs=100)
    assert [r["epoch"] for r in full.curve] == [1, 2, 3, 4, 5, 6] and full.status == "done"
    assert capped.curve == full.curve  # epochs=N never runs past the recipe's schedule


# --------------------------------------------------------------------------- the pieces
def test_lr_at_warmup_then_cosine():
    base, spe = 0.4, 10
    lrs = [lr_at(s, base, spe, 6, 2) for s in range(60)]
    assert lrs[0] == pytest.approx(base / 20) and lrs[19] == pytest.approx(base)
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:20]))
    assert lrs[20] == pytest.approx(base) and all(a > b for a, b in zip(lrs[20:], lrs[21:]))
    assert 0 < lrs[-1] < 0.01 * base and lr_at(60, base, spe, 6, 2) == pytest.approx(0.0)
    assert lr_at(0, base, spe, 6, 0) == base
    assert lr_at(30, base, spe, 12, 2) > lr_at(30, base, spe, 6, 2)


def test_build_optimizer_kinds_and_decay(space, small_arch):
    model = build_model(small_arch, 10, 1, network=space.family.network)
    kinds = {name: build_optimizer(model, dict(PLAIN, optimizer=name)) for name in ("sgd", "rmsprop", "adamw")}
    assert isinstance(kinds["sgd"], torch.optim.SGD) and kinds["sgd"].defaults["nesterov"]
    assert isinstance(kinds["rmsprop"], torch.optim.RMSprop) and kinds["rmsprop"].defaults["momentum"] == 0.9
    assert isinstance(kinds["adamw"], torch.optim.AdamW)
    with pytest.raises(UsageError):
        build_optimizer(model, dict(PLAIN, optimizer="lion"))
    # With zero gradients AdamW's step is pure decoupled decay: weights shrink by lr * wd, BN/bias stay put.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, dict(PLAIN, optimizer="adamw", lr=0.1, weight_decay=1e-3))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        factor = (1 - 0.1 * 1e-3) if p.ndim > 1 else 1.0
        assert torch.allclose(p, before[n] * factor), n
    groups = param_groups(model, 0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


@pytest.mark.parametrize("name", ["sgd", "sgd_plain", "adam", "adamw"])
def test_fused_optimizer_steps_move_the_weights_as_the_per_tensor_loop_does(space, small_arch, name):
    torch.manual_seed(0)
    model = build_model(small_arch, 10, 1, network=space.family.network)
    twin = copy.deepcopy(model)
    recipe = dict(PLAIN, optimizer=name, lr=0.05, weight_decay=1e-3)
    fused = build_optimizer(model, recipe)
    assert fused.defaults["fused"]
    loop = build_optimizer(twin, recipe)
    for group in loop.param_groups:
        group["fused"] = False
    for _ in range(3):
        grads = [torch.randn_like(p) for p in model.parameters()]
        for net, opt in ((model, fused), (twin, loop)):
            for p, g in zip(net.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    for (n, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)
    assert not build_optimizer(model, dict(recipe, optimizer="rmsprop")).defaults.get("fused")  # torch has none


def test_label_smoothing_and_mixup_change_the_loss():
    torch.manual_seed(0)
    logits, y_a, y_b = torch.randn(8, 10) * 5, torch.randint(0, 10, (8,)), torch.randint(0, 10, (8,))
    plain = mixed_loss(logits, y_a, y_b, 1.0, 0.0)
    assert plain == pytest.approx(nn.functional.cross_entropy(logits, y_a).item())
    assert mixed_loss(logits, y_a, y_b, 1.0, 0.2) != pytest.approx(plain.item())
    mixed = mixed_loss(logits, y_a, y_b, 0.3, 0.0)
    expected = 0.3 * plain + 0.7 * nn.functional.cross_entropy(logits, y_b)
    assert mixed == pytest.approx(expected.item())


def test_mixup_batch():
    x, y = torch.randn(16, 1, 4, 4), torch.arange(16)
    same = mixup_batch(x, y, 0.0, np.random.default_rng(0))
    assert same[0] is x and same[3] == 1.0
    mx, ya, yb, lam = mixup_batch(x, y, 0.4, np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert 0 < lam < 1 and torch.equal(ya, y) and not torch.equal(yb, y)
    assert torch.allclose(mx, lam * x + (1 - lam) * x[yb])  # labels are positions, so y_b is the permutation


def test_model_ema_update():
    model = nn.Linear(3, 2)
    ema = ModelEma(model, decay=0.9)
    start = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update()
    d = min(0.9, 2 / 11)
    assert torch.allclose(ema.module.weight, d * start + (1 - d) * model.weight)
    assert not torch.allclose(ema.module.weight, model.weight)
    assert ema_decay(18) == pytest.approx(1 - 1 / 18) and ema_decay(1) == 0.5


def test_random_shift_and_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 2, 8, 8)
    out = random_shift(x, 2, g)
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(32):
        assert any(torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5))
    assert not torch.equal(out, x) and random_shift(x, 0) is x
    flipped = random_flip(x, g)
    kinds = [torch.equal(f, s) for f, s in zip(flipped, x)]
    assert all(k or torch.equal(f, s.flip(-1)) for k, f, s in zip(kinds, flipped, x)) and 0 < sum(kinds) < 32


def test_tensor_batches_on_device(digits, monkeypatch):
    split = TensorSplit(digits.train.images[:70], torch.arange(70))
    batches = TensorBatches(split, digits, 56, torch.device("cpu"), 32, True, torch.Generator().manual_seed(0))
    seen = [y for _, y in batches]
    assert len(batches) == 2 and [len(y) for y in seen] == [32, 32] and len(torch.cat(seen).unique()) == 64
    x, _ = next(iter(batches))
    assert x.shape == (32, 1, 56, 56) and x.is_contiguous(memory_format=torch.channels_last)
    evals = TensorBatches(split, digits, 56, torch.device("cpu"), 32, False)
    assert torch.equal(torch.cat([y for _, y in evals]), torch.arange(70))
    flips = []
    monkeypatch.setattr("jointnas.evaluation.batches.random_flip", lambda x, g=None: flips.append(1) or x)
    list(batches)
    assert not flips  # digits are never mirrored
    list(TensorBatches(split, replace(digits, flip=True), 56, torch.device("cpu"), 32, True))
    assert flips


def test_init_and_bn_recalibration(space, small_arch):
    model = init_weights(build_model(small_arch, 10, 1, network=space.family.network))
    for blk in model.blocks:
        gammas = [m.weight for m in blk.body[-1].modules() if isinstance(m, _BatchNorm)]
        assert torch.all(gammas[-1] == 0) == blk.residual
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    data = [(torch.randn(8, 1, 6, 6) * 3 + 1, None) for _ in range(3)]
    recalibrate_bn(net, data, torch.device("cpu"))
    with torch.no_grad():
        feats = torch.cat([net[0](x) for x, _ in data])
    assert torch.allclose(net[1].running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5)
    assert net[1].momentum == 0.1 and net.training  # momentum and mode restored


# --------------------------------------------------------------------------- image folders and the CLI
def test_image_folder_trains_through_a_dataloader(tmp_path, small_arch):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / f"class{c}").mkdir()
        for i in range(8):
            pixels = (rng.random((20, 24, 3)) * 80 + 80 * c).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / f"class{c}" / f"{i}.png")
    task = load_task(f"imagefolder:{tmp_path}")
    task = replace(task, base_resolution=56, batch_size=8)
    result = train(cand(small_arch), task, epochs=1, test=True, workers=1)
    assert result.status == "done", result.error
    assert len(result.curve) == 1 and 0.0 <= result.test_acc <= 1.0


def test_cli_train_json_and_text(tmp_path, small_arch, capsys):
    path = tmp_path / "c.json"
    path.write_text(cand(small_arch).to_json())
    assert main(["train", "--candidate", str(path), "--max-train", "64", "--epochs", "1", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["status"] == "done" and len(row["curve"]) == 1 and row["candidate"]["arch"] == small_arch
    assert main(["train", "--candidate", str(path), "--max-train", "64", "--epochs", "1", "--test"]) == 0
    out = capsys.readouterr().out
    assert "epoch   1/6" in out and "final val_acc" in out and "test_acc" in out


@pytest.mark.parametrize("argv, text", [
    (["--preset", "FBNetV3_Z"], "no preset"),
    (["--candidate", "/nonexistent.json"], "cannot read candidate"),
    (["--preset", "FBNetV3_A", "--data", "mnist"], "unknown dataset"),
    (["--preset", "FBNetV3_A", "--epochs", "0"], "--epochs"),
])
def test_cli_train_bad_input_exits_2(argv, text, capsys):
    assert main(["train"] + argv) == 2
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for machines without CUDA")
def test_cli_train_cuda_missing_exits_2(capsys):
    assert main(["train", "--preset", "FBNetV3_A", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_result_round_trip_keeps_optional_fields():
    r = TrainResult("diverged", [{"epoch": 1, "val_acc": 0.2, "val_loss": 2.0, "train_loss": 2.1}], None, 1, 3.5,
                    "cpu", "training loss became non-finite", resolution=56, images_per_s=100.0)
    d = r.to_dict()
    assert "model" not in d and TrainResult.from_dict(d) == r
    assert TrainResult.from_dict({k: v for k, v in d.items() if k not in ("resolution", "images_per_s")}).status \
        == "diverged"


# --------------------------------------------------------------------------- the table of trained pairs
def test_pair_table_script_shards_resumes_and_records_provenance(tmp_path):
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "make_trained_pairs.py"
    make = runpy.run_path(str(script))["main"]
    threads = torch.get_num_threads()  # the script sets its own; the rest of the session keeps ours
    try:
        _check_pair_table_script(make, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check_pair_table_script(make, tmp_path):
    out = tmp_path / "pairs.jsonl"
    args = ["--out", str(out), "--n", "4", "--pool-size", "64", "--epochs", "1", "--train-subset", "32",
            "--val-subset", "32", "--batch-size", "16", "--device", "cpu"]
    assert make(args + ["--shard", "1/2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["pool"]["index"] for r in rows] == [1, 3]  # this shard's members only, in pool order
    assert all(r["status"] == "done" and len(r["curve"]) == 1 and r["train_images"] == 32 for r in rows)
    assert all(r["device"] == "cpu" and r["torch"] == torch.__version__ and r["git_commit"] for r in rows)
    assert make(args + ["--shard", "1/2"]) == 0  # resumed: nothing left to do
    assert make(args) == 0                        # one shard for all: only the missing ones
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["pool"]["index"] for r in rows) == [0, 1, 2, 3]
    assert len({r["key"] for r in rows}) == 4
    with pytest.raises(SystemExit) as bad:
        make(args + ["--shard", "2/2"])
    assert bad.value.code == 2
