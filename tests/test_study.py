"""Ask/tell: a user's own training loop driven by the coarse search, on a run store."""
import math

import pytest
import yaml

from jointnas import CoarseConfig, Study
from jointnas.catalog import load_space
from jointnas.errors import UsageError
from jointnas.report.view import RunView
from jointnas.store import RunStore
from test_coarse import tiny_space_doc

BATCH = 3


def my_training(candidate):
    """A user's 'training': a score per epoch that depends on the recipe (lr near 0.02 is best)."""
    quality = 0.9 - 0.2 * abs(math.log10(candidate.recipe["lr"]) - math.log10(0.02))
    epochs = candidate.meta["epochs"] or candidate.recipe["epochs"]
    return [quality - 0.1 / e for e in range(1, epochs + 1)]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_space_doc(), sort_keys=False))
    return load_space(str(path))


def test_ask_and_tell_run_the_coarse_search_on_a_run_store(space, tmp_path):
    config = CoarseConfig(pool=32, batch=BATCH, iterations=2, ensemble=2, epoch_cap=None, seed=0)
    run = tmp_path / "study"
    with Study.create(run, space, config, score_bounds=(0.0, 1.0)) as study:
        first = [study.ask() for _ in range(BATCH)]
        assert all(c.meta["epochs"] == c.recipe["epochs"] for c in first)  # the first batch: full schedules
        with pytest.raises(UsageError, match="tell the scores of its 3 untold"):
            study.ask()
        for c in first:
            study.tell(c, curve=my_training(c))
        second = study.ask()  # batch 1 told: calibrated, surrogate fitted, batch 2 chosen by the policy
        with RunStore.open(run) as store:
            cal = store.results("calibration")[-1]
            assert store.predictor_path(1) is not None
        assert second.meta["epochs"] == min(cal["chosen_epoch"], second.recipe["epochs"])
        assert second.key() not in {c.key() for c in first}
        study.tell(second, curve=my_training(second))
        with pytest.raises(UsageError, match="not out for training"):
            study.tell(second, 0.5)  # told once
        lost = study.ask()  # asked, then the loop crashes before telling it
    # The study reopens, and what was asked but not told is handed out again.
    with Study.open(run) as study:
        again = [study.ask() for _ in range(BATCH - 2)]
        assert again[0].meta["trial"] == lost.meta["trial"] and again[0].key() == lost.key()
        for c in again + [study.ask()]:
            study.tell(c, curve=my_training(c))
        third = study.ask()
        assert third.meta["trial"] == 2 * BATCH + 1
        study.tell(third, float("nan"))  # a diverged run
        best = study.best(2)
    view = RunView.read(run)  # the report reads it like any run
    assert view.counts() == {"done": 2 * BATCH, "diverged": 1, "queued": BATCH - 1}
    ranked = view.ranked(2)
    assert [c.key() for c, _ in best] == [t.candidate.key() for t, _ in ranked]
    assert best[0][1] >= best[1][1]


def test_tell_needs_a_score(space, tmp_path):
    with Study.create(tmp_path / "s", space, CoarseConfig(pool=16, batch=3, ensemble=2)) as study:
        c = study.ask()
        with pytest.raises(UsageError, match="needs the candidate's score"):
            study.tell(c)
