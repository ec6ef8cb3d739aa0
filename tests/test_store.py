import multiprocessing as mp
import sqlite3

import numpy as np
import pytest

from jointnas import sample_pool
from jointnas.errors import UsageError
from jointnas.space.pool import decode_values, encode_values
from jointnas.store import RunStore


@pytest.fixture(scope="module")
def pool(space):
    return sample_pool(space, 64, seed=3)


def _result(acc, epochs=3, status="done"):
    curve = [{"epoch": e, "val_acc": acc * e / epochs, "val_loss": 1.0 / e, "train_loss": 1.0 / e}
             for e in range(1, epochs + 1)]
    return {"status": status, "curve": curve, "final_acc": acc, "epochs_run": epochs, "wall_time": 1.5,
            "device": "cpu", "error": None}


def test_pool_values_round_trip_exactly(space, pool):
    values = encode_values(space, pool)
    assert values.shape == (len(pool), len(space.dims))
    assert [c.key() for c in decode_values(space, values)] == [c.key() for c in pool]


def test_create_open_and_pool_reload(tmp_path, space, pool):
    run = tmp_path / "run"
    costs = np.arange(2 * len(pool), dtype=np.int64).reshape(-1, 2) + 1
    with RunStore.create(run, {"space": "fbnetv3", "pool": 64, "seed": 3}) as store:
        store.save_pool(space, pool, costs, sampled=64)
    with RunStore.open(run) as store:
        assert store.config == {"space": "fbnetv3", "pool": 64, "seed": 3}
        cands, got_costs = store.load_pool(space)
        assert [c.key() for c in cands] == [c.key() for c in pool]
        np.testing.assert_array_equal(got_costs, costs)
        assert store.pool_info()["sampled"] == 64
    # A damaged pool file is refused, not silently re-read.
    (run / "pool.npy").write_bytes(b"garbage")
    with RunStore.open(run) as store, pytest.raises(UsageError, match="pool.npy is damaged"):
        store.load_pool(space)


def test_not_a_run(tmp_path):
    with pytest.raises(UsageError, match="not a jointnas run"):
        RunStore.open(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        RunStore.create(tmp_path, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_trial_lifecycle_and_requeue(tmp_path, pool):
    store = RunStore.create(tmp_path / "r", {})
    ids = store.add_trials(1, [(i, pool[i], 100 + i, 10 + i) for i in range(3)])
    store.mark_running(ids[0], "w0")
    store.mark_running(ids[1], "w1")
    store.record_result(ids[1], _result(0.8))
    assert store.counts() == {"running": 1, "done": 1, "queued": 1}
    # A process died while ids[0] was running: it goes back to the queue, the finished one stays.
    assert store.requeue_running() == 1
    assert store.counts() == {"queued": 2, "done": 1}
    (done,) = store.trials("done")
    assert done.id == ids[1] and done.candidate.key() == pool[1].key()
    assert done.final_acc == 0.8 and done.flops == 101 and done.params == 11 and done.iteration == 1
    assert done.acc_at(2) == pytest.approx(0.8 * 2 / 3) and done.acc_at(99) == pytest.approx(0.8)
    # The same candidate is never queued twice.
    with pytest.raises(sqlite3.IntegrityError):
        store.add_trials(2, [(1, pool[1], 101, 11)])
    assert len(store.trials()) == 3


def test_results_and_predictor_paths(tmp_path):
    store = RunStore.create(tmp_path / "r", {})
    store.save_result("calibration", {"metric": "kendall_tau", "chosen_epoch": 2})
    store.save_result("predictor_eval", {"iteration": 1, "kendall_tau": 0.4})
    store.save_result("predictor_eval", {"iteration": 2, "kendall_tau": 0.5})
    assert [r["iteration"] for r in store.results("predictor_eval")] == [1, 2]
    assert store.results("fine") == []
    assert store.predictor_path() is None
    for it in (0, 1, 2):
        path = store.predictor_file(it)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
        store.register_predictor(it, path)
    assert store.predictor_path() == store.predictor_file(2)
    assert store.predictor_path(0) == store.predictor_file(0)


def _writer(run_dir, space_name, offset, n, barrier):
    from jointnas import load_space, sample_pool
    from jointnas.store import RunStore

    pool = sample_pool(load_space(space_name), 2 * n, seed=11)
    store = RunStore.open(run_dir)
    barrier.wait()  # both start writing at the same moment and contend for the write lock
    for i in range(offset, offset + n):
        (tid,) = store.add_trials(1, [(i, pool[i], i, i)])
        store.mark_running(tid, f"p{offset}")
        store.record_result(tid, _result(i / (2 * n)))
        store.save_result("event", {"trial": tid})
    store.close()


def test_two_processes_write_without_loss(tmp_path):
    run = tmp_path / "r"
    RunStore.create(run, {}).close()
    ctx = mp.get_context("spawn")
    n = 40
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(run), "fbnetv3", k * n, n, barrier)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with RunStore.open(run) as store:
        trials = store.trials()
        assert len(trials) == 2 * n and all(t.status == "done" for t in trials)
        assert sorted(t.pool_index for t in trials) == list(range(2 * n))
        assert len(store.results("event")) == 2 * n
        assert sorted({t.worker for t in trials}) == ["p0", f"p{n}"]
