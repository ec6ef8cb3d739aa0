"""Every file a command reads or writes is checked before any training (issue 24, item 4), a resume
may change its earlier pairs, and `fine --run` says which checkpoint it scores with (item 7)."""
import json
import os
import time

import pytest
import yaml

import toy_objective
from jointnas.catalog import space_from_dict
from jointnas.cli import main
from jointnas.store import RunStore

TOY = space_from_dict(toy_objective.SPACE)
FAST = 5.0  # seconds: a refusal before any work comes at once (a toy run or a digits trial takes longer)


def _pairs(path, cands):
    with open(path, "w") as f:
        for c in cands:
            peak = toy_objective.peak(c.arch, c.recipe)
            f.write(json.dumps({"candidate": c.to_dict(), "status": "done",
                                "curve": [{"epoch": e, "score": peak * e / (e + 1)} for e in (1, 2, 3)]}) + "\n")
    return path


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """(argv of a toy coarse run in tmp_path, run dir, earlier pairs file): trials take microseconds."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(toy_objective.SPACE, sort_keys=False))
    run = tmp_path / "run"
    argv = ["coarse", "--run", str(run), "--space", "toy.yaml", "--objective", "toy_objective:objective",
            "--pool", "64", "--batch", "4", "--iterations", "1", "--executor", "serial", "--no-progress",
            "--no-result"]
    return argv, run, _pairs(tmp_path / "pairs.jsonl", TOY.sample(20, seed=5))


def _cli(capsys, argv):
    """(exit code, stdout, stderr, seconds) of ``jointnas ARGV`` in this process."""
    t = time.monotonic()
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err, time.monotonic() - t


def _one_line_refusal(code, err, seconds, *texts):
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(t in err for t in texts), err
    assert seconds < FAST, f"refused after {seconds:.1f} s"


def _damage(kind, path):
    if kind == "missing":
        return path.parent / "no-such-pairs.jsonl"
    if kind == "binary":
        path.write_bytes(bytes(range(256)) * 16)
    elif kind == "bad_json":
        path.write_text(path.read_text() + '{"candidate": {"arch": \n')
    elif kind == "another_space":
        from jointnas import load_space

        fbnet = load_space("fbnetv3").preset("FBNetV3_A")
        path.write_text(path.read_text() + json.dumps({"candidate": fbnet.to_dict(), "status": "done",
                                                       "curve": [{"epoch": 1, "score": 0.5}]}) + "\n")
    elif kind == "a_directory":
        path.unlink()
        path.mkdir()
    return path


@pytest.mark.parametrize("kind, says", [("missing", "No such file"), ("binary", "not UTF-8"),
                                        ("bad_json", "line 21 is not JSON"), ("another_space", "line 21"),
                                        ("a_directory", "is a directory")])
def test_unusable_prior_pairs_are_refused_in_one_line_before_a_run_is_made(capsys, toy, kind, says):
    argv, run, pairs = toy
    bad = _damage(kind, pairs)
    code, out, err, seconds = _cli(capsys, argv + ["--prior-pairs", str(bad)])
    _one_line_refusal(code, err, seconds, f"--prior-pairs {bad}", says)
    assert not run.exists()  # no run made, so no trial trained


def test_binary_prior_pairs_are_refused_before_a_digits_run_trains(capsys, tmp_path):
    """The issue's case: the default space and data, refused before the pool is costed or anything trains."""
    pairs = tmp_path / "pairs.bin"
    pairs.write_bytes(os.urandom(4096) + b"\xff")
    run = tmp_path / "run"
    code, out, err, seconds = _cli(capsys, ["coarse", "--run", str(run), "--pool", "500", "--batch", "4",
                                            "--iterations", "2", "--train-subset", "128", "--epoch-cap", "2",
                                            "--budget", "600MFLOPs", "--seed", "3", "--no-result", "--no-progress",
                                            "--executor", "serial", "--prior-pairs", str(pairs)])
    _one_line_refusal(code, err, seconds, f"--prior-pairs {pairs}", "not UTF-8")
    assert not run.exists()


def _trials(run):
    with RunStore.open(run) as store:
        return len(store.trials()), store.config


