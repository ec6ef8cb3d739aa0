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
  recipe's ``epochs`` (:func:`lr_at`).
* ``weight_decay`` on conv/linear weights only, never on BatchNorm or bias parameters.
* ``label_smoothing`` and ``mixup_alpha`` (Beta(alpha, alpha) mixing of shuffled pairs, 0 = off)
  shape the training loss; validation loss is plain cross-entropy.
* ``cutout``: side in pixels of the dataset's images (scaled to the training resolution) of one
  square per training image, at a random centre that may lie near the border, set to the
  dataset mean (DeVries & Taylor 2017); 0 = off.
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

``optimizer`` and ``lr`` are required; every other key of :data:`RECIPE_KEYS` may be
left out of a space and takes its :data:`RECIPE_DEFAULTS` value (the dimension is off). A recipe
key outside :data:`RECIPE_KEYS` is refused (:func:`check_recipe_dims`), never ignored.

Two choices make short runs measurable: weights start as in torchvision's MobileNetV3 (He
fan-out convs, small classifier) with the last BatchNorm of every residual block at zero, and
BatchNorm statistics are recomputed on up to ``BN_CALIBRATION_IMAGES`` un-augmented training
images before every evaluation. Without the first a preset barely moves in two epochs; without
the second, running statistics lag the fast-changing weights and a net that is 70 % right in
training mode scores chance in eval mode.

Small datasets live on the device as uint8 tensors; batches are resized, randomly shifted
(zero padding of 1/8 of the side), flipped where the task allows it and normalised there, in
one batched op each. Image folders go through a ``DataLoader`` with workers. On CUDA the
forward pass runs under bf16 autocast; the model is channels-last on every device (faster on
CPU too, see BENCHMARKS.md). On CPU the same seed gives the same curve.

Failure is data: a non-finite loss stops training with status ``diverged``, running out of
memory gives ``oom`` and any other error during training ``failed``; the curve measured so far
is kept and :func:`train` does not raise for these.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .data import FolderSplit, Task, TensorSplit, default_workers
from ..errors import SpaceError, UsageError
from ..families.mbconv_net import MBConv
from ..space import Candidate, SearchSpace

OPTIMIZERS = ("sgd", "sgd_plain", "rmsprop", "adam", "adamw")
REQUIRED_RECIPE_KEYS = ("optimizer", "lr")
# What an optional recipe key is when a space leaves it out: the dimension switched off.
RECIPE_DEFAULTS = {"weight_decay": 0.0, "momentum": 0.9, "batch_size": None, "label_smoothing": 0.0,
                   "mixup_alpha": 0.0, "cutout": 0, "grad_clip": 0.0, "dropout": 0.0, "stochastic_depth": 0.0,
                   "ema": False, "warmup_epochs": 0, "epochs": None}
RECIPE_KEYS = frozenset(REQUIRED_RECIPE_KEYS) | frozenset(RECIPE_DEFAULTS)  # every key the trainer acts on
# Recipe keys that reach the model through its family's build (``ModelFamily.recipe_dims``).
MODEL_RECIPE_DIMS = ("dropout", "stochastic_depth")
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


# --------------------------------------------------------------------------- recipe pieces
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


