"""A one-shot search as a run directory: created whole, locked by its driver, checkpointed after
every epoch, resumed after Ctrl-C or kill -9 to the same alphas an uninterrupted run reaches.

Layout (a :class:`~jointnas.store.RunStore` of its own kind, as a coarse run's)::

    run.db, run.commits, run.lock   config (kind "oneshot"), one "oneshot_epoch" result per epoch,
                                    the "oneshot_result" at the end
    supernet.pt                     the search state after the last finished epoch (weights_only)
    candidate.json                  the derived cell as a candidate (jointnas train --candidate reads it)
    winner/                         the derived cell trained from scratch, when asked for

An epoch's batches depend only on (seed, epoch) and the torch generator is seeded again at the
start of every epoch, so an epoch run again after a resume repeats the lost one exactly.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np

from ..errors import UsageError
from ..evaluation.data import TensorSplit
from ..progress import Progress
from ..store import RunStore
from .checkpoint import load_checkpoint, save_checkpoint
from .halves import Halves, epoch_seed

KIND = "oneshot"
EPOCH = "oneshot_epoch"
RESULT = "oneshot_result"
SPACE_NAMES = {"nb201": "nb201-train", "darts": "darts"}  # one-shot space -> the space its candidate belongs to


@dataclass
class OneShotRunConfig:
    """What defines a one-shot run (stored in its directory; a resume keeps it)."""

    space: str = "nb201"
    strategy: str = "darts"
    data: str = "digits"
    data_root: Optional[str] = None
    seed: int = 0
    quick: bool = True
    resolution: Optional[int] = None          # None: the images' own size when the network takes it, else 32
    settings: Dict = field(default_factory=dict)  # OneShotSettings.to_dict(), resolved when the run is made
    train_epochs: int = 0                     # after the search: train the derived cell from scratch (0: no)
    recipe: Optional[str] = None              # its recipe (name or file); None: the space's default
    kind: str = KIND

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "OneShotRunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def is_oneshot_run(store: RunStore) -> bool:
    return store.config.get("kind") == KIND


def search_resolution(task, asked: Optional[int]) -> int:
    """The supernet's input size: asked, or the stored images' own size when both cell networks take
    it (a multiple of 4, at least 16: Fashion-MNIST 28, CIFAR-10 32), else 32 (upsampled)."""
    if asked is not None:
        return int(asked)
    side = int(task.train.images.shape[-1]) if isinstance(task.train, TensorSplit) else None  # folders: no one size
    return side if side is not None and side >= 16 and side % 4 == 0 else 32


@dataclass
class OneShotResult:
    """What the Python call returns: the derived candidate, the alpha history and the run's record."""

    candidate: object                 # jointnas.space.Candidate
    history: List[dict]               # one record per epoch: losses, accuracies, alphas, skip count, derived arch
    result: dict                      # the end record (cost, tables, training from scratch)
    run_dir: Path

    def alphas(self, name: str = "normal") -> np.ndarray:
        """(epochs, edges, ops) op weights of alpha set ``name`` over the epochs."""
        return np.array([h["alphas"][name] for h in self.history])


