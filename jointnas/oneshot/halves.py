"""The bilevel data of a one-shot search: the training split cut in two halves, the first for the
network weights w and the second for the architecture weights alpha (DARTS's split of CIFAR-10's
training set), and each epoch's batches in an order that depends on the seed and the epoch only,
so that an epoch run again after a resume sees exactly the batches it saw the first time."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..errors import UsageError
from ..evaluation.data import FolderSplit, Task, TensorSplit


def _part(split, start: int, stop: int):
    if isinstance(split, TensorSplit):
        return TensorSplit(split.images[start:stop], split.labels[start:stop],
                           None if split.index is None else split.index[start:stop])
    return FolderSplit(split.dataset, split.indices[start:stop])


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """One seed per (run seed, epoch, stream): the w and alpha halves draw from different streams."""
    return (int(seed) * 1_000_003 + int(epoch) * 101 + int(stream)) % (2 ** 63)


@dataclass
class Halves:
    """The two halves of ``task``'s training split (its first ``images`` images when given)."""

    task: Task
    w: object
    alpha: object

    @classmethod
    def of(cls, task: Task, batch_size: int, images: Optional[int] = None) -> "Halves":
        n = len(task.train) if images is None else min(int(images), len(task.train))
        half = n // 2
        if half < batch_size:
            raise UsageError(f"{task.name}: {n} training images give halves of {half}, fewer than one batch of "
                             f"{batch_size}; use more training images or a smaller batch")
        return cls(task, _part(task.train, 0, half), _part(task.train, half, 2 * half))

    def sizes(self) -> Tuple[int, int]:
        return len(self.w), len(self.alpha)

    def batches(self, epoch: int, seed: int, resolution: int, batch_size: int, device):
        """(w batches, alpha batches) of ``epoch``: shuffled and augmented (shift, flip) as the
        trainer does, from generators seeded by (seed, epoch)."""
        import torch

        from ..evaluation.batches import make_batches

        out = []
        for stream, split in enumerate((self.w, self.alpha)):
            s = epoch_seed(seed, epoch, stream)
            generator = torch.Generator(device=device).manual_seed(s)
            out.append(make_batches(split, self.task, resolution, device, batch_size, True, s, generator, workers=0))
        return out[0], out[1]