def param_groups(model: nn.Module, weight_decay: float) -> List[dict]:
    """Two groups: conv/linear weights get ``weight_decay``; BN parameters and biases (1-d) get none."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def full_recipe(recipe: Mapping) -> dict:
    """``recipe`` with every optional key it lacks set to its default (off); refuses unknown keys."""
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise UsageError(f"recipe key(s) {', '.join(unknown)} are not acted on by the trainer; "
                         f"it knows {', '.join(sorted(RECIPE_KEYS))}")
    missing = [k for k in REQUIRED_RECIPE_KEYS if k not in recipe]
    if missing:
        raise UsageError(f"recipe lacks {', '.join(missing)} (the trainer requires {', '.join(REQUIRED_RECIPE_KEYS)})")
    return {**RECIPE_DEFAULTS, **recipe}


def check_recipe_dims(recipe_dims: Mapping, source: str) -> None:
    """Refuse a space whose recipe the trainer cannot act on, naming ``source`` (its file) and the key:
    unknown keys, missing required ones, optimizer choices it does not know, negative sizes."""
    for key in recipe_dims:
        if key not in RECIPE_KEYS:
            raise SpaceError(f"{source}: recipe.{key}: the trainer does not act on this key; "
                             f"it knows {', '.join(sorted(RECIPE_KEYS))}")
    for key in REQUIRED_RECIPE_KEYS:
        if key not in recipe_dims:
            raise SpaceError(f"{source}: recipe.{key}: required by the trainer but missing")
    unknown = sorted(set(_choices(recipe_dims["optimizer"])) - set(OPTIMIZERS))
    if unknown:
        raise SpaceError(f"{source}: recipe.optimizer: unknown choice(s) {', '.join(map(str, unknown))}; "
                         f"the trainer knows {', '.join(OPTIMIZERS)}")
    for key, low in (("batch_size", 1), ("epochs", 1), ("cutout", 0), ("grad_clip", 0), ("momentum", 0),
                     ("warmup_epochs", 0), ("lr", 0)):
        if key in recipe_dims and _low(recipe_dims[key]) < low:
            raise SpaceError(f"{source}: recipe.{key}: values must be at least {low}")
    if "momentum" in recipe_dims and _high(recipe_dims["momentum"]) >= 1:
        raise SpaceError(f"{source}: recipe.momentum: values must be below 1")


def _choices(dim) -> list:
    choices = getattr(dim, "choices", None)
    return list(choices() if callable(choices) else choices) if choices is not None else []


def _numbers(dim) -> list:
    if hasattr(dim, "low"):
        return [dim.low, dim.high]
    return [v for v in _choices(dim) if isinstance(v, (int, float)) and not isinstance(v, bool)] or [0]


def _low(dim) -> float:
    return min(_numbers(dim))


def _high(dim) -> float:
    return max(_numbers(dim))


def build_optimizer(model: nn.Module, recipe: Mapping) -> torch.optim.Optimizer:
    recipe = full_recipe(recipe)
    groups = param_groups(model, float(recipe["weight_decay"]))
    lr, name, momentum = float(recipe["lr"]), recipe["optimizer"], float(recipe["momentum"])
    # One fused kernel over all parameters instead of a Python loop over tensors: on a CPU an
    # AdamW step of FBNetV3_A takes 9 ms instead of 50 (BENCHMARKS.md, "Small-map paths", part 4).
    # torch has no fused RMSprop.
    fused = {"fused": True} if _fusable(model) else {}
    if name in ("sgd", "sgd_plain"):  # Nesterov needs a momentum; without one both are plain SGD
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=name == "sgd" and momentum > 0, **fused)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=0.0316, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, **fused)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, **fused)
    raise UsageError(f"unknown optimizer {name!r}; the trainer knows {', '.join(OPTIMIZERS)}")


def _fusable(model: nn.Module) -> bool:
    """Whether torch's fused optimizers take these parameters (floating point, on a CPU or GPU; torch >= 2.4)."""
    params = list(model.parameters())
    return (tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4) and bool(params)
            and all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params))


def lr_at(step: int, base_lr: float, steps_per_epoch: int, epochs: int, warmup_epochs: float) -> float:
    """Learning rate of optimisation step ``step`` (0-based): linear warmup, then cosine to 0."""
    total = max(1, epochs * steps_per_epoch)
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total - 1)
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def mixup_batch(x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator,
                generator: Optional[torch.Generator] = None):
    """Mix each sample with a shuffled partner: returns ``(x_mixed, y, y_partner, lam)``;
    ``alpha <= 0`` leaves the batch as it is (``lam == 1``)."""
    if alpha <= 0:
        return x, y, y, 1.0
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], device=x.device, generator=generator)
    return x * lam + x[perm] * (1.0 - lam), y, y[perm], lam


def mixed_loss(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float,
               label_smoothing: float) -> torch.Tensor:
    loss = F.cross_entropy(logits, y_a, label_smoothing=label_smoothing)
    if lam < 1.0:
        loss = lam * loss + (1.0 - lam) * F.cross_entropy(logits, y_b, label_smoothing=label_smoothing)
    return loss


def ema_decay(steps_per_epoch: int) -> float:
    """EMA decay whose time constant is one epoch of steps (see the module docstring)."""
    return 1.0 - 1.0 / max(2, steps_per_epoch)


class ModelEma:
    """Exponential moving average of a model's floating-point parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
        self._float = [(e, m) for e, m in pairs if e.dtype.is_floating_point]
        self._other = [(e, m) for e, m in pairs if not e.dtype.is_floating_point]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current weights (the model given at creation)."""
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        torch._foreach_lerp_([e for e, _ in self._float], [m for _, m in self._float], 1.0 - d)
        for e, m in self._other:
            e.copy_(m)


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


