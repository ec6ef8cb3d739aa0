"""A run directory and its SQLite store: config, candidate pool, trials, results, predictors.

Layout of a run directory::

    run.db                 SQLite (WAL): meta, trials, results, predictors
    pool.npy, pool_costs.npy   the feasible candidate pool (values) and its [flops, params]
    predictors/iter<k>.pt  predictor checkpoint after iteration k (iter0 = encoder pretrained on proxies)
    predictor.pt           the final predictor, written when the run completes

Every state change is one transaction, so a process killed at any moment leaves the store
consistent: a trial is either queued, running (re-queued on resume) or finished with its
whole result. Several processes may read and write one store at the same time.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .errors import UsageError
from .space import Candidate, SearchSpace as Space
from .space.pool import decode_values, encode_values  # noqa: F401 - the row codec, re-exported
from .trial import STATUSES as TRIAL_STATUSES, measured_score, score_at

DB_NAME = "run.db"
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

    def __init__(self, run_dir: Path, conn: sqlite3.Connection):
        self.run_dir = Path(run_dir)
        self._conn = conn
        self._config: Optional[dict] = None

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
        if path.is_dir() and any(not p.name.startswith(_NEW_DB) for p in path.iterdir()):
            raise UsageError(f"{path} is not empty and is not a jointnas run (no {DB_NAME}); "
                             "give an empty or new directory for the run")
        return path

    @classmethod
    def create(cls, run_dir, config: dict) -> "RunStore":
        """A new store, made under a temporary name and renamed into place: whoever sees run.db sees
        a complete one (a leftover of a creation killed half-way does not block the next try)."""
        path = cls.check_new_dir(run_dir)
        path.mkdir(parents=True, exist_ok=True)
        for leftover in path.glob(_NEW_DB + "*"):
            leftover.unlink()
        conn = _connect(path / _NEW_DB)
        conn.execute("BEGIN IMMEDIATE")
        for stmt in _SCHEMA.strip().split(";"):
            if stmt.strip():
                conn.execute(stmt)
        conn.execute("INSERT INTO meta VALUES ('format', ?)", (json.dumps(FORMAT),))
        conn.execute("INSERT INTO meta VALUES ('created', ?)", (json.dumps(time.time()),))
        conn.execute("INSERT INTO meta VALUES ('config', ?)", (json.dumps(config, sort_keys=True),))
        conn.execute("COMMIT")
        conn.close()  # checkpoints and removes the WAL, so the file alone is the whole database
        os.replace(path / _NEW_DB, path / DB_NAME)
        return cls(path, _connect(path / DB_NAME))

    @classmethod
    def open(cls, run_dir) -> "RunStore":
        path = Path(run_dir)
        db = path / DB_NAME
        if not db.is_file():
            raise UsageError(f"{path} is not a jointnas run (no {DB_NAME} in it)")
        try:
            conn = _connect(db)
            row = conn.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        except sqlite3.DatabaseError as e:
            raise UsageError(f"{db} is not a readable jointnas store ({e})") from None
        if row is None or json.loads(row[0]) != FORMAT:
            conn.close()
            raise UsageError(f"{db} has store format {row and json.loads(row[0])!r}; this jointnas reads "
                             f"format {FORMAT}")
        return cls(path, conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlocks)."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    # ------------------------------------------------------------------ meta and config
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

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
            path = self.run_dir / name
            if not path.is_file() or _sha256(path) != digest:
                raise UsageError(f"{path} is missing or damaged; the run's pool cannot be restored")
        values = np.load(self.run_dir / "pool.npy", allow_pickle=False)
        costs = np.load(self.run_dir / "pool_costs.npy", allow_pickle=False)
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

    def record_result(self, trial_id: int, result: dict) -> None:
        """Write a trainer result (``TrainResult.to_dict()``) in one transaction."""
        status = result.get("status", "failed")
        if status not in FINISHED:
            raise ValueError(f"cannot record a trial as {status!r}")
        curve = result.get("curve") or []
        with self._write() as c:
            c.execute("UPDATE trials SET status=?, curve=?, final_acc=?, epochs_run=?, device=?, error=?, "
                      "wall_time=?, finished_at=? WHERE id=?",
                      (status, json.dumps(curve), result.get("final_acc"),
                       int(result.get("epochs_run") or len(curve)), result.get("device"), result.get("error"),
                       result.get("wall_time"), time.time(), trial_id))

    def requeue_running(self) -> int:
        """Trials left 'running' by a process that died go back to the queue; returns how many."""
        with self._write() as c:
            return c.execute("UPDATE trials SET status='queued', worker=NULL, started_at=NULL "
                             "WHERE status='running'").rowcount

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
        cur = self._conn.execute(sql + " ORDER BY id", args)
        names = [d[0] for d in cur.description]
        return [_trial(dict(zip(names, row))) for row in cur.fetchall()]

    def trial_keys(self) -> set:
        return {row[0] for row in self._conn.execute("SELECT key FROM trials")}

    def counts(self) -> Dict[str, int]:
        return dict(self._conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall())

    # ------------------------------------------------------------------ results
    def save_result(self, kind: str, payload: dict) -> None:
        with self._write() as c:
            c.execute("INSERT INTO results (kind, created, payload) VALUES (?, ?, ?)",
                      (kind, time.time(), json.dumps(payload, sort_keys=True)))

    def results(self, kind: str) -> List[dict]:
        rows = self._conn.execute("SELECT payload FROM results WHERE kind=? ORDER BY id", (kind,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # ------------------------------------------------------------------ predictor checkpoints
    def predictor_file(self, iteration: int) -> Path:
        """Where the checkpoint of ``iteration`` goes (0 = encoder pretrained on proxies only)."""
        return self.run_dir / "predictors" / f"iter{int(iteration)}.pt"

    def register_predictor(self, iteration: int, path, **info) -> None:
        rel = os.path.relpath(Path(path), self.run_dir)
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO predictors VALUES (?, ?, ?, ?)",
                      (int(iteration), rel, time.time(), json.dumps(info, sort_keys=True)))

    def predictor_path(self, iteration: Optional[int] = None) -> Optional[Path]:
        """The checkpoint of ``iteration``, or with None the latest accuracy predictor (iteration >= 1)."""
        if iteration is None:
            row = self._conn.execute("SELECT path FROM predictors WHERE iteration >= 1 "
                                     "ORDER BY iteration DESC LIMIT 1").fetchone()
        else:
            row = self._conn.execute("SELECT path FROM predictors WHERE iteration=?", (int(iteration),)).fetchone()
        if row is None:
            return None
        path = self.run_dir / row[0]
        return path if path.is_file() else None

    def predictors(self) -> List[dict]:
        rows = self._conn.execute("SELECT iteration, path, created, info FROM predictors ORDER BY iteration")
        return [{"iteration": it, "path": str(self.run_dir / p), "created": t, **json.loads(info)}
                for it, p, t, info in rows.fetchall()]


# ---------------------------------------------------------------------- helpers
def _connect(db: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (see RunStore._write); timeout waits for other writers.
    conn = sqlite3.connect(str(db), timeout=60, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


def _trial(row: dict) -> Trial:
    return Trial(id=row["id"], candidate=Candidate.from_json(row["candidate"]), status=row["status"],
                 curve=json.loads(row["curve"]), final_acc=row["final_acc"], flops=row["flops"],
                 params=row["params"], device=row["device"], iteration=row["iteration"],
                 wall_time=row["wall_time"], target_epochs=row["target_epochs"], epochs_run=row["epochs_run"],
                 pool_index=row["pool_index"], error=row["error"], worker=row["worker"],
                 attempts=row["attempts"], queued_at=row["queued_at"], started_at=row["started_at"],
                 finished_at=row["finished_at"], key=row["key"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
