"""Benchmark the predictor: ranking quality vs number of trained pairs, with vs without
proxy pretraining (side by side, same splits and seeds), k-fold quality on all real pairs,
fit time and batched scoring throughput; optionally ship the predictor fit on all pairs.

    python scripts/bench_predictor.py --pairs data/fbnetv3_digits_pairs.jsonl --sizes 4,9 \
        --repeats 20 --kfold 5 --kfold-repeats 5 --synthetic-sizes 25,50,100,200 \
        --save predictors/fbnetv3-digits.pt --json /tmp/pred/bench.json

Real pairs: rows of ``scripts/make_trained_pairs.py``; ``done`` rows give their final
validation accuracy, ``diverged`` rows count as chance accuracy (``--diverged drop`` leaves
them out), other failures are left out. The synthetic reference runs the same protocol on a
known target that mostly follows log-FLOPs (as accuracy does on ImageNet), to show what the
pretraining does when the proxies carry the signal.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=Path, required=True, help="JSONL table of trained pairs")
    ap.add_argument("--space", default="fbnetv3")
    ap.add_argument("--pool", type=int, default=20000, help="pool size whose proxies pretrain the encoder")
    ap.add_argument("--pool-seed", type=int, default=0)
    ap.add_argument("--pretrain-epochs", type=int, default=50)
    ap.add_argument("--sizes", default="25,50,100,200", help="training-set sizes (those leaving <5 test pairs are skipped)")
    ap.add_argument("--repeats", type=int, default=5, help="random splits (and seeds) per size")
    ap.add_argument("--kfold", type=int, default=5)
    ap.add_argument("--kfold-repeats", type=int, default=5, help="k-fold runs with different fold/predictor seeds")
    ap.add_argument("--synthetic-sizes", default="", help="also run the protocol on a synthetic FLOPs-driven target")
    ap.add_argument("--synthetic-test", type=int, default=1000)
    ap.add_argument("--ensemble", type=int, default=5)
    ap.add_argument("--diverged", choices=("chance", "drop"), default="chance")
    ap.add_argument("--score-rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for scoring (fits always use one)")
    ap.add_argument("--confirm-after", type=int, default=None, metavar="N",
                    help="fit on the table's first N rows only and measure on the rest, with early stopping "
                         "from 10 pairs (the old default) and from 100 (the new one): a check of that choice, "
                         "which was made by cross-validation on the first N rows")
    ap.add_argument("--skip-real", action="store_true",
                    help="only the synthetic curve and scoring (to run beside a real-pairs run on another core)")
    ap.add_argument("--save", type=Path, default=None,
                    help="fit on all real pairs and save here: with or without pretraining, whichever ranked "
                         "better in the k-fold cross-validation above")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    args = ap.parse_args(argv)
    if args.skip_real and args.save:
        ap.error("--save needs the real-pairs measurements; leave out --skip-real")
    return args


def load_pairs(path: Path, space, diverged: str):
    from jointnas import Candidate

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    cands, accs, statuses, devices = [], [], {}, set()
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        devices.add(r.get("device"))
        if r["status"] == "done":
            acc = r["final_acc"]
        elif r["status"] == "diverged" and diverged == "chance":
            acc = 1.0 / 10 if r["task"] in ("digits", "fashion-mnist", "cifar10") else None
        else:
            acc = None
        if acc is not None:
            cands.append(Candidate.from_dict(r["candidate"]))
            accs.append(acc)
    info = {"rows": len(rows), "statuses": statuses, "devices": sorted(map(str, devices)),
            "used": len(accs), "epochs_arg": sorted({str(r.get("epochs_arg")) for r in rows}),
            "train_images": sorted({r.get("train_images") for r in rows if r.get("train_images")}),
            "acc_min": float(np.min(accs)), "acc_median": float(np.median(accs)), "acc_max": float(np.max(accs))}
    return cands, np.array(accs), info


def synthetic_target(space, x, costs, seed):
    """Mostly log-FLOPs (saturating), plus a learning-rate optimum and noise; fractions in [0, 1]."""
    lr_col = next(e["offset"] for e in space.encoding_schema() if e["name"] == "lr")
    cap = np.log(costs[:, 0].astype(float))
    cap = (cap - cap.mean()) / cap.std()
    z = 1.5 * np.tanh(cap) - 2.0 * (x[:, lr_col] - 0.5) ** 2
    z = (z - z.mean()) / z.std()
    return np.clip(0.6 + 0.1 * z + np.random.default_rng(seed).normal(0, 0.01, len(z)), 0, 1)


def ridge_predictions(x_train, y_train, x_test):
    """A linear reference on the same encoding (standardised features, ridge penalty chosen by
    leave-one-out on the training pairs): what any regression gets from these pairs."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    return model.fit(x_train, y_train).predict(x_test)


