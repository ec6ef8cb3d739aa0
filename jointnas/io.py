"""Checks that an output path can be written, made before any work whose result would go there
(a search or a training run should not end in "permission denied"). Nothing is created."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError


def _existing_ancestor(path: Path) -> Path:
    for p in [path, *path.parents]:
        if p.exists():
            return p
    return Path(".")


def _check_can_write_in(path: Path, what: str) -> None:
    """``path`` is an existing directory, or the nearest existing ancestor of a missing one, that
    lets files be made in it."""
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise UsageError(f"{what} {path}: {base} is a file, so nothing can be made under it; choose another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: {base} is not writable; choose a path you can write to")


def check_writable_dir(path, what: str = "output directory") -> Path:
    """``path`` is a directory that exists or can be made, and files can be written in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file; give a directory (it is created if missing)")
    _check_can_write_in(path, what)
    return path


def check_writable_file(path, what: str = "output file") -> Path:
    """``path`` names a file (not a directory) that can be written."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{what} {path} is not writable; choose a path you can write to")
    if not path.exists():
        _check_can_write_in(path.parent, what)
    return path
