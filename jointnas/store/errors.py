"""How a failure of a run's files reaches the user: one StoreError line that names the file and
what to do (a damaged database, a full disk), and RunInUse for a run that another driver holds."""
from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import UsageError


class StoreError(UsageError):
    """A run directory's files are damaged, inconsistent or cannot be written; the message names
    the file and what to do."""


class RunInUse(StoreError):
    """Another driver holds the run's lock."""


def no_space_message(path: Path, reason: str) -> str:
    free = ""
    try:
        free = f", {shutil.disk_usage(Path(path).parent).free / 2**20:.1f} MiB free there"
    except OSError:
        pass
    return (f"could not write {path} ({reason.strip().splitlines()[0][:120] if reason.strip() else 'write failed'}"
            f"{free}); free some space and run the same command again: the run continues where it stopped")


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Writes of ``path`` inside: a full disk (or a failed write) becomes one StoreError line."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
            raise StoreError(no_space_message(path, os.strerror(e.errno))) from None
        raise


# SQLite's primary result codes that mean the file, not the program, is at fault.
_CORRUPT = {11: "damaged", 26: "not a database"}
_NO_SPACE = {13: "disk full", 10: "disk I/O error"}


def store_error(db: Path, e: sqlite3.DatabaseError) -> Exception:
    """SQLite's complaint about ``db`` as a StoreError where the file is at fault, else ``e``."""
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    if code in _NO_SPACE:
        return StoreError(no_space_message(db, str(e)))
    if code in _CORRUPT or type(e) is sqlite3.DatabaseError:
        return StoreError(f"{db} is damaged ({e}); restore the run directory from a copy, or start a new run")
    return e


def guard(db: Path, fn, *args):
    """``fn(*args)`` with SQLite's complaints about the file turned into one StoreError line."""
    try:
        return fn(*args)
    except sqlite3.IntegrityError:
        raise
    except sqlite3.DatabaseError as e:
        raise store_error(db, e) from None
    except UnicodeDecodeError:  # a text column's bytes (see schema.connect's text factory)
        raise StoreError(f"{db} is damaged (a stored text is not UTF-8); restore the run directory from a copy, "
                         "or start a new run") from None
