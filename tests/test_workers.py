"""LocalExecutor's worker processes, killed for real: a worker that died idle costs the next
trial nothing, one that dies holding a trial costs it an attempt and is replaced at once, and a
job whose workers die before they take it does not loop for ever.

The objectives are module-level functions of this file: the workers (spawned, with the test
process's sys.path) import them from here."""
import os
import signal
import time
from pathlib import Path

import pytest

from jointnas.evaluation.base import TrialRequest
from jointnas.evaluation.function import FunctionEvaluator
from jointnas.execution.base import Job
from jointnas.execution.local import UNTAKEN_LIMIT, LocalExecutor

pytestmark = pytest.mark.skipif(not Path("/proc/self/comm").exists(), reason="reads worker names from /proc")

CANDIDATE = {"arch": {"x": 0.25}, "recipe": {"y": 0.5}}


def trains_for_a_while(candidate, report):
    """A trial that is really running: its first epoch at once, its second seconds later."""
    report(1, 0.25)
    time.sleep(4.0)
    report(2, 0.5)
    return 0.5


def chatty(candidate, report):
    """A trial that reports an epoch ten times a second for ten seconds."""
    for epoch in range(1, 101):
        time.sleep(0.1)
        report(epoch, 0.5)
    return 0.5


def quick(candidate, report):
    report(1, 0.75)
    return 0.75


class KillsItsReader:
    """Unpickled in a worker, this ends that process (exit code 3) before it can take its job."""

    def __reduce__(self):
        return (os._exit, (3,))


def job(trial_id, fn, space=None, epochs=2):
    return Job(trial_id, CANDIDATE, space, FunctionEvaluator(fn), TrialRequest(epochs, 0))


def comm(pid):
    """The process name a worker gives itself (jointnas-idle, jointnas-t<trial>), or '' once gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def zombie(pid):
    """Dead but not yet reaped by the executor: the executor has not looked at it since it died."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def wait_until(condition, ex, timeout=120, what="a worker"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert not ex.poll(timeout=0.05), "a trial finished too early"


def collect(ex, n, timeout=120):
    done, deadline = [], time.monotonic() + timeout
    while len(done) < n and time.monotonic() < deadline:
        done += ex.poll(timeout=1.0)
    assert len(done) == n, f"{len(done)} of {n} trials finished in {timeout} s"
    return {d.trial_id: d for d in done}


@pytest.mark.parametrize("submitted", ["at_once", "after_it_is_dead"])
def test_a_trial_given_to_a_killed_idle_worker_is_done_on_its_first_attempt(submitted):
    with LocalExecutor(2, "cpu", threads=1, max_retries=0) as ex:  # no retry: the trial must not need one
        busy, idle = ex.pids
        wait_until(lambda: comm(busy) == comm(idle) == "jointnas-idle", ex, what="the workers to start")
        assert ex.submit(job(0, trains_for_a_while)).startswith("local-0")
        # worker 0 trains trial 0, worker 1 sits idle
        wait_until(lambda: ex.epochs_done(0) >= 1, ex, what="trial 0 to train")
        assert comm(busy) == "jointnas-t0" and comm(idle) == "jointnas-idle"
        os.kill(idle, signal.SIGKILL)
        if submitted == "after_it_is_dead":  # without a poll between: submit has to see the death itself
            deadline = time.monotonic() + 10
            while not zombie(idle):
                assert time.monotonic() < deadline, "the killed worker did not die"
                time.sleep(0.02)
        assert ex.submit(job(1, quick, epochs=1)).startswith("local-1")
        done = collect(ex, 2)
        assert ex.pids[0] == busy and ex.pids[1] != idle  # the dead one was replaced, the busy one kept
    assert done[1].result["status"] == "done" and done[1].result["final_acc"] == 0.75
    assert done[1].attempts == 1 and done[1].worker.startswith("local-1")
    assert done[0].result["status"] == "done" and done[0].attempts == 1  # the other trial did not notice


def test_a_job_whose_workers_die_before_taking_it_fails_after_a_bounded_number_of_replacements():
    with LocalExecutor(1, "cpu", threads=1, max_retries=5) as ex:
        ex.submit(job(0, quick, space=KillsItsReader()))
        pids = set()
        deadline = time.monotonic() + 180
        finished = []
        while not finished and time.monotonic() < deadline:
            pids.add(ex.pids[0])
            finished = ex.poll(timeout=0.5)
        (done,) = finished
        assert ex.pids[0] not in pids  # the last one that died was replaced too
    # never taken, so no start was counted and max_retries (5) was not what ended it
    assert len(pids) == UNTAKEN_LIMIT and done.attempts == 1
    assert done.result["status"] == "failed"
    assert done.result["error"] == ("worker process died with exit code 3, before taking the job, "
                                    f"{UNTAKEN_LIMIT} time(s) in a row")


def test_a_worker_killed_after_taking_its_trial_costs_that_trial_an_attempt():
    with LocalExecutor(1, "cpu", threads=1, max_retries=1) as ex:
        ex.submit(job(0, trains_for_a_while))
        first = ex.pids[0]
        wait_until(lambda: ex.attempts(0) == 1 and comm(first) == "jointnas-t0", ex)
        os.kill(first, signal.SIGKILL)
        (done,) = collect(ex, 1).values()
        assert ex.pids[0] != first
    assert done.result["status"] == "done" and done.attempts == 2


def test_a_worker_that_dies_while_another_reports_epochs_is_replaced_at_once():
    with LocalExecutor(2, "cpu", threads=1, max_retries=1) as ex:
        ex.submit(job(0, chatty, epochs=100))
        ex.submit(job(1, trains_for_a_while))
        wait_until(lambda: ex.attempts(0) == ex.attempts(1) == 1 and ex.epochs_done(0) >= 1, ex)
        dead = ex.pids[1]
        os.kill(dead, signal.SIGKILL)
        killed = time.monotonic()
        while ex.pids[1] == dead:  # trial 0 reports an epoch every 0.1 s meanwhile
            assert not ex.poll(timeout=0.2) and time.monotonic() - killed < 5, "the dead worker was not replaced"
        assert ex.epochs_done(0) < 100  # replaced while the other trial still ran
        done = collect(ex, 2)
    assert done[1].result["status"] == "done" and done[1].attempts == 2
    assert done[0].result["status"] == "done" and done[0].attempts == 1
