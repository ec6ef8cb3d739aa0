"""A run survives what happens to real runs: killed workers, a second driver, a store copied
without its WAL, damaged files, a full disk. Each test damages or kills a real small run (the
tiny space of test_coarse on 128 digits images, one epoch per trial) and checks the outcome."""
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jointnas import load_space, sample_pool
from jointnas.cli import main
from jointnas.errors import UsageError
from jointnas.store import RunStore, StoreError
from store_damage import Evil, object_pool
from test_coarse import tiny  # noqa: F401 - the toy space's fixture

REPO = Path(__file__).resolve().parents[1]


def args(run, tiny, *extra):
    return ["coarse", "--run", str(run), "--space", tiny, "--pool", "64", "--batch", "4", "--iterations", "2",
            "--epoch-cap", "1", "--ensemble", "2", "--seed", "0", "--train-subset", "128", "--no-progress",
            "--workers", "1", *extra]


def start_driver(run, tiny, log, argv=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "jointnas", *(argv or args(run, tiny))], cwd=REPO, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(run, predicate, proc, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"the driver exited with {proc.returncode} too early"
        if RunStore.is_run(run):
            with RunStore.open(run) as store:
                if predicate(store):
                    return
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"timed out waiting on {run}")


def worker_pids(driver_pid):
    """The training workers among a driver's children (not multiprocessing's resource tracker)."""
    out = []
    for task in Path(f"/proc/{driver_pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"spawn_main" in cmd:
                out.append(int(pid))
    return out


def trial_taken(worker, proc, timeout=300):
    """The trial a worker process is training, once it has taken one (it names itself jointnas-t<id>)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"the driver exited with {proc.returncode} too early"
        name = Path(f"/proc/{worker}/comm").read_text().strip()
        if name.startswith("jointnas-t"):
            return int(name[len("jointnas-t"):])
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"worker {worker} took no trial in {timeout} s")


def run_cli(argv, out=None):
    """(exit code, stderr) of ``jointnas ARGV`` run in this process; its stdout goes to ``out``."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out or io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def one_line(err):
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def digest(run):
    """Every file of a run directory (run.lock and run.db-shm included) with its SHA-256: a refused
    open leaves them all byte-identical, none added or removed."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(run).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def killed(tmp_path_factory, tiny):
    """A run whose worker was SIGKILLed mid-trial, then its driver mid-iteration 2, copied as
    the kill left it (WAL and all); a second driver was tried while it ran."""
    base = tmp_path_factory.mktemp("killed")
    run, log = base / "run", base / "log.txt"
    proc = start_driver(run, tiny, log)
    seen = {}

    def first_running(store):
        running = store.trials("running")
        if running and not store.trials(("done", "failed")):
            seen["trial"] = running[0].id
            return True
        return False

    wait_for(run, first_running, proc)
    (worker,) = worker_pids(proc.pid)
    with RunStore.open(run) as store:
        seen["before_second"] = [(t.id, t.status) for t in store.trials()]
    seen["second"] = run_cli(args(run, tiny))  # a second driver, while the first runs
    with RunStore.open(run) as store:
        seen["after_second"] = [(t.id, t.status) for t in store.trials()]
    seen["trial"] = trial_taken(worker, proc)  # mid-trial: a kill before the worker took it costs no attempt
    os.kill(worker, signal.SIGKILL)
    seen["driver_pid"] = proc.pid
    # killed while a trial of iteration 2 trains (not in the gap between two of them)
    wait_for(run, lambda s: s.predictor_path(1) is not None and len(s.trials("done", iteration=2)) >= 1
             and len(s.trials("running")) == 1, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(60)
    pristine = base / "pristine"
    shutil.copytree(run, pristine)  # before anything opens it: the WAL stays as the kill left it
    assert (pristine / "run.db-wal").stat().st_size > 0
    seen.update(run=run, pristine=pristine, log=log.read_text())
    return seen


@pytest.fixture
def copy(killed, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(killed["pristine"], dest)
    return dest


# ---------------------------------------------------------------------- workers
def _jobs(tiny, n, epochs=2):
    from jointnas.evaluation.train import TrainEvaluator
    from jointnas.evaluation.base import TrialRequest
    from jointnas.execution.base import Job

    space = load_space(tiny)
    return [Job(i, c.to_dict(), space, TrainEvaluator("digits", train_subset=128), TrialRequest(epochs, 0))
            for i, c in enumerate(sample_pool(space, n, seed=1))]


def test_a_killed_worker_is_replaced_and_its_trial_retried(tiny):
    from jointnas.execution.local import LocalExecutor

    job = _jobs(tiny, 1)[0]
    with LocalExecutor(1, "cpu", threads=1, max_retries=2) as ex:
        ex.submit(job)
        while not ex.epochs_done(job.trial_id):  # mid-trial: one of its two epochs is done
            assert not ex.poll(timeout=0.05)
        first = ex.pids[0]
        os.kill(first, signal.SIGKILL)
        (done,) = ex.poll(timeout=300)
        assert ex.pids[0] != first
    assert done.trial_id == job.trial_id and done.attempts == 2
    assert done.result["status"] == "done" and done.result["epochs_run"] == 2
    with LocalExecutor(1, "cpu", threads=1) as ex:  # the same job, never interrupted
        ex.submit(job)
        (clean,) = ex.poll(timeout=300)
    assert clean.attempts == 1 and clean.result["curve"] == done.result["curve"]


def test_a_trial_that_keeps_losing_its_worker_fails_after_max_retries(tiny):
    from jointnas.execution.local import LocalExecutor

    job = _jobs(tiny, 1)[0]
    with LocalExecutor(1, "cpu", threads=1, max_retries=1) as ex:
        ex.submit(job)
        killed, finished = set(), []
        while not finished:
            pid = ex.pids[0]
            if pid not in killed and ex.attempts(job.trial_id) > len(killed):  # once it has taken the trial
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            finished = ex.poll(timeout=0.2)
    (done,) = finished
    assert len(killed) == 2 and done.attempts == 2
    assert done.result["status"] == "failed" and "died with exit code -9" in done.result["error"]


def test_killing_an_idle_worker_does_not_fail_the_next_trial(tiny):
    from jointnas.execution.local import LocalExecutor

    job = _jobs(tiny, 1, epochs=1)[0]
    with LocalExecutor(1, "cpu", threads=1, max_retries=0) as ex:  # no retry: the trial must not need one
        time.sleep(1.0)
        os.kill(ex.pids[0], signal.SIGKILL)
        time.sleep(0.5)
        ex.submit(job)
        (done,) = ex.poll(timeout=300)
    assert done.result["status"] == "done" and done.attempts == 1


def test_a_run_whose_worker_and_driver_were_killed_resumes_to_every_trial_done(killed, copy, tiny):
    assert main(args(copy, tiny)) == 0
    with RunStore.open(copy) as store:
        trials = store.trials()
        assert len(trials) == 8 and all(t.status == "done" for t in trials)
        assert len({t.key for t in trials}) == 8
        retried = next(t for t in trials if t.id == killed["trial"])
        assert retried.attempts == 2  # started again on the replacement worker, counted
        assert [r["iteration"] for r in store.results("predictor_eval")] == [1, 2]
        assert len(store.results("calibration")) == 1


def test_a_resume_says_what_it_found(copy, tiny):
    conn = sqlite3.connect(f"file:{copy / 'run.db'}?mode=ro", uri=True)
    found = dict(conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall())
    conn.close()
    rc, err = run_cli(args(copy, tiny))
    assert rc == 0 and found.get("running") == 1  # --workers 1: the trial it was training
    expected = (f"continuing run {copy}: {found['done']} finished ({found['done']} done), 1 re-queued "
                "(interrupted while training)" + (f", {found['queued']} queued" if found.get("queued") else ""))
    assert expected in err.splitlines()


def test_a_resume_with_other_workers_gives_the_same_numbers(killed, copy, tiny):
    """The run's thread count, not the resume's --workers, sets each trial's threads, and a
    trial's numbers depend on it."""
    from jointnas.evaluation.train import TrainEvaluator
    from jointnas.execution.local import DEFAULT_THREADS, LocalExecutor
    from jointnas.evaluation.base import TrialRequest
    from jointnas.execution.base import Job

    with RunStore.open(copy) as store:
        threads = store.config["threads"]
        before = {t.id for t in store.trials("done")}
    assert threads == DEFAULT_THREADS  # one torch thread per trial unless --threads says otherwise
    assert main(args(copy, tiny)[:-2] + ["--workers", "2"]) == 0
    with RunStore.open(copy) as store:
        assert store.config["threads"] == threads
        trained = [t for t in store.trials("done") if t.id not in before]
    assert trained
    t = trained[-1]
    job = Job(t.id, t.candidate.to_dict(), load_space(tiny), TrainEvaluator("digits", train_subset=128),
              TrialRequest(t.epochs_run, 0))
    with LocalExecutor(1, "cpu", threads=threads) as ex:  # the same trial, alone, with the run's threads
        ex.submit(job)
        (again,) = ex.poll(timeout=300)
    assert again.result["curve"] == t.curve


def test_an_all_diverged_first_batch_queues_more_candidates(tmp_path):
    """A user's objective (in this process) whose first four evaluations diverge."""
    import toy_objective
    from jointnas.catalog import space_from_dict
    from jointnas.coarse.search import CoarseConfig, CoarseSearch, Progress
    from jointnas.evaluation.function import FunctionEvaluator
    from jointnas.execution.serial import SerialExecutor

    calls = []

    def objective(candidate, report):
        calls.append(candidate.key())
        if len(calls) <= 4:
            report(1, float("nan"))
            return float("nan")
        return toy_objective.objective(candidate, report)

    lines = []
    config = CoarseConfig(pool=64, batch=4, iterations=2, ensemble=2, seed=0, final=True)
    with CoarseSearch.create(tmp_path / "run", space_from_dict(toy_objective.SPACE), FunctionEvaluator(objective),
                             config, executor=SerialExecutor(), progress=Progress(bars=False, log=lines.append)) as s:
        summary = s.run()
    with RunStore.open(tmp_path / "run") as store:
        first = store.trials(iteration=1)
        assert [t.status for t in first] == ["diverged"] * 4 + ["done"] * 3
        assert store.results("calibration")[0]["n_trials"] == 3 and store.predictor_path(2) is not None
        assert len(store.trials(iteration=2)) == 4
    assert "iteration 1: queued 3 more candidates" in "\n".join(lines)
    searched, winner_again = calls[:-1], calls[-1]  # the result stage evaluates the winner once more
    assert len(set(searched)) == len(searched) == 11 and summary["counts"] == {"diverged": 4, "done": 7}
    assert winner_again == summary["final"]["key"] == summary["best"][0]["key"]


@pytest.fixture(scope="module")
def lost_workers(tmp_path_factory, tiny):
    """One iteration of 3 trials, --max-retries 0, its worker killed under the first trial."""
    run = tmp_path_factory.mktemp("lost") / "run"
    log = run.parent / "log.txt"
    argv = args(run, tiny, "--max-retries", "0")
    argv[argv.index("--iterations") + 1] = "1"
    argv[argv.index("--batch") + 1] = "3"
    proc = start_driver(run, tiny, log, argv)
    wait_for(run, lambda s: bool(s.trials("running")), proc)
    (worker,) = worker_pids(proc.pid)
    trial_taken(worker, proc)  # a worker killed before it takes its trial costs that trial nothing
    os.kill(worker, signal.SIGKILL)
    assert proc.wait(600) == 0, log.read_text()
    return {"run": run, "argv": argv, "log": log.read_text()}


def test_too_few_finished_trials_queue_more_instead_of_a_dead_run(lost_workers):
    with RunStore.open(lost_workers["run"]) as store:
        trials = store.trials(iteration=1)
        assert [t.status for t in trials].count("failed") == 1
        assert [t.status for t in trials].count("done") == 3 and len(trials) == 4  # one more, queued for it
        assert store.predictor_path(1) is not None and store.results("calibration")[0]["n_trials"] == 3
    assert "iteration 1: queued 1 more candidates" in lost_workers["log"]


def test_retry_failed_trains_the_failed_trials_again(lost_workers):
    out = io.StringIO()
    rc, err = run_cli([*lost_workers["argv"], "--retry-failed"], out)
    assert rc == 0 and "1 failed trial(s) queued again" in out.getvalue()
    assert (f"continuing run {lost_workers['run']}: 4 finished (3 done, 1 failed), 0 re-queued (interrupted while "
            "training)") in err.splitlines()
    with RunStore.open(lost_workers["run"]) as store:
        trials = store.trials(iteration=1)
        assert all(t.status == "done" for t in trials) and len(trials) == 4
        assert sorted(t.attempts for t in trials) == [1, 1, 1, 2]


# ---------------------------------------------------------------------- one driver per run
def test_a_second_driver_exits_2_naming_the_holders_pid_and_host(killed):
    rc, err = killed["second"]
    assert rc == 2
    one_line(err)
    assert f"pid {killed['driver_pid']} on host {socket.gethostname()}" in err and "in use" in err
    # It changed nothing: the first driver's running trial is still its own.
    assert killed["after_second"] == killed["before_second"]
    assert any(status == "running" for _, status in killed["before_second"])


def test_the_lock_of_a_sigkilled_driver_is_released(killed):
    RunStore.open(killed["run"], lock=True).close()  # the kernel dropped the dead driver's flock
    with RunStore.open(killed["run"], lock=True):
        with pytest.raises(StoreError, match=f"pid {os.getpid()} on host"):
            RunStore.open(killed["run"], lock=True)


# ---------------------------------------------------------------------- rollback
def test_a_store_copied_without_its_wal_is_refused(copy, tiny):
    for name in ("run.db-wal", "run.db-shm"):
        (copy / name).unlink()
    files = digest(copy)
    rc, err = run_cli(args(copy, tiny))
    assert rc == 2 and "run.db-wal" in one_line(err) and "finished trials" in err
    assert digest(copy) == files


def test_a_garbled_wal_is_refused_and_left_as_found(copy, tiny):
    wal = copy / "run.db-wal"
    data = bytearray(wal.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 2048] = np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    wal.write_bytes(bytes(data))
    files = digest(copy)
    rc, err = run_cli(args(copy, tiny))
    assert rc == 2 and "transactions the run committed" in one_line(err)
    assert digest(copy) == files  # the WAL was not checkpointed away: it can still be restored


def test_run_db_without_its_commit_counter_is_refused(copy, tiny):
    (copy / "run.commits").unlink()
    rc, err = run_cli(args(copy, tiny))
    assert rc == 2 and "run.commits is missing" in one_line(err)


# ---------------------------------------------------------------------- damage, refused before training
def _sql(run, statement):
    conn = sqlite3.connect(run / "run.db")
    conn.execute(statement)
    conn.commit()
    conn.close()


def _damage_page(run):
    _sql(run, "PRAGMA wal_checkpoint(TRUNCATE)")  # everything in run.db, the counter still matching
    db = run / "run.db"
    conn = sqlite3.connect(db)
    (page,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='trials'").fetchone()
    conn.close()
    with open(db, "r+b") as f:  # the trials table's root page: its cells, at the page's end, garbled
        f.seek(page * 4096 - 1500)
        f.write(b"\xa5" * 1500)


def _damage_checkpoint(run):
    path = run / "predictors" / "iter1.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "run.db page": (_damage_page, "run.db is damaged"),
    "invalid JSON": (lambda r: _sql(r, "UPDATE trials SET curve='[{\"val_acc\": 0.1' WHERE id=2"),
                     "trial 2 is not valid JSON"),
    "bogus status": (lambda r: _sql(r, "UPDATE trials SET status='finished' WHERE id=3"),
                     "trial 3 has status 'finished'"),
    "object pool.npy": (object_pool, "pool.npy is not a jointnas pool array"),
    "damaged iter1.pt": (_damage_checkpoint, "iter1.pt is damaged"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damage_is_refused_in_one_line_before_any_training(copy, tiny, case):
    damage, message = DAMAGE[case]
    damage(copy)
    files = digest(copy)
    t0 = time.monotonic()
    rc, err = run_cli(args(copy, tiny))
    assert rc == 2 and message in one_line(err), err
    assert time.monotonic() - t0 < 20  # refused at the start, not after training an iteration
    assert digest(copy) == files  # nothing trained, nothing written
    assert not (copy.parent / "pwned").exists()


def test_a_malicious_checkpoint_is_not_a_jointnas_checkpoint(copy, tiny):
    marker = copy.parent / "pwned"
    import torch

    torch.save({"members": Evil(str(marker))}, copy / "predictors" / "iter1.pt")
    from jointnas.surrogates import Predictor, PredictorError

    with pytest.raises(PredictorError, match="is not a jointnas checkpoint") as refused:
        Predictor.load(copy / "predictors" / "iter1.pt", load_space(tiny))
    assert "weights_only" not in str(refused.value) and not marker.exists()


# ---------------------------------------------------------------------- a full disk
def _mount_tmpfs_available():
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _mount_tmpfs_available(), reason="cannot mount a tmpfs in a user namespace here")
def test_a_full_disk_exits_2_in_one_line_and_loses_nothing(copy, tiny, tmp_path):
    """The run on a small tmpfs (a user namespace's own mount), filled to the last byte."""
    size = sum(p.stat().st_size for p in copy.rglob("*") if p.is_file()) + (4 << 20)
    script = (f"mount -t tmpfs -o size={size} tmpfs {tmp_path / 'mnt'} && cp -a {copy} {tmp_path / 'mnt'}/run && "
              f"(dd if=/dev/zero of={tmp_path / 'mnt'}/fill bs=64k 2>/dev/null; true) && "
              f"{sys.executable} -m jointnas {' '.join(args(tmp_path / 'mnt' / 'run', tiny))}; echo rc=$?; "
              f"rm {tmp_path / 'mnt'}/fill && {sys.executable} -m jointnas {' '.join(args(tmp_path / 'mnt' / 'run', tiny))}"
              f" >/dev/null 2>&1; echo rc=$?; cp {tmp_path / 'mnt'}/run/run.commits {tmp_path}/commits")
    (tmp_path / "mnt").mkdir()
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=600)
    lines = out.stdout.splitlines() + out.stderr.splitlines()
    errors = [ln for ln in out.stderr.splitlines() if ln.strip() and not ln.startswith("continuing run")]
    assert [ln for ln in out.stdout.splitlines() if ln.startswith("rc=")] == ["rc=2", "rc=0"], lines
    assert len(errors) == 1 and "free some space and run the same command again" in errors[0], lines
    assert json.loads((tmp_path / "commits").read_text())["finished"] == 8  # after freeing space: all of it


def test_a_predictor_save_on_a_full_disk_exits_2_in_one_line(copy, tiny, monkeypatch):
    import torch

    def full(obj, f, *a, **k):  # what torch says when the disk fills under it
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1280 vs 1174")

    monkeypatch.setattr(torch, "save", full)
    rc, err = run_cli(args(copy, tiny))
    assert rc == 2 and "Traceback" not in err
    last = err.splitlines()[-1]
    assert "predictors/iter2.pt" in last and "free some space" in last and err.count("error") == 1
    monkeypatch.undo()
    assert main(args(copy, tiny)) == 0


def test_sqlite_out_of_space_is_one_store_error(tmp_path):
    store = RunStore.create(tmp_path / "r", {})
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own "database or disk is full"
    with pytest.raises(StoreError, match="run.db .*database or disk is full.*free some space"):
        for i in range(200):
            store.save_result("filler", {"i": i, "pad": "x" * 4000})
    store.close()
