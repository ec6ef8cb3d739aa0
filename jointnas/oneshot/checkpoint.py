"""A one-shot run's checkpoint: after every epoch, the whole search state (supernet weights,
alphas, betas, optimizer and scheduler states) with that epoch's record, in one file replaced
atomically, so that a process killed at any moment leaves the previous epoch's checkpoint or this
one, whole. The file holds plain tensors, numbers and strings: ``torch.load(weights_only=True)``
reads it and no code in it runs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Tuple

from ..io import replacing
from ..store.errors import StoreError, writing

CHECKPOINT = "supernet.pt"
FORMAT = 1


def save_checkpoint(run_dir: Path, epoch: int, state: dict, record: dict) -> Path:
    """Write the state after ``epoch`` (0-based) and its record; the record travels as JSON text so
    that the run's database can be brought level with the checkpoint after a kill between the two."""
    import torch

    path = Path(run_dir) / CHECKPOINT
    with writing(path), replacing(path) as tmp:
        torch.save({"format": FORMAT, "epoch": int(epoch), "state": state,
                    "record": json.dumps(record, sort_keys=True)}, tmp)
    return path


def load_checkpoint(run_dir: Path, device="cpu") -> Optional[Tuple[int, dict, dict]]:
    """(epoch, state, record) of the last checkpoint, or None before the first epoch ended."""
    import torch

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location=device, weights_only=True)
        epoch, state, record = int(data["epoch"]), data["state"], json.loads(data["record"])
        if data["format"] != FORMAT or not isinstance(state, dict) or record.get("epoch") != epoch:
            raise ValueError("unexpected contents")
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, EOFError) as e:
        raise StoreError(f"{path} is damaged ({type(e).__name__}); delete it to start the search again from "
                         "epoch 1, or restore the run directory from a copy") from None
    return epoch, state, record
