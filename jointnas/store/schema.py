"""The run database: its file names, format and SQL schema, how it is opened, the trial statuses,
and the :class:`Trial` record decoded (and checked) from a row."""
from __future__ import annotations

import json
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .. import __version__
from ..errors import UsageError
from ..space import Candidate
from ..trial import STATUSES as TRIAL_STATUSES, measured_score, score_at
from .errors import StoreError, guard

DB_NAME = "run.db"
WAL_NAME = DB_NAME + "-wal"  # SQLite's write-ahead log of run.db (and run.db-shm, its index)
COMMITS_NAME = "run.commits"
LOCK_NAME = "run.lock"
NEW_DB = ".run.db.new"  # a database being created, renamed to DB_NAME once complete
FORMAT = 1
FINISHED = TRIAL_STATUSES
STATUSES = ("queued", "running") + FINISHED

SCHEMA = """
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


def _text(data: bytes) -> str:
    """A stored text as str; bytes that are not UTF-8 (a damaged page) raise UnicodeDecodeError,
    which :func:`~jointnas.store.errors.guard` turns into a StoreError line."""
    return data.decode("utf-8")


def connect(db: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to ``db``. ``readonly``: SQLite's mode=ro, which still writes run.db-shm and may
    create or delete run.db-wal: use it on a private copy (see RunDirectory.open) or a live store."""
    # isolation_level=None: transactions are explicit (see RunStore._write); timeout waits for other writers.
    if readonly:
        conn = guard(db, lambda: sqlite3.connect(f"file:{urllib.parse.quote(str(db))}?mode=ro", uri=True, timeout=60,
                                                 isolation_level=None))
        conn.text_factory = _text
        conn.execute("PRAGMA busy_timeout=60000")
        return conn
    conn = guard(db, lambda: sqlite3.connect(str(db), timeout=60, isolation_level=None))
    conn.text_factory = _text
    guard(db, conn.execute, "PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


def build_database(db: Path, config: dict) -> None:
    """A complete database at ``db``: the schema, the format and ``config``, in one transaction.
    Closing it checkpoints and removes the WAL, so the file alone is the whole database."""
    conn = connect(db)
    guard(db, conn.execute, "BEGIN IMMEDIATE")
    for stmt in SCHEMA.strip().split(";"):
        if stmt.strip():
            conn.execute(stmt)
    for key, value in (("format", FORMAT), ("created", time.time()), ("commits", 0),
                       ("jointnas_version", __version__)):
        conn.execute("INSERT INTO meta VALUES (?, ?)", (key, json.dumps(value)))
    conn.execute("INSERT INTO meta VALUES ('config', ?)", (json.dumps(config, sort_keys=True),))
    conn.execute("COMMIT")
    conn.close()


_COLUMNS: Dict[str, List[str]] = {}


def _columns() -> Dict[str, List[str]]:
    """Each table of SCHEMA with its column names, in order."""
    if not _COLUMNS:
        conn = sqlite3.connect(":memory:")
        conn.executescript(SCHEMA)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name "
                                             "NOT LIKE 'sqlite_%' ORDER BY name")]
        _COLUMNS.update({t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables})
        conn.close()
    return _COLUMNS


def check_format(conn: sqlite3.Connection, db: Path) -> None:
    """``db`` (read through ``conn``) is a jointnas run database of this jointnas's format."""
    for table, columns in _columns().items():
        found = [r[1] for r in guard(db, lambda: conn.execute(f"PRAGMA table_info({table})").fetchall())]
        if not found:
            raise StoreError(f"{db} is a SQLite database but not a jointnas run's (it has no table {table}); "
                             "restore the run directory from a copy, or start a new run")
        if found != columns:
            raise StoreError(f"{db} is damaged (its table {table} has the columns {', '.join(found)[:120]}, not "
                             "jointnas's); restore the run directory from a copy, or start a new run")
    row = guard(db, lambda: conn.execute("SELECT value FROM meta WHERE key='format'").fetchone())
    if row is None or loads(row[0], db, "meta") != FORMAT:
        raise UsageError(f"{db} has store format {row and loads(row[0], db, 'meta')!r}; this jointnas "
                         f"reads format {FORMAT}")


def loads(text, db: Path, where: str):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise StoreError(f"{db} is damaged: {where} is not valid JSON; restore the run directory from a copy, "
                         "or start a new run") from None


def trial_from_row(row: dict, db: Path) -> Trial:
    where = f"trial {row['id']}"
    if row["status"] not in STATUSES:
        raise StoreError(f"{db} is damaged: {where} has status {row['status']!r}, not one of {', '.join(STATUSES)}; "
                         "restore the run directory from a copy, or start a new run")
    try:
        candidate = Candidate.from_json(row["candidate"])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise StoreError(f"{db} is damaged: {where} has an unreadable candidate ({type(e).__name__}); restore the "
                         "run directory from a copy, or start a new run") from None
    curve = loads(row["curve"], db, where)
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


def trials_query(status=None, iteration: Optional[int] = None, columns: str = "*"):
    """The SQL and arguments selecting ``columns`` of the trials of ``status`` (one or a sequence)
    and ``iteration``, in insertion order."""
    sql, args = f"SELECT {columns} FROM trials", []
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
    return sql + " ORDER BY id", args
