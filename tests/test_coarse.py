"""`jointnas coarse` end to end on a toy space (3 stages, 8-32 channels, 28-32 px digits) so that
each training takes about a second; the loop, store, executor and predictor are the real ones."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from jointnas import load_space, sample_pool
from jointnas.cli import main
from jointnas.coarse.calibration import calibrate
from jointnas.coarse.policies import acquisition_batch, diverse_batch
from jointnas.catalog import load_surrogate
from jointnas.store import RunStore, Trial

REPO = Path(__file__).resolve().parents[1]
BATCH, ITERATIONS = 4, 2


def tiny_space_doc() -> dict:
    arch = {"resolution": {"type": "int", "low": 224, "high": 256, "step": 32},
            "stem_channels": {"type": "int", "low": 8, "high": 16, "step": 8}}
    for i, (lo, hi) in enumerate([(8, 16), (16, 24), (24, 32)]):
        arch.update({f"s{i}_channels": {"type": "int", "low": lo, "high": hi, "step": 8},
                     f"s{i}_depth": {"type": "int", "low": 1, "high": 2},
                     f"s{i}_kernel": {"type": "categorical", "choices": [3, 5]},
                     f"s{i}_expansion": {"type": "int", "low": 1, "high": 3},
                     f"s{i}_kernel_rep": {"type": "categorical", "choices": [3, 5]},
                     f"s{i}_expansion_rep": {"type": "int", "low": 1, "high": 3},
                     f"s{i}_se": {"type": "bool"},
                     f"s{i}_act": {"type": "categorical", "choices": ["hswish", "relu"]}})
    recipe = {"optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
              "lr": {"type": "float", "low": 0.003, "high": 0.1, "log": True},
              "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-4, "log": True},
              "label_smoothing": {"type": "float", "low": 0.0, "high": 0.1},
              "mixup_alpha": {"type": "float", "low": 0.0, "high": 0.2},
              "dropout": {"type": "float", "low": 0.0, "high": 0.2},
              "stochastic_depth": {"type": "float", "low": 0.0, "high": 0.1},
              "ema": {"type": "bool"},
              "epochs": {"type": "int", "low": 2, "high": 3},
              "warmup_epochs": {"type": "int", "low": 0, "high": 1}}
    # reference_resolution 448: digits train at 28-32 px (base 56 * 224/448).
    return {"name": "tiny", "description": "3-stage toy space for coarse tests",
            "deploy": {"in_channels": 3, "num_classes": 1000, "reference_resolution": 448},
            "network": {"stage_strides": [1, 2, 2], "stem_stride": 2, "head_expansion": 2, "head_channels": 32},
            "arch": arch, "recipe": recipe}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_space_doc(), sort_keys=False))
    return str(path)


def coarse_args(run_dir, tiny, *extra):
    return ["coarse", "--run", str(run_dir), "--space", tiny, "--pool", "64", "--batch", str(BATCH),
            "--iterations", str(ITERATIONS), "--epoch-cap", "0", "--ensemble", "2", "--seed", "0",
            "--train-subset", "256", "--no-progress", *extra]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny):
    run = tmp_path_factory.mktemp("runs") / "full"
    assert main(coarse_args(run, tiny, "--workers", "2")) == 0
    return run


# ---------------------------------------------------------------------- pieces
def _trial(i, accs):
    curve = [{"epoch": e + 1, "val_acc": a} for e, a in enumerate(accs)]
    return Trial(id=i, candidate=None, status="done", curve=curve, final_acc=accs[-1], flops=1, params=1,
                 device="cpu", iteration=1, wall_time=1.0)


def test_calibrate_picks_first_epoch_reaching_threshold():
    # Epoch 1 ranks the trials backwards, epoch 2 in the final order but one swap, epoch 3 exactly.
    finals = [0.5, 0.6, 0.7, 0.8, 0.9]
    trials = [_trial(i, [1 - f, f + (0.15 if i == 0 else 0), f]) for i, f in enumerate(finals)]
    cal = calibrate(trials, threshold=0.9)
    assert cal["metric"] == "kendall_tau_b" and cal["epochs"] == [1, 2, 3]
    assert cal["correlation"][0] == pytest.approx(-1.0) and cal["correlation"][2] == pytest.approx(1.0)
    assert cal["correlation"][1] == pytest.approx(0.8)  # 1 discordant pair of 10
    assert cal["chosen_epoch"] == 3 and cal["reached"]
    assert calibrate(trials, threshold=0.8)["chosen_epoch"] == 2
    # A shorter schedule counts with its final accuracy at later epochs.
    assert _trial(9, [0.2, 0.4]).acc_at(3) == 0.4


def test_batch_choices():
    x = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]])
    chosen = diverse_batch(x, 3, seed=0)
    assert len(set(chosen)) == 3
    assert chosen == diverse_batch(x, 3, seed=0)
    mean, std = np.array([0.9, 0.8, 0.1, 0.5, 0.4]), np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    untried = np.array([False, True, True, True, True])
    assert acquisition_batch(mean, std, untried, 2, explore=0.0) == [1, 3]
    assert acquisition_batch(mean, std, untried, 2, explore=1.0) == [2, 1]
    assert acquisition_batch(mean, std, untried, 10, explore=0.0) == [1, 3, 4, 2]


def test_a_dead_worker_fails_its_trial_and_is_replaced(tiny):
    from jointnas.evaluation.train import TrainEvaluator
    from jointnas.evaluation.base import TrialRequest
    from jointnas.execution.base import Job
    from jointnas.execution.local import LocalExecutor

    space = load_space(tiny)
    cands = sample_pool(space, 2, seed=0)
    evaluator = TrainEvaluator("digits", train_subset=64)
    jobs = [Job(i, c.to_dict(), space, evaluator, TrialRequest(1, 0)) for i, c in enumerate(cands)]
    with LocalExecutor(1, "cpu", max_retries=0) as ex:  # retries: tests/test_reliability.py
        ex.submit(jobs[0])
        while not ex.attempts(0):  # the worker has taken the trial: its death is that trial's
            assert not ex.poll(timeout=0.05)
        first = ex.pids[0]
        os.kill(first, signal.SIGKILL)
        (done,) = ex.poll(timeout=120)
        assert done.trial_id == 0 and done.result["status"] == "failed"
        assert "worker process died" in done.result["error"]
        assert ex.in_flight == 0 and ex.pids[0] != first
        ex.submit(jobs[1])
        (done,) = ex.poll(timeout=300)
        assert done.trial_id == 1 and done.result["status"] == "done" and done.result["epochs_run"] == 1


def epochs_seen_while_running(ex, space, poll: float):
    """Train one job on executor ``ex``, asking for its finished epochs after every ``poll``:
    (its JobDone, the counts seen). The smallest fbnetv3 arch on 256 images, not the tiny space:
    an epoch (validation included) takes about half a second, so polls see each one many times
    over; the tiny space's epochs could all land within one poll."""
    from jointnas import Candidate
    from jointnas.budget import cheapest_arch
    from jointnas.evaluation.train import TrainEvaluator
    from jointnas.evaluation.base import TrialRequest
    from jointnas.execution.base import Job

    cand = Candidate(cheapest_arch(space), dict(space.default_recipe(), epochs=3), space=space.name)
    ex.submit(Job(7, cand.to_dict(), space, TrainEvaluator("digits", train_subset=256), TrialRequest(3, 0)))
    progress, finished = [], []
    deadline = time.monotonic() + 600
    while not finished and time.monotonic() < deadline:
        finished = ex.poll(timeout=poll)
        progress.append(ex.epochs_done(7))
    (done,) = finished
    return done, progress


