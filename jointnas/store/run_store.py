"""RunStore: what a run records (config, candidate pool, trials, results, predictor checkpoints),
each change one transaction of its :class:`~jointnas.store.directory.RunDirectory`."""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import UsageError
from ..space import Candidate, SearchSpace as Space
from ..space.pool import decode_values, encode_values
from .directory import RunDirectory
from .files import check_pool_file, load_pool_arrays, save_pool_arrays, sha256
from .schema import FINISHED, Trial, loads, trial_from_row, trials_query


class RunStore(RunDirectory):
    """A run's store: open with :meth:`open` (an existing run) or :meth:`create` (a new one)."""

    def __init__(self, run_dir: Path, conn: sqlite3.Connection, lock=None):
        super().__init__(run_dir, conn, lock)
        self._config: Optional[dict] = None
        # finished trials as decoded, by id, with the columns that change when one is recorded or
        # queued again: a search reads its trials every iteration, and decoding them was most of it
        self._finished: Dict[int, Tuple[tuple, Trial]] = {}

    # ------------------------------------------------------------------ config
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
        files = save_pool_arrays(self.run_dir, values, costs)
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
            check_pool_file(self.run_dir / name, digest)
        values, costs = load_pool_arrays(self.run_dir)
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
        db = self.db_path   # once, not per row
        # which trials, and which of them are known as decoded: only the others are read whole
        heads = self._select(*trials_query(status, iteration, "id, status, finished_at, attempts"))
        version = lambda row: (row["status"], row["finished_at"], row["attempts"])  # noqa: E731
        known = {}
        for row in heads:
            cached = self._finished.get(row["id"])
            if cached is not None and cached[0] == version(row):
                known[row["id"]] = cached[1]
        missing = [row["id"] for row in heads if row["id"] not in known]
        for start in range(0, len(missing), 500):   # SQLite's limit on bound parameters
            ids = missing[start:start + 500]
            for row in self._select(f"SELECT * FROM trials WHERE id IN ({','.join('?' * len(ids))})", ids):
                trial = trial_from_row(row, db)
                if row["status"] in FINISHED:
                    self._finished[row["id"]] = (version(row), trial)
                known[row["id"]] = trial
        return [known[row["id"]] for row in heads if row["id"] in known]

    def trial_pool_indices(self) -> List[Optional[int]]:
        """The pool row of every trial (None for one queued without it)."""
        return [row["pool_index"] for row in self._select("SELECT pool_index FROM trials")]

    def trial_count(self) -> int:
        return self._select("SELECT COUNT(*) AS n FROM trials")[0]["n"]

    def trial_keys(self) -> set:
        return {row["key"] for row in self._select("SELECT key FROM trials")}

    def counts(self) -> Dict[str, int]:
        return {r["status"]: r["n"] for r in self._select("SELECT status, COUNT(*) AS n FROM trials GROUP BY status")}

    # ------------------------------------------------------------------ results
    def save_result(self, kind: str, payload: dict, replace: Optional[str] = None) -> None:
        """Append a result; ``replace``: a payload key whose value, if an earlier result of ``kind``
        shares it, makes this one take that one's place (a checkpoint made again is evaluated once)."""
        with self._write() as c:
            self._save_result(c, kind, payload, replace)

    @staticmethod
    def _save_result(c, kind: str, payload: dict, replace: Optional[str]) -> None:
        if replace is not None:
            c.execute("DELETE FROM results WHERE kind=? AND json_extract(payload, ?)=?",
                      (kind, f"$.{replace}", payload[replace]))
        c.execute("INSERT INTO results (kind, created, payload) VALUES (?, ?, ?)",
                  (kind, time.time(), json.dumps(payload, sort_keys=True)))

    def results(self, kind: str) -> List[dict]:
        rows = self._select("SELECT id, payload FROM results WHERE kind=? ORDER BY id", (kind,))
        return [loads(r["payload"], self.db_path, f"result {r['id']} ({kind})") for r in rows]

    # ------------------------------------------------------------------ predictor checkpoints
    def predictor_file(self, iteration: int) -> Path:
        """Where the checkpoint of ``iteration`` goes (0 = encoder pretrained on proxies only)."""
        return self.run_dir / "predictors" / f"iter{int(iteration)}.pt"

    def register_predictor(self, iteration: int, path, **info) -> None:
        """Record the checkpoint at ``path`` with its SHA-256 (checked by :meth:`verify`)."""
        with self._write() as c:
            self._register(c, iteration, path, info)

    def register_fit(self, iteration: int, path, record: dict, **info) -> None:
        """Record iteration ``iteration``'s fitted checkpoint at ``path`` (as :meth:`register_predictor`)
        and its ``predictor_eval`` ``record`` in place of any earlier one of that iteration, in one
        transaction: a fit is on record with its measure or not at all."""
        with self._write() as c:
            self._save_result(c, "predictor_eval", record, replace="iteration")
            self._register(c, iteration, path, info)

    def _register(self, c, iteration: int, path, info: dict) -> None:
        rel = os.path.relpath(Path(path), self.run_dir)
        info = dict(info, sha256=sha256(Path(path)))
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
                 **loads(r["info"], self.db_path, f"predictor {r['iteration']}")} for r in rows]
