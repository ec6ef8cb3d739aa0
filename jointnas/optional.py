"""Optional dependencies: torchvision is the ``vision`` extra (CIFAR-10, image folders, torchvision
models). The digits, fashion-mnist and FBNetV3 paths never import it, so a CPU-only install
without a matching torchvision wheel runs them."""
from __future__ import annotations

import importlib

from .errors import UsageError

VISION_HINT = "pip install 'jointnas[vision]' (with a torchvision that matches your torch)"


def torchvision(submodule: str, needed_by: str):
    """``torchvision.<submodule>``, or one UsageError saying that ``needed_by`` needs torchvision."""
    try:
        return importlib.import_module(f"torchvision.{submodule}")
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("torchvision"):
            raise
        raise UsageError(f"{needed_by} needs torchvision: {VISION_HINT}") from None
    except (ImportError, RuntimeError) as e:  # installed, but built for another torch
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{needed_by} needs torchvision, and the installed one does not import ({first}): "
                         f"{VISION_HINT}") from None
