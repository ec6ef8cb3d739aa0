"""The main job tells one story: coarse searches under the budget fine is then asked for, the
summary's table holds the winner and says why it won, every predicted number sits beside a
measured one of the same kind, printed intervals cover what they say, and the ETA is timed."""
import hashlib
import json
import re

import numpy as np
import pytest
import yaml

import schedule_objective as so
from jointnas import CoarseConfig, CoarseSearch, FunctionEvaluator, SerialExecutor
from jointnas.catalog import space_from_dict
from jointnas.cli import main
from jointnas.coarse.clock import RunClock
from jointnas.coarse.summary import format_final, format_summary
from jointnas.progress import Progress
from jointnas.store import RunStore
from jointnas.surrogates.interval import CalibratedInterval
from test_extrapolate import write_pairs

SCHEDULE = space_from_dict(so.SPACE)


@pytest.fixture(scope="module")
def schedule_run(tmp_path_factory):
    """A run whose extrapolator picks a long schedule that the early epoch ranks lower: (search summary
    with the top 1 row only, full summary, the stored final record)."""
    root = tmp_path_factory.mktemp("schedule")
    prior = write_pairs(root / "pairs.jsonl", SCHEDULE.sample(80, seed=1))
    config = CoarseConfig(pool=128, batch=6, iterations=2, epoch_cap=2, ensemble=2, seed=0, prior_pairs=str(prior),
                          final=True)  # an objective has no result stage unless asked
    with CoarseSearch.create(root / "run", SCHEDULE, FunctionEvaluator(so.objective), config,
                             executor=SerialExecutor(), progress=Progress(bars=False, log=lambda line: None)) as s:
        s.run()
        return s.summary(top=1), s.summary(), s.store.results("final")[-1], s.store.results("predictor_eval")


def test_the_summary_table_holds_and_marks_the_winner_the_early_epoch_ranks_lower(schedule_run):
    top1, full, final, _ = schedule_run
    winner = final["trial"]
    assert top1["best"][0]["trial"] != winner                 # the early epoch ranks another first
    assert top1["winner"]["trial"] == winner and top1["winner"]["rank"] > 1
    text = format_summary(top1)
    rows = [line for line in text.splitlines() if re.match(r"^  [* ] +\d+ +\d+ .* [0-9a-f]{16}$", line)]
    assert len(rows) == 2 and rows[1].startswith("  * ") and int(rows[1].split()[1]) == winner
    assert f"* winner: trial {winner}, the highest expected accuracy at the end of its schedule" in text
    # the objective gives no score range, so its scores are scores, not accuracies
    assert f"by measured score@{top1['calibration']['chosen_epoch']}" in text
    header = next(line for line in text.splitlines() if "trial" in line and "key" in line)
    assert " final " not in header                            # the column that repeated acc@E is gone
    # In the full table the winner is one of the rows, marked once.
    marked = [b["trial"] for b in full["best"] if b["winner"]]
    assert marked in ([winner], []) and format_summary(full).count("* winner:") == 1


def test_predicted_and_measured_numbers_printed_side_by_side_share_epoch_and_fidelity(schedule_run):
    _, _, final, evals = schedule_run
    lines = format_final(final)
    epoch, end = final["epoch"], final["winner"]["epochs"]
    searched = next(line for line in lines if "the predictor expected" in line)
    assert f"at epoch {epoch} (fidelity full" in searched and f"measured {100 * final['searched_score']:.2f} %" in searched
    ends = next(line for line in lines if "expected" in line and "end of its schedule" in line)
    assert f"(epoch {end}): measured {100 * final['winner']['final_acc']:.2f} %" in ends
    assert f"expected {100 * final['expected_final']:.2f} %" in ends
    assert sum("expected" in line for line in lines) == 2    # no predicted number on a line of its own
    # What it expected is the held-out prediction (the fold that did not see it), not a refit on it.
    oof = evals[-1]["out_of_fold"]
    assert final["predicted"] == pytest.approx(oof["predicted"][oof["trial"].index(final["trial"])])
    low, high, level = final["predicted_interval"]
    assert low <= final["predicted"] <= high and level == 0.8 and "80 % interval" in searched


