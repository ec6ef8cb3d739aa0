"""Train one candidate (arch + recipe) on a task and record its learning curve.

Every recipe dimension acts on training:

* ``optimizer``: ``sgd`` (Nesterov momentum), ``sgd_plain`` (classical heavy-ball momentum, as
  torchvision's ResNet reference), RMSprop (alpha 0.9, momentum 0.9 as in EfficientNet recipes;
  eps 0.0316 outside the root, close to TensorFlow's 1e-3 inside it, which keeps weights with
  tiny gradients from taking full-size steps), ``adam`` (L2 penalty in the gradient) or
  ``adamw`` (decoupled decay).
* ``momentum`` of both SGD kinds (0.9 when the recipe has none; SGD with momentum 0 is plain SGD).
* ``batch_size``: images per optimisation step (the task's when the recipe has none).
* ``lr`` per step: linear warmup over ``warmup_epochs``, then cosine to zero over the
  recipe's ``epochs`` (:func:`~jointnas.evaluation.optim.lr_at`).
* ``weight_decay`` on conv/linear weights only, never on BatchNorm or bias parameters.
* ``label_smoothing`` and ``mixup_alpha`` (Beta(alpha, alpha) mixing of shuffled pairs, 0 = off)
  shape the training loss; validation loss is plain cross-entropy.
* ``cutout``: side of one square per training image, as a fraction of the image's side (0.25 of
  an 8-px digit or of a 32-px CIFAR image alike; the same fraction of the training resolution),
  at a random centre that may lie near the border, set to the dataset mean (DeVries & Taylor
  2017); 0 = off, at most 1.
* ``grad_clip``: the gradients' global L2 norm is clipped to this before every step; 0 = off.
* ``dropout`` (before the classifier) and ``stochastic_depth`` (drop-path rate of the last
  block, growing linearly with depth) are passed to the space's model family's ``build``.
* ``ema``: an exponential moving average of weights and BN statistics, and the EMA weights are
  the ones evaluated. Its time constant is one epoch of steps (decay ``1 - 1/steps_per_epoch``,
  warmed up as ``(1 + n) / (10 + n)``): recipes here last a few short epochs (tens of steps
  each on digits), so the fixed 0.9999 of ImageNet recipes would average mostly the random
  initialisation.
* ``epochs``: the schedule length; ``train(..., epochs=N)`` stops after N epochs of it. A recipe
  without ``epochs`` (a space that holds the schedule fixed) trains a schedule of N epochs.

``optimizer`` and ``lr`` are required; every other key of :data:`~jointnas.evaluation.recipe.RECIPE_KEYS`
may be left out of a space and takes its :data:`~jointnas.evaluation.recipe.RECIPE_DEFAULTS` value (the
dimension is off). A recipe key outside them is refused
(:func:`~jointnas.evaluation.recipe.check_recipe_dims`), never ignored.

Two choices make short runs measurable: weights start as in torchvision's MobileNetV3 (He
fan-out convs, small classifier) with the last BatchNorm of every residual block at zero, and
BatchNorm statistics are recomputed on up to ``BN_CALIBRATION_IMAGES`` un-augmented training
images before every evaluation. Without the first a preset barely moves in two epochs; without
the second, running statistics lag the fast-changing weights and a net that is 70 % right in
training mode scores chance in eval mode.

Batches come from :mod:`jointnas.evaluation.batches` (made on the device for small datasets,
by a ``DataLoader`` with workers for image folders). On CUDA the forward pass runs under bf16
autocast; the model is channels-last on every device (faster on CPU too, see BENCHMARKS.md).
On CPU the same seed gives the same curve.

Failure is data: a non-finite loss stops training with status ``diverged``, running out of
memory gives ``oom`` and any other error during training ``failed``; the curve measured so far
is kept and :func:`train` does not raise for these.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm import tqdm

from .batches import make_batches, mixup_batch
from .data import Task
from .optim import ModelEma, build_optimizer, ema_decay, lr_at
from .recipe import OPTIMIZERS, check_recipe_dims, full_recipe
from ..errors import UsageError
from ..families.mbconv_net import MBConv
from ..space import Candidate, SearchSpace

EVAL_BATCH = 256
BN_CALIBRATION_IMAGES = 512
CHECK_EVERY = 25  # steps between finiteness checks of the running loss on CUDA (each is a sync)


# --------------------------------------------------------------------------- result
@dataclass
class TrainResult:
    """Outcome of one training run. ``final_acc`` is the last epoch's validation accuracy when
    ``status == "done"`` and None otherwise (the curve keeps what was measured)."""

    status: str
    curve: List[dict]
    final_acc: Optional[float]
    epochs_run: int
    wall_time: float
    device: str
    error: Optional[str] = None
    resolution: Optional[int] = None
    images_per_s: Optional[float] = None  # training throughput, evaluation excluded
    test_acc: Optional[float] = None      # only with train(..., test=True)
    model: Optional[nn.Module] = field(default=None, repr=False, compare=False)  # train(..., keep_model=True)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("model")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainResult":
        known = set(cls.__dataclass_fields__) - {"model"}
        return cls(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------- pieces of a run
def resolve_device(device="auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for but CUDA is not available here; use cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    return dev


def mixed_loss(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float,
               label_smoothing: float) -> torch.Tensor:
    loss = F.cross_entropy(logits, y_a, label_smoothing=label_smoothing)
    if lam < 1.0:
        loss = lam * loss + (1.0 - lam) * F.cross_entropy(logits, y_b, label_smoothing=label_smoothing)
    return loss


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def init_weights(model: nn.Module) -> nn.Module:
    """He fan-out convs, N(0, 0.01) classifier, zero-gamma last BN of residual blocks."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, _BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, MBConv) and m.residual:
            last_bn = [b for b in m.body[-1].modules() if isinstance(b, _BatchNorm)][-1]
            nn.init.zeros_(last_bn.weight)
    return model


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches, device: torch.device) -> None:
    """Recompute every BatchNorm's running statistics as a plain average over ``batches``
    (dropout and drop-path stay off)."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not bns:
        return
    was_training = model.training
    model.eval()
    momenta = [b.momentum for b in bns]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None
        b.train()
    for x, _ in batches:
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            model(x)
    for b, m in zip(bns, momenta):
        b.momentum = m
    model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, batches, device: torch.device) -> Tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) of ``model`` over ``batches``."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    for x, y in batches:
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with _autocast(device):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
    model.train(was_training)
    return float(loss_sum) / max(n, 1), int(correct) / max(n, 1)


class Diverged(Exception):
    pass


def train(candidate: Candidate, task: Task, epochs: Optional[int] = None, device="auto", seed: int = 0,
          space=None, progress: bool = False, *, test: bool = False, keep_model: bool = False,
          batch_size: Optional[int] = None, workers: Optional[int] = None,
          on_epoch: Optional[Callable[[dict], None]] = None, resolution_scale: float = 1.0,
          validate_every_epoch: bool = True) -> TrainResult:
    """Train ``candidate`` on ``task`` and return its :class:`TrainResult`.

    ``epochs=None`` runs the recipe's schedule; ``epochs=N`` stops after ``min(N, recipe epochs)``
    epochs of it (a recipe without ``epochs`` trains an N-epoch schedule). ``test=True`` also measures the final weights on the test split;
    ``keep_model=True`` returns the evaluated model (the EMA one when the recipe has ``ema``).
    ``batch_size`` is used when the recipe has none (the task's when None); ``workers`` (image
    folders) defaults to ``min(8, CPUs)``.
    ``on_epoch(entry)`` is called with each learning-curve entry as soon as it is measured.
    ``resolution_scale`` < 1 trains (and validates) at that fraction of the arch's resolution.
    ``validate_every_epoch=False`` validates after the last epoch only (BatchNorm recalibration and
    validation took a tenth to a third of an epoch on digits): the curve then holds that one entry.
    Raises only for bad input (unknown keys, optimizer or device); training failures are statuses.
    """
    start = time.time()
    space = _space_of(space)
    space.validate(candidate.arch, candidate.recipe, allow_outside=[d.name for d in space.dims])
    check_recipe_dims(space.recipe, space.source)
    recipe = full_recipe(candidate.recipe)
    if recipe["optimizer"] not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {recipe['optimizer']!r}; the trainer knows {', '.join(OPTIMIZERS)}")
    if recipe["batch_size"] is not None:
        batch_size = int(recipe["batch_size"])
    if epochs is not None and (not isinstance(epochs, (int, np.integer)) or epochs < 1):
        raise UsageError(f"epochs must be a positive integer, got {epochs!r}")
    if recipe["epochs"] is None and epochs is None:
        raise UsageError("the recipe has no epochs, so the number of epochs to train must be given")
    schedule_epochs = int(epochs if recipe["epochs"] is None else recipe["epochs"])
    n_epochs = schedule_epochs if epochs is None else min(int(epochs), schedule_epochs)
    dev = resolve_device(device)
    resolution = space.family.input_size(candidate.arch, task)
    if resolution_scale != 1.0:
        resolution = max(8, int(round(resolution * resolution_scale)))
    result = TrainResult("failed", [], None, 0, 0.0, str(dev), resolution=resolution)

    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        try:
            _run(candidate, task, space, dev, seed, n_epochs, schedule_epochs, resolution,
                 batch_size or task.batch_size, workers, progress, test, keep_model, result, on_epoch,
                 validate_every_epoch)
            result.status = "done"
            result.final_acc = result.curve[-1]["val_acc"]
        except Diverged as e:
            result.status, result.error = "diverged", str(e)
        except torch.cuda.OutOfMemoryError as e:
            result.status, result.error = "oom", _first_line(e)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - any training error is recorded, never raised
            is_oom = isinstance(e, RuntimeError) and ("out of memory" in str(e) or "can't allocate memory" in str(e))
            result.status, result.error = ("oom" if is_oom else "failed"), f"{type(e).__name__}: {_first_line(e)}"
        finally:
            if dev.type == "cuda" and result.status != "done":
                torch.cuda.empty_cache()
    result.wall_time = time.time() - start
    return result


def _space_of(space) -> SearchSpace:
    """The space to train in: names become spaces at the edges (``jointnas.catalog.load_space``)."""
    if not isinstance(space, SearchSpace):
        raise UsageError(f"train() needs the SearchSpace object, got {type(space).__name__}; read a space by "
                         "name or file with jointnas.catalog.load_space")
    if space.family is None:
        raise UsageError(f"space {space.name} has no model family, so the trainer cannot build its models")
    return space


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _run(candidate, task, space, dev, seed, n_epochs, schedule_epochs, resolution, batch_size, workers, progress,
         test, keep_model, result: TrainResult, on_epoch, validate_every_epoch: bool = True) -> None:
    recipe = full_recipe(candidate.recipe)
    model = space.family.build(candidate.arch, num_classes=task.num_classes, in_channels=task.in_channels,
                               input_size=resolution, dropout=float(recipe.get("dropout", 0.0)),
                               drop_path=float(recipe.get("stochastic_depth", 0.0)))
    model = init_weights(model).to(dev, memory_format=torch.channels_last)
    optimizer = build_optimizer(model, recipe)
    generator = torch.Generator(device=dev).manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_batches = make_batches(task.train, task, resolution, dev, batch_size, True, seed, generator, workers,
                                 cutout=float(recipe["cutout"]))
    val_batches = make_batches(task.val, task, resolution, dev, EVAL_BATCH, False, seed, workers=workers)
    calibration = make_batches(task.train.head(BN_CALIBRATION_IMAGES), task, resolution, dev, EVAL_BATCH, False,
                               seed, workers=workers)
    steps_per_epoch = len(train_batches)
    ema = ModelEma(model, ema_decay(steps_per_epoch)) if recipe["ema"] else None
    eval_model = ema.module if ema is not None else model
    base_lr, smoothing, alpha = float(recipe["lr"]), float(recipe["label_smoothing"]), float(recipe["mixup_alpha"])
    clip = float(recipe["grad_clip"])
    bar = tqdm(total=n_epochs * steps_per_epoch, desc=f"train {candidate.key()[:8]}", unit="step",
               disable=not progress, file=sys.stderr, leave=False)
    step, train_time, images_seen = 0, 0.0, 0
    try:
        for epoch in range(1, n_epochs + 1):
            model.train()
            t0 = time.time()
            loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
            n_steps = 0
            for x, y in train_batches:
                x = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
                y = y.to(dev, non_blocking=True)
                lr = lr_at(step, base_lr, steps_per_epoch, schedule_epochs, float(recipe["warmup_epochs"]))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y_a, y_b, lam = mixup_batch(x, y, alpha, rng, generator)
                with _autocast(dev):
                    logits = model(x)
                loss = mixed_loss(logits.float(), y_a, y_b, lam, smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
                if ema is not None:
                    ema.update()
                loss_sum += loss.detach().double()
                step, n_steps, images_seen = step + 1, n_steps + 1, images_seen + len(y)
                if (dev.type != "cuda" or n_steps % CHECK_EVERY == 0) and not math.isfinite(float(loss_sum)):
                    raise Diverged(f"training loss became non-finite in epoch {epoch} (step {step}, lr {lr:.3g})")
                bar.update(1)
            train_loss = float(loss_sum) / max(n_steps, 1)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            train_time += time.time() - t0
            result.images_per_s = images_seen / max(train_time, 1e-9)
            if not math.isfinite(train_loss):
                raise Diverged(f"training loss became non-finite in epoch {epoch}")
            if not validate_every_epoch and epoch < n_epochs:
                result.epochs_run = epoch
                continue
            recalibrate_bn(eval_model, calibration, dev)
            val_loss, val_acc = evaluate(eval_model, val_batches, dev)
            if not math.isfinite(val_loss):
                raise Diverged(f"validation loss became non-finite in epoch {epoch}")
            result.curve.append({"epoch": epoch, "val_acc": val_acc, "val_loss": val_loss, "train_loss": train_loss})
            result.epochs_run = epoch
            bar.set_postfix(epoch=epoch, val_acc=f"{val_acc:.3f}")
            if on_epoch is not None:
                on_epoch(dict(result.curve[-1]))
        if test:
            test_batches = make_batches(task.test, task, resolution, dev, EVAL_BATCH, False, seed, workers=workers)
            result.test_acc = evaluate(eval_model, test_batches, dev)[1]
        if keep_model:
            result.model = eval_model
    finally:
        bar.close()
