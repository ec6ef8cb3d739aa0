"""A run directory and its SQLite store: config, candidate pool, trials, results, predictors.

Layout of a run directory::

    run.db                 SQLite (WAL): meta, trials, results, predictors
    run.commits            how many transactions run.db has committed, written after each one
    run.lock               held (flock) by the driver of the run while it runs: pid and host inside
    pool.npy, pool_costs.npy   the feasible candidate pool (values) and its [flops, params]
    predictors/iter<k>.pt  predictor checkpoint after iteration k (iter0 = encoder pretrained on proxies)
    predictor.pt           the final predictor, written when the run completes

Every state change is one transaction, so a process killed at any moment leaves the store
consistent: a trial is either queued, running (re-queued on resume) or finished with its
whole result. Several processes may read and write one store at the same time, but only one
driver (``open(..., lock=True)``) runs a run at a time.

run.db alone cannot tell that it lost its write-ahead log (a copy of run.db without
run.db-wal, a damaged WAL): SQLite then quietly shows an older state. So every transaction
bumps a counter in the database and, once committed, mirrors it into run.commits; a database
behind its mirror is refused instead of being resumed from the older state.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import UsageError
from ..space import Candidate, SearchSpace as Space
from ..space.pool import decode_values, encode_values  # noqa: F401 - the row codec, re-exported
from ..trial import STATUSES as TRIAL_STATUSES, measured_score, score_at

DB_NAME = "run.db"
COMMITS_NAME = "run.commits"
LOCK_NAME = "run.lock"
_NEW_DB = ".run.db.new"
FORMAT = 1
FINISHED = TRIAL_STATUSES
STATUSES = ("queued", "running") + FINISHED

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    pool_index INTEGER,
    iteration INTEGER NOT NULL,
    candidate TEXT NOT NULL,
    target_epochs INTEGER,
    status TEXT NOT NULL DEFAULT 'queued',
    curve TEXT NOT NULL DEFAULT '[]',
    final_acc REAL,
    epochs_run INTEGER NOT NULL DEFAULT 0,
    flops INTEGER NOT NULL,
    params INTEGER NOT NULL,
    device TEXT,
    worker TEXT,
    error TEXT,
    wall_time REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    queued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS trials_status ON trials(status);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_kind ON results(kind);
CREATE TABLE IF NOT EXISTS predictors (
    iteration INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    created REAL NOT NULL,
    info TEXT NOT NULL
);
"""


class StoreError(UsageError):
    """A run directory's files are damaged, inconsistent or cannot be written; the message names
    the file and what to do."""


class RunInUse(StoreError):
    """Another driver holds the run's lock."""


@dataclass
class Trial:
    """One (candidate, training) record of a run. Accuracies are fractions in [0, 1]."""

    id: int
    candidate: Candidate
    status: str
    curve: List[dict]
    final_acc: Optional[float]
    flops: int
    params: int
    device: Optional[str]
    iteration: int
    wall_time: Optional[float]
    target_epochs: Optional[int] = None  # epochs it was asked to train; None = its recipe's (capped) schedule
    epochs_run: int = 0
    pool_index: Optional[int] = None
    error: Optional[str] = None
    worker: Optional[str] = None
    attempts: int = 0
    queued_at: Optional[float] = None
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    key: str = field(default="", repr=False)

    def score_at(self, epoch: int) -> Optional[float]:
        """Score (validation accuracy for the trainer) after ``epoch`` epochs; a curve shorter than
        that gives its last value."""
        return score_at(self.curve, epoch)

    acc_at = score_at  # the name from when every score was an accuracy

    def measured_score(self, epoch: int, diverged_score: Optional[float] = None) -> Optional[float]:
        return measured_score(self.status, self.curve, epoch, diverged_score)


