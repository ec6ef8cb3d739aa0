"""RayExecutor on a local Ray instance (2 CPUs, started once for the module and stopped after it),
against the local executor on the same toy coarse run (see test_coarse.py)."""
import _thread
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from jointnas import load_space, sample_pool
from jointnas.cli import main
from jointnas.evaluation.train import TrainEvaluator
from jointnas.evaluation.base import TrialRequest
from jointnas.execution.base import Job
from jointnas.store import RunStore
from test_coarse import coarse_args, epochs_seen_while_running, tiny_space_doc

REPO = Path(__file__).resolve().parents[1]
DIES = "JOINTNAS_TEST_DIES_ONCE"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_space_doc(), sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def dies_marker(tmp_path_factory):
    return tmp_path_factory.mktemp("dies") / "marker"


@pytest.fixture(scope="module")
def local_ray(dies_marker):
    ray = pytest.importorskip("ray")
    # Ray's worker processes inherit this environment when Ray starts: the test helpers (tests/) become
    # importable there, and dies_once.py learns where its marker goes.
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", DIES)}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), str(REPO), *filter(None, [saved["PYTHONPATH"]])])
    os.environ[DIES] = str(dies_marker)
    try:
        ray.init(num_cpus=2, include_dashboard=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, tiny):
    run = tmp_path_factory.mktemp("runs") / "local"
    assert main(coarse_args(run, tiny, "--workers", "2")) == 0
    return run


def _trials(run_dir):
    with RunStore.open(run_dir) as store:
        return ({t.key: (t.iteration, t.status, t.target_epochs, t.epochs_run, t.curve, t.final_acc)
                 for t in store.trials()}, store.counts(), store.results("calibration"))


