"""Training and evaluation batches of a task, augmented as the recipe asks.

Small datasets live on the device as uint8 tensors (:class:`TensorBatches`): batches are
resized, randomly shifted (zero padding of 1/8 of the side), flipped where the task allows it,
normalised and cut out there, in one batched op each. Image folders go through a
``DataLoader`` with per-sample transforms in worker processes (:func:`folder_batches`).
Mixup mixes a batch already on the device (:func:`mixup_batch`).
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..optional import torchvision
from .data import FolderSplit, Task, TensorSplit, default_workers


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


def cutout_pixels(fraction: float, side: int) -> int:
    """Side in pixels of a cutout square that is ``fraction`` of a ``side``-pixel image's side."""
    return int(round(fraction * side)) if fraction > 0 else 0


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


def mixup_batch(x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator,
                generator: Optional[torch.Generator] = None):
    """Mix each sample with a shuffled partner: returns ``(x_mixed, y, y_partner, lam)``;
    ``alpha <= 0`` leaves the batch as it is (``lam == 1``)."""
    if alpha <= 0:
        return x, y, y, 1.0
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], device=x.device, generator=generator)
    return x * lam + x[perm] * (1.0 - lam), y, y[perm], lam


class TensorBatches:
    """Batches of a :class:`TensorSplit` made on the device: resize, augment, normalise."""

    def __init__(self, split: TensorSplit, task: Task, resolution: int, device: torch.device, batch_size: int,
                 train: bool, generator: Optional[torch.Generator] = None, cutout: float = 0.0):
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.resolution, self.batch_size, self.train, self.generator = resolution, batch_size, train, generator
        self.cutout = cutout_pixels(cutout, resolution)  # a fraction of the side, whatever the stored size
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
                   train: bool, seed: int, workers: Optional[int] = None, cutout: float = 0.0):
    """A DataLoader with per-sample PIL transforms in worker processes (image folders); ``cutout``
    is a fraction of the training crop's side."""
    T = torchvision("transforms", "reading an image folder")  # heavy to import, and only image folders need it

    if train:
        ops = [T.RandomResizedCrop(resolution, scale=(0.25, 1.0))] + ([T.RandomHorizontalFlip()] if task.flip else [])
    else:
        ops = [T.Resize(int(round(resolution / 0.875))), T.CenterCrop(resolution)]
    transform = T.Compose(ops + [T.ToTensor(), T.Normalize(task.mean, task.std)])
    workers = default_workers() if workers is None else workers
    return torch.utils.data.DataLoader(
        _FolderView(split, transform, cutout_pixels(cutout, resolution) if train else 0), batch_size=batch_size, shuffle=train,
        drop_last=train and len(split) > batch_size,
        num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed))


def make_batches(split, task: Task, resolution: int, device: torch.device, batch_size: int, train: bool,
                 seed: int, generator: Optional[torch.Generator] = None, workers: Optional[int] = None,
                 cutout: float = 0.0):
    """Batches of ``split`` at ``resolution``: on the device for tensors, from a DataLoader for folders;
    ``cutout``: the side of the square cut out of each training image, as a fraction of the image's side."""
    if isinstance(split, TensorSplit):
        return TensorBatches(split, task, resolution, device, batch_size, train, generator, cutout)
    return folder_batches(split, task, resolution, device, batch_size, train, seed, workers, cutout)