def learning_curve(space, x, y, log_flops, sizes, repeats, n_test, pretrained_for, ensemble, label):
    from jointnas.surrogates import Predictor, ranking_metrics

    results = []
    for n in sizes:
        row = {"n_train": n, "n_test": n_test, "with": [], "without": [], "fit_s_with": [], "fit_s_without": [],
               "ridge": [], "flops_only": []}
        for r in range(repeats):
            perm = np.random.default_rng(1000 + r).permutation(len(y))
            test, train = perm[:n_test], perm[n_test:n_test + n]
            row["ridge"].append(ranking_metrics(y[test], ridge_predictions(x[train], y[train], x[test]))["kendall_tau"])
            row["flops_only"].append(ranking_metrics(y[test], log_flops[test])["kendall_tau"])
            for key, p in (("with", pretrained_for(r)), ("without", Predictor(space, ensemble=ensemble, seed=r))):
                start = time.perf_counter()
                p.fit(x[train], y[train])
                row[f"fit_s_{key}"].append(time.perf_counter() - start)
                row[key].append(ranking_metrics(y[test], p.predict_encoded(x[test])[0])["kendall_tau"])
        results.append(row)
        print(f"[{label}] n={n}: tau with pretraining {np.mean(row['with']):.3f}±{np.std(row['with']):.3f}, "
              f"without {np.mean(row['without']):.3f}±{np.std(row['without']):.3f}, "
              f"ridge {np.mean(row['ridge']):.3f}, log-FLOPs alone {np.mean(row['flops_only']):.3f}", file=sys.stderr)
    return results


def confirm_early_stopping_choice(space, x, y, n_first, pretrained_for, ensemble, seeds=5):
    """Kendall tau on rows [n_first:] of predictors fitted on rows [:n_first]: early stopping
    from 10 pairs (the earlier default) vs from 100 (the current one), with and without pretraining."""
    from jointnas.surrogates import Predictor, ranking_metrics

    out = {"n_fit": n_first, "n_test": int(len(y) - n_first)}
    for key, early_from in (("early_stop_from_10", 10), ("early_stop_from_100", 100)):
        for pre in (True, False):
            taus = []
            for seed in range(seeds):
                if pre:
                    p = pretrained_for(seed)
                    p.config["early_stopping_from"] = early_from
                else:
                    p = Predictor(space, ensemble=ensemble, seed=seed, early_stopping_from=early_from)
                p.fit(x[:n_first], y[:n_first])
                taus.append(ranking_metrics(y[n_first:], p.predict_encoded(x[n_first:])[0])["kendall_tau"])
            out[f"{key}_{'with' if pre else 'without'}"] = taus
            print(f"[confirm] fit on first {n_first}, tau on the other {len(y) - n_first}: {key}, "
                  f"{'with' if pre else 'without'} pretraining {_pm(taus)}", file=sys.stderr)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import copy

    from jointnas import sample_pool
    from jointnas.surrogates import Predictor, evaluate
    from jointnas.families.cost import count_costs
    from jointnas.catalog import load_space

    space = load_space(args.space)
    out = {"command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
           "torch": torch.__version__, "threads": args.threads}
    t0 = time.perf_counter()
    pool = sample_pool(space, args.pool, seed=args.pool_seed)
    pool_x, pool_costs = space.encode(pool), count_costs(pool, space)
    out["pool_seconds"] = time.perf_counter() - t0

    cache = {}

    def pretrained_for(seed):
        if seed not in cache:
            start = time.perf_counter()
            cache[seed] = Predictor(space, ensemble=args.ensemble, seed=seed).pretrain(
                pool_x, pool_costs, epochs=args.pretrain_epochs)
            cache[seed].info["pretrain"]["seconds"] = time.perf_counter() - start
        return copy.deepcopy(cache[seed])

    cands, y, info = load_pairs(args.pairs, space, args.diverged)
    x = space.encode(cands)
    out["pairs"] = info
    print(f"{info['used']} usable pairs of {info['rows']} rows ({info['statuses']})", file=sys.stderr)
    sizes = [] if args.skip_real else [n for n in map(int, args.sizes.split(",")) if n + 5 <= len(y)]
    n_test = len(y) - max(sizes) if sizes else 0
    log_flops = np.log(count_costs(cands, space)[:, 0].astype(float))
    out["real_curve"] = learning_curve(space, x, y, log_flops, sizes, args.repeats, n_test, pretrained_for, args.ensemble, "real")

    if args.confirm_after and not args.skip_real:
        out["confirm"] = confirm_early_stopping_choice(space, x, y, args.confirm_after, pretrained_for, args.ensemble)

    out["real_kfold"] = {}
    for key in () if args.skip_real else ("with", "without"):
        runs = []
        for seed in range(args.kfold_repeats):
            kw = {"pretrain": pretrained_for(seed)} if key == "with" else {"ensemble": args.ensemble}
            res = evaluate(space, x, y, k=args.kfold, seed=seed, **kw)
            res.pop("predictions")
            runs.append(res)
        out["real_kfold"][key] = runs
        print(f"[real] {args.kfold}-fold on {len(y)} pairs x{len(runs)}, {key} pretraining: pooled tau "
              f"{_pm([r['kendall_tau_pooled'] for r in runs])}", file=sys.stderr)

    if args.synthetic_sizes:
        syn_sizes = list(map(int, args.synthetic_sizes.split(",")))
        # Pool members beyond the pretraining pool, so the synthetic pairs are new candidates.
        extra = sample_pool(space, args.pool + max(syn_sizes) + args.synthetic_test, seed=args.pool_seed)[args.pool:]
        sx, sc = space.encode(extra), count_costs(extra, space)
        sy = synthetic_target(space, sx, sc, seed=0)
        out["synthetic_curve"] = learning_curve(space, sx, sy, np.log(sc[:, 0].astype(float)), syn_sizes, args.repeats, args.synthetic_test,
                                                pretrained_for, args.ensemble, "synthetic")

    out["pretrain_seconds"] = float(np.median([p.info["pretrain"]["seconds"] for p in cache.values()]))
    kfold_tau = {key: float(np.mean([r["kendall_tau_pooled"] for r in runs])) for key, runs in out["real_kfold"].items()}
    out["saved_variant"] = "without" if kfold_tau.get("without", -1) > kfold_tau.get("with", -1) else "with"
    final = pretrained_for(0) if out["saved_variant"] == "with" else Predictor(space, ensemble=args.ensemble, seed=0)
    final.fit(x, y)
    out["final_fit_seconds"] = final.info["fit"]["seconds"]
    rows = np.resize(pool_x, (args.score_rows, pool_x.shape[1]))
    final.predict_encoded(rows[:10000])  # warm-up
    start = time.perf_counter()
    mean, std = final.predict_encoded(rows)
    elapsed = time.perf_counter() - start
    out["scoring"] = {"rows": args.score_rows, "seconds": elapsed, "rows_per_s": args.score_rows / elapsed,
                      "ensemble": args.ensemble, "hidden": final.config["hidden"]}
    print(f"scored {args.score_rows} rows in {elapsed:.2f}s ({args.score_rows / elapsed:,.0f} rows/s)", file=sys.stderr)
    if args.save:
        final.info["trained_on"] = {"pairs": str(args.pairs), **info, "pretrained": out["saved_variant"] == "with",
                                    "kfold_pooled_tau_with_pretraining": kfold_tau["with"],
                                    "kfold_pooled_tau_without_pretraining": kfold_tau["without"]}
        final.save(args.save)
        out["saved"] = str(args.save)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    print(markdown(out))
    return 0


