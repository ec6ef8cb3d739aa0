"""Where the folders that ship with jointnas are found: ``spaces/``, ``predictors/``,
``recipes/`` and ``data/``. (Provisional: a source checkout's top-level folders, else
``sys.prefix/share/jointnas``; the packaging work replaces the second with package data.)"""
from __future__ import annotations

import sys
from pathlib import Path

KINDS = ("spaces", "predictors", "recipes", "data")


def folder(kind: str) -> Path:
    """The folder of shipped ``kind`` files (it may not exist when nothing of that kind ships)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of shipped files {kind!r}; known: {', '.join(KINDS)}")
    here = Path(__file__).resolve().parent.parent / kind
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "jointnas" / kind