def test_a_running_job_reports_its_epochs(space):
    from jointnas.execution.local import LocalExecutor

    with LocalExecutor(1, "cpu") as ex:
        done, progress = epochs_seen_while_running(ex, space, poll=0.02)
    assert done.trial_id == 7 and done.result["epochs_run"] == 3
    assert progress == sorted(progress[:-1]) + [0]  # grows while it runs, forgotten once done
    assert {1, 2} & set(progress)


# ---------------------------------------------------------------------- a whole run
def test_full_run_store(full_run, tiny):
    space = load_space(tiny)
    with RunStore.open(full_run) as store:
        cfg = store.config
        assert cfg["pool"] == 64 and cfg["batch"] == BATCH and cfg["evaluator"] == "train:digits"
        trials = store.trials()
        assert [len(store.trials(iteration=i)) for i in (1, 2)] == [BATCH, BATCH]
        assert all(t.status in ("done", "diverged") for t in trials)
        assert len({t.key for t in trials}) == len(trials)
        (cal,) = store.results("calibration")
        assert cal["metric"] == "kendall_tau_b" and 1 <= cal["chosen_epoch"] <= cal["full_epochs"]
        assert len(cal["correlation"]) == cal["full_epochs"]
        reached = [e for e, c in zip(cal["epochs"], cal["correlation"]) if c >= cal["threshold"]]
        assert cal["chosen_epoch"] == (reached[0] if reached else cal["full_epochs"])
        for t in store.trials("done", iteration=1):  # full schedules
            assert t.epochs_run == t.candidate.recipe["epochs"] and t.target_epochs is None
        for t in store.trials("done", iteration=2):  # early-stopped at the calibrated epoch
            assert t.target_epochs == cal["chosen_epoch"]
            assert t.epochs_run == min(cal["chosen_epoch"], t.candidate.recipe["epochs"])
        assert [r["iteration"] for r in store.results("predictor_eval")] == [1, 2]
        assert store.predictor_path(0) is not None and store.predictor_path() == store.predictor_path(2)
        # The pool reloads as sampled.
        pool, costs = store.load_pool(space)
        assert [c.key() for c in pool] == [c.key() for c in sample_pool(space, 64, seed=0)]
        # Iteration 2 = the best untried candidates by mean + explore * std of the iteration-1 predictor.
        p1 = load_surrogate(store.predictor_path(1), space)
        mean, std = p1.predict(pool)
        first = {t.key for t in store.trials(iteration=1)}
        untried = np.array([c.key() not in first for c in pool])
        expected = acquisition_batch(mean, std, untried, BATCH, cfg["explore"])
        assert sorted(t.pool_index for t in store.trials(iteration=2)) == sorted(expected)
    final = load_surrogate(full_run / "predictor.pt", space)
    assert final.kind == "forest" and final.predict(pool[:5])[0].shape == (5,)


