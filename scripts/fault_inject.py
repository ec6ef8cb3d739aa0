"""Kill a small coarse run at N moments, five ways, resume it, and compare with an uninterrupted run.

    python scripts/fault_inject.py --moments 3            # the table, on the issue's small digits run
    python scripts/fault_inject.py --kinds driver,worker --moments 1 --keep /tmp/fi

Kinds: ``driver`` (SIGKILL of the driver alone: its workers must notice and exit), ``group``
(SIGKILL of the driver's whole process group), ``worker`` (SIGKILL of one training worker: the
run must go on by itself), ``sigint`` and ``sigterm`` (must exit 130 within --grace seconds).
Moments are evenly spaced over the uninterrupted run's wall time. After each kill the run is
resumed with the same command until it finishes, then compared with the uninterrupted one:

- identical: every trial (key, status, curve, accuracy), the calibration, the predictor
  evaluations and the final predictor's weights are the uninterrupted run's, bit for bit
- duplicated: a calibration or a predictor evaluation recorded twice, a candidate trained twice
- lost: a trial of the uninterrupted run missing, or not finished
- stuck: a resume that did not finish (exit != 0), trials left queued or running, a signal not
  obeyed within --grace seconds, or a worker process still alive 10 s after its driver died
- trials started again: trials whose attempts exceed 1 (a resumed trial cut short, a retried one)

One CPU (the script pins itself and its children to one core, so a trial's thread count does
not depend on the machine's load); a small run takes about a minute there.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The small run (fbnetv3 space, digits).
RUN_FLAGS = ["--pool", "500", "--batch", "4", "--iterations", "2", "--train-subset", "128", "--epoch-cap", "2",
             "--budget", "600MFLOPs", "--seed", "3", "--workers", "1", "--no-progress"]
KINDS = ["driver", "group", "worker", "sigint", "sigterm"]


def command(run: Path, extra) -> list:
    return [sys.executable, "-m", "jointnas", "coarse", "--run", str(run), *RUN_FLAGS, *extra]


def start(run: Path, extra, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(command(run, extra), cwd=REPO, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def workers_of(pid: int) -> list:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def running(run: Path) -> bool:
    from jointnas.errors import UsageError
    from jointnas.store import RunStore

    try:
        with RunStore.open(run) as store:
            return bool(store.trials("running"))
    except UsageError:  # not made yet
        return False


def snapshot(run: Path) -> dict:
    """What a finished run holds, in comparable form."""
    import torch

    from jointnas.store import RunStore

    with RunStore.open(run) as store:
        trials = store.trials()
        out = {
            "trials": {t.key: (t.status, t.final_acc, json.dumps(t.curve, sort_keys=True)) for t in trials},
            "n_rows": len(trials),
            "unfinished": sum(t.status in ("queued", "running") for t in trials),
            "restarted": sum(t.attempts > 1 for t in trials),
            "calibrations": store.results("calibration"),
            "evals": [(e["iteration"], e["n_train"], e["kendall_tau"]) for e in store.results("predictor_eval")],
        }
    final = run / "predictor.pt"
    out["weights"] = None
    if final.is_file():
        state = torch.load(final, map_location="cpu", weights_only=True)
        out["weights"] = [{k: v.numpy().tobytes() for k, v in m.items()} for m in state["members"]]
    return out


def compare(ref: dict, got: dict) -> dict:
    lost = sum(1 for k in ref["trials"] if got["trials"].get(k, ("missing",))[0] in ("missing", "queued", "running"))
    iterations = {e[0] for e in got["evals"]}
    duplicated = (max(0, len(got["calibrations"]) - 1) + (len(got["evals"]) - len(iterations))
                  + (got["n_rows"] - len(got["trials"])))
    identical = (got["trials"] == ref["trials"] and got["calibrations"] == ref["calibrations"]
                 and sorted(got["evals"]) == sorted(ref["evals"]) and got["weights"] == ref["weights"])
    return {"identical": identical, "duplicated": duplicated, "lost": lost, "unfinished": got["unfinished"],
            "restarted": got["restarted"]}


def finish(run: Path, extra, log: Path, timeout: float) -> int:
    """Resume until the run is done; the exit code of the last resume."""
    proc = start(run, extra, log)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return -1


def one_case(kind: str, at: float, base: Path, extra, ref: dict, grace: float, timeout: float) -> dict:
    run, log = base / f"{kind}-{at:.0f}s", base / f"{kind}-{at:.0f}s.log"
    proc = start(run, extra, log)
    time.sleep(at)
    stuck, exit_s = False, None
    if proc.poll() is None:
        workers = workers_of(proc.pid)
        if kind == "worker":  # mid-trial: once a trial is running (not while the surrogate fits)
            deadline = time.time() + 60
            while proc.poll() is None and time.time() < deadline and not (workers and running(run)):
                time.sleep(0.1)
                workers = workers_of(proc.pid)
            if workers:
                os.kill(workers[0], signal.SIGKILL)
            try:
                stuck = proc.wait(timeout) != 0  # the run goes on by itself
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                stuck = True
        elif kind in ("driver", "group"):
            if kind == "driver":
                os.kill(proc.pid, signal.SIGKILL)
            else:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
            deadline = time.time() + 10
            while any(alive(w) for w in workers) and time.time() < deadline:
                time.sleep(0.2)
            if any(alive(w) for w in workers):
                stuck = True  # an orphan trains on for nobody
                for w in workers:
                    if alive(w):
                        os.kill(w, signal.SIGKILL)
        else:
            t0 = time.time()
            proc.send_signal(signal.SIGINT if kind == "sigint" else signal.SIGTERM)
            try:
                rc = proc.wait(grace)
                stuck = rc != 130
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(60)
                stuck = True
            exit_s = time.time() - t0
    else:
        proc.wait()
    rc = finish(run, extra, log, timeout)
    got = snapshot(run)
    row = compare(ref, got)
    row["stuck"] = stuck or rc != 0 or row.pop("unfinished") > 0
    row["exit_s"] = exit_s
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--moments", type=int, default=3, help="kill moments per kind (default 3)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--space", help="space name or YAML (default: the run's fbnetv3)")
    ap.add_argument("--flags", help=f"the run's coarse flags instead of the issue's: {' '.join(RUN_FLAGS)}")
    ap.add_argument("--grace", type=float, default=15.0, help="seconds SIGINT/SIGTERM may take to exit (default 15)")
    ap.add_argument("--keep", type=Path, help="keep the runs and logs here (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds {sorted(unknown)}; choose from {KINDS}")
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    if args.flags:
        RUN_FLAGS[:] = args.flags.split()
    extra = ["--space", args.space] if args.space else []
    base = args.keep or Path(tempfile.mkdtemp(prefix="fault-inject-"))
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ref_run = base / "reference"
    rc = finish(ref_run, extra, base / "reference.log", timeout=3600)
    wall = time.time() - t0
    if rc != 0:
        sys.exit(f"the uninterrupted run failed (exit {rc}); see {base / 'reference.log'}")
    ref = snapshot(ref_run)
    print(f"uninterrupted run: {wall:.0f} s, {ref['n_rows']} trials; moments at "
          + ", ".join(f"{wall * (m + 1) / (args.moments + 1):.0f}s" for m in range(args.moments)), flush=True)
    rows = {}
    for kind in kinds:
        for m in range(args.moments):
            at = wall * (m + 1) / (args.moments + 1)
            row = one_case(kind, at, base, extra, ref, args.grace, timeout=max(600.0, 4 * wall))
            rows.setdefault(kind, []).append(row)
            print(f"  {kind} at {at:.0f}s: {row}", flush=True)
    print("\n| kind | tried | identical | duplicated | lost | stuck | trials started again | exit on signal |\n"
          "|---|---|---|---|---|---|---|---|")
    for kind, rs in rows.items():
        exits = [r["exit_s"] for r in rs if r["exit_s"] is not None]
        print(f"| {kind} | {len(rs)} | {sum(r['identical'] for r in rs)} | {sum(r['duplicated'] for r in rs)} | "
              f"{sum(r['lost'] for r in rs)} | {sum(r['stuck'] for r in rs)} | {sum(r['restarted'] for r in rs)} | "
              + (f"{min(exits):.1f}-{max(exits):.1f} s" if exits else "-") + " |")
    print(f"\ntotal {time.time() - t0:.0f} s; runs and logs in {base}")
    if args.json:
        print(json.dumps(rows))
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