# --------------------------------------------------------------------------- data on the device
def random_shift(x: torch.Tensor, pad: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Batched random crop: zero-pad by ``pad`` and cut each sample at its own random offset."""
    if pad <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    off = torch.randint(0, 2 * pad + 1, (2, b), device=x.device, generator=generator)
    rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def cutout(x: torch.Tensor, size: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Batched cutout: zero one ``size`` x ``size`` square per sample (normalised inputs, so zero is
    the dataset mean) at a random centre anywhere in the image, the square clipped at the border."""
    if size <= 0:
        return x
    b, _, h, w = x.shape
    centre = torch.rand(2, b, device=x.device, generator=generator)
    top = (centre[0] * h).long() - size // 2
    left = (centre[1] * w).long() - size // 2
    rows = torch.arange(h, device=x.device)[None, :] - top[:, None]
    cols = torch.arange(w, device=x.device)[None, :] - left[:, None]
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return x.masked_fill(inside[:, None], 0.0)


def random_flip(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class TensorBatches:
    """Batches of a :class:`TensorSplit` made on the device: resize, augment, normalise."""

    def __init__(self, split: TensorSplit, task: Task, resolution: int, device: torch.device, batch_size: int,
                 train: bool, generator: Optional[torch.Generator] = None, cutout: int = 0):
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.resolution, self.batch_size, self.train, self.generator = resolution, batch_size, train, generator
        # cutout is given in pixels of the stored images; the square scales with the resize
        self.cutout = int(round(cutout * resolution / self.images.shape[-1])) if cutout > 0 else 0
        self.flip = task.flip
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(task.mean, device=device).view(shape)
        self.std = torch.tensor(task.std, device=device).view(shape)

    def __len__(self) -> int:
        n = len(self.labels)
        return max(1, n // self.batch_size) if self.train else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.train:  # full batches only: a batch of one breaks BatchNorm at 1x1 feature maps
            order = torch.randperm(n, device=self.images.device, generator=self.generator)
            bs = min(self.batch_size, n)
            chunks = [order[i * bs:(i + 1) * bs] for i in range(len(self))]
        else:
            chunks = [slice(i, i + self.batch_size) for i in range(0, n, self.batch_size)]
        for idx in chunks:
            yield self.prepare(self.images[idx]), self.labels[idx]

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255.0)
        size = self.resolution
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > size)
        if self.train:
            x = random_shift(x, size // 8, self.generator)
            if self.flip:
                x = random_flip(x, self.generator)
        x = (x - self.mean) / self.std
        if self.train and self.cutout:
            x = cutout(x, self.cutout, self.generator)
        return x.contiguous(memory_format=torch.channels_last)


class _FolderView(torch.utils.data.Dataset):
    def __init__(self, split: FolderSplit, transform, cutout: int = 0):
        self.split, self.transform, self.cutout = split, transform, cutout

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        image, label = self.split.dataset[self.split.indices[i]]
        x = self.transform(image)
        if self.cutout:  # worker processes draw from their own seeded torch generator
            x = cutout(x[None], self.cutout)[0]
        return x, label


def folder_batches(split: FolderSplit, task: Task, resolution: int, device: torch.device, batch_size: int,
                   train: bool, seed: int, workers: Optional[int] = None, cutout: int = 0):
    """A DataLoader with per-sample PIL transforms in worker processes (image folders); ``cutout``
    is in pixels of the training crop (folder images have no one stored size)."""
    from torchvision import transforms as T

    if train:
        ops = [T.RandomResizedCrop(resolution, scale=(0.25, 1.0))] + ([T.RandomHorizontalFlip()] if task.flip else [])
    else:
        ops = [T.Resize(int(round(resolution / 0.875))), T.CenterCrop(resolution)]
    transform = T.Compose(ops + [T.ToTensor(), T.Normalize(task.mean, task.std)])
    workers = default_workers() if workers is None else workers
    return torch.utils.data.DataLoader(
        _FolderView(split, transform, cutout if train else 0), batch_size=batch_size, shuffle=train,
        drop_last=train and len(split) > batch_size,
        num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed))


def make_batches(split, task: Task, resolution: int, device: torch.device, batch_size: int, train: bool,
                 seed: int, generator: Optional[torch.Generator] = None, workers: Optional[int] = None,
                 cutout: int = 0):
    if isinstance(split, TensorSplit):
        return TensorBatches(split, task, resolution, device, batch_size, train, generator, cutout)
    return folder_batches(split, task, resolution, device, batch_size, train, seed, workers, cutout)


# --------------------------------------------------------------------------- loops
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
    space = _space_of(space, candidate)
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


def _space_of(space, candidate) -> SearchSpace:
    """The space to train in: a SearchSpace, or (at this public entry point) a space name or file."""
    if not isinstance(space, SearchSpace):
        from ..catalog import load_space

        space = load_space(space or candidate.space)
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
                                 cutout=int(recipe["cutout"]))
    val_batches = make_batches(task.val, task, resolution, dev, EVAL_BATCH, False, seed, workers=workers)
    calibration = make_batches(task.train.head(BN_CALIBRATION_IMAGES), task, resolution, dev, EVAL_BATCH, False,
                               seed, workers=workers)
    steps_per_epoch = len(train_batches)
    ema = ModelEma(model, ema_decay(steps_per_epoch)) if recipe["ema"] else None
    eval_model = ema.module if ema is not None else model
    base_lr, smoothing, alpha = float(recipe["lr"]), float(recipe["label_smoothing"]), float(recipe["mixup_alpha"])
    clip = float(recipe["grad_clip"])

    from tqdm import tqdm

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