class RunStore:
    """Open with :meth:`open` (an existing run) or :meth:`create` (a new one)."""

    def __init__(self, run_dir: Path, conn: sqlite3.Connection, lock=None):
        self.run_dir = Path(run_dir)
        self._conn = conn
        self._config: Optional[dict] = None
        self._lock = lock  # the open run.lock file while this store is a run's driver

    @property
    def db_path(self) -> Path:
        return self.run_dir / DB_NAME

    # ------------------------------------------------------------------ opening
    @staticmethod
    def is_run(run_dir) -> bool:
        return (Path(run_dir) / DB_NAME).is_file()

    @classmethod
    def check_new_dir(cls, run_dir) -> Path:
        """Raise UsageError unless ``run_dir`` can hold a new run (absent, or an empty directory)."""
        path = Path(run_dir)
        if path.exists() and not path.is_dir():
            raise UsageError(f"{path} is a file, not a run directory; give a new directory for the run")
        if path.is_dir() and any(not _leftover_of_creation(p.name) for p in path.iterdir()):
            raise UsageError(f"{path} is not empty and is not a jointnas run (no {DB_NAME}); "
                             "give an empty or new directory for the run")
        return path

    @classmethod
    def create(cls, run_dir, config: dict, lock: bool = False) -> "RunStore":
        """A new store, made under a temporary name and renamed into place: whoever sees run.db sees
        a complete one (a leftover of a creation killed half-way does not block the next try).
        ``lock``: hold the run's lock from the start (see :meth:`open`)."""
        path = cls.check_new_dir(run_dir)
        path.mkdir(parents=True, exist_ok=True)
        held = take_lock(path) if lock else None
        try:
            path = cls.check_new_dir(path)  # another creator may have won the race before the lock
            for leftover in path.glob(_NEW_DB + "*"):
                leftover.unlink()
            conn = _connect(path / _NEW_DB)
            _guard(path / _NEW_DB, conn.execute, "BEGIN IMMEDIATE")
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            for key, value in (("format", FORMAT), ("created", time.time()), ("commits", 0)):
                conn.execute("INSERT INTO meta VALUES (?, ?)", (key, json.dumps(value)))
            conn.execute("INSERT INTO meta VALUES ('config', ?)", (json.dumps(config, sort_keys=True),))
            conn.execute("COMMIT")
            conn.close()  # checkpoints and removes the WAL, so the file alone is the whole database
            _write_commits(path, 0, 0)
            os.replace(path / _NEW_DB, path / DB_NAME)
        except BaseException:
            release_lock(held)
            raise
        return cls(path, _connect(path / DB_NAME), held)

    @classmethod
    def open(cls, run_dir, lock: bool = False) -> "RunStore":
        """An existing run. ``lock=True`` (the run's driver): take the run's lock, held until
        :meth:`close` or the process's death, and check every file of the run before returning
        (:class:`RunInUse` / :class:`StoreError` otherwise)."""
        path = Path(run_dir)
        db = path / DB_NAME
        if not db.is_file():
            raise UsageError(f"{path} is not a jointnas run (no {DB_NAME} in it)")
        held = take_lock(path) if lock else None
        try:
            mirrored = _read_commits(path)  # before the database: a commit may land in between
            # The checks read through a read-only connection: closing it never checkpoints the WAL into
            # run.db, so a store refused here is left exactly as it was found, for whoever restores it.
            ro = _connect(db, readonly=True)
            try:
                row = _guard(db, lambda: ro.execute("SELECT value FROM meta WHERE key='format'").fetchone())
                if row is None or _loads(row[0], db, "meta") != FORMAT:
                    raise UsageError(f"{db} has store format {row and _loads(row[0], db, 'meta')!r}; this jointnas "
                                     f"reads format {FORMAT}")
                store = cls(path, ro)
                store._check_not_rolled_back(mirrored)
                if lock:
                    store.verify()
            finally:
                ro.close()
            store._conn, store._lock = _connect(db), held
        except BaseException:
            release_lock(held)
            raise
        return store

    def _check_not_rolled_back(self, mirrored: Optional[dict]) -> None:
        commits = self.get_meta("commits")
        if commits is None:
            return  # a run made before commit counting: nothing to compare with
        if mirrored is None:
            raise StoreError(f"{self.run_dir / COMMITS_NAME} is missing, so {self.db_path} cannot show that it is "
                             "complete; copy the whole run directory (run.db, run.db-wal, run.commits) or start a new run")
        if commits < mirrored["commits"]:
            finished = self._count_finished()
            raise StoreError(
                f"{self.db_path} holds {commits} of the {mirrored['commits']} transactions the run committed "
                f"({finished} of {mirrored['finished']} finished trials): its write-ahead log {DB_NAME}-wal is "
                "missing or damaged, or run.db was copied without it; restore the run directory as it was "
                "(run.db and run.db-wal together), or start a new run")

    def verify(self) -> None:
        """Every page of the database, every stored row, the pool files and the predictor
        checkpoints: StoreError naming the first damaged one. Cheap (a run's files are small) and
        done before any training, so damage costs nothing."""
        db = self.db_path
        check = _guard(db, lambda: self._conn.execute("PRAGMA quick_check").fetchall())
        if check != [("ok",)]:
            raise StoreError(f"{db} is damaged ({check[0][0][:120]}); restore the run directory from a copy, "
                             "or start a new run")
        for r in self._select("SELECT key, value FROM meta"):
            _loads(r["value"], db, f"meta {r['key']!r}")
        for row in self._select("SELECT * FROM trials"):
            _trial(row, db)
        for r in self._select("SELECT id, kind, payload FROM results"):
            _loads(r["payload"], db, f"result {r['id']} ({r['kind']})")
        info = self.pool_info()
        if info is not None:
            for name, digest in info["files"].items():
                _check_file(self.run_dir / name, digest, "the run's pool cannot be restored; restore the file "
                            "from a copy of the run, or start a new run")
                _check_array_header(self.run_dir / name, *_POOL_ARRAYS[name])
        for r in self._select("SELECT iteration, path, info FROM predictors"):
            digest = _loads(r["info"], db, f"predictor {r['iteration']}").get("sha256")
            path = self.run_dir / r["path"]
            if digest is not None and path.is_file():  # a missing checkpoint is made again
                _check_file(path, digest, "delete it and it is fitted again from the stored trials, or restore it "
                            "from a copy of the run")

    def close(self) -> None:
        self._conn.close()
        release_lock(self._lock)
        self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlocks).
        It bumps the commit counter, mirrored into run.commits once committed."""
        c = self._conn
        db = self.db_path
        _guard(db, c.execute, "BEGIN IMMEDIATE")
        try:
            yield c
            row = c.execute("SELECT value FROM meta WHERE key='commits'").fetchone()
            commits = None if row is None else json.loads(row[0]) + 1
            if commits is not None:
                c.execute("UPDATE meta SET value=? WHERE key='commits'", (json.dumps(commits),))
                finished = self._count_finished()
            c.execute("COMMIT")
        except BaseException as e:
            try:
                c.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled back (disk full, I/O error)
            if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.IntegrityError):
                raise _store_error(db, e) from None
            raise
        if commits is not None:
            _write_commits(self.run_dir, commits, finished)

    def _count_finished(self) -> int:
        marks = ",".join("?" * len(FINISHED))
        return self._select(f"SELECT COUNT(*) AS n FROM trials WHERE status IN ({marks})", FINISHED)[0]["n"]

    def _select(self, sql: str, args=()) -> List[dict]:
        cur = _guard(self.db_path, self._conn.execute, sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in _guard(self.db_path, cur.fetchall)]

    # ------------------------------------------------------------------ meta and config
    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._select("SELECT value FROM meta WHERE key=?", (key,))
        return default if not rows else _loads(rows[0]["value"], self.db_path, f"meta {key!r}")

    def set_meta(self, key: str, value: Any) -> None:
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = self.get_meta("config")
        return dict(self._config)

    def update_config(self, **changes) -> None:
        config = dict(self.config, **changes)
        self.set_meta("config", config)
        self._config = config

    # ------------------------------------------------------------------ pool
    def save_pool(self, space: Space, candidates: Sequence[Candidate], costs: np.ndarray, **info) -> None:
        values = encode_values(space, candidates)
        costs = np.asarray(costs, dtype=np.int64).reshape(len(candidates), 2)
        files = {}
        for name, arr in (("pool.npy", values), ("pool_costs.npy", costs)):
            tmp = self.run_dir / (name + ".tmp")
            with writing(tmp):
                with open(tmp, "wb") as f:
                    np.save(f, arr)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.run_dir / name)
            files[name] = _sha256(self.run_dir / name)
        self.set_meta("pool", {"files": files, "size": len(candidates), "space": space.name,
                               "fingerprint": space.fingerprint(), "keys": [c.key() for c in candidates[:1]],
                               **info})

    def pool_info(self) -> Optional[dict]:
        return self.get_meta("pool")

    def load_pool(self, space: Space) -> Tuple[List[Candidate], np.ndarray]:
        info = self.pool_info()
        if info is None:
            raise UsageError(f"run {self.run_dir} has no pool yet")
        if info["fingerprint"] != space.fingerprint():
            raise UsageError(f"run {self.run_dir} was made with another version of space {info['space']!r}")
        for name, digest in info["files"].items():
            _check_file(self.run_dir / name, digest, "the run's pool cannot be restored; restore the file from a "
                        "copy of the run, or start a new run")
        values, costs = (_load_array(self.run_dir / name, *_POOL_ARRAYS[name]) for name in _POOL_ARRAYS)
        candidates = decode_values(space, values)
        if len(candidates) != info["size"] or (candidates and candidates[0].key() != info["keys"][0]):
            raise UsageError(f"the pool of run {self.run_dir} does not decode to the candidates it was saved from")
        return candidates, costs

    # ------------------------------------------------------------------ trials
    def add_trials(self, iteration: int, entries: Iterable[Tuple[Optional[int], Candidate, int, int]],
                   target_epochs: Optional[int] = None) -> List[int]:
        """Queue ``(pool_index, candidate, flops, params)`` entries in one transaction; returns trial ids.

        A candidate already in the store is refused (sqlite3.IntegrityError): nothing is trained twice.
        """
        now = time.time()
        ids = []
        with self._write() as c:
            for pool_index, cand, flops, params in entries:
                cur = c.execute(
                    "INSERT INTO trials (key, pool_index, iteration, candidate, target_epochs, flops, params, "
                    "queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (cand.key(), None if pool_index is None else int(pool_index), int(iteration),
                     cand.to_json(), target_epochs, int(flops), int(params), now))
                ids.append(cur.lastrowid)
        return ids

    def mark_running(self, trial_id: int, worker: str = "") -> None:
        with self._write() as c:
            c.execute("UPDATE trials SET status='running', worker=?, started_at=?, attempts=attempts+1 "
                      "WHERE id=?", (worker, time.time(), trial_id))

    def record_result(self, trial_id: int, result: dict, retries: int = 0) -> None:
        """Write a trainer result (``TrainResult.to_dict()``) in one transaction; ``retries``: the times
        it was started again after its worker died (added to its attempts)."""
        status = result.get("status", "failed")
        if status not in FINISHED:
            raise ValueError(f"cannot record a trial as {status!r}")
        curve = result.get("curve") or []
        with self._write() as c:
            c.execute("UPDATE trials SET status=?, curve=?, final_acc=?, epochs_run=?, device=?, error=?, "
                      "wall_time=?, finished_at=?, attempts=attempts+? WHERE id=?",
                      (status, json.dumps(curve), result.get("final_acc"),
                       int(result.get("epochs_run") or len(curve)), result.get("device"), result.get("error"),
                       result.get("wall_time"), time.time(), int(retries), trial_id))

    def requeue_running(self) -> int:
        """Trials left 'running' by a process that died go back to the queue; returns how many."""
        with self._write() as c:
            return c.execute("UPDATE trials SET status='queued', worker=NULL, started_at=NULL "
                             "WHERE status='running'").rowcount

    def requeue_failed(self) -> int:
        """Trials that failed (crashed, lost their worker) go back to the queue; returns how many.
        Their attempt counts stay: they keep counting."""
        with self._write() as c:
            return c.execute("UPDATE trials SET status='queued', worker=NULL, started_at=NULL, error=NULL, "
                             "finished_at=NULL, curve='[]', final_acc=NULL, epochs_run=0 "
                             "WHERE status='failed'").rowcount

    def trials(self, status=None, iteration: Optional[int] = None) -> List[Trial]:
        """Trials in insertion order; ``status`` is one status or a sequence of them."""
        sql, args = "SELECT * FROM trials", []
        where = []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args += statuses
        if iteration is not None:
            where.append("iteration=?")
            args.append(int(iteration))
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_trial(row, self.db_path) for row in self._select(sql + " ORDER BY id", args)]

    def trial_keys(self) -> set:
        return {row["key"] for row in self._select("SELECT key FROM trials")}

    def counts(self) -> Dict[str, int]:
        return {r["status"]: r["n"] for r in self._select("SELECT status, COUNT(*) AS n FROM trials GROUP BY status")}

    # ------------------------------------------------------------------ results
    def save_result(self, kind: str, payload: dict, replace: Optional[str] = None) -> None:
        """Append a result; ``replace``: a payload key whose value, if an earlier result of ``kind``
        shares it, makes this one take that one's place (a checkpoint made again is evaluated once)."""
        with self._write() as c:
            if replace is not None:
                c.execute("DELETE FROM results WHERE kind=? AND json_extract(payload, ?)=?",
                          (kind, f"$.{replace}", payload[replace]))
            c.execute("INSERT INTO results (kind, created, payload) VALUES (?, ?, ?)",
                      (kind, time.time(), json.dumps(payload, sort_keys=True)))

    def results(self, kind: str) -> List[dict]:
        rows = self._select("SELECT id, payload FROM results WHERE kind=? ORDER BY id", (kind,))
        return [_loads(r["payload"], self.db_path, f"result {r['id']} ({kind})") for r in rows]

    # ------------------------------------------------------------------ predictor checkpoints
    def predictor_file(self, iteration: int) -> Path:
        """Where the checkpoint of ``iteration`` goes (0 = encoder pretrained on proxies only)."""
        return self.run_dir / "predictors" / f"iter{int(iteration)}.pt"

    def register_predictor(self, iteration: int, path, **info) -> None:
        """Record the checkpoint at ``path`` with its SHA-256 (checked by :meth:`verify`)."""
        rel = os.path.relpath(Path(path), self.run_dir)
        info = dict(info, sha256=_sha256(Path(path)))
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO predictors VALUES (?, ?, ?, ?)",
                      (int(iteration), rel, time.time(), json.dumps(info, sort_keys=True)))

    def predictor_path(self, iteration: Optional[int] = None) -> Optional[Path]:
        """The checkpoint of ``iteration``, or with None the latest accuracy predictor (iteration >= 1)."""
        if iteration is None:
            rows = self._select("SELECT path FROM predictors WHERE iteration >= 1 ORDER BY iteration DESC LIMIT 1")
        else:
            rows = self._select("SELECT path FROM predictors WHERE iteration=?", (int(iteration),))
        if not rows:
            return None
        path = self.run_dir / rows[0]["path"]
        return path if path.is_file() else None

    def predictors(self) -> List[dict]:
        rows = self._select("SELECT iteration, path, created, info FROM predictors ORDER BY iteration")
        return [{"iteration": r["iteration"], "path": str(self.run_dir / r["path"]), "created": r["created"],
                 **_loads(r["info"], self.db_path, f"predictor {r['iteration']}")} for r in rows]


