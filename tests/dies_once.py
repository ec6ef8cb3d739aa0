"""toy_objective's objective, except that the first trial to start (across all processes) kills its
own worker process after its first epoch: a worker lost mid-trial, on purpose.

The marker file named by JOINTNAS_TEST_DIES_ONCE says it has happened (created atomically, so of
two trials starting together only one dies); without the variable nothing dies."""
import os
import signal

import toy_objective


def objective(candidate, report):
    marker = os.environ.get("JOINTNAS_TEST_DIES_ONCE")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, f"{os.getpid()} {candidate.key()}".encode())
            os.close(fd)
            report(1, 0.0)
            os.kill(os.getpid(), signal.SIGKILL)
    return toy_objective.objective(candidate, report)
