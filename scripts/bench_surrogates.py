"""The surrogates side by side (issue 23): CPU time of a fit, a warm refit after one more row,
and scoring a whole table, at n = 16 / 64 / 256, one thread, one process; then held-out Kendall
tau by training-set size and task, and digits' recorded pairs (5-fold).

    OMP_NUM_THREADS=1 python scripts/bench_surrogates.py --out benchmarks/surrogates

Surrogates: the forest (kind ``forest``), the member-by-member MLP ensemble (kind ``mlp``, timing
only: the "before"), FBNetV3's stacked predictor (kind ``fbnetv3``) with encoder pretraining on,
off and chosen from the data (``auto``, the default), and the rank blend of the forest and the
stacked predictor (kind ``blend``). Tables: ``jointnas.evaluation.tabular.load_table`` (labels =
the mean over seeds); the whole table is the pool the surrogates pretrain on; each draw trains
on n random rows and scores 1,000 other random rows. Writes ``<out>/bench_surrogates.json`` and
``<out>/bench_surrogates.md``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PAIRS = REPO / "data" / "fbnetv3_digits_pairs.jsonl"
VARIANTS = {   # name -> (catalog kind, options)
    "forest": ("forest", {}),
    "forest (no trend)": ("forest", {"trend": None}),   # the forest before the proxies' trend
    "mlp (member by member)": ("mlp", {}),
    "fbnetv3 pretrained": ("fbnetv3", {"pretraining": "on"}),
    "fbnetv3 not pretrained": ("fbnetv3", {"pretraining": "off"}),
    "fbnetv3 auto": ("fbnetv3", {}),
    "blend": ("blend", {}),
}
TIMED = ["forest", "mlp (member by member)", "fbnetv3 pretrained", "fbnetv3 auto", "blend"]
RANKED = ["forest", "fbnetv3 pretrained", "fbnetv3 not pretrained", "fbnetv3 auto", "blend"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "surrogates")
    ap.add_argument("--tasks", default="nb201/cifar10,nb201/cifar100,hpobench-mlp/vehicle,hpobench-mlp/segment")
    ap.add_argument("--sizes", default="16,32,64,256")
    ap.add_argument("--draws", type=int, default=5, help="training draws per task and size")
    ap.add_argument("--held-out", type=int, default=1000)
    ap.add_argument("--timing-sizes", default="16,64,256")
    ap.add_argument("--timing-task", default="nb201/cifar10")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (the member-by-member MLP: 1)")
    ap.add_argument("--skip-digits", action="store_true")
    ap.add_argument("--taus-only", action="store_true", help="held-out tau only (no timing, no digits); "
                    "writes bench_surrogates_taus.{json,md}")
    ap.add_argument("--ranked", help=f"comma-separated variants for the held-out taus (default: {', '.join(RANKED)}; "
                    f"known: {', '.join(VARIANTS)})")
    ap.add_argument("--name", help="stem of the files written (default: bench_surrogates, or _taus with --taus-only)")
    return ap.parse_args(argv)


def table_pool(task: str):
    from jointnas.catalog import load_space
    from jointnas.evaluation.tabular import load_table

    table = load_table(task)
    space = load_space("nb201" if task.startswith("nb201") else "hpobench-mlp")
    cands = [space.candidate(*table.values_of(k)) for k in table.keys]
    costs = space.family.costs([c.arch for c in cands])
    return space, cands, space.encode(cands).astype(np.float32), costs, np.asarray(table.means, np.float64)


def pretrained(variant: str, space, pool, costs, seed: int = 0):
    from jointnas.catalog import make_surrogate

    kind, options = VARIANTS[variant]
    s = make_surrogate(kind, space, seed=seed, ensemble=5, score_bounds=(0.0, 1.0), **options)
    start = time.process_time()
    s.pretrain(pool, costs)
    return s, time.process_time() - start


def cpu(fn, repeats: int) -> float:
    """Mean CPU seconds of ``fn()`` over ``repeats`` calls."""
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats


def timings(args) -> dict:
    space, cands, x, costs, y = table_pool(args.timing_task)
    sizes = [int(v) for v in args.timing_sizes.split(",")]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(cands))
    out = {}
    for variant in TIMED:
        template, pretrain_s = pretrained(variant, space, cands, costs)
        row = {"pretrain_s": pretrain_s}
        repeats = 1 if variant.startswith("mlp") else args.repeats
        warm_up = copy.deepcopy(template).fit([cands[i] for i in order[:8]], y[order[:8]])  # imports, caches
        warm_up.predict_encoded(x[:100], costs[:100])
        for n in sizes:
            rows = [cands[i] for i in order[:n + repeats]]
            ys = y[order[:n + repeats]]
            fitted = copy.deepcopy(template)
            fit_s = cpu(lambda: fitted.fit(rows[:n], ys[:n]), repeats)
            # one row at a time after the fit: update() with n+1, n+2, ... rows (warm where it can)
            start, k = time.process_time(), 0
            for k in range(1, repeats + 1):
                fitted.update(rows[:n + k], ys[:n + k])
            refit_s = (time.process_time() - start) / repeats
            predict_s = cpu(lambda: fitted.predict_encoded(x, costs), repeats)
            row[n] = {"fit_s": fit_s, "refit_s": refit_s, "predict_s": predict_s}
            print(f"{variant:>24} n={n:>3}: fit {fit_s:.4f} s, refit {refit_s:.4f} s, "
                  f"predict {len(x)} rows {predict_s:.4f} s", flush=True)
        out[variant] = row
    out["stream"] = {v: stream(v, space, cands, costs, y, order) for v in ("fbnetv3 pretrained", "fbnetv3 auto", "blend")}
    out["rows_scored"] = len(x)
    return out


def stream(variant, space, cands, costs, y, order, first: int = 16, last: int = 256) -> dict:
    """Rows arriving one at a time from ``first`` to ``last``: update() after each; mean CPU s."""
    s = copy.deepcopy(pretrained(variant, space, cands, costs)[0])
    rows = [cands[i] for i in order[:last]]
    s.fit(rows[:first], y[order[:first]])
    start = time.process_time()
    for n in range(first + 1, last + 1):
        s.update(rows[:n], y[order[:n]])
    mean = (time.process_time() - start) / (last - first)
    print(f"{variant:>24}: rows one at a time {first}->{last}: {mean * 1000:.1f} ms per update()", flush=True)
    return {"first": first, "last": last, "mean_update_s": mean}


def held_out_taus(args) -> dict:
    from scipy.stats import kendalltau

    sizes = [int(v) for v in args.sizes.split(",")]
    out = {}
    for task in args.tasks.split(","):
        space, cands, x, costs, y = table_pool(task)
        templates = {v: pretrained(v, space, cands, costs)[0] for v in RANKED}
        taus = {v: {n: [] for n in sizes} for v in RANKED}
        choices = {n: [] for n in sizes}
        for draw in range(args.draws):
            order = np.random.default_rng([draw, 23]).permutation(len(cands))
            test = order[-args.held_out:]
            for n in sizes:
                train = order[:n]
                rows = [cands[i] for i in train]
                for v in RANKED:
                    s = copy.deepcopy(templates[v]).fit(rows, y[train], costs[train])
                    taus[v][n].append(float(kendalltau(y[test], s.predict_encoded(x[test], costs[test])[0])[0]))
                    if v == "fbnetv3 auto":
                        choices[n].append(bool(s.info["pretraining"]["used"]))
        out[task] = {v: {n: float(np.mean(t)) for n, t in by_n.items()} for v, by_n in taus.items()}
        out[task]["auto chose pretrained"] = {n: f"{sum(c)}/{len(c)}" for n, c in choices.items()}
        print(task, json.dumps(out[task]), flush=True)
    return out


def digits(args) -> dict:
    from jointnas.catalog import load_space
    from jointnas.surrogates.evaluate import cross_validate
    from jointnas.surrogates.prior import load_prior_pairs

    space = load_space("fbnetv3")
    cands, y = load_prior_pairs(PAIRS, space, 10_000, 0.1)   # the final epoch; diverged = chance
    pool = space.sample(20000, seed=0)
    costs = space.family.costs([c.arch for c in pool])
    out = {"pairs": len(y)}
    for v in RANKED:
        template = pretrained(v, space, pool, costs)[0]
        taus = [cross_validate(template, cands, y, k=5, seed=s)["kendall_tau_pooled"] for s in range(args.draws)]
        out[v] = float(np.mean(taus))
        if v == "fbnetv3 auto":
            out["auto chose pretrained (all pairs)"] = copy.deepcopy(template).fit(cands, y).info["pretraining"]
    print("digits", json.dumps(out), flush=True)
    return out


def markdown(res: dict) -> str:
    return (timing_markdown(res) if "timings" in res else "") + tau_markdown(res)


def timing_markdown(res: dict) -> str:
    t = res["timings"]
    sizes = [k for k in t[TIMED[0]] if k != "pretrain_s"]
    lines = [f"CPU seconds, one thread, {res['timings']['rows_scored']:,} rows scored ({res['args']['timing_task']}); "
             "refit = update() after one more row.", "",
             "| surrogate | pretrain | " + " | ".join(f"fit n={n} | refit n={n} | predict n={n}" for n in sizes) + " |",
             "|---|---:|" + "---:|" * (3 * len(sizes))]
    for v in TIMED:
        cells = " | ".join(f"{t[v][n]['fit_s']:.3f} | {t[v][n]['refit_s']:.4f} | {t[v][n]['predict_s']:.3f}"
                           for n in sizes)
        lines.append(f"| {v} | {t[v]['pretrain_s']:.2f} | {cells} |")
    lines += ["", "Rows arriving one at a time (16 -> 256), mean CPU s per update(): " + ", ".join(
        f"{v} {s['mean_update_s'] * 1000:.1f} ms" for v, s in t["stream"].items()), ""]
    return "\n".join(lines) + "\n"


def tau_markdown(res: dict) -> str:
    taus, lines = res["taus"], []
    ns = list(next(iter(taus.values()))["forest"])
    lines += [f"Held-out Kendall tau ({res['args']['held_out']} rows, mean of {res['args']['draws']} draws), "
              f"n = {' / '.join(map(str, ns))}:", "",
              "| task | " + " | ".join(RANKED) + " | auto chose pretrained |", "|---|" + "---|" * (len(RANKED) + 1)]
    for task, row in taus.items():
        cells = " | ".join(" / ".join(f"{row[v][n]:.2f}" for n in ns) for v in RANKED)
        lines.append(f"| {task} | {cells} | {' / '.join(row['auto chose pretrained'].values())} |")
    if "digits" in res:
        d = res["digits"]
        lines += ["", f"Digits' {d['pairs']} recorded pairs, pooled 5-fold tau (mean of {res['args']['draws']} fold "
                  "seeds): " + ", ".join(f"{v} {d[v]:.2f}" for v in RANKED)
                  + f"; auto on all pairs: {d['auto chose pretrained (all pairs)']}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    global RANKED
    args = parse_args(argv)
    if args.ranked:
        RANKED = args.ranked.split(",")
        unknown = [v for v in RANKED if v not in VARIANTS]
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    res = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": os.getloadavg(),
           "python": platform.python_version(), "threads": os.environ.get("OMP_NUM_THREADS")}
    if not args.taus_only:
        res["timings"] = timings(args)
    res["taus"] = held_out_taus(args)
    if not (args.skip_digits or args.taus_only) and PAIRS.exists():
        res["digits"] = digits(args)
    res["wall_s"], res["cpu_s"] = time.time() - start, time.process_time()
    name = args.name or ("bench_surrogates_taus" if args.taus_only else "bench_surrogates")
    (args.out / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    (args.out / f"{name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
