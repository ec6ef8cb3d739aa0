"""Writing files: checks that an output path can be written, made before any work whose result
would go there (a search or a training run should not end in "permission denied"; nothing is
created), and the one way a file is written atomically. Also the one note on what FLOPs count."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from .errors import UsageError

FLOPS_NOTE = "fvcore's count of the deployable model, one multiply-add = one flop"
FLOPS_NOTE_SHORT = "fvcore count, 1 multiply-add = 1 flop"  # the same, where a line is short (axes, tables)


def _existing_ancestor(path: Path) -> Path:
    for p in [path, *path.parents]:
        if p.exists():
            return p
    return Path(".")


def _check_can_write_in(path: Path, what: str) -> None:
    """``path`` is an existing directory, or the nearest existing ancestor of a missing one, that
    lets files be made in it: tried by making and removing a file there (``os.access`` says yes to
    root everywhere, /proc included, where nothing can be made)."""
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise UsageError(f"{what} {path}: {base} is a file, so nothing can be made under it; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".jointnas-probe-", dir=base)
    except OSError as e:
        raise UsageError(f"{what} {path}: nothing can be made in {base} ({e.strerror or e}); choose a path "
                         "you can write to") from None
    os.close(fd)
    os.unlink(probe)


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
    if path.exists():
        try:  # opened to append, nothing written: the file is left as it is (a FIFO does not block)
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK))
        except OSError as e:
            raise UsageError(f"{what} {path} cannot be written ({e.strerror or e}); choose a path you can write "
                             "to") from None
    else:
        _check_can_write_in(path, what)
    return path


@contextmanager
def replacing(path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer to fill: when the block ends without an error
    it is flushed to disk (fsync) and renamed over ``path`` in one step, so a reader, or a process
    killed at any moment, sees the old file or the new one, never half of one. On an error the
    temporary file is removed and ``path`` is left as it was. The temporary name carries the pid:
    two processes may write the same file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_file(path, mode: str = "wb") -> Iterator[IO]:
    """A file object whose contents replace ``path`` atomically (see :func:`replacing`)."""
    with replacing(path) as tmp:
        with open(tmp, mode) as f:
            yield f


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_file(path, "wb") as f:
        f.write(data)


def atomic_write_text(path, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text)