class OneShotRun:
    """Drives one run: :meth:`create` or :meth:`open`, then :meth:`run`."""

    def __init__(self, store: RunStore, config: OneShotRunConfig, make_search: Callable, task, device: str,
                 progress: Optional[Progress] = None):
        self.store, self.config, self.task, self.device = store, config, task, device
        self.progress = progress or Progress()
        self.settings = make_settings(config.settings)
        self.halves = Halves.of(task, self.settings.batch_size, self.settings.train_examples)
        self.resolution = search_resolution(task, config.resolution)
        self.search = make_search(config, self.settings, task, self.resolution, device)

    @classmethod
    def create(cls, run_dir, config: OneShotRunConfig, make_search: Callable, task, device: str = "cpu",
               progress: Optional[Progress] = None) -> "OneShotRun":
        """A new run (``run_dir`` absent or empty); the task is loaded by the caller, before anything is made."""
        existed = Path(run_dir).exists()
        store = RunStore.create(run_dir, config.to_dict(), lock=True)
        try:
            return cls(store, config, make_search, task, device, progress)
        except BaseException:  # a search the settings cannot build: leave no run behind (the directory was empty)
            store.close()
            for path in sorted(Path(run_dir).iterdir()) if existed else []:
                path.unlink()
            if not existed:
                shutil.rmtree(run_dir)
            raise

    @classmethod
    def open(cls, run_dir, make_search: Callable, load_task: Callable, device: str = "cpu",
             progress: Optional[Progress] = None) -> "OneShotRun":
        """An existing one-shot run, locked, its checkpoint read back (nothing is written before that)."""
        store = RunStore.open(run_dir, lock=True)
        try:
            if not is_oneshot_run(store):
                raise UsageError(f"{run_dir} is a {store.config.get('kind', 'coarse')} run, not a one-shot run; "
                                 "give a one-shot run directory or a new one")
            config = OneShotRunConfig.from_dict(store.config)
            return cls(store, config, make_search, load_task(config), device, progress)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ state
    def history(self) -> List[dict]:
        return sorted(self.store.results(EPOCH), key=lambda r: r["epoch"])

    def _restore(self) -> int:
        """Load the last checkpoint and bring the database level with it; the next epoch to run."""
        found = load_checkpoint(self.store.run_dir, self.device)
        if found is None:
            return 0
        epoch, state, record = found
        self.search.load_state_dict(state)
        if not any(r["epoch"] == epoch for r in self.store.results(EPOCH)):
            self.store.save_result(EPOCH, record, replace="epoch")  # killed between the checkpoint and this
        return self.settings.epochs if record.get("stopped") else epoch + 1

    def sizes_line(self) -> str:
        s = self.settings
        w, a = self.halves.sizes()
        return (f"one-shot {s.strategy} on {self.config.space}: supernet C={s.channels}, {s.cells} "
                f"{'cells per stage' if self.config.space == 'nb201' else 'cells'}"
                + (f", partial channels 1/{s.partial_channels}" if s.partial_channels > 1 else "")
                + f"; {s.epochs} epochs ({s.warmup_epochs} warm-up), batch {s.batch_size}; {self.task.name}: "
                f"{w} images for w, {a} for alpha, {self.resolution} px; {'second' if s.second_order else 'first'}"
                f" order; collapse remedy {s.remedy}" + (f" (max {s.max_skips} skips)" if s.remedy != "none" else "")
                + f"; device {self.device}")

    # ------------------------------------------------------------------ the search
    def run(self, finish: Optional[Callable] = None) -> OneShotResult:
        """Run the epochs left, then ``finish(self)`` (the end record; see :mod:`jointnas.oneshot.outcome`)."""
        import torch

        start = self._restore()
        epochs, steps = self.settings.epochs, len(self.halves.w) // self.settings.batch_size
        with self.progress.bar(total=epochs * steps, initial=start * steps, unit="step", desc="one-shot") as bar:
            for epoch in range(start, epochs):
                w, a = self.halves.batches(epoch, self.config.seed, self.resolution, self.settings.batch_size,
                                           torch.device(self.device))
                torch.manual_seed(epoch_seed(self.config.seed, epoch, 2))
                began = time.time()
                metrics = self.search.train_epoch(w, a, epoch, on_step=lambda *_: bar.update(1))
                record = self._record(epoch, metrics, time.time() - began)
                save_checkpoint(self.store.run_dir, epoch, self.search.state_dict(), record)
                self.store.save_result(EPOCH, record, replace="epoch")
                bar.n = (epoch + 1) * steps
                bar.refresh()
                self.progress.log(epoch_line(record, epochs))
                if record["stopped"]:
                    self.progress.log(f"collapse: {record['skip_count']} skip connections in the derived cell, "
                                      f"more than {self.settings.max_skips}: the search stops here (remedy "
                                      "early-stop); the cell derived now is the result")
                    break
        history = self.history()
        result = finish(self) if finish is not None else {}
        return OneShotResult(derived_candidate(self.config, history[-1]["derived"]) if history else None,
                             history, result, self.store.run_dir)

    def _record(self, epoch: int, metrics: dict, seconds: float) -> dict:
        alphas = {k: np.asarray(v, dtype=float).round(6).tolist() for k, v in self.search.alphas().items()}
        collapsed = bool(self.search.collapsed())
        return dict({k: float(v) for k, v in metrics.items()}, epoch=int(epoch), seconds=round(seconds, 3),
                    alphas=alphas, skip_count=int(self.search.skip_count()), derived=dict(self.search.derive()),
                    stopped=collapsed and self.settings.remedy == "early-stop")


def epoch_line(record: dict, epochs: int) -> str:
    return (f"epoch {record['epoch'] + 1}/{epochs}: train_acc {record.get('train_acc', float('nan')):.4f} "
            f"valid_acc {record.get('valid_acc', float('nan')):.4f}  skips {record['skip_count']}  "
            f"{record['seconds']:.1f} s")


def derived_candidate(config: OneShotRunConfig, arch: dict):
    """The derived cell as a candidate of the family's space, with that space's default recipe."""
    from ..catalog import load_space
    from ..space import Candidate

    space = load_space(SPACE_NAMES[config.space])
    return Candidate(dict(arch), space.default_recipe(), space=space.name,
                     meta={"source": f"one-shot {config.strategy} search"})


def default_search(config: OneShotRunConfig, settings, task, resolution: int, device: str):
    """The supernet search of ``config``'s space and strategy for ``task``."""
    from .search import OneShotSearch

    return OneShotSearch(config.space, settings, num_classes=task.num_classes, in_channels=task.in_channels,
                         resolution=resolution, device=device, seed=config.seed)


def resolve_settings(strategy: str, space: str, quick: bool, changes: Mapping):
    """The settings of a new run: the strategy's (reference or quick) with ``changes``. PC-DARTS keeps
    its warm-up share of the epochs (15 of 50) when only the number of epochs is changed."""
    from .settings import OneShotSettings

    changes = dict(changes)
    base = OneShotSettings.for_strategy(strategy, space, quick)
    for key, value in changes.items():
        wanted = type(getattr(base, key, value))
        number = wanted is float and isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not isinstance(value, wanted) and not number:
            kind = {int: "a whole number", float: "a number", bool: "true or false"}.get(wanted, wanted.__name__)
            raise UsageError(f"one-shot setting {key}={value!r}: expected {kind}")
    if strategy == "pc-darts" and "epochs" in changes and "warmup_epochs" not in changes:
        changes["warmup_epochs"] = round(changes["epochs"] * 15 / 50)
    return base.override(changes)


def make_settings(values: dict):
    from .settings import OneShotSettings

    return OneShotSettings.from_dict(values)
