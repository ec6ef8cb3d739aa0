"""The files of a run beside run.db: the pool arrays, the commit mirror, checksums and the lock; and
run.db and its WAL checked from their bytes, before SQLite is let near them."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ..io import atomic_file, atomic_write_text
from .errors import RunInUse, StoreError, writing
from .schema import COMMITS_NAME, DB_NAME, LOCK_NAME, NEW_DB, WAL_NAME


def leftover_of_creation(name: str) -> bool:
    """A file that a creation of a run killed half-way may leave (it does not make a directory a run)."""
    return name.startswith(NEW_DB) or name in (LOCK_NAME, COMMITS_NAME) or name.startswith(f".{COMMITS_NAME}.")


# ---------------------------------------------------------------------- checksums
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file(path: Path, digest: str, what_to_do: str) -> None:
    if not path.is_file():
        raise StoreError(f"{path} is missing; {what_to_do}")
    if sha256(path) != digest:
        raise StoreError(f"{path} is damaged (its SHA-256 differs from the one recorded when it was written); "
                         f"{what_to_do}")


# ---------------------------------------------------------------------- the pool arrays
POOL_ARRAYS = {"pool.npy": (np.float64, None), "pool_costs.npy": (np.int64, 2)}  # dtype, columns


def check_pool_file(path: Path, digest: str) -> None:
    check_file(path, digest, "the run's pool cannot be restored; restore the file from a copy of the run, "
               "or start a new run")


def save_pool_arrays(run_dir: Path, values: np.ndarray, costs: np.ndarray) -> Dict[str, str]:
    """Write the pool's values and costs; returns each file's SHA-256 by name."""
    files = {}
    for name, arr in (("pool.npy", values), ("pool_costs.npy", costs)):
        path = run_dir / name
        with writing(path), atomic_file(path) as f:
            np.save(f, arr)
        files[name] = sha256(path)
    return files


def load_pool_arrays(run_dir: Path) -> Tuple[np.ndarray, np.ndarray]:
    values, costs = (load_array(run_dir / name, *POOL_ARRAYS[name]) for name in POOL_ARRAYS)
    return values, costs


def _not_a_pool_array(path: Path, what: str) -> StoreError:
    return StoreError(f"{path} is not a jointnas pool array ({what}); restore it from a copy of the run, "
                      "or start a new run")


def _check_shape(path: Path, dtype, cols: Optional[int], got_dtype, shape) -> None:
    if got_dtype != dtype or len(shape) != 2 or (cols is not None and shape[1] != cols):
        raise _not_a_pool_array(path, f"an array of dtype {got_dtype} and shape {tuple(shape)}, where jointnas "
                                      f"writes {np.dtype(dtype)} (n, {cols or 'dims'})")


def check_array_header(path: Path, dtype, cols: Optional[int]) -> None:
    """The .npy header alone (no data, no unpickling): an object array is refused before anything loads it."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, got = read(f)
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise _not_a_pool_array(path, str(e)[:100]) from None
    _check_shape(path, dtype, cols, got, shape)


