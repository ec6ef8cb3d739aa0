"""What scripts/fault_inject.py looks at: a run's processes (which worker trains, which is idle,
the raylet), its store while it runs and once it has ended, and a finished run in comparable form.

Processes are found with psutil under the driver a case started (Ray's raylet and actors are
the driver's descendants too). A local worker names itself ``jointnas-idle`` or
``jointnas-t<trial id>`` (jointnas.execution.local.name_process); a Ray actor is titled
``ray::TrialWorker...``. *Busy* means the process used CPU time within a short window, so a
kill is checked to hit a process that is really training, not one that has just finished.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Dict, List

import psutil

BUSY_CPU_S = 0.05   # CPU seconds within WINDOW_S that make a process busy (a trainer gets >= 0.1 on a loaded 2-core box)
IDLE_CPU_S = 0.01   # at most this much within WINDOW_S: idle (a worker blocked on its inbox uses ~0)
WINDOW_S = 0.5


# ------------------------------------------------------------------ processes
def descendants(pid: int) -> List[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cmd0(p: psutil.Process) -> str:
    try:
        cmd = p.cmdline()
        return cmd[0] if cmd else ""
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return ""


def local_workers(driver: int) -> Dict[int, str]:
    """pid -> name (``jointnas-idle`` / ``jointnas-t<id>``) of the driver's local worker processes."""
    return {p.pid: n for p in descendants(driver) if (n := _name(p)).startswith("jointnas-")}


def ray_actors(driver: int) -> Dict[int, str]:
    """pid -> title of the driver's Ray TrialWorker actor processes."""
    return {p.pid: c for p in descendants(driver) if (c := _cmd0(p)).startswith("ray::TrialWorker")}


def raylets(driver: int) -> List[int]:
    return [p.pid for p in descendants(driver) if _name(p) == "raylet"]


def cpu_used(pids, window: float = WINDOW_S) -> Dict[int, float]:
    """CPU seconds each of ``pids`` used within ``window`` (a process that died: -1)."""
    def total(pid):
        try:
            t = psutil.Process(pid).cpu_times()
            return t.user + t.system
        except psutil.NoSuchProcess:
            return None
    before = {pid: total(pid) for pid in pids}
    time.sleep(window)
    out = {}
    for pid, t0 in before.items():
        t1 = total(pid)
        out[pid] = -1.0 if t0 is None or t1 is None else t1 - t0
    return out


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def session_processes(sid: int) -> List[int]:
    """Processes of the session ``sid`` (a case's driver starts its own): what a case left behind."""
    out = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            pass
    return out


def kill_session(sid: int) -> int:
    """SIGKILL every process of the session this script started (by pid); returns how many."""
    pids = session_processes(sid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


# ------------------------------------------------------------------ the store
def live_trials(run: Path) -> List[dict]:
    """The trials table of a run that a driver is writing, read through a read-only connection
    (no store check, no copy: fast enough to poll); [] before run.db exists or while it is busy."""
    db = run / "run.db"
    if not db.is_file():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
        try:
            cur = conn.execute("SELECT id, status, worker, iteration, attempts FROM trials")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def ended_trials(run: Path) -> Dict[int, dict]:
    """id -> status, attempts of each trial of a run whose driver has ended, read as jointnas reads a run."""
    from jointnas.store import RunStore

    with RunStore.open(run) as store:
        return {t.id: {"status": t.status, "attempts": t.attempts, "error": t.error} for t in store.trials()}


def _without(d: dict, *keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def snapshot(run: Path) -> dict:
    """What a run holds, in comparable form: per trial key its status, final accuracy and curve;
    the calibrations, the cheaper-fidelity trials and the predictor evaluations without their
    timings; the final predictor's checksum (stored in the file over all its contents)."""
    from jointnas.store import RunStore
    from jointnas.surrogates.checkpoint import Checkpoint

    with RunStore.open(run) as store:
        trials = store.trials()
        key_of = {t.id: t.key for t in trials}
        fidelity = sorted((key_of.get(r["trial"]), json.dumps(_without(r, "trial", "wall_time"), sort_keys=True))
                          for r in store.results("fidelity_trial"))
        fc = store.results("fidelity_calibration")
        out = {
            "trials": {t.key: (t.status, t.final_acc, json.dumps(t.curve, sort_keys=True)) for t in trials},
            "n_rows": len(trials),
            "unfinished": sum(t.status in ("queued", "running") for t in trials),
            "attempts": {t.key: t.attempts for t in trials},
            "calibration": [json.dumps(r, sort_keys=True) for r in store.results("calibration")]
                           + [json.dumps(r.get("chosen"), sort_keys=True) for r in fc],
            "fidelity_trials": fidelity,
            "evals": sorted(json.dumps(_without(r, "fit_seconds"), sort_keys=True)
                            for r in store.results("predictor_eval")),
        }
    final = run / "predictor.pt"
    out["predictor"] = Checkpoint.read(final).data.get("checksum") if final.is_file() else None
    return out


PARTS = ("trials", "calibration", "fidelity_trials", "evals", "predictor")


def differences(ref: dict, got: dict) -> List[str]:
    """What differs from the uninterrupted run ([] = identical), in words."""
    out = []
    missing = [k for k in ref["trials"] if k not in got["trials"]]
    if missing:
        out.append(f"{len(missing)} trial(s) missing")
    changed = [k for k in ref["trials"] if k in got["trials"] and got["trials"][k] != ref["trials"][k]]
    if changed:
        how = sorted({what for k in changed for what, a, b in
                      zip(("status", "accuracy", "curve"), ref["trials"][k], got["trials"][k]) if a != b})
        out.append(f"{len(changed)} trial(s) differ ({', '.join(how)})")
    extra = set(got["trials"]) - set(ref["trials"])
    if extra:
        out.append(f"{len(extra)} trial(s) the reference has not")
    if got["n_rows"] != len(got["trials"]):
        out.append(f"{got['n_rows'] - len(got['trials'])} candidate(s) queued twice")
    out += [f"{part} differ" for part in PARTS[1:] if got[part] != ref[part]]
    return out


def last_words(log: Path, offset: int) -> str:
    """The last line a run wrote to ``log`` after ``offset`` (the kill), and whether a traceback came."""
    text = log.read_bytes()[offset:].decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return (("traceback; " if "Traceback (most recent call last)" in text else "")
            + (lines[-1].strip()[:160] if lines else "(nothing)"))


def ray_noise(log: Path, offset: int) -> int:
    """Lines of Ray's own output (its log monitor's raylet dumps) in ``log`` after ``offset``."""
    text = log.read_bytes()[offset:].decode("utf-8", "replace")
    return sum(1 for line in text.splitlines() if "(raylet)" in line or "[state-dump]" in line
               or line.startswith("\t"))
