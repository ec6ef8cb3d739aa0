"""A refused store is left byte-identical, and resumes once its damaged file is restored.

One real small run (the toy space scored by a Python objective, in this process) is interrupted
in its second iteration with its write-ahead log still holding the run's transactions, as a
killed driver leaves it. Each test copies it, damages it as RELIABILITY.md's damage table says,
runs ``jointnas coarse --run DIR`` on it and checks: exit 2 and one line, no trial trained, every
file of the run directory byte-identical (none added or removed); then the damaged file is
restored and the same command finishes the run with the trials of an uninterrupted one."""
import contextlib
import hashlib
import io
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import toy_objective
from jointnas.cli import main
from jointnas.store import RunStore, StoreError
from store_damage import object_pool

REPO = Path(__file__).resolve().parents[1]
CALLS = {"n": 0, "interrupt_at": None, "hold": None, "holder": None}


def objective(candidate, report):
    """toy_objective's, counting its calls. While ``hold`` names a run, its first call opens a
    connection to the run's database that outlives the driver's (so the driver's close leaves its
    WAL as a kill would); call ``interrupt_at`` is a Ctrl-C."""
    CALLS["n"] += 1
    if CALLS["hold"] is not None and CALLS["holder"] is None:
        CALLS["holder"] = sqlite3.connect(CALLS["hold"] / "run.db")
        CALLS["holder"].execute("SELECT COUNT(*) FROM trials").fetchall()
    if CALLS["n"] == CALLS["interrupt_at"]:
        raise KeyboardInterrupt
    return toy_objective.objective(candidate, report)


def coarse(run, space):
    return ["coarse", "--run", str(run), "--space", str(space), "--objective", f"{__name__}:objective",
            "--executor", "serial", "--pool", "64", "--batch", "4", "--iterations", "2", "--ensemble", "2",
            "--seed", "0", "--no-progress"]