def load_array(path: Path, dtype, cols: Optional[int]) -> np.ndarray:
    """np.load with allow_pickle=False never runs code; an array of another kind than jointnas writes is refused."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise _not_a_pool_array(path, str(e)[:100]) from None
    _check_shape(path, dtype, cols, arr.dtype, arr.shape)
    return arr


# ---------------------------------------------------------------------- the commit counter
def write_commits(run_dir: Path, commits: int, finished: int) -> None:
    path = Path(run_dir) / COMMITS_NAME
    with writing(path):
        atomic_write_text(path, json.dumps({"commits": commits, "finished": finished}) + "\n")


def read_commits(run_dir: Path) -> Optional[dict]:
    path = Path(run_dir) / COMMITS_NAME
    try:
        data = json.loads(path.read_text())
        return {"commits": int(data["commits"]), "finished": int(data["finished"])}
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError):
        raise StoreError(f"{path} is damaged; copy it again with the rest of the run directory") from None


# ---------------------------------------------------------------------- run.db and its WAL, by their bytes
SQLITE_HEADER = b"SQLite format 3\x00"
WAL_MAGIC = (0x377F0682, 0x377F0683)
RESTORE = "restore the run directory from a copy, or start a new run; nothing was changed"


def _size(path: Path) -> Optional[int]:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def orphan_wal(run_dir: Path) -> Optional[StoreError]:
    """The refusal for a run directory whose run.db is gone but whose WAL still holds transactions."""
    wal_size = _size(Path(run_dir) / WAL_NAME)
    if not wal_size:
        return None
    return StoreError(f"{Path(run_dir) / DB_NAME} is missing but {WAL_NAME} holds {wal_size} bytes of its "
                      f"transactions: restore run.db from a copy of the run and keep {WAL_NAME} beside it; "
                      "nothing was changed")


def check_database_files(run_dir: Path) -> None:
    """run.db and run.db-wal as SQLite will find them, read from their bytes before any SQLite
    connection: SQLite deletes the WAL of an empty database and quietly skips a WAL it cannot read,
    so what it would lose is refused here first, with everything left as it was."""
    db, wal = Path(run_dir) / DB_NAME, Path(run_dir) / WAL_NAME
    size, wal_size = _size(db), _size(wal)
    if size is None:
        raise orphan_wal(run_dir) or StoreError(f"{db} is missing; {RESTORE}")
    if size == 0:
        if wal_size:
            raise StoreError(f"{db} is empty but {WAL_NAME} holds {wal_size} bytes: the database was truncated "
                             f"or replaced, and opening it would throw the log away; restore run.db from a copy of "
                             f"the run and keep {WAL_NAME} beside it; nothing was changed")
        raise StoreError(f"{db} is empty (0 bytes); {RESTORE}")
    with open(db, "rb") as f:
        head = f.read(100)
    if len(head) < 100 or not head.startswith(SQLITE_HEADER):
        raise StoreError(f"{db} is not a SQLite database (its first bytes are not SQLite's header); {RESTORE}")
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    if page < 512 or page & (page - 1):
        raise StoreError(f"{db} is damaged (its header gives a page size of {page} bytes); {RESTORE}")
    if size % page:
        raise StoreError(f"{db} is cut short ({size} bytes, not a whole number of {page}-byte pages); {RESTORE}")
    if wal_size:
        with open(wal, "rb") as f:
            wal_head = f.read(32)
        magic = int.from_bytes(wal_head[:4], "big") if len(wal_head) == 32 else None
        if magic not in WAL_MAGIC or int.from_bytes(wal_head[8:12], "big") != page:
            raise StoreError(f"{wal} is damaged (it does not start as a SQLite write-ahead log of {page}-byte "
                             f"pages); restore it from a copy of the run, or start a new run; nothing was changed")


# ---------------------------------------------------------------------- the run lock
class RunLock:
    """run.lock, open and held (flock) by this process; ``made``: this process created the file, so
    a refused open removes it again and leaves the directory as it found it."""

    def __init__(self, file, path: Path, made: bool):
        self.file, self.path, self.made = file, path, made


def _open_lock_file(path: Path) -> Tuple[int, bool]:
    with writing(path):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            return os.open(path, os.O_RDWR), False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(text: str) -> str:
    try:
        h = json.loads(text)
        pid, host, since = int(h["pid"]), str(h["host"]), h["since"]
    except (ValueError, KeyError, TypeError):
        return "a process that is still starting"
    if host == socket.gethostname() and not _alive(pid):
        return "a process that is still starting"  # the lock's last holder is dead: its successor is checking the run
    return f"pid {pid} on host {host}, since {since}"


def take_lock(run_dir: Path) -> RunLock:
    """Lock ``run_dir`` for this process (flock on run.lock: released by the kernel however the
    process ends, SIGKILL included); RunInUse naming the holder if another process has it. The
    file's contents are not touched until :func:`announce_lock`."""
    path = Path(run_dir) / LOCK_NAME
    while True:
        fd, made = _open_lock_file(path)
        f = os.fdopen(fd, "r+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = f.read().strip()
            f.close()
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise RunInUse(f"{run_dir} is in use by another jointnas driver ({_holder(holder)}); wait for it to "
                           "finish or stop it, then run the same command again") from None
        try:
            same = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return RunLock(f, path, made)
        f.close()  # a refused open removed the file that this process locked: lock the one there now


def announce_lock(lock: Optional[RunLock]) -> None:
    """Write this process's pid, host and start time into the held run.lock (what a second driver shows)."""
    if lock is None:
        return
    holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                         "since": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n"
    with writing(lock.path):
        os.ftruncate(lock.file.fileno(), 0)
        os.pwrite(lock.file.fileno(), holder.encode(), 0)


def release_lock(lock: Optional[RunLock], undo: bool = False) -> None:
    """Release the lock; ``undo``: remove run.lock if this process made it (still holding it, so that
    whoever opened it meanwhile finds it gone and locks the next one)."""
    if lock is None:
        return
    if undo and lock.made:
        try:
            os.unlink(lock.path)
        except FileNotFoundError:
            pass
    lock.file.close()  # closing the descriptor releases the flock
