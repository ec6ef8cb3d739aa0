"""A run directory opened safely: created whole, locked by its driver, checked before use and
changed one transaction at a time (what it records is :class:`~jointnas.store.run_store.RunStore`'s).

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

Opening a run never writes to it before it has been checked: SQLite, even read-only, rewrites
run.db-shm, creates run.db-wal, and deletes the WAL of an empty run.db. So run.db and its WAL are
first checked from their bytes, then read through a private copy; only a store that passed is
opened in place, and only then is run.lock's holder written. A refused store is left
byte-identical, every file of it, ready to be restored.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Type, TypeVar

from ..errors import UsageError
from .errors import StoreError, guard, store_error, writing
from .files import (POOL_ARRAYS, announce_lock, check_array_header, check_database_files, check_file,
                    check_pool_file, leftover_of_creation, orphan_wal, read_commits, release_lock, take_lock,
                    write_commits)
from .schema import (COMMITS_NAME, DB_NAME, FINISHED, NEW_DB, WAL_NAME, build_database, check_format, connect,
                     loads, trial_from_row)

D = TypeVar("D", bound="RunDirectory")


class RunDirectory:
    """The run's database, its commit mirror and its lock. Open with :meth:`open` (an existing run)
    or :meth:`create` (a new one)."""

    def __init__(self, run_dir: Path, conn: sqlite3.Connection, lock=None):
        self.run_dir = Path(run_dir)
        self._conn = conn
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
        if path.is_dir() and not (path / DB_NAME).exists() and orphan_wal(path) is not None:
            raise orphan_wal(path)
        if path.is_dir() and any(not leftover_of_creation(p.name) for p in path.iterdir()):
            raise UsageError(f"{path} is not empty and is not a jointnas run (no {DB_NAME}); "
                             "give an empty or new directory for the run")
        return path

    @classmethod
    def create(cls: Type[D], run_dir, config: dict, lock: bool = False) -> D:
        """A new store, made under a temporary name and renamed into place: whoever sees run.db sees
        a complete one (a leftover of a creation killed half-way does not block the next try).
        ``lock``: hold the run's lock from the start (see :meth:`open`)."""
        path = cls.check_new_dir(run_dir)
        path.mkdir(parents=True, exist_ok=True)
        held = take_lock(path) if lock else None
        try:
            path = cls.check_new_dir(path)  # another creator may have won the race before the lock
            announce_lock(held)
            for leftover in path.glob(NEW_DB + "*"):
                leftover.unlink()
            build_database(path / NEW_DB, config)
            write_commits(path, 0, 0)
            os.replace(path / NEW_DB, path / DB_NAME)
        except BaseException:
            release_lock(held)
            raise
        return cls(path, connect(path / DB_NAME), held)

    @classmethod
    def open(cls: Type[D], run_dir, lock: bool = False) -> D:
        """An existing run. ``lock=True`` (the run's driver): take the run's lock, held until
        :meth:`close` or the process's death, and check every file of the run before returning
        (:class:`RunInUse` / :class:`StoreError` otherwise). A run refused here is left byte-identical."""
        path = Path(run_dir)
        db = path / DB_NAME
        if not db.is_file():
            raise orphan_wal(path) or UsageError(f"{path} is not a jointnas run (no {DB_NAME} in it)")
        held = take_lock(path) if lock else None
        try:
            check_database_files(path)  # before SQLite: it would delete or skip what it cannot read
            store = cls._checked(path, verify=lock)
            store._conn = connect(db)  # checked: now SQLite may recover the WAL in place
            store._lock = held
            announce_lock(held)
        except BaseException:
            release_lock(held, undo=True)  # run.lock too is left as it was found
            raise
        return store

    _COPY_TRIES = 20

    @classmethod
    def _checked(cls: Type[D], path: Path, verify: bool) -> D:
        """The store at ``path`` checked (format, no rollback, and with ``verify`` every file) through a
        copy of run.db and its WAL in a private directory: SQLite writes only to the copy. A copy torn
        by a writer (the files changed while it was made) is made again; should a busy writer never
        let it finish, the live store is read read-only instead (with a writer at work it is no store
        to refuse)."""
        db = path / DB_NAME
        for _ in range(cls._COPY_TRIES):
            mirrored = read_commits(path)  # before the database: a commit may land in between
            with tempfile.TemporaryDirectory(prefix="jointnas-check-") as tmp:
                seen = _signature(path)
                copied = _copy_database(path, Path(tmp))
                if _signature(path) != seen:
                    time.sleep(0.05)
                    continue
                return cls._check(path, connect(copied, readonly=True), mirrored, verify)
        return cls._check(path, connect(db, readonly=True), read_commits(path), verify)

    @classmethod
    def _check(cls: Type[D], path: Path, conn: sqlite3.Connection, mirrored: Optional[dict], verify: bool) -> D:
        try:
            check_format(conn, path / DB_NAME)
            store = cls(path, conn)  # it names the run's files; it reads run.db through ``conn``
            store._check_not_rolled_back(mirrored)
            if verify:
                store.verify()
        finally:
            conn.close()
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
        check = guard(db, lambda: self._conn.execute("PRAGMA quick_check").fetchall())
        if check != [("ok",)]:
            found = " ".join(check[0][0].split())[:120]
            raise StoreError(f"{db} is damaged ({found}); restore the run directory from a copy, or start a new run")
        for r in self._select("SELECT key, value FROM meta"):
            loads(r["value"], db, f"meta {r['key']!r}")
        for row in self._select("SELECT * FROM trials"):
            trial_from_row(row, db)
        for r in self._select("SELECT id, kind, payload FROM results"):
            loads(r["payload"], db, f"result {r['id']} ({r['kind']})")
        info = self.get_meta("pool")
        if info is not None:
            for name, digest in info["files"].items():
                check_pool_file(self.run_dir / name, digest)
                check_array_header(self.run_dir / name, *POOL_ARRAYS[name])
        for r in self._select("SELECT iteration, path, info FROM predictors"):
            digest = loads(r["info"], db, f"predictor {r['iteration']}").get("sha256")
            path = self.run_dir / r["path"]
            if digest is not None and path.is_file():  # a missing checkpoint is made again
                check_file(path, digest, "delete it and it is fitted again from the stored trials, or restore it "
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
        guard(db, c.execute, "BEGIN IMMEDIATE")
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
                raise store_error(db, e) from None
            raise
        if commits is not None:
            write_commits(self.run_dir, commits, finished)

    def _count_finished(self) -> int:
        marks = ",".join("?" * len(FINISHED))
        return self._select(f"SELECT COUNT(*) AS n FROM trials WHERE status IN ({marks})", FINISHED)[0]["n"]

    def _select(self, sql: str, args=()) -> List[dict]:
        cur = guard(self.db_path, self._conn.execute, sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in guard(self.db_path, cur.fetchall)]

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._select("SELECT value FROM meta WHERE key=?", (key,))
        return default if not rows else loads(rows[0]["value"], self.db_path, f"meta {key!r}")

    def set_meta(self, key: str, value: Any) -> None:
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))


def _signature(path: Path) -> tuple:
    """What changes when a writer touches run.db or its WAL."""
    out = []
    for name in (DB_NAME, WAL_NAME):
        try:
            st = os.stat(path / name)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def _copy_database(path: Path, dest: Path) -> Path:
    """run.db and its WAL copied into ``dest`` (not run.db-shm: SQLite rebuilds it from the WAL)."""
    for name in (DB_NAME, WAL_NAME):
        try:
            with writing(dest / name):
                shutil.copyfile(path / name, dest / name)
        except FileNotFoundError:
            if name == DB_NAME:
                raise StoreError(f"{path / DB_NAME} went missing while it was being opened; restore the run "
                                 "directory from a copy, or start a new run") from None
    return dest / DB_NAME
