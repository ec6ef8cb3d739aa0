"""`jointnas coarse` output a tool can read, one ranking rule, the winner's weights, early refusals."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from jointnas.coarse.ranking import best_trials
from jointnas.catalog import load_trained
from jointnas.store import RunStore
from test_coarse import tiny_space_doc

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    """A small run made with --json in a subprocess: (run dir, stdout, stderr)."""
    root = tmp_path_factory.mktemp("json_run")
    space = root / "tiny.yaml"
    space.write_text(yaml.safe_dump(tiny_space_doc(), sort_keys=False))
    run = root / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "jointnas", "coarse", "--run", str(run), "--space", str(space),
                           "--pool", "32", "--batch", "3", "--iterations", "2", "--epoch-cap", "0",
                           "--ensemble", "2", "--train-subset", "128", "--workers", "2", "--json"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, proc.stdout, proc.stderr


def test_coarse_json_prints_only_json_on_stdout(json_run):
    run, out, err = json_run
    summary = json.loads(out)  # the whole of stdout is one JSON document
    assert summary["run"] == str(run) and "iteration 1: queued 3 candidates" in err
    assert "\r" not in err  # no bars: stderr is a pipe here


def test_coarse_summary_ranks_by_the_rule_the_report_uses(json_run):
    run, out, _ = json_run
    summary = json.loads(out)
    with RunStore.open(run) as store:
        epoch = store.results("calibration")[-1]["chosen_epoch"]
        expected = best_trials(store.trials(), epoch, top=5)
    assert [(b["trial"], b["score"]) for b in summary["best"]] == [(t.id, s) for t, s in expected]
    from jointnas.coarse.summary import format_summary

    assert f"ranked by score at epoch {epoch}, the run's calibrated early stop" in format_summary(summary)


def test_the_winner_of_a_run_keeps_its_weights_from_its_full_fidelity_retraining(json_run):
    run, out, _ = json_run
    summary = json.loads(out)
    final = summary["final"]
    assert final["key"] == summary["best"][0]["key"] and final["winner"]["status"] == "done"
    winner = Path(final["winner"]["weights"])
    assert winner == run / "winner"
    curve = json.loads((winner / "curve.json").read_text())
    assert curve["test_acc"] == final["winner"]["test_score"] and curve["test_acc"] is not None
    # Only its end is reported, so the retraining validated once, after its whole schedule (2-3 epochs).
    epochs = load_trained(winner)[1].recipe["epochs"]
    assert [e["epoch"] for e in curve["curve"]] == [epochs] and curve["epochs_run"] == final["winner"]["epochs"] == epochs
    torch.load(winner / "weights.pt", weights_only=True)
    model, cand = load_trained(winner)
    assert cand.key() == final["key"]


def test_absurd_iterations_and_pools_are_refused_at_once(tmp_path, refused):
    refused(["coarse", "--run", str(tmp_path / "r"), "--iterations", "1000000000"],
             "has room for at most")
    refused(["coarse", "--run", str(tmp_path / "r"), "--pool", "2000000"], "--pool: expected a whole number")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_run_directory_is_refused_before_the_pool_is_built(tmp_path, refused):
    (tmp_path / "file").write_text("x")
    refused(["coarse", "--run", str(tmp_path / "file" / "run"), "--no-progress"], "is a file")


def test_a_baseline_that_is_not_a_preset_of_the_space_is_refused_naming_the_presets(tmp_path, refused):
    refused(["coarse", "--run", str(tmp_path / "r"), "--baseline", "FBNetV3_Z", "--no-progress"],
            "has the presets FBNetV3_A, FBNetV3_B")
    assert list(tmp_path.iterdir()) == []
