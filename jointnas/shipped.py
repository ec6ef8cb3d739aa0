"""Where the folders that ship with jointnas are found: ``spaces/``, ``predictors/``, ``recipes/``
and ``data/``.

They live at the top of the source tree (the files users read and edit). A wheel carries each
folder's files as package data under ``jointnas/_shipped/<kind>/`` (setup.py maps them there), read
through :mod:`importlib.resources`, so every install scheme finds them: a venv, ``pip install
--user``, ``--target``, a system Python. A source checkout (on ``PYTHONPATH`` or installed editable)
has no ``_shipped`` folder: there the top-level folders beside the package are the shipped ones.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import JointnasError

KINDS = ("spaces", "predictors", "recipes", "data")
PACKAGED = "_shipped"  # the folder under the installed package (setup.py's mapping)


def folder(kind: str) -> Path:
    """The folder of shipped ``kind`` files (it may not exist when nothing of that kind ships)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of shipped files {kind!r}; known: {', '.join(KINDS)}")
    package = resources.files(__package__)
    if not isinstance(package, Path):
        # e.g. jointnas imported from a zip file: torch.load and the YAML reader need real files.
        raise JointnasError(f"jointnas is imported from {package}, not from a folder; its shipped {kind} "
                            "are read as files: install it with pip (a wheel) instead")
    if (package / PACKAGED).is_dir():
        return package / PACKAGED / kind
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout / kind
    raise JointnasError(f"this jointnas ({package}) has no shipped {kind}: it was installed without its "
                        "package data; reinstall it with pip from a wheel or a source checkout")
