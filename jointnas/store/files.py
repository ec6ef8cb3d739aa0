"""The files of a run beside run.db: the pool arrays, the commit mirror, checksums and the lock."""
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
from .schema import COMMITS_NAME, LOCK_NAME, NEW_DB


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


# ---------------------------------------------------------------------- the run lock
def take_lock(run_dir: Path):
    """Lock ``run_dir`` for this process (flock on run.lock: released by the kernel however the
    process ends, SIGKILL included); RunInUse naming the holder if another process has it."""
    path = Path(run_dir) / LOCK_NAME
    with writing(path):
        f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        if e.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        try:
            h = json.loads(holder)
            who = f"pid {h['pid']} on host {h['host']}, since {h['since']}"
        except (ValueError, KeyError, TypeError):
            who = "a process that is still starting"
        raise RunInUse(f"{run_dir} is in use by another jointnas driver ({who}); wait for it to finish or stop "
                       "it, then run the same command again") from None
    holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                         "since": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n"
    try:
        with writing(path):
            os.ftruncate(f.fileno(), 0)
            os.pwrite(f.fileno(), holder.encode(), 0)
    except BaseException:
        f.close()
        raise
    return f


def release_lock(f) -> None:
    if f is not None:
        f.close()  # closing the descriptor releases the flock
