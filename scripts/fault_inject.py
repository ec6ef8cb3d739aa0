"""Kill a small coarse run eight ways while work is really running, resume it, and compare it
with an uninterrupted run of the same command.

    python scripts/fault_inject.py --out /tmp/matrix.md               # every case, the issue's flags
    python scripts/fault_inject.py --cases worker,idle-worker --keep /tmp/fi

The run is `jointnas coarse` with today's defaults on the issue's small digits run (RUN_FLAGS;
default surrogate, executor and workers: 2 local worker processes on a CPU with >= 2 cores).
Cases (`--executor ray` added for the last two):

- ``worker``: SIGKILL of a local worker process while it trains a trial; the run goes on by
  itself and the trial is started again on the replacement (its attempts become 2)
- ``idle-worker``: SIGKILL of the worker that sits idle while the other trains the last trial
  of a batch (more work follows); the run goes on and no trial pays for the death
- ``driver``: SIGKILL of the driver alone (its workers must notice and exit)
- ``group``: SIGKILL of the driver's whole process group
- ``sigint``: SIGINT to the process group (Ctrl-C); ``sigterm``: SIGTERM to the driver
  (`kill PID`): both must exit 130 within --grace seconds
- ``ray-worker``: SIGKILL of a Ray actor process while it trains; the run goes on by itself
- ``raylet``: SIGKILL of the raylet of the run's private Ray instance while trials run: the
  driver must end with a one-line error within --lost-limit seconds, and the run resume

A case waits --at x the uninterrupted run's wall time (idle-worker, raylet: not at all), then until
the store shows a trial ``running`` and the process that trains it is alive and using CPU
(fault_probe.py), and kills then. Whether the kill hit running work is checked afterwards from
the store: the killed worker's trial was started again (worker, ray-worker), the trials running
at the kill were left unfinished (driver, group, sigint, sigterm, raylet), the other worker's
trial was still running (idle-worker). A kill that hit nothing is *not tried*. After the kill
the run is resumed with the same command until it finishes (a run that went on by itself is
not), then compared with the uninterrupted run (the Ray cases with an uninterrupted Ray run):
every trial's key, status, final accuracy and curve; the calibrations, cheaper-fidelity trials
and predictor evaluations without their timings; the final predictor's checksum.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import fault_probe as probe  # noqa: E402 - beside this script

# The issue's small run (fbnetv3 space, digits); everything else is `jointnas coarse`'s default.
RUN_FLAGS = ["--pool", "500", "--batch", "4", "--iterations", "2", "--train-subset", "128", "--epoch-cap", "2",
             "--budget", "600MFLOPs", "--seed", "3", "--no-result", "--no-progress"]
CASES = ["worker", "idle-worker", "driver", "group", "sigint", "sigterm", "ray-worker", "raylet"]
RAY_CASES = {"ray-worker", "raylet"}
GOES_ON = {"worker", "idle-worker", "ray-worker"}   # the run must finish by itself after the kill
# Killed at the first running work: the idle worker of iteration 1 (more work follows); the raylet
# while the first batch trains, so that more work remains than the ~15 s Ray takes to declare a
# node dead (actors outlive their raylet: a run that finishes within that time never notices).
EARLY = {"idle-worker", "raylet"}


@dataclass
class Target:
    pid: int                     # the process signalled (its group with ``group``)
    sig: int
    trials: Tuple[int, ...]      # trial ids training at the kill (idle-worker: the other worker's)
    what: str
    group: bool = False


def command(run: Path, flags) -> list:
    return [sys.executable, "-m", "jointnas", "coarse", "--run", str(run), *flags]


def start(run: Path, flags, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    with log.open("a") as out:
        return subprocess.Popen(command(run, flags), cwd=run.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True,  # its own session and group: cleaned up by session id
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_or_kill(proc: subprocess.Popen, timeout: float) -> Tuple[int, bool]:
    """The exit code, and whether it had to be killed after ``timeout`` seconds (a hang)."""
    try:
        return proc.wait(timeout), False
    except subprocess.TimeoutExpired:
        probe.kill_session(proc.pid)
        return proc.wait(), True


def finish(run: Path, flags, log: Path, timeout: float) -> Tuple[int, bool]:
    """Run (or resume) to the end: exit code, and whether it hung."""
    proc = start(run, flags, log)
    try:
        return wait_or_kill(proc, timeout)
    finally:
        probe.kill_session(proc.pid)


# ------------------------------------------------------------------ finding work to kill
def _running(run: Path) -> Dict[int, dict]:
    return {t["id"]: t for t in probe.live_trials(run) if t["status"] == "running"}


def _busy_local(proc, run) -> Dict[int, int]:
    """pid -> trial id of the local workers that train a trial the store shows running, using CPU."""
    running = _running(run)
    named = {pid: int(name[len("jointnas-t"):]) for pid, name in probe.local_workers(proc.pid).items()
             if name.startswith("jointnas-t") and name[len("jointnas-t"):].isdigit()}
    named = {pid: tid for pid, tid in named.items() if tid in running}
    if not named:
        return {}
    cpu = probe.cpu_used(named)
    still = _running(run)
    return {pid: tid for pid, tid in named.items() if cpu[pid] >= probe.BUSY_CPU_S and tid in still}


def find_worker(proc, run, iterations) -> Optional[Target]:
    busy = _busy_local(proc, run)
    if busy:
        pid, tid = sorted(busy.items())[0]
        return Target(pid, signal.SIGKILL, (tid,), f"worker pid {pid} training trial {tid}")
    return None


def find_idle_worker(proc, run, iterations) -> Optional[Target]:
    trials = probe.live_trials(run)
    running = [t for t in trials if t["status"] == "running"]
    if len(running) != 1 or any(t["status"] == "queued" for t in trials) or running[0]["iteration"] >= iterations:
        return None  # wanted: the last trial of a batch training, one worker idle, more work to follow
    tid = running[0]["id"]
    workers = probe.local_workers(proc.pid)
    busy = [pid for pid, name in workers.items() if name == f"jointnas-t{tid}"]
    idle = [pid for pid, name in workers.items() if name == "jointnas-idle"]
    if len(busy) != 1 or not idle:
        return None
    cpu = probe.cpu_used(busy + idle)
    idle = [pid for pid in idle if 0 <= cpu[pid] <= probe.IDLE_CPU_S]
    if cpu[busy[0]] < probe.BUSY_CPU_S or not idle or tid not in _running(run):
        return None
    return Target(idle[0], signal.SIGKILL, (tid,), f"idle worker pid {idle[0]} while pid {busy[0]} trained trial {tid}")


def _find_driver(sig: int, group: bool, name: str) -> Callable:
    def find(proc, run, iterations) -> Optional[Target]:
        busy = _busy_local(proc, run)
        if busy:
            return Target(proc.pid, sig, tuple(sorted(busy.values())),
                          f"{name} while trial(s) {sorted(busy.values())} trained", group)
        return None
    return find


def _busy_ray(proc, run) -> Tuple[Dict[int, float], Dict[int, dict]]:
    running = _running(run)
    actors = probe.ray_actors(proc.pid) if running else {}
    if not actors:
        return {}, running
    cpu = probe.cpu_used(actors)
    return {pid: c for pid, c in cpu.items() if c >= probe.BUSY_CPU_S}, running


def find_ray_worker(proc, run, iterations) -> Optional[Target]:
    busy, running = _busy_ray(proc, run)
    if busy:
        pid = max(busy, key=busy.get)
        return Target(pid, signal.SIGKILL, tuple(sorted(running)), f"Ray actor pid {pid} while trial(s) "
                      f"{sorted(running)} ran")
    return None


def find_raylet(proc, run, iterations) -> Optional[Target]:
    busy, running = _busy_ray(proc, run)
    raylet = probe.raylets(proc.pid)
    if busy and len(raylet) == 1:
        return Target(raylet[0], signal.SIGKILL, tuple(sorted(running)),
                      f"raylet pid {raylet[0]} while trial(s) {sorted(running)} ran")
    return None


FIND = {"worker": find_worker, "idle-worker": find_idle_worker,
        "driver": _find_driver(signal.SIGKILL, False, "driver"),
        "group": _find_driver(signal.SIGKILL, True, "process group"),
        "sigint": _find_driver(signal.SIGINT, True, "Ctrl-C to the group"),
        "sigterm": _find_driver(signal.SIGTERM, False, "SIGTERM to the driver"),
        "ray-worker": find_ray_worker, "raylet": find_raylet}


# ------------------------------------------------------------------ one case
def hit_running_work(case: str, target: Target, ended: Dict[int, dict], running_after: set) -> bool:
    """The trials seen training were still ``running`` in the store right after the signal, and
    (where the store can show it) the kill cost them: their worker's death started one again, or
    the interrupted driver left them unfinished. A raylet's death is seen by the driver, not the
    store: running work at the kill is enough (the note says whether those trials finished anyway)."""
    if not running_after:
        return False
    if case in ("idle-worker", "raylet"):
        return True
    if case in ("worker", "ray-worker"):
        return any(ended.get(t, {}).get("attempts", 0) >= 2 for t in running_after)
    return any(ended.get(t, {}).get("status") in ("running", "queued") for t in running_after)


def one_case(case: str, base: Path, flags, ref: dict, args, wall: float, iterations: int) -> dict:
    run, log = base / case, base / f"{case}.log"
    limit = max(600.0, 5 * wall)
    proc = start(run, flags, log)
    t0 = time.time()
    delay = 0.0 if case in EARLY else args.at * wall
    target = None
    while proc.poll() is None and target is None:
        if time.time() - t0 >= delay:
            target = FIND[case](proc, run, iterations)
        time.sleep(0.1)
    row = {"case": case, "hit": False, "rc": None, "exit_s": None, "identical": "not tried", "notes": []}
    if target is None:
        rc, _ = wait_or_kill(proc, limit)
        probe.kill_session(proc.pid)
        row.update(rc=rc, notes=[f"the run ended (exit {rc}) before work was found running: nothing killed"])
        return row
    offset = log.stat().st_size
    t_kill = time.time()
    (os.killpg if target.group else os.kill)(target.pid, target.sig)
    running_after = set(target.trials) & set(_running(run))
    bound = limit if case in GOES_ON else args.grace if case in ("sigint", "sigterm") else \
        args.lost_limit if case == "raylet" else 60.0
    rc, hung = wait_or_kill(proc, bound)
    row.update(rc=rc, exit_s=time.time() - t_kill)
    notes = row["notes"]
    notes.append(target.what)
    if hung:
        notes.append(f"HUNG: no exit within {bound:.0f} s (killed)")
    deadline = time.time() + 10
    while probe.session_processes(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    left = probe.kill_session(proc.pid)
    if left:
        notes.append(f"{left} process(es) still alive 10 s after the driver ended (killed)")
    if case in ("sigint", "sigterm") and rc != 130:
        notes.append(f"exit {rc}, not 130")
    if case == "raylet" and rc != 2:
        notes.append(f"exit {rc}, not 2 (the one-line error)")
    if case == "raylet" or (case not in GOES_ON and rc not in (130, -signal.SIGKILL)) or (case in GOES_ON and rc):
        notes.append(f"last line: {probe.last_words(log, offset)}")
    try:
        ended = probe.ended_trials(run)
    except Exception as e:  # noqa: BLE001 - a store the kill broke is this script's finding, not its crash
        notes.append(f"store after the kill: {type(e).__name__}: {e}")
        ended = {}
    row["hit"] = hit_running_work(case, target, ended, running_after)
    if case == "raylet":
        done = sorted(t for t in running_after if ended.get(t, {}).get("status") not in (None, "running", "queued"))
        if done:
            notes.append(f"trial(s) {done} running at the kill finished anyway (Ray actors outlive their raylet)")
        noise = probe.ray_noise(log, offset)
        if noise:
            notes.append(f"before jointnas's line, Ray wrote {noise} lines of its own (raylet log dumps)")
    if case == "idle-worker":
        paid = [t for t, e in ended.items() if e["attempts"] > 1 or e["status"] == "failed"]
        notes.append("no trial paid for the death" if not paid else f"trial(s) {paid} paid for it (retried or failed)")
    unfinished = any(e["status"] in ("queued", "running") for e in ended.values())
    if rc != 0 or unfinished or not ended:
        rc2, hung2 = finish(run, flags, log, limit)
        if rc2 != 0 or hung2:
            notes.append(f"resume exit {rc2}" + (" (HUNG, killed)" if hung2 else ""))
    try:
        got = probe.snapshot(run)
    except Exception as e:  # noqa: BLE001
        notes.append(f"resumed store: {type(e).__name__}: {e}")
        row["identical"] = "NO" if row["hit"] else "not tried"
        return row
    diff = probe.differences(ref, got) + ([f"{got['unfinished']} trial(s) unfinished"] if got["unfinished"] else [])
    again = sum(a > 1 for a in got["attempts"].values())
    if again:
        notes.append(f"{again} trial(s) started again")
    if not row["hit"]:
        notes.append("the kill hit no running work: not tried" + (f" (compared: {'; '.join(diff)})" if diff
                                                                   else " (compared: identical)"))
    else:
        row["identical"] = "yes" if not diff else "NO: " + "; ".join(diff)
    return row


# ------------------------------------------------------------------ the table
def exit_text(rc) -> str:
    if rc is None:
        return "-"
    return f"{rc} ({signal.Signals(-rc).name})" if rc < 0 else str(rc)


def table(rows) -> str:
    out = ["| case | hit running work | exit code of the interrupted run | seconds to exit | resumed identical? | note |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        secs = "-" if r["exit_s"] is None else f"{r['exit_s']:.1f}"
        note = "; ".join(r["notes"]).replace("|", "/")
        out.append(f"| {r['case']} | {'yes' if r['hit'] else 'no'} | {exit_text(r['rc'])} | {secs} | "
                   f"{r['identical']} | {note} |")
    return "\n".join(out)


def reference(base: Path, name: str, flags) -> Tuple[dict, float]:
    t0 = time.time()
    rc, hung = finish(base / name, flags, base / f"{name}.log", timeout=3600)
    wall = time.time() - t0
    if rc != 0 or hung:
        sys.exit(f"the uninterrupted run failed (exit {rc}); see {base / (name + '.log')}")
    return probe.snapshot(base / name), wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--flags", help=f"the run's coarse flags instead of the issue's: {' '.join(RUN_FLAGS)}")
    ap.add_argument("--at", type=float, default=0.4,
                    help="look for running work from this fraction of the uninterrupted wall time on (default 0.4)")
    ap.add_argument("--grace", type=float, default=30.0, help="seconds SIGINT/SIGTERM may take to exit (default 30)")
    ap.add_argument("--lost-limit", type=float, default=180.0,
                    help="seconds the driver may take to end after its raylet died (default 180)")
    ap.add_argument("--keep", type=Path, help="keep the runs and logs here (default: a temporary directory)")
    ap.add_argument("--out", type=Path, help="also write the table (markdown) to this file")
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        ap.error(f"unknown cases {sorted(unknown)}; choose from {CASES}")
    flags = args.flags.split() if args.flags else list(RUN_FLAGS)
    iterations = int(flags[flags.index("--iterations") + 1]) if "--iterations" in flags else 2
    base = args.keep or Path(tempfile.mkdtemp(prefix="fault-inject-"))
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    header = [f"command: jointnas coarse --run DIR {' '.join(flags)}"]
    refs = {}
    if set(cases) - RAY_CASES:
        refs["local"] = reference(base, "reference", flags)
        header.append(f"uninterrupted run: {refs['local'][1]:.0f} s, {refs['local'][0]['n_rows']} trials")
    if set(cases) & RAY_CASES:
        refs["ray"] = reference(base, "reference-ray", flags + ["--executor", "ray"])
        same = "local" in refs and not probe.differences(refs["local"][0], refs["ray"][0])
        header.append(f"uninterrupted Ray run: {refs['ray'][1]:.0f} s, {refs['ray'][0]['n_rows']} trials"
                      + ("; identical to the local one" if same else ""
                         if "local" not in refs else "; differs from the local one: "
                         + "; ".join(probe.differences(refs["local"][0], refs["ray"][0]))))
    print("\n".join(header), flush=True)
    rows = []
    for case in cases:
        ref, wall = refs["ray" if case in RAY_CASES else "local"]
        case_flags = flags + (["--executor", "ray"] if case in RAY_CASES else [])
        row = one_case(case, base, case_flags, ref, args, wall, iterations)
        rows.append(row)
        print(f"  {case}: {row}", flush=True)
    tried = [r for r in rows if r["hit"]]
    text = (table(rows) + f"\n\n{len(tried)} of {len(rows)} cases hit running work; "
            f"{sum(r['identical'] == 'yes' for r in tried)} of those resumed identical. "
            f"Total {time.time() - t0:.0f} s; runs and logs in {base}" + ("" if args.keep else " (removed)"))
    print("\n" + text)
    if args.out:
        args.out.write_text("\n".join(header) + "\n\n" + text + "\n")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