def run_cli(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def files(run):
    """Every file under the run directory, by its path, with its SHA-256."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(run).rglob("*")) if p.is_file()}


def trials(run):
    conn = sqlite3.connect(f"file:{run / 'run.db'}?mode=ro", uri=True)
    rows = conn.execute("SELECT key, status, curve, final_acc FROM trials ORDER BY id").fetchall()
    conn.close()
    return rows


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(the interrupted run as its driver left it, the trials of the uninterrupted run, the space)."""
    base = tmp_path_factory.mktemp("refusals")
    space = base / "toy.yaml"
    space.write_text(yaml.safe_dump(toy_objective.SPACE, sort_keys=False))
    reference = base / "reference"
    assert run_cli(coarse(reference, space))[0] == 0
    run, pristine = base / "run", base / "pristine"
    CALLS.update(n=0, interrupt_at=6, hold=run)  # the second trial of iteration 2
    try:
        rc, err = run_cli(coarse(run, space))
        assert rc == 130, err
        shutil.copytree(run, pristine)  # all the run committed is still in run.db-wal
    finally:
        if CALLS["holder"] is not None:
            CALLS["holder"].close()
        CALLS.update(interrupt_at=None, hold=None, holder=None)
    assert (pristine / "run.db-wal").stat().st_size > 0 and (pristine / "predictors" / "iter1.pt").is_file()
    statuses = [row[1] for row in trials(pristine)]
    assert statuses.count("done") == 5 and len(statuses) == 8, statuses  # cut short in iteration 2
    return pristine, trials(reference), space


@pytest.fixture
def run(made, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(made[0], dest)
    return dest


def restore(run, pristine):
    """Every file of ``run`` as it was in ``pristine`` (what restoring the damaged files from a copy does)."""
    for path in list(run.rglob("*")):
        if path.is_file() and not (pristine / path.relative_to(run)).exists():
            path.unlink()
    for path in pristine.rglob("*"):
        if path.is_file():
            shutil.copyfile(path, run / path.relative_to(pristine))


# ---------------------------------------------------------------------- damages
def _sql(run, statement):
    """A statement run on the store as any SQLite client would (folding the WAL into run.db)."""
    conn = sqlite3.connect(run / "run.db")
    conn.execute(statement)
    conn.commit()
    conn.close()


def _garble(path, at, n, seed=0):
    data = bytearray(path.read_bytes())
    at = at if at >= 0 else len(data) + at
    noise = bytearray(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    noise[0] = 0xFF  # never UTF-8, never a SQLite magic number
    data[at:at + n] = noise
    path.write_bytes(bytes(data))


def _trials_leaf(db):
    """The page number of a leaf page of the trials table (read from the file's bytes)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    (page,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='trials'").fetchone()
    (size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    data = db.read_bytes()
    while data[(page - 1) * size] == 0x05:  # an interior page: follow its right-most child
        page = int.from_bytes(data[(page - 1) * size + 8:(page - 1) * size + 12], "big")
    assert data[(page - 1) * size] == 0x0D
    return page, size


def _garble_trials_cell(run):
    """64 bytes of a trial's stored curve, in the cell area of a trials leaf page, garbled."""
    _sql(run, "PRAGMA wal_checkpoint(TRUNCATE)")  # the pages in run.db, the commit counter still matching
    db = run / "run.db"
    page, size = _trials_leaf(db)
    at = db.read_bytes().index(b'[{"epoch"', (page - 1) * size, page * size)
    _garble(db, at, 64)


def _garble_trials_page_header(run):
    _sql(run, "PRAGMA wal_checkpoint(TRUNCATE)")
    page, size = _trials_leaf(run / "run.db")
    _garble(run / "run.db", (page - 1) * size, 8)


def _cut_in_half(run):
    """run.db cut to half its pages, once it holds them all (while the WAL holds every page the run wrote,
    run.db's own pages are not read: cut there, it is a complete store, and it is resumed)."""
    _sql(run, "PRAGMA wal_checkpoint(TRUNCATE)")
    os.truncate(run / "run.db", (run / "run.db").stat().st_size // 2)


def _another_database(run):
    for name in ("run.db", "run.db-wal", "run.db-shm"):
        (run / name).unlink()
    _sql(run, "CREATE TABLE notes (text TEXT)")


def _unlink(*names):
    return lambda run: [(run / name).unlink() for name in names]


# (what is done to the interrupted run, what the one line says). RELIABILITY.md's damage table.
DAMAGE = {
    "run.db emptied, its WAL kept": (lambda r: os.truncate(r / "run.db", 0), "run.db is empty but run.db-wal holds"),
    "run.db deleted, its WAL kept": (_unlink("run.db"), "run.db is missing but run.db-wal holds"),
    "run.db-wal deleted": (_unlink("run.db-wal"), "transactions the run committed"),
    "run.db copied alone": (_unlink("run.db-wal", "run.db-shm", "run.lock"), "transactions the run committed"),
    "run.db-wal garbled": (lambda r: _garble(r / "run.db-wal", -6000, 2048), "transactions the run committed"),
    "run.db-wal header garbled": (lambda r: _garble(r / "run.db-wal", 0, 16), "run.db-wal is damaged"),
    "run.db cut in half": (_cut_in_half, "run.db is damaged"),
    "run.db file header garbled": (lambda r: _garble(r / "run.db", 0, 16), "run.db is not a SQLite database"),
    "run.db another SQLite file": (_another_database, "not a jointnas run's"),
    "trials page header garbled": (_garble_trials_page_header, "run.db is damaged"),
    "trials cell garbled": (_garble_trials_cell, "run.db is damaged"),
    "invalid JSON": (lambda r: _sql(r, "UPDATE trials SET curve='[{\"score\": 0.1' WHERE id=2"),
                     "trial 2 is not valid JSON"),
    "bogus status": (lambda r: _sql(r, "UPDATE trials SET status='finished' WHERE id=3"),
                     "trial 3 has status 'finished'"),
    "object pool.npy": (object_pool, "pool.npy is not a jointnas pool array"),
    "pool_costs.npy garbled": (lambda r: _garble(r / "pool_costs.npy", -8, 8), "pool_costs.npy is damaged"),
    "iter1.pt garbled": (lambda r: _garble(r / "predictors" / "iter1.pt", 200, 1), "iter1.pt is damaged"),
    "run.commits deleted": (_unlink("run.commits"), "run.commits is missing"),
    "run.commits garbled": (lambda r: (r / "run.commits").write_text("{\"commits\": 1"), "run.commits is damaged"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_store_is_refused_in_one_line_left_byte_identical_and_resumes_once_restored(made, run, case):
    pristine, reference, space = made
    damage, message = DAMAGE[case]
    damage(run)
    before = files(run)
    CALLS["n"] = 0
    rc, err = run_cli(coarse(run, space))
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err and message in err, err
    assert CALLS["n"] == 0  # refused before any training
    assert files(run) == before  # every file byte-identical, none added or removed
    assert not (run.parent / "pwned").exists()
    restore(run, pristine)
    rc, err = run_cli(coarse(run, space))
    assert rc == 0, err
    assert trials(run) == reference  # the uninterrupted run's trials: key, status, curve, accuracy


def test_a_second_driver_is_refused_and_changes_no_file(made, run):
    pristine, reference, space = made
    with RunStore.open(run, lock=True):
        before = files(run)
        rc, err = run_cli(coarse(run, space))
        assert rc == 2 and err.count("\n") == 1 and f"pid {os.getpid()} on host" in err, err
        assert files(run) == before


def test_jointnas_coarse_on_an_emptied_run_db_keeps_its_wal(made, run):
    """The issue's command, as a user types it: ``truncate -s 0 run.db; jointnas coarse --run DIR``."""
    os.truncate(run / "run.db", 0)
    before = files(run)
    out = subprocess.run([sys.executable, "-m", "jointnas", "coarse", "--run", str(run)], capture_output=True,
                         text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    wal = (made[0] / "run.db-wal").stat().st_size
    assert f"run.db is empty but run.db-wal holds {wal} bytes" in out.stderr and "nothing was changed" in out.stderr
    assert files(run) == before


def test_a_reader_leaves_a_refused_store_byte_identical(run):
    """``jointnas report`` and ``fine --run`` open the store without its lock: the same checks, nothing written."""
    os.truncate(run / "run.db", 0)
    before = files(run)
    with pytest.raises(StoreError, match="run.db is empty but run.db-wal holds"):
        RunStore.open(run)
    assert files(run) == before