def _worker_pids():
    """Processes of Ray actors of the TrialWorker class on this machine (Ray names them ray::TrialWorker...)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines() if "ray::TrialWorker" in line}


def _gone(pids, timeout=30):
    deadline = time.time() + timeout
    while pids & _worker_pids() and time.time() < deadline:
        time.sleep(0.2)
    assert not pids & _worker_pids(), "Ray actors still running"


def test_a_coarse_run_on_ray_matches_the_local_executor_trial_for_trial(local_ray, local_run, tiny, tmp_path):
    run = tmp_path / "ray"
    assert main(coarse_args(run, tiny, "--executor", "ray", "--cpus-per-trial", "1")) == 0
    ray_trials, ray_counts, ray_cal = _trials(run)
    ref_trials, ref_counts, ref_cal = _trials(local_run)
    assert ray_counts == ref_counts and sum(ray_counts.values()) == 8
    assert ray_trials == ref_trials  # same candidates, iterations, statuses, curves and accuracies
    assert ray_cal == ref_cal
    with RunStore.open(run) as store:
        assert {t.worker.split(":")[0] for t in store.trials()} <= {"ray-0", "ray-1"}
    _gone(_worker_pids())  # the executor's actors are gone once the run ends


def test_ctrl_c_on_a_ray_run_stops_its_actors_and_the_run_resumes_to_the_same_results(
        local_ray, local_run, tiny, tmp_path, capsys):
    run = tmp_path / "ray"
    seen = {}

    def interrupt_once_a_trial_trains():
        # A plain read-only query, not RunStore.open (which checks the whole store first): on an
        # idle machine a tiny trial takes half a second, shorter than that check.
        deadline = time.time() + 600
        while time.time() < deadline:
            if (run / "run.db").exists():
                try:
                    with contextlib.closing(sqlite3.connect(f"file:{run / 'run.db'}?mode=ro", uri=True,
                                                            timeout=1)) as conn:
                        counts = dict(conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall())
                except sqlite3.Error:  # the store is being created
                    counts = {}
                if counts.get("done", 0) >= 1 and counts.get("running", 0) >= 1:
                    seen["pids"] = _worker_pids()
                    _thread.interrupt_main()
                    return
            time.sleep(0.02)

    watcher = threading.Thread(target=interrupt_once_a_trial_trains, daemon=True)
    # Ctrl-C as at a terminal: a shell without job control starts background jobs (a suite run
    # with `&`) with SIGINT ignored, and then interrupt_main() does nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        watcher.start()
        assert main(coarse_args(run, tiny, "--executor", "ray")) == 130
        watcher.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert f"Continue with: jointnas coarse --run {run}" in capsys.readouterr().err
    _, counts, _ = _trials(run)
    assert "running" not in counts and counts.get("queued", 0) >= 1
    assert seen["pids"]
    _gone(seen["pids"])  # killed, not left training for nobody
    assert main(coarse_args(run, tiny, "--executor", "ray")) == 0
    assert _trials(run)[:2] == _trials(local_run)[:2]


def _jobs(tiny, n):
    space = load_space(tiny)
    evaluator = TrainEvaluator("digits", train_subset=64)
    return [Job(i, c.to_dict(), space, evaluator, TrialRequest(2, 0)) for i, c in enumerate(sample_pool(space, n, seed=0))]


def _wait(ex, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = ex.poll(timeout=1.0)
        if done:
            return done
    pytest.fail("no trial finished in time")


def test_a_trial_whose_ray_worker_is_killed_runs_again_on_a_new_worker(local_ray, tiny):
    from jointnas.execution.ray import RayExecutor

    jobs = _jobs(tiny, 2)
    with RayExecutor(1, max_retries=1) as ex:
        ex.submit(jobs[0])
        (first,) = ex.worker_info()  # answered while the trial starts (the actor has a second thread)
        os.kill(first["pid"], signal.SIGKILL)
        (done,) = _wait(ex)
        assert done.trial_id == 0 and done.result["status"] == "done" and done.attempts == 2
        assert done.result["epochs_run"] == 2 and ex.in_flight == 0
        ex.submit(jobs[1])
        (done,) = _wait(ex)
        assert done.trial_id == 1 and done.result["status"] == "done" and done.attempts == 1
        (info,) = ex.worker_info()
        # The replacement trained the retry and the next trial, loading the data set once for both.
        assert info["pid"] != first["pid"] and info["trained"] == 2 and info["datasets_loaded"] == 1


def test_a_run_whose_ray_worker_dies_mid_trial_retries_that_trial_and_finishes_as_without_the_death(
        local_ray, dies_marker, tmp_path):
    import dies_once
    import toy_objective

    from jointnas import CoarseConfig, CoarseSearch, FunctionEvaluator, SerialExecutor
    from jointnas.catalog import space_from_dict
    from jointnas.coarse.search import Progress
    from jointnas.execution.ray import RayExecutor

    space = space_from_dict(toy_objective.SPACE)
    config = dict(pool=16, batch=3, iterations=2, epoch_cap=None, ensemble=2, seed=0)
    lines = []
    runs = {}
    for name, fn, executor in [("ray", dies_once.objective, RayExecutor(2, max_retries=2)),
                               ("serial", toy_objective.objective, SerialExecutor())]:
        search = CoarseSearch.create(tmp_path / name, space, FunctionEvaluator(fn), CoarseConfig(**config),
                                     executor=executor, progress=Progress(bars=False, log=lines.append))
        with search:
            search.run()
        with RunStore.open(tmp_path / name) as store:
            runs[name] = {t.key: (t.iteration, t.status, t.curve, t.final_acc) for t in store.trials()}
    assert dies_marker.is_file(), "no worker died"
    _, key = dies_marker.read_text().split()
    assert key in runs["ray"]  # a trial of this run lost its worker ...
    assert runs["ray"] == runs["serial"]  # ... and the run ended as one where nothing died
    assert all(status == "done" for _, status, _, _ in runs["ray"].values())


def test_a_trial_is_recorded_failed_once_its_retries_are_spent(local_ray, tiny):
    from jointnas.execution.ray import RayExecutor

    with RayExecutor(1, max_retries=0) as ex:
        ex.submit(_jobs(tiny, 1)[0])
        os.kill(ex.worker_info()[0]["pid"], signal.SIGKILL)
        (done,) = _wait(ex)
        assert done.result["status"] == "failed" and done.attempts == 1
        assert "Ray worker lost on each of 1 attempt(s)" in done.result["error"]


def test_a_running_ray_trial_reports_its_epochs_to_the_driver(local_ray, space):
    from jointnas.execution.ray import RayExecutor

    with RayExecutor(1) as ex:
        done, progress = epochs_seen_while_running(ex, space, poll=0.05)
    assert done.trial_id == 7 and done.result["epochs_run"] == 3
    assert progress == sorted(progress[:-1]) + [0]  # grows while it runs, forgotten once done
    assert {1, 2} & set(progress)


@pytest.mark.slow
def test_a_killed_ray_driver_resumes_from_its_store_without_training_a_finished_trial_again(tmp_path, tiny):
    # The driver starts its own Ray instance here (no fixture): killing it must take its Ray with it.
    run, log = tmp_path / "run", tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "jointnas", *coarse_args(run, tiny, "--executor", "ray", "--workers", "1")]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()
        if RunStore.is_run(run):
            with RunStore.open(run) as store:
                counts = store.counts()
            if counts.get("done", 0) >= 1 and counts.get("running", 0) == 1:
                break
        time.sleep(0.2)
    pids = _worker_pids()
    assert pids
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    _gone(pids)  # its actors do not train on for nobody
    with RunStore.open(run) as store:
        done_before = {t.key: t.finished_at for t in store.trials("done")}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with RunStore.open(run) as store:
        trials = store.trials()
        assert len(trials) == 8 and all(t.status in ("done", "diverged") for t in trials)
        for t in store.trials("done"):
            if t.key in done_before:
                assert t.finished_at == done_before[t.key]
        assert max(t.attempts for t in trials) == 2  # the trial cut short ran again, once


# ---------------------------------------------------------------------- a driver of its own
def _driver(tmp_path):
    """A driver script outside the working directory, as the `jointnas` console script is: the
    driver imports the installed jointnas, not a folder of that name where it is started."""
    script = tmp_path / "bin" / "driver.py"
    script.parent.mkdir()
    script.write_text("import sys\nfrom jointnas.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))  # toy_objective, and a fresh clone
    return [sys.executable, str(script)], env


def toy_slowly(candidate, report):
    """toy_objective's objective at two seconds an epoch: a run with trials still to train long
    after a fault (an objective of this module, which the workers import by its name)."""
    import toy_objective

    def slow_report(epoch, score):
        time.sleep(2.0)
        report(epoch, score)

    return toy_objective.objective(candidate, slow_report)


def _toy_args(run, space, *extra):
    return ["coarse", "--run", str(run), "--space", str(space), "--objective", "test_executor_ray:toy_slowly",
            "--pool", "16", "--batch", "3", "--iterations", "2", "--ensemble", "2", "--seed", "0", "--no-result",
            "--no-progress", *extra]


def _bogus_jointnas(where):
    """A folder named jointnas, as a clone would put in the working directory, that cannot be imported."""
    (where / "jointnas").mkdir(parents=True)
    bogus = "raise ImportError('the bogus jointnas of the working directory')\n"
    (where / "jointnas" / "__init__.py").write_text(bogus)
    return where


def _ray_processes_of(pid):
    import psutil

    return psutil.Process(pid).children(recursive=True)


def _end(processes):
    """Kill what is left of the processes a test's driver started (its Ray's gcs_server, agents, workers)."""
    import psutil

    for p in processes:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=30)


def test_a_ray_run_started_beside_a_folder_named_jointnas_trains_with_the_drivers_jointnas(tmp_path, capsys):
    pytest.importorskip("ray")
    import toy_objective

    cwd = _bogus_jointnas(tmp_path / "cwd")
    space = tmp_path / "toy.yaml"
    space.write_text(yaml.safe_dump(toy_objective.SPACE))
    run = tmp_path / "run"
    cmd, env = _driver(tmp_path)
    proc = subprocess.run([*cmd, "coarse", "--run", str(run), "--space", str(space), "--objective",
                           "toy_objective:objective", "--executor", "ray", "--workers", "1", "--pool", "16",
                           "--batch", "3", "--iterations", "1", "--ensemble", "2", "--seed", "0", "--no-progress"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bogus" not in proc.stdout + proc.stderr
    with RunStore.open(run) as store:
        assert store.counts() == {"done": 3}
        assert store.config["threads"] == 1  # stored as a local run's are: a resume knows the trials' threads
    assert main(["coarse", "--run", str(run), "--objective", "toy_objective:objective", "--no-progress"]) == 0
    assert "older jointnas" not in capsys.readouterr().err


def test_ray_workers_that_import_another_jointnas_are_refused_in_one_line_before_any_trial(tmp_path):
    # Ray started by the caller, from the working directory with the folder: no set-up hook of
    # ours, so the actor imports that folder; the executor's first question finds it.
    pytest.importorskip("ray")
    cwd = _bogus_jointnas(tmp_path / "cwd")
    code = ("import sys, ray\n"
            "ray.init(num_cpus=1, include_dashboard=False)\n"
            "from jointnas.execution.base import ExecutorError\n"
            "from jointnas.execution.ray import RayExecutor\n"
            "try:\n    RayExecutor(1)\nexcept ExecutorError as e:\n    print('REFUSED', e)\n"
            "ray.shutdown()\n")
    script = tmp_path / "refuse.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], cwd=cwd, env=_driver(tmp_path)[1], capture_output=True,
                          text=True, timeout=600)
    refused = [line for line in proc.stdout.splitlines() if line.startswith("REFUSED")]
    assert refused == ["REFUSED a Ray worker could not start: ImportError: the bogus jointnas of the working "
                       "directory"], proc.stdout + proc.stderr[-3000:]


@pytest.mark.slow
def test_a_ray_run_whose_raylet_dies_ends_in_one_line_within_a_minute_and_resumes(tmp_path):
    pytest.importorskip("ray")
    import psutil
    import toy_objective

    space, run, log = tmp_path / "toy.yaml", tmp_path / "run", tmp_path / "log.txt"
    space.write_text(yaml.safe_dump(toy_objective.SPACE))
    cmd, env = _driver(tmp_path)
    proc = subprocess.Popen([*cmd, *_toy_args(run, space, "--executor", "ray", "--workers", "1")], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    started, left = [], []
    try:
        deadline = time.time() + 600
        while time.time() < deadline:  # the first trial trains: 5 more of 6 s each to go
            assert proc.poll() is None, log.read_text()[-3000:]
            if RunStore.is_run(run):
                with RunStore.open(run) as store:
                    if store.counts().get("running", 0) == 1:
                        break
            time.sleep(0.2)
        started = _ray_processes_of(proc.pid)
        (raylet,) = [p for p in started if p.name() == "raylet"]
        raylet.kill()
        killed = time.monotonic()
        rc = proc.wait(timeout=120)
        took = time.monotonic() - killed
        _, left = psutil.wait_procs(started, timeout=15)  # what the driver's Ray left running
    finally:
        if proc.poll() is None:
            started = started or _ray_processes_of(proc.pid)
            proc.kill()
            proc.wait()
        _end([p for p in started if p.is_running()])
    err = log.read_text()
    ours = [line for line in err.splitlines() if line.startswith("jointnas")]
    print(f"the driver exited {took:.1f} s after its raylet was killed")  # shown with -s
    assert rc == 2 and took < 60, (rc, took, err[-3000:])
    assert len(ours) == 1 and "the Ray cluster was lost" in ours[0] and "Traceback" not in err, err[-3000:]
    assert not left, [(p.pid, p.name()) for p in left]  # nothing of that Ray is left behind
    with RunStore.open(run) as store:
        counts = store.counts()
    assert "running" not in counts and counts.get("queued", 0) >= 1  # the cut trial is queued again
    # and the run finishes on local workers
    resumed = subprocess.run([*cmd, *_toy_args(run, space, "--workers", "2")], cwd=REPO, env=env, text=True,
                             capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with RunStore.open(run) as store:
        assert store.counts() == {"done": 6}


# ---------------------------------------------------------------------- without Ray
def test_executor_ray_without_ray_installed_exits_2_with_the_install_line(monkeypatch, tmp_path, capsys, tiny):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    run = tmp_path / "new"
    assert main(coarse_args(run, tiny, "--executor", "ray")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'jointnas[ray]'" in err
    assert not run.exists()


def test_ray_flags_without_executor_ray_exit_2(tmp_path, capsys, tiny):
    assert main(coarse_args(tmp_path / "new", tiny, "--gpus-per-trial", "0.25")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--gpus-per-trial: for Ray trials only; add --executor ray" in err


def test_the_core_package_never_imports_ray():
    # Not even the catalog's entry for the Ray executor: ray is imported when a RayExecutor is made.
    code = ("import sys, jointnas, jointnas.cli, jointnas.coarse.search, jointnas.execution.local, jointnas.cli.coarse; "
            "from jointnas import catalog; from jointnas.cli import build_parser; build_parser(); "
            "catalog.resolve(catalog.EXECUTORS, 'ray', 'executor'); "
            "assert 'ray' not in sys.modules, 'ray imported'")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
