"""The one-shot search from Python: one call that makes (or continues) a run directory and returns
the derived candidate with the alpha history, as ``jointnas oneshot`` does on the command line.

    from jointnas import oneshot_search
    found = oneshot_search("runs/os", space="nb201", strategy="pc-darts", data="fashion-mnist")
    found.candidate, found.alphas("normal")   # the derived cell; (epochs, edges, ops) op weights
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Optional

from ..progress import Progress
from ..store import RunStore
from .halves import Halves
from .outcome import check_recipe, finish
from .run import OneShotResult, OneShotRun, OneShotRunConfig, default_search, resolve_settings


def oneshot_search(run_dir=None, space: str = "nb201", strategy: str = "darts", data: str = "digits", *,
                   data_root=None, seed: int = 0, quick: bool = True, settings: Optional[Mapping] = None,
                   resolution: Optional[int] = None, train_epochs: int = 0, recipe: Optional[str] = None,
                   device: str = "auto", progress: bool = False) -> OneShotResult:
    """Search ``space`` ("nb201" or "darts") with ``strategy`` ("darts", "darts-2nd", "pc-darts") on
    ``data``; ``settings`` overrides fields of :class:`~jointnas.oneshot.settings.OneShotSettings`
    (``quick``: the CPU preset, else the published settings). A ``run_dir`` that holds a one-shot
    run is continued with its own settings (the other arguments are then not used)."""
    from ..evaluation.data import load_task
    from ..evaluation.trainer import resolve_device

    dev = str(resolve_device(device))
    bars = Progress(bars=progress)
    def load(config):
        return load_task(config.data, config.data_root, seed=config.seed)

    if run_dir is not None and RunStore.is_run(run_dir):
        run = OneShotRun.open(run_dir, default_search, load, dev, bars)
    else:
        chosen = resolve_settings(strategy, space, quick, settings or {})
        config = OneShotRunConfig(space=space, strategy=strategy, data=data,
                                  data_root=None if data_root is None else str(data_root), seed=seed, quick=quick,
                                  resolution=resolution, settings=chosen.to_dict(), train_epochs=train_epochs,
                                  recipe=recipe)
        check_recipe(recipe, space)
        run_dir = Path(run_dir) if run_dir is not None else Path("runs") / time.strftime("oneshot-%Y%m%d-%H%M%S")
        RunStore.check_new_dir(run_dir)
        task = load(config)
        Halves.of(task, chosen.batch_size, chosen.train_examples)  # too few images: refused before the run is made
        run = OneShotRun.create(run_dir, config, default_search, task, dev, bars)
    try:
        return run.run(finish)
    finally:
        run.close()