# ---------------------------------------------------------------------- helpers
def _leftover_of_creation(name: str) -> bool:
    return name.startswith(_NEW_DB) or name in (LOCK_NAME, COMMITS_NAME) or name.startswith(f".{COMMITS_NAME}.")


def _connect(db: Path, readonly: bool = False) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (see RunStore._write); timeout waits for other writers.
    if readonly:
        conn = sqlite3.connect(f"file:{urllib.parse.quote(str(db))}?mode=ro", uri=True, timeout=60, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=60000")
        return conn
    conn = _guard(db, lambda: sqlite3.connect(str(db), timeout=60, isolation_level=None))
    _guard(db, conn.execute, "PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


def _trial(row: dict, db: Path) -> Trial:
    where = f"trial {row['id']}"
    if row["status"] not in STATUSES:
        raise StoreError(f"{db} is damaged: {where} has status {row['status']!r}, not one of {', '.join(STATUSES)}; "
                         "restore the run directory from a copy, or start a new run")
    try:
        candidate = Candidate.from_json(row["candidate"])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise StoreError(f"{db} is damaged: {where} has an unreadable candidate ({type(e).__name__}); restore the "
                         "run directory from a copy, or start a new run") from None
    curve = _loads(row["curve"], db, where)
    if not isinstance(curve, list) or not all(isinstance(e, dict) for e in curve):
        raise StoreError(f"{db} is damaged: {where} has a curve that is not a list of epochs; restore the run "
                         "directory from a copy, or start a new run")
    return Trial(id=row["id"], candidate=candidate, status=row["status"],
                 curve=curve, final_acc=row["final_acc"], flops=row["flops"],
                 params=row["params"], device=row["device"], iteration=row["iteration"],
                 wall_time=row["wall_time"], target_epochs=row["target_epochs"], epochs_run=row["epochs_run"],
                 pool_index=row["pool_index"], error=row["error"], worker=row["worker"],
                 attempts=row["attempts"], queued_at=row["queued_at"], started_at=row["started_at"],
                 finished_at=row["finished_at"], key=row["key"])


def _loads(text, db: Path, where: str):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise StoreError(f"{db} is damaged: {where} is not valid JSON; restore the run directory from a copy, "
                         "or start a new run") from None


# SQLite's primary result codes that mean the file, not the program, is at fault.
_CORRUPT = {11: "damaged", 26: "not a database"}
_NO_SPACE = {13: "disk full", 10: "disk I/O error"}


def _store_error(db: Path, e: sqlite3.DatabaseError) -> Exception:
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    if code in _NO_SPACE:
        return StoreError(no_space_message(db, str(e)))
    if code in _CORRUPT or type(e) is sqlite3.DatabaseError:
        return StoreError(f"{db} is damaged ({e}); restore the run directory from a copy, or start a new run")
    return e


def _guard(db: Path, fn, *args):
    """``fn(*args)`` with SQLite's complaints about the file turned into one StoreError line."""
    try:
        return fn(*args)
    except sqlite3.IntegrityError:
        raise
    except sqlite3.DatabaseError as e:
        raise _store_error(db, e) from None


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


def _check_file(path: Path, digest: str, what_to_do: str) -> None:
    if not path.is_file():
        raise StoreError(f"{path} is missing; {what_to_do}")
    if _sha256(path) != digest:
        raise StoreError(f"{path} is damaged (its SHA-256 differs from the one recorded when it was written); "
                         f"{what_to_do}")


_POOL_ARRAYS = {"pool.npy": (np.float64, None), "pool_costs.npy": (np.int64, 2)}  # dtype, columns


def _not_a_pool_array(path: Path, what: str) -> StoreError:
    return StoreError(f"{path} is not a jointnas pool array ({what}); restore it from a copy of the run, "
                      "or start a new run")


def _check_shape(path: Path, dtype, cols: Optional[int], got_dtype, shape) -> None:
    if got_dtype != dtype or len(shape) != 2 or (cols is not None and shape[1] != cols):
        raise _not_a_pool_array(path, f"an array of dtype {got_dtype} and shape {tuple(shape)}, where jointnas "
                                      f"writes {np.dtype(dtype)} (n, {cols or 'dims'})")


def _check_array_header(path: Path, dtype, cols: Optional[int]) -> None:
    """The .npy header alone (no data, no unpickling): an object array is refused before anything loads it."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, got = read(f)
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise _not_a_pool_array(path, str(e)[:100]) from None
    _check_shape(path, dtype, cols, got, shape)


def _load_array(path: Path, dtype, cols: Optional[int]) -> np.ndarray:
    """np.load with allow_pickle=False never runs code; an array of another kind than jointnas writes is refused."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise _not_a_pool_array(path, str(e)[:100]) from None
    _check_shape(path, dtype, cols, arr.dtype, arr.shape)
    return arr


# ---------------------------------------------------------------------- the commit counter
def _write_commits(run_dir: Path, commits: int, finished: int) -> None:
    path = Path(run_dir) / COMMITS_NAME
    tmp = path.with_name(f".{COMMITS_NAME}.{os.getpid()}.tmp")
    with writing(path):
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps({"commits": commits, "finished": finished}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


def _read_commits(run_dir: Path) -> Optional[dict]:
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
