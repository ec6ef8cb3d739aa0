"""A trained model on disk, one directory:

- ``weights.pt``     the evaluated weights (the EMA ones when the recipe has ``ema``) as a plain
  state dict of CPU tensors: ``torch.load(path, weights_only=True)`` reads it, no code runs;
- ``model.json``     how to build the network the weights fit (the space as a mapping, arch,
  classes, channels, training resolution), read by :func:`jointnas.catalog.load_trained`;
- ``candidate.json`` the candidate (``jointnas train --candidate`` reads it);
- ``recipe.yaml``    its training recipe;
- ``curve.json``     the training result: per-epoch curve, status, test accuracy, device, and the
  data, seed and training subset it was trained with.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Tuple

import yaml

from ..errors import UsageError
from ..io import atomic_write_text, check_writable_dir, replacing
from ..space import Candidate, SearchSpace

WEIGHTS = "weights.pt"

def _write(path: Path, data) -> None:
    """Write atomically, so that an interrupted save never leaves half a file."""
    if isinstance(data, str):
        atomic_write_text(path, data)
        return
    import torch  # torch: every command imports this module (jointnas.cli.train); few save weights

    with replacing(path) as tmp:
        torch.save(data, tmp)

def save_trained(out_dir, candidate, result, model, space, *, num_classes: int, in_channels: int,
                 training: Optional[dict] = None) -> Path:
    """Write ``model`` (trained from ``candidate`` of ``space``, giving ``result``) under ``out_dir``.

    ``training`` (data, seed, train subset...) goes into ``curve.json`` beside the result."""
    out_dir = check_writable_dir(out_dir, "save directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    # The space itself, not its name: the model rebuilds where the space's file is not at hand.
    build = {"space": space.to_dict(), "arch": candidate.arch, "num_classes": num_classes,
             "in_channels": in_channels, "input_size": result.resolution}
    _write(out_dir / WEIGHTS, state)
    _write(out_dir / "model.json", json.dumps(build, indent=2, sort_keys=True) + "\n")
    _write(out_dir / "candidate.json", json.dumps(candidate.to_dict(), indent=2, sort_keys=True) + "\n")
    _write(out_dir / "recipe.yaml", f"# training recipe of candidate {candidate.key()}\n"
           + yaml.safe_dump(dict(candidate.recipe), sort_keys=False))
    _write(out_dir / "curve.json", json.dumps(dict(result.to_dict(), training=training or {}), indent=2,
                                              sort_keys=True) + "\n")
    return out_dir

def read_trained(path) -> Tuple[dict, Candidate, dict]:
    """(the ``model.json`` record, the :class:`Candidate`, the weights) of a directory that
    :func:`save_trained` wrote; the weights are read with ``weights_only=True`` (no code runs).
    ``jointnas.catalog.load_trained`` builds the model from them."""
    import torch  # torch: see _write

    path = Path(path)
    try:
        build = json.loads((path / "model.json").read_text())
        candidate = Candidate.from_json((path / "candidate.json").read_text())
        state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise UsageError(f"{path} is not a saved jointnas model ({type(e).__name__}: {e})") from None
    return build, candidate, state

def build_untrained(build: dict, space: SearchSpace):
    """The network described by a ``model.json`` record, in ``space``, with fresh weights, in eval mode."""
    return space.family.build(build["arch"], num_classes=build["num_classes"], in_channels=build["in_channels"],
                              input_size=build["input_size"]).eval()
