"""Fidelity calibration and the run's result: a cheaper training setting is used only where it
ranks the first batch like full training; every trial is ranked at that one fidelity and epoch;
the winner is retrained at full fidelity, stored in the run and shown by `jointnas report`."""
import pytest

import fidelity_objective
from jointnas import CoarseConfig, CoarseSearch, FunctionEvaluator, SerialExecutor
from jointnas.catalog import space_from_dict
from jointnas.cli import main
from jointnas.coarse.calibration import calibrate_fidelity
from jointnas.evaluation.fidelity import Fidelity
from jointnas.progress import Progress
from jointnas.store import RunStore
from jointnas.trial import score_at

HALF_DATA, HALF_WIDTH = {"data": 0.5}, {"width": 0.5}


def curve(scores):
    return [{"epoch": e, "score": s} for e, s in enumerate(scores, start=1)]


def test_a_fidelity_whose_rank_correlation_is_below_the_threshold_is_refused_however_cheap():
    full = [{"trial": i, "curve": curve([0.1 * i, 0.2 * i]), "wall_time": 10.0} for i in range(1, 6)]
    cheap = ([{"trial": i, "fidelity": HALF_DATA, "curve": curve([0.05 * i, 0.1 * i]), "wall_time": 5.0,
               "status": "done"} for i in range(1, 6)]
             + [{"trial": i, "fidelity": HALF_WIDTH, "curve": curve([1 - 0.1 * i, 1 - 0.2 * i]), "wall_time": 1.0,
                 "status": "done"} for i in range(1, 6)])
    out = calibrate_fidelity(full, cheap, threshold=0.9)
    refused = {(o["label"], o["epoch"]) for o in out["refused"]}
    assert {("width x0.5", 1), ("width x0.5", 2)} <= refused          # 10x cheaper, ranking reversed
    assert out["chosen"] == {"fidelity": Fidelity(data=0.5).to_dict(), "label": "data x0.5", "epoch": 1}
    assert out["chosen_cost"] == pytest.approx(0.25)                  # half the seconds, half the epochs
    # With a threshold nothing cheap passes, full training at its last epoch is kept.
    worse = [dict(r, curve=curve([0.5, 1 - 0.1 * r["trial"]])) for r in cheap if r["fidelity"] == HALF_DATA]
    out = calibrate_fidelity([dict(r, curve=curve([0.3, 0.2 * r["trial"]])) for r in full], worse, threshold=0.9)
    assert out["chosen"]["label"] == "full" and out["chosen"]["epoch"] == 2
    assert all(not o["accepted"] for o in out["options"] if o["label"] == "data x0.5")


@pytest.fixture(scope="module")
def fidelity_run(tmp_path_factory):
    space = space_from_dict(fidelity_objective.SPACE)
    run = tmp_path_factory.mktemp("fid") / "run"
    lines = []
    evaluator = FunctionEvaluator(fidelity_objective.objective, fidelities=[HALF_DATA, HALF_WIDTH])
    config = CoarseConfig(pool=64, batch=5, iterations=2, epoch_cap=None, ensemble=2, seed=0, final=True)
    with CoarseSearch.create(run, space, evaluator, config, executor=SerialExecutor(),
                             progress=Progress(bars=False, log=lines.append)) as search:
        summary = search.run()
    return run, summary, lines


def test_a_coarse_run_trains_later_batches_at_the_calibrated_fidelity_and_refuses_the_reversed_one(fidelity_run):
    run, summary, lines = fidelity_run
    with RunStore.open(run) as store:
        cal = store.results("calibration")[-1]
        assert cal["fidelity"] == Fidelity(data=0.5).to_dict() and cal["chosen_epoch"] == 1
        fc = store.results("fidelity_calibration")[-1]
        assert {o["label"] for o in fc["refused"]} == {"width x0.5"}
        for t in store.trials(iteration=2):   # half the score: they were trained at half the data, 1 epoch
            best = fidelity_objective.peak(t.candidate.arch, t.candidate.recipe)
            assert [e["score"] for e in t.curve] == pytest.approx([0.5 * best / 2])
    assert any("chosen fidelity: data x0.5 at epoch 1" in line for line in lines)
    assert any("fidelity width x0.5: refused" in line for line in lines)