def test_finished_run_prints_summary_again(full_run, tiny, capsys):
    assert main(["coarse", "--run", str(full_run), "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"].get("done", 0) + summary["counts"].get("diverged", 0) == BATCH * ITERATIONS
    assert len(summary["predictor_eval"]) == ITERATIONS


# ---------------------------------------------------------------------- interruptions
def _start(run_dir, tiny, log):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "jointnas", *coarse_args(run_dir, tiny, "--workers", "1")]
    # A shell without job control starts background jobs with SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: give the child the default, as a terminal would, wherever pytest runs.
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(run_dir, predicate, proc, timeout=900):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"coarse exited with {proc.returncode} before the test could interrupt it"
        if RunStore.is_run(run_dir):
            with RunStore.open(run_dir) as store:
                if predicate(store.counts()):
                    return
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"timed out waiting on {run_dir}")


def test_ctrl_c_then_sigkill_then_resume(tmp_path, tiny, full_run):
    run = tmp_path / "run"
    # Ctrl-C while a trial trains: clean exit, nothing left "running".
    log = tmp_path / "log.txt"
    proc = _start(run, tiny, log)
    _wait_for(run, lambda c: c.get("done", 0) >= 1 and c.get("running", 0) == 1, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()
    assert f"Continue with: jointnas coarse --run {run}" in log.read_text()
    with RunStore.open(run) as store:
        counts = store.counts()
        assert "running" not in counts and counts["done"] >= 1
        done_before = {t.key for t in store.trials("done")}
    # SIGKILL (driver only; its worker notices and exits) while another trial trains.
    proc = _start(run, tiny, log)
    _wait_for(run, lambda c: c.get("done", 0) > len(done_before) and c.get("running", 0) == 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    with RunStore.open(run) as store:
        assert store.counts().get("running") == 1
        done_before = {t.key: t.finished_at for t in store.trials("done")}
    # Resume to the end.
    assert main(coarse_args(run, tiny)) == 0
    with RunStore.open(run) as store, RunStore.open(full_run) as ref:
        trials = store.trials()
        finished = [t for t in trials if t.status in ("done", "diverged")]
        assert len(finished) == len(trials) == len([t for t in ref.trials() if t.status in ("done", "diverged")])
        assert len({t.key for t in trials}) == len(trials)
        # No finished trial was trained again, and the first (diverse) batch is the same as uninterrupted.
        for t in store.trials("done"):
            if t.key in done_before:
                assert t.finished_at == done_before[t.key]
        assert {t.key for t in store.trials(iteration=1)} == {t.key for t in ref.trials(iteration=1)}
        assert max(t.attempts for t in trials) == 2  # the trials cut short ran again, once
        assert store.predictor_path(ITERATIONS) is not None


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("flags, message", [
    (["--pool", "-5"], "--pool: expected a whole number from 1 to 200000"),
    (["--pool", "abc"], "--pool: expected a whole number from 1 to 200000"),
    (["--budget", "5xFLOPs"], "cannot read FLOPs budget '5xFLOPs'"),
    (["--budget", "100MFLOPs"], "below the cheapest candidate of space fbnetv3 (165.3 MFLOPs"),
    (["--max-params", "1M"], "below the smallest candidate of space fbnetv3 (6.23 M params"),
    (["--budget", "170MFLOPs", "--pool", "16"], "none of the 16 pool candidates fits the budget"),
    (["--rank-threshold", "1.5"], "--rank-threshold: expected a number in (0, 1]"),
])
def test_malformed_values_exit_2_and_write_nothing(tmp_path, capsys, flags, message):
    run = tmp_path / "new"
    with pytest.raises(SystemExit) as exc:
        rc = main(["coarse", "--run", str(run), "--no-progress", *flags])
        raise SystemExit(rc)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not run.exists() and list(tmp_path.iterdir()) == []


def test_non_empty_directory_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["coarse", "--run", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is not empty and is not a jointnas run" in err and err.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_continuing_with_other_settings_is_refused(full_run, tiny, capsys):
    before = sorted(p.name for p in full_run.iterdir())
    assert main(["coarse", "--run", str(full_run), "--pool", "128", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--pool 128 (run has 64)" in err and err.count("\n") == 1
    assert sorted(p.name for p in full_run.iterdir()) == before


def test_the_acquisition_picks_what_a_full_stable_sort_of_the_pool_picks_ties_included():
    from jointnas.coarse.policies import acquisition_batch

    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(1, 40))
        mean = np.round(rng.random(n) * 4) / 4   # many ties
        std, untried, k = rng.random(n), rng.random(n) < 0.7, int(rng.integers(0, 8))
        score = np.where(untried, mean + 0.5 * std, -np.inf)
        expected = [int(i) for i in np.argsort(-score, kind="stable")[:min(k, int(untried.sum()))]]
        assert acquisition_batch(mean, std, untried, k, 0.5) == expected
