"""The result stage retrains the trial expected to end its schedule best, extrapolated from the
early score and the recipe on earlier whole curves, not the one an early epoch favours."""
import json

import pytest

import schedule_objective as so
from jointnas import CoarseConfig, CoarseSearch, FunctionEvaluator, SerialExecutor
from jointnas.catalog import space_from_dict
from jointnas.coarse.summary import format_summary
from jointnas.coarse.extrapolate import MIN_CURVES, ScheduleExtrapolator, from_pairs, whole_curves
from jointnas.progress import Progress

SPACE = space_from_dict(so.SPACE)


def whole_curve(cand):
    epochs, last = int(cand.recipe["epochs"]), so.end(cand.arch, cand.recipe)
    return [{"epoch": e, "score": last * e / epochs} for e in range(1, epochs + 1)]


def write_pairs(path, cands, curve=whole_curve):
    path.write_text("".join(json.dumps({"candidate": c.to_dict(), "status": "done", "curve": curve(c)}) + "\n"
                            for c in cands))
    return path


def test_the_extrapolator_ranks_schedule_ends_better_than_the_early_score(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", SPACE.sample(80, seed=1))
    ex = from_pairs(pairs, SPACE, epoch=2)
    assert ex.n_fit == 80
    assert ex.held_out_tau > 0.5 > ex.early_tau  # the early score alone ranks the ends badly here
    short, long_ = SPACE.candidate({"x": 0.3}, {"epochs": 2}), SPACE.candidate({"x": 0.3}, {"epochs": 12})
    early = [so.end(c.arch, c.recipe) * 2 / c.recipe["epochs"] for c in (short, long_)]
    assert early[0] > early[1]
    got = ex.predict([short, long_], early)
    assert got[1] > got[0]
    assert "80 earlier whole curves" in ex.describe()


def test_curves_stopped_before_their_schedules_end_are_not_taught_as_ends(tmp_path):
    cands = SPACE.sample(30, seed=2)
    pairs = write_pairs(tmp_path / "cut.jsonl", cands, curve=lambda c: whole_curve(c)[:2])
    from jointnas.surrogates.prior import read_prior_rows

    kept, _, _ = whole_curves(read_prior_rows(pairs, SPACE), 2, None)
    assert kept == [c for c in cands if c.recipe["epochs"] == 2]
    assert from_pairs(pairs, SPACE, 2) is None  # fewer than MIN_CURVES whole curves left
    assert len(kept) < MIN_CURVES


def _run(tmp_path, prior, first_batch=None):
    lines = []
    config = CoarseConfig(pool=128, batch=6, first_batch=first_batch, iterations=2, epoch_cap=2, ensemble=2, seed=0,
                          prior_pairs=str(prior) if prior else None, final=True)
    with CoarseSearch.create(tmp_path / "run", SPACE, FunctionEvaluator(so.objective), config,
                             executor=SerialExecutor(), progress=Progress(bars=False, log=lines.append)) as search:
        summary = search.run()
        final = search.store.results("final")[-1]
        trials = {t.id: t for t in search.store.trials()}
        first = search.store.trials(iteration=1)
    assert len(first) == (first_batch or 6) and len(trials) == len(first) + 6
    return summary, final, trials, lines


def test_the_result_stage_retrains_the_trial_expected_to_end_best(tmp_path):
    prior = write_pairs(tmp_path / "pairs.jsonl", SPACE.sample(80, seed=1))
    summary, final, trials, lines = _run(tmp_path, prior)
    early_first = summary["best"][0]
    winner = trials[final["trial"]]
    assert final["trial"] != early_first["trial"]
    # Trained to its end, the chosen trial beats the early ranking's first trained to its end.
    assert final["winner"]["final_acc"] == pytest.approx(so.end(winner.candidate.arch, winner.candidate.recipe))
    assert final["winner"]["final_acc"] > so.end(trials[early_first["trial"]].candidate.arch,
                                                  trials[early_first["trial"]].candidate.recipe)
    assert final["expected_final"] == pytest.approx(final["winner"]["final_acc"], abs=0.15)
    assert "80 earlier whole curves" in final["chosen_by"]
    text = format_summary(summary)
    assert f"* winner: trial {winner.id}, the highest expected accuracy at the end of its schedule" in text
    assert "expected acc@end" in text
    assert any(f"the winner is the trial expected to end its schedule best: trial {winner.id}" in line
               for line in lines)


def test_without_earlier_whole_curves_the_winner_is_the_rankings_first(tmp_path):
    summary, final, _, _ = _run(tmp_path, None, first_batch=4)  # and a first batch of its own size
    assert final["trial"] == summary["best"][0]["trial"]
    assert final["expected_final"] is None and final["chosen_by"] == "the ranking"
    assert "expected acc@end" not in format_summary(summary)
    assert f"* winner: trial {final['trial']}, the best measured score@" in format_summary(summary)
    assert "the ranking's first" in format_summary(summary)