def _noisy(sigma: float, seed: int):
    """A smooth score of three floats plus Gaussian noise of known ``sigma``, fixed per (candidate, seed)."""
    def objective(candidate, report):
        x = candidate.arch
        rng = np.random.default_rng([seed, int(hashlib.sha256(candidate.key().encode()).hexdigest()[:8], 16)])
        return 0.6 + 0.2 * np.sin(3 * x["a"]) * x["b"] - 0.3 * (x["c"] - 0.5) ** 2 + rng.normal(0, sigma)
    return objective


NOISY = space_from_dict({"name": "noisy", "family": None,
                         "arch": {k: {"type": "float", "low": 0.0, "high": 1.0} for k in "abc"}})


def test_the_printed_interval_covers_about_its_stated_share_of_held_out_trials(tmp_path):
    """80 % intervals from a run's out-of-fold errors, on a synthetic evaluator with noise sigma 0.05:
    over several seeds they cover about 80 % of fresh held-out trials, while the forest's own spread
    (what was printed before) covers far fewer."""
    covered, raw = [], []
    for seed in range(3):
        objective = _noisy(0.05, seed)
        config = CoarseConfig(pool=600, batch=10, iterations=3, ensemble=2, seed=seed, final=False)
        with CoarseSearch.create(tmp_path / f"run{seed}", NOISY, FunctionEvaluator(objective), config,
                                 executor=SerialExecutor(), progress=Progress(bars=False, log=lambda l: None)) as s:
            s.run()
            record = sorted(s.store.results("predictor_eval"), key=lambda e: e["iteration"])[-1]
            surrogate = s.loop.final_surrogate()
        interval = CalibratedInterval.from_record(record)
        assert interval is not None and interval.n == 30 and interval.level == 0.8
        held_out = NOISY.sample(300, seed=100 + seed)
        truth = np.array([objective(c, lambda *a: None) for c in held_out])
        mean, spread = surrogate.predict(held_out)
        low, high = interval.bounds(mean, spread)
        covered.append(float(np.mean((truth >= low) & (truth <= high))))
        raw.append(float(np.mean(np.abs(truth - mean) <= np.asarray(spread))))
    assert 0.68 <= np.mean(covered) <= 0.92, covered
    assert all(0.55 <= c <= 0.97 for c in covered), covered
    assert np.mean(raw) < np.mean(covered) - 0.1, (raw, covered)


def test_conformal_intervals_cover_their_level_when_errors_follow_the_spread():
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(20):
        spread = rng.uniform(0.01, 0.1, 60)
        mean = rng.uniform(0, 1, 60)
        truth = mean + rng.normal(0, 3 * spread)            # errors three times the spread
        interval = CalibratedInterval.from_out_of_fold(truth[:40], mean[:40], spread[:40], level=0.8)
        low, high = interval.bounds(mean[40:], spread[40:])
        shares.append(np.mean((truth[40:] >= low) & (truth[40:] <= high)))
    assert 0.74 <= np.mean(shares) <= 0.9
    assert CalibratedInterval.from_out_of_fold([0.5, 0.6, 0.7], [0.5, 0.5, 0.5], None) is None  # too few for 80 %


def test_the_eta_is_timed_per_flop_epoch_so_a_heavy_first_trial_does_not_inflate_it():
    clock = RunClock()
    assert clock.eta([[(2, 1e8)]], slots=2) == ""            # nothing timed yet: no guess
    clock.record({"status": "done", "epochs_run": 2, "wall_time": 60.0}, flops=1.2e9)   # 25 s per GFLOP-epoch
    # Four light trainings of 2 epochs at 0.3 GFLOPs on 2 slots: 2 x 0.6 GFLOP-epochs x 25 s = 30 s,
    # where seconds per epoch (30 s) would have said 2 min.
    assert clock.seconds_left([[(2, 3e8)] * 4], slots=2) == pytest.approx(30.0)
    # A stage is never shorter than its longest training (the result stage: winner and baseline).
    assert clock.seconds_left([[(10, 6e8), (2, 3e8)]], slots=2) == pytest.approx(150.0)
    clock.record({"status": "diverged", "epochs_run": 1, "wall_time": 500.0}, flops=1e8)   # not a timing
    clock.record({"status": "done", "epochs_run": 2, "wall_time": 20.0}, flops=4e8)        # 25 s per GFLOP-epoch
    clock.record({"status": "done", "epochs_run": 2, "wall_time": 150.0}, flops=4e8)       # a slow start
    assert clock.seconds_per_work() == pytest.approx(25e-9)   # the median: one slow training does not set it
    assert "timed by the 3 finished so far" in clock.eta([[(2, 3e8)]], slots=1)