def test_the_summary_ranks_every_trial_at_one_comparable_fidelity_and_epoch(fidelity_run):
    run, summary, _ = fidelity_run
    with RunStore.open(run) as store:
        trials = {t.id: t for t in store.trials()}
        cheap = {r["trial"]: r for r in store.results("fidelity_trial") if Fidelity.from_dict(r["fidelity"]) == Fidelity(**HALF_DATA)}
    assert {b["iteration"] for b in summary["best"]} == {1, 2}   # both batches in one ranking
    for b in summary["best"]:
        t = trials[b["trial"]]
        best = fidelity_objective.peak(t.candidate.arch, t.candidate.recipe)
        assert b["score"] == pytest.approx(0.5 * best / 2)       # half data, epoch 1, whichever batch
        if t.iteration == 1:   # its full-fidelity curve is higher: not what it is ranked by
            assert b["score"] == pytest.approx(score_at(cheap[t.id]["curve"], 1))
            assert b["score"] < score_at(t.curve, 1)
    scores = [b["score"] for b in summary["best"]]
    assert scores == sorted(scores, reverse=True)


def test_the_winners_full_fidelity_retraining_is_stored_in_the_run_and_shown_by_report(fidelity_run, capsys):
    run, summary, _ = fidelity_run
    with RunStore.open(run) as store:
        final = store.results("final")[-1]
        winner_trial = next(t for t in store.trials() if t.id == final["trial"])
    assert final["trial"] == summary["best"][0]["trial"]
    best = fidelity_objective.peak(winner_trial.candidate.arch, winner_trial.candidate.recipe)
    assert final["winner"]["status"] == "done"
    assert final["winner"]["final_acc"] == pytest.approx(best * 3 / 4)   # full fidelity, all 3 epochs
    assert final["predicted"] is not None
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"result: winner trial {final['trial']}" in out and f"{100 * best * 3 / 4:.2f} %" in out


def test_a_predictor_at_chance_gets_a_line_saying_how_many_more_trials_it_needs():
    from jointnas.coarse.held_out import PAIRS_FOR_USEFUL_TAU, chance_line

    line = chance_line(-0.2, 18, 6, 3)
    assert f"about {PAIRS_FOR_USEFUL_TAU - 18} more trials" in line and "to 9 iterations" in line
    assert "no held-out measure yet" in chance_line(None, 3, 6, 1)
    assert chance_line(0.45, 18, 6, 3) is None


def test_a_run_warm_started_from_earlier_pairs_stays_at_their_full_fidelity_and_fits_on_them(tmp_path):
    import json

    space = space_from_dict(fidelity_objective.SPACE)
    prior = tmp_path / "pairs.jsonl"
    earlier = space.sample(12, seed=7)
    prior.write_text("".join(json.dumps({"candidate": c.to_dict(), "status": "done", "curve": curve(
        [fidelity_objective.peak(c.arch, c.recipe) * e / (e + 1) for e in (1, 2)])}) + "\n" for c in earlier))
    lines = []
    evaluator = FunctionEvaluator(fidelity_objective.objective, fidelities=[HALF_DATA])
    config = CoarseConfig(pool=64, batch=4, iterations=2, epoch_cap=None, ensemble=2, seed=0, prior_pairs=str(prior))
    with CoarseSearch.create(tmp_path / "run", space, evaluator, config, executor=SerialExecutor(),
                             progress=Progress(bars=False, log=lines.append)) as search:
        search.run()
        assert search.store.results("fidelity_trial") == [] and search.chosen_fidelity() is None
    fits = [line for line in lines if "predictor fitted on" in line]
    assert len(fits) == 2 and all(f"+ {len(earlier)} earlier pairs ({prior}" in line for line in fits)