def _pm(values):
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def markdown(out: dict) -> str:
    lines = []
    for key, title in (("real_curve", "real pairs"), ("synthetic_curve", "synthetic FLOPs-driven target")):
        if not out.get(key):
            continue
        lines += [f"Kendall tau on held-out pairs, {title} (mean ± std over splits):", "",
                  "| train pairs | test pairs | with pretraining | without | ridge (reference) | log-FLOPs alone "
                  "| fit s (with / without) |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in out[key]:
            lines.append(f"| {r['n_train']} | {r['n_test']} | {_pm(r['with'])} | {_pm(r['without'])} | "
                         f"{_pm(r['ridge'])} | {_pm(r['flops_only'])} | "
                         f"{np.median(r['fit_s_with']):.1f} / {np.median(r['fit_s_without']):.1f} |")
        lines.append("")
    kf = out["real_kfold"]
    if kf:
        first = kf["with"][0]
        lines += [f"{first['k']}-fold cross-validation on all {first['n']} real pairs, repeated with "
                  f"{len(kf['with'])} fold/predictor seeds (mean ± std over repeats):", "",
                  "| | Kendall tau, pooled out-of-fold | Kendall tau, fold mean | Spearman rho, pooled | MAE |",
                  "|---|---:|---:|---:|---:|"]
    for key in ("with", "without") if kf else ():
        runs = kf[key]
        lines.append(f"| {key} pretraining | {_pm([r['kendall_tau_pooled'] for r in runs])} | "
                     f"{_pm([r['kendall_tau'] for r in runs])} | {_pm([r['spearman_rho_pooled'] for r in runs])} | "
                     f"{np.mean([r['mae_pooled'] for r in runs]):.4f} |")
    if out.get("confirm"):
        c = out["confirm"]
        lines += ["", f"Early stopping, checked on pairs not used to choose it: fitted on the table's first "
                  f"{c['n_fit']} rows, Kendall tau on the other {c['n_test']} (mean ± std over 5 seeds):", "",
                  "| internal validation split | with pretraining | without |", "|---|---:|---:|"]
        for key, label in (("early_stop_from_10", "from 10 pairs (earlier default)"),
                           ("early_stop_from_100", "from 100 pairs (current default)")):
            lines.append(f"| {label} | {_pm(c[key + '_with'])} | {_pm(c[key + '_without'])} |")
    s = out["scoring"]
    lines += ["", f"Scoring: {s['rows']:,} encoded rows in {s['seconds']:.2f} s = {s['rows_per_s']:,.0f} rows/s "
              f"(ensemble {s['ensemble']}, hidden {s['hidden']}, {out['threads']} thread(s)); pretraining on the "
              f"pool: {out['pretrain_seconds']:.1f} s; final fit on all pairs: {out['final_fit_seconds']:.1f} s "
              f"({out['saved_variant']} pretraining, the better in cross-validation)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