def test_an_image_folder_without_a_path_is_refused_before_any_work(tmp_path, refused):
    err = refused(["coarse", "--run", str(tmp_path / "r"), "--data", "imagefolder:", "--no-progress"],
                  "dataset 'imagefolder:' names no folder; use imagefolder:DIR")
    assert "cannot read image folder" not in err and not (tmp_path / "r").exists()
    refused(["train", "--preset", "FBNetV3_A", "--data", "imagefolder:"], "names no folder")


FLAT = '''
def objective(candidate, report):
    # a score that grows with the first stage's width: any fbnetv3 candidate, no training
    return 0.5 + candidate.arch["s0_channels"] / 100 + candidate.recipe["lr"]
'''


def test_coarse_searches_under_the_space_budget_and_fine_defaults_to_the_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "flat_objective.py").write_text(FLAT)
    run = tmp_path / "run"
    assert main(["coarse", "--run", str(run), "--objective", "flat_objective:objective", "--pool", "300",
                 "--batch", "5", "--iterations", "1", "--executor", "serial", "--no-progress", "--no-result"]) == 0
    out, err = capsys.readouterr()
    assert "budget: <= 600.0 MFLOPs per candidate, the fbnetv3 space's default" in err and "fvcore" in err
    assert re.search(r"pool: 300 Sobol samples, \d+ within the budget \(<= 600.0 MFLOPs\)", out)
    with RunStore.open(run) as store:
        assert store.config["budget"] == 600_000_000
        assert all(t.flops <= 600_000_000 for t in store.trials())
    assert "budget: <= 600.0 MFLOPs per candidate" in out
    assert f"jointnas fine --run {run} --budget 600MFLOPs" in out
    assert main(["fine", "--run", str(run), "--population", "8", "--generations", "2", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert f"budget: <= 600.0 MFLOPs, run {run}'s (its coarse search's; --budget to change it)" in err
    assert "5 of the run's measured candidates seeded" in out
    # its intervals are the run's held-out errors, said as such, with their level
    assert "80 % interval: split conformal on the out-of-fold errors of 5 held-out trials" in out
    assert re.search(r"^ +1 +\d+\.\d\d% +\d+\.\d-\d+\.\d% ", out, re.M), out
    assert main(["fine", "--run", str(run), "--population", "8", "--generations", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["interval"]["level"] == 0.8 and payload["interval"]["n"] == 5
    low, high = payload["interval"]["bounds"][0]
    assert low <= payload["top"][0]["predicted_acc"] <= high
    assert main(["coarse", "--run", str(tmp_path / "free"), "--objective", "flat_objective:objective", "--pool", "40",
                 "--budget", "none", "--batch", "3", "--iterations", "1", "--executor", "serial", "--no-progress",
                 "--no-result"]) == 0
    assert "pool: 40 Sobol samples, 40 within the budget (none set)" in capsys.readouterr().out


def test_a_space_file_budget_is_read_and_checked():
    from jointnas.errors import SpaceError
    from jointnas.shipped import folder

    doc = yaml.safe_load((folder("spaces") / "fbnetv3.yaml").read_text())
    assert space_from_dict(doc).budget == 600_000_000
    with pytest.raises(SpaceError, match="budget: cannot read FLOPs budget '5x'"):
        space_from_dict(dict(doc, budget="5x"))
    with pytest.raises(SpaceError, match="budget: a space without a model family has no FLOPs"):
        space_from_dict(dict(so.SPACE, budget="600MFLOPs"))
