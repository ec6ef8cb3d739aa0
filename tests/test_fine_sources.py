"""Which predictor `jointnas fine` scores with when no --run is given (issue 26, item 5): a run under
./runs only when it is the only one, else the shipped predictor, and it says which in one line; a
space file that does not parse reports its own error first (issue 25, item 5). Also: `jointnas
coarse` refuses to go on without a warm start it expects but this install lacks."""
import json

import pytest
import yaml

import toy_objective
from jointnas.cli import main
from jointnas.cli.fine import shipped_predictor
from jointnas.store import RunStore

FINE = ["fine", "--budget", "600MFLOPs", "--population", "8", "--generations", "1", "--top-k", "1", "--json"]


def _cli(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _empty_run(path):
    RunStore.create(path, {"space": "fbnetv3", "seed": 0}).close()
    return path


@pytest.fixture
def toy_run(tmp_path, monkeypatch, capsys):
    """A finished toy coarse run at runs/toy-run (trials take microseconds), cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(toy_objective.SPACE, sort_keys=False))
    code, _, err = _cli(capsys, ["coarse", "--run", "runs/toy-run", "--space", "toy.yaml", "--objective",
                                 "toy_objective:objective", "--pool", "64", "--batch", "4", "--iterations", "1",
                                 "--executor", "serial", "--no-progress", "--no-result"])
    assert code == 0, err
    return tmp_path / "runs" / "toy-run"


def test_fine_in_a_directory_with_two_runs_and_no_run_says_it_used_the_shipped_predictor(capsys, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = [_empty_run(tmp_path / "runs" / name) for name in ("coarse-a", "coarse-b")]
    code, out, err = _cli(capsys, FINE)
    assert code == 0, err
    shipped = shipped_predictor("fbnetv3")
    said = [line for line in err.splitlines() if "predictor" in line]
    assert said == [f"scoring with the shipped predictor {shipped}: 2 runs under runs/ (runs/coarse-a, "
                    "runs/coarse-b) and none chosen; pass --run DIR to score with one of them"]
    payload = json.loads(out)
    assert payload["predictor"] == str(shipped) and "run" not in payload
    for run in runs:  # neither run was used: no fine result saved into it
        with RunStore.open(run) as store:
            assert store.results("fine") == []


def test_fine_uses_the_only_run_under_runs_and_says_so(capsys, toy_run):
    code, out, err = _cli(capsys, ["fine", "--generations", "1", "--population", "8", "--json"])
    assert code == 0, err
    payload = json.loads(out)
    assert payload["run"] == "runs/toy-run" and payload["predictor"].startswith("runs/toy-run/predictors/iter")
    assert f"scoring with {payload['predictor']}: run runs/toy-run's iteration 1 checkpoint, its latest (the only " \
           "run under runs/; the run's predictor.pt copy is not read)" in err.splitlines()


def test_fine_with_several_runs_refuses_when_the_space_has_no_shipped_predictor(capsys, toy_run):
    _empty_run(toy_run.parent / "other")
    code, out, err = _cli(capsys, ["fine", "--space", "toy.yaml", "--generations", "1", "--population", "8"])
    assert code == 2 and out == "", err
    assert err.strip().splitlines() == [
        "jointnas fine: error: 2 runs under runs/ (runs/other, runs/toy-run) and no shipped predictor for space "
        "toy; pass --run DIR or --predictor FILE.pt"]


def test_fine_space_file_with_a_yaml_error_reports_that_error_not_a_missing_predictor(capsys, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/: the shipped predictor of --space would be looked up
    (tmp_path / "typo.yaml").write_text("name: s\narch:\n  depth: {type: int, low: 1\n  width: {type: int}\n")
    code, out, err = _cli(capsys, ["fine", "--space", "typo.yaml", "--budget", "600MFLOPs"])
    assert code == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1 and "typo.yaml: not valid YAML at line 4, column 8" in err
    assert "shipped predictor" not in err


def test_coarse_refuses_to_start_without_the_shipped_warm_start_it_expects(capsys, tmp_path, monkeypatch):
    import jointnas.cli.coarse as coarse

    monkeypatch.setattr(coarse, "folder", lambda kind: tmp_path / "an-install-without" / kind)
    run = tmp_path / "run"
    code, out, err = _cli(capsys, ["coarse", "--run", str(run), "--pool", "200", "--batch", "4", "--iterations", "1",
                                   "--budget", "600MFLOPs", "--no-result", "--no-progress", "--executor", "serial"])
    assert code == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1
    assert "fbnetv3_digits_pairs.jsonl are missing from this jointnas install" in err
    assert "--prior-pairs none" in err
    assert not run.exists()
