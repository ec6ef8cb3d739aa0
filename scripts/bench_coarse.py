"""Wall time of the README's main job, `jointnas coarse --pool 20000`, run for real with its defaults.

Runs the command from the repository root (its run directory goes to runs/, git-ignored),
then reads the run's store for where the time went and writes the `## Coarse search` section
of BENCHMARKS.md (replacing an older one).

    python scripts/bench_coarse.py                       # run the default command, write the section
    python scripts/bench_coarse.py --dry-run             # print the section, leave BENCHMARKS.md alone
    python scripts/bench_coarse.py --from-run runs/X     # rewrite the section from a benchmarked run

The measurements (wall and CPU time, load) are kept in ``<run>/bench.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMAND = ["jointnas", "coarse", "--pool", "20000"]
SECTION = "## Coarse search"


def loadavg() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def run_command(extra) -> dict:
    cmd = COMMAND + list(extra)
    load_before = loadavg()
    start = time.time()
    # `python -m jointnas` is the `jointnas` entry point, but certainly this checkout's code.
    proc = subprocess.run([sys.executable, "-m", *cmd], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    wall = time.time() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command, its workers and their children
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
    found = re.search(r"new run (\S+)", proc.stderr)
    if not found:
        raise SystemExit("could not find the run directory in the command's output")
    r = {"cmd": " ".join(cmd), "start": start, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
         "run": found.group(1), "load_before": load_before, "load_after": loadavg()}
    (REPO / r["run"] / "bench.json").write_text(json.dumps(r, indent=2))
    print(proc.stdout)
    return r


def breakdown(run_dir: Path, start: float) -> dict:
    """Where the time went, from the timestamps the run's store keeps."""
    from jointnas.execution.local import usable_cpus
    from jointnas.store import RunStore

    with RunStore.open(run_dir) as store:
        trials = store.trials()
        cal = store.results("calibration")[-1]
        evals = store.results("predictor_eval")
        cfg = store.config
    iterations = {}
    for t in trials:
        it = iterations.setdefault(t.iteration, {"n": 0, "epochs": 0, "start": t.started_at, "end": t.finished_at,
                                                 "statuses": {}})
        it["n"] += 1
        it["epochs"] += t.epochs_run
        it["start"], it["end"] = min(it["start"], t.started_at), max(it["end"], t.finished_at)
        it["statuses"][t.status] = it["statuses"].get(t.status, 0) + 1
    workers = len({t.worker for t in trials})
    epoch_s = sum(t.wall_time or 0 for t in trials) / max(1, sum(t.epochs_run for t in trials))
    cap = cfg["epoch_cap"] or max(t.epochs_run for t in trials)
    extra_epochs = sum(min(cap, t.candidate.recipe["epochs"]) - t.epochs_run for t in trials if t.iteration > 1)
    return {"extra_epochs": extra_epochs, "extra_s": extra_epochs * epoch_s / workers, "cfg": cfg, "cal": cal, "evals": evals, "iterations": iterations, "workers": workers,
            "threads": max(1, usable_cpus() // workers),
            "setup_s": min(t.started_at for t in trials) - start, "epoch_s": epoch_s}


def section(r: dict, b: dict) -> str:
    import torch

    cfg, cal = b["cfg"], b["cal"]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    training = sum(v["end"] - v["start"] for v in b["iterations"].values())
    lines = [SECTION, "",
             f"Command: `{r['cmd']}` (the README's main job, no other flag), timed by "
             f"`python scripts/bench_coarse.py` on {time.strftime('%Y-%m-%d')}: {platform.machine()}, "
             f"{os.cpu_count()} CPU cores, {device}, torch {torch.__version__}.",
             f"Load average (1/5/15 min): {r['load_before']} before, {r['load_after']} after (above ~0.5 other jobs "
             "were sharing the cores, and an idle machine of this size finishes sooner).", "",
             "| what | figure |", "|---|---|",
             f"| **wall time, whole command** | **{r['wall'] / 60:.1f} min** ({r['wall']:.0f} s) |",
             f"| CPU time (command + workers) | {r['cpu'] / 60:.1f} min |",
             f"| settings (defaults) | pool {cfg['pool']}, batch {cfg['batch']}, {cfg['iterations']} iterations, "
             f"epoch cap {cfg['epoch_cap']}, {cfg['data']}, {b['workers']} worker process(es) x {b['threads']} "
             "thread(s) |",
             f"| start-up: imports, pool, proxies, encoder pretraining (until the first trial starts) | "
             f"{b['setup_s']:.0f} s |"]
    for it, v in sorted(b["iterations"].items()):
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(v["statuses"].items()))
        lines.append(f"| iteration {it} training: {v['n']} trials ({statuses}), {v['epochs']} epochs | "
                     f"{v['end'] - v['start']:.0f} s |")
    lines += [f"| predictor fits, k-fold evaluations, batch choices, summary (the rest) | "
              f"{r['wall'] - b['setup_s'] - training:.0f} s |",
              f"| mean wall time of one training epoch, per worker | {b['epoch_s']:.1f} s |",
              f"| estimate if calibration had kept all {cfg['epoch_cap']} epochs (iterations 2+ train "
              f"{b['extra_epochs']} more epochs) | {(r['wall'] + b['extra_s']) / 60:.1f} min |",
              f"| early-stop calibration | epoch {cal['chosen_epoch']} of {cal['full_epochs']} "
              f"(Kendall tau-b per epoch: {', '.join(f'{c:.2f}' for c in cal['correlation'])}; threshold "
              f"{cal['threshold']:g}, reached: {'yes' if cal['reached'] else 'no'}) |",
              "| predictor held-out Kendall tau per iteration (k-fold) | "
              + ", ".join(("-" if e["kendall_tau"] is None else f"{e['kendall_tau']:.2f}") + f" (n={e['n_train']})"
                          for e in b["evals"]) + " |", "",
              "Every step ran for real: 20000 Sobol candidates, their exact fvcore FLOPs/params, encoder "
              "pretraining, trainings on digits, calibration, predictor fits. The predictor's tau on "
              f"{len(b['evals']) and b['evals'][-1]['n_train']} or fewer pairs is noise, not a quality figure (the "
              "Predictor section finds no measurable ranking ability on so few real pairs): the CPU default "
              "shows the whole loop working within the time limit; a useful predictor needs the paper-scale "
              "settings (`--batch 48 --iterations 4 --epoch-cap 0`) on GPUs.", "", ""]
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = REPO / "BENCHMARKS.md"
    doc = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    doc = pattern.sub(lambda _: text, doc) if pattern.search(doc) else doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    ap.add_argument("--from-run", type=Path, metavar="DIR", help="rebuild the section from a benchmarked run")
    ap.add_argument("extra", nargs="*", help="extra flags for the command (not the benchmark's figure)")
    args = ap.parse_args(argv)
    if args.from_run is not None:
        r = json.loads((args.from_run / "bench.json").read_text())
    else:
        r = run_command(args.extra)
    text = section(r, breakdown(REPO / r["run"], r["start"]))
    print(text)
    if not args.dry_run and not args.extra:
        write_section(text)
        print(f"wrote {SECTION!r} into BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