def test_a_resume_with_prior_pairs_none_continues_a_run_whose_pairs_vanished(capsys, toy):
    argv, run, pairs = toy
    assert _cli(capsys, argv + ["--prior-pairs", str(pairs)])[0] == 0
    assert _trials(run)[0] == 4
    pairs.unlink()
    resume = ["coarse", "--run", str(run), "--iterations", "2", "--executor", "serial", "--no-progress"]

    code, out, err, seconds = _cli(capsys, resume)   # the run's own pairs are gone: refused, nothing stored
    _one_line_refusal(code, err, seconds, f"run {run}", str(pairs), "--prior-pairs none")
    n, config = _trials(run)
    assert n == 4 and config["iterations"] == 1 and config["prior_pairs"] == str(pairs)

    code, out, err, _ = _cli(capsys, resume + ["--prior-pairs", "none"])
    assert code == 0, err
    assert f"earlier pairs: now none (was {pairs})" in err.splitlines()
    fits = [line for line in (out + err).splitlines() if line.startswith("iteration 2: predictor fitted")]
    assert fits and "earlier pairs" not in fits[0]
    n, config = _trials(run)
    assert n == 8 and config["iterations"] == 2 and config["prior_pairs"] is None

    code, out, err, _ = _cli(capsys, resume)  # the change was stored: a plain resume goes on without pairs
    assert code == 0 and "earlier pairs:" not in err, err


def test_a_refused_resume_stores_no_change_of_its_prior_pairs(capsys, toy, tmp_path):
    argv, run, pairs = toy
    assert _cli(capsys, argv + ["--prior-pairs", str(pairs)])[0] == 0
    resume = ["coarse", "--run", str(run), "--iterations", "2", "--executor", "serial", "--no-progress"]
    code, _, err, seconds = _cli(capsys, resume + ["--prior-pairs", "none", "--seed", "9"])
    _one_line_refusal(code, err, seconds, "--seed 9")
    bad = _damage("bad_json", _pairs(tmp_path / "other.jsonl", TOY.sample(5, seed=8)))
    code, _, err, seconds = _cli(capsys, resume + ["--prior-pairs", str(bad)])
    _one_line_refusal(code, err, seconds, f"--prior-pairs {bad}", "line 6 is not JSON")
    n, config = _trials(run)
    assert n == 4 and config["iterations"] == 1 and config["prior_pairs"] == str(pairs)


def test_train_save_in_proc_is_refused_before_training(capsys, monkeypatch):
    import jointnas.evaluation.trainer

    monkeypatch.setattr(jointnas.evaluation.trainer, "train", lambda *a, **k: pytest.fail("trained before refusing"))
    code, out, err, seconds = _cli(capsys, ["train", "--preset", "FBNetV3_A", "--epochs", "1", "--train-subset", "32",
                                            "--save", "/proc/x"])
    _one_line_refusal(code, err, seconds, "--save /proc/x")


@pytest.mark.parametrize("argv, flag", [
    (["coarse", "--run", "/proc/jointnas-run", "--no-progress"], "--run /proc/jointnas-run"),
    (["fine", "--run", "RUN", "--out", "/proc/fine.json"], "--out /proc/fine.json"),
    (["fine", "--run", "RUN", "--export", "/proc/chosen"], "--export /proc/chosen"),
    (["report", "RUN", "--out", "/proc/report.html"], "/proc/report.html"),
    (["autotrain", "--arch", "FBNetV3_A", "--run", "/proc/jointnas-autotrain", "--no-progress"],
     "--run /proc/jointnas-autotrain"),
])
def test_an_output_path_where_nothing_can_be_made_is_refused_before_any_work(capsys, toy, argv, flag):
    made, run, pairs = toy
    assert _cli(capsys, made + ["--prior-pairs", str(pairs)])[0] == 0
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    code, out, err, seconds = _cli(capsys, [str(run) if a == "RUN" else a for a in argv])
    _one_line_refusal(code, err, seconds, flag)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing done in the run either


def test_fine_run_says_which_checkpoint_of_which_run_it_scores_with(capsys, toy):
    argv, run, pairs = toy
    assert _cli(capsys, argv + ["--iterations", "2", "--prior-pairs", str(pairs)])[0] == 0
    (run / "predictor.pt").write_bytes(os.urandom(2048))  # never read by fine --run: garbage changes nothing
    code, out, err, _ = _cli(capsys, ["fine", "--run", str(run), "--generations", "2", "--population", "8"])
    assert code == 0, err
    said = [line for line in err.splitlines() if line.startswith("scoring with")]
    assert said == [f"scoring with {run / 'predictors' / 'iter2.pt'}: run {run}'s iteration 2 checkpoint, its "
                    "latest (the run's predictor.pt copy is not read)"]
