"""Coarse stage: FBNetV3's constrained iterative optimisation, resumable from its run store.

1. Sobol pool -> FLOPs/params proxies -> candidates over the budget dropped.
2. Predictor encoder pretrained on the proxies (checkpoint ``iter0``).
3. Iteration 1: a diverse batch (farthest-point sampling over the encoding) trained to its
   full schedule; the early-stop epoch is calibrated as the smallest epoch whose Kendall tau-b
   between accuracy-at-that-epoch and final accuracy reaches the threshold.
4. Iterations 2..N: the next batch by ``mean + explore * std`` of the predictor ensemble over
   the untrained pool, trained to the calibrated epoch; the predictor is refitted each time.

Every step reads what is already in the store first, so running again on the same run
directory continues where a crash or Ctrl-C stopped it.
"""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .candidate import Candidate
from .errors import UsageError
from .executor import Executor, JobDone, TrainJob
from .space import Space
from .store import RunStore, Trial

RANK_METRIC = "kendall_tau_b"


@dataclass
class CoarseConfig:
    """What defines a coarse run (stored in the run; execution settings such as workers are not)."""

    space: str = "fbnetv3"
    data: str = "digits"
    data_root: Optional[str] = None
    train_subset: Optional[int] = None  # train on the first N (shuffled) training images only
    pool: int = 20000
    seed: int = 0
    budget: Optional[int] = None       # FLOPs of the deployable model (fvcore count)
    max_params: Optional[int] = None
    # batch/iterations/epoch_cap: sized so that the default run takes <= 15 min on 2 CPU cores
    # (BENCHMARKS.md, "Coarse search"); paper scale is batch 48, 4 iterations, no cap.
    batch: int = 6
    iterations: int = 3
    epoch_cap: Optional[int] = 3       # None: every candidate's full recipe schedule
    rank_threshold: float = 0.9
    explore: float = 1.0
    ensemble: int = 5
    num_classes: int = 10              # of the task, for the chance-level score of diverged trials

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------- pool and budget
def check_budget(space: Space, budget: Optional[int], max_params: Optional[int]) -> None:
    """UsageError (naming the space's minimum) if no candidate of the space can meet the budget."""
    if budget is None and max_params is None:
        return
    from .budget import Budget, check_budget as check

    check(space, Budget(budget if budget is not None else sys.maxsize, max_params))


def build_pool(space: Space, config: CoarseConfig, progress: bool = True):
    """(feasible candidates, their (n, 2) [flops, params], number sampled); UsageError if none fits."""
    from .pool import sample_pool
    from .proxies import count_costs

    pool = sample_pool(space, config.pool, seed=config.seed)
    costs = count_costs(pool, space, progress=progress)
    keep = np.ones(len(pool), dtype=bool)
    if config.budget is not None:
        keep &= costs[:, 0] <= config.budget
    if config.max_params is not None:
        keep &= costs[:, 1] <= config.max_params
    if not keep.any():
        raise UsageError(f"none of the {len(pool)} pool candidates fits the budget (cheapest in the pool: "
                         f"{costs[:, 0].min() / 1e6:.1f} MFLOPs, {costs[:, 1].min() / 1e6:.2f} M params); "
                         "raise --budget / --max-params or sample a larger --pool")
    idx = np.flatnonzero(keep)
    return [pool[i] for i in idx], costs[idx], len(pool)


# ---------------------------------------------------------------------- batch choice
def diverse_batch(x: np.ndarray, k: int, seed: int) -> List[int]:
    """Farthest-point sampling over encoded rows: a seeded random start, then each next row is
    the one farthest from all chosen so far."""
    rng = np.random.default_rng(seed)
    k = min(k, len(x))
    chosen = [int(rng.integers(len(x)))]
    dist = np.linalg.norm(x - x[chosen[0]], axis=1)
    while len(chosen) < k:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    return chosen


def acquisition_batch(mean: np.ndarray, std: np.ndarray, untried: np.ndarray, k: int, explore: float) -> List[int]:
    """Indices of the ``k`` untried rows with the highest upper confidence bound mean + explore * std."""
    score = np.where(untried, mean + explore * std, -np.inf)
    order = np.argsort(-score, kind="stable")
    return [int(i) for i in order[: min(k, int(untried.sum()))]]


# ---------------------------------------------------------------------- calibration
def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0  # a constant ranking says nothing about the other
    from scipy.stats import kendalltau  # a second to import: not on the path of `jointnas --help`

    tau = kendalltau(a, b).statistic
    return 0.0 if np.isnan(tau) else float(tau)


def calibrate(trials: Sequence[Trial], threshold: float) -> dict:
    """Smallest epoch whose accuracy ranking of ``trials`` agrees with their final ranking at
    Kendall tau-b >= ``threshold``. A candidate whose schedule is shorter than an epoch counts
    with its final accuracy there (it is finished)."""
    usable = [t for t in trials if t.status == "done" and t.curve and t.final_acc is not None]
    full = max((len(t.curve) for t in usable), default=0)
    out = {"metric": RANK_METRIC, "threshold": threshold, "n_trials": len(usable), "full_epochs": full,
           "epochs": list(range(1, full + 1)), "correlation": [], "chosen_epoch": full, "reached": False}
    if len(usable) < 3:
        out["note"] = f"only {len(usable)} finished trials: too few to rank, so later trials train the full schedule"
        return out
    final = [t.acc_at(len(t.curve)) for t in usable]
    for e in out["epochs"]:
        out["correlation"].append(rank_correlation([t.acc_at(e) for t in usable], final))
    for e, tau in zip(out["epochs"], out["correlation"]):
        if tau >= threshold - 1e-9:  # tau of n items is a ratio of integers; 0.8 must count as 0.8
            out["chosen_epoch"], out["reached"] = e, True
            break
    return out


# ---------------------------------------------------------------------- the loop
@dataclass
class Progress:
    """Where the loop reports: one-line logs (stdout) and tqdm bars (stderr)."""

    bars: bool = True
    log: Callable[[str], None] = field(default=None)

    def __post_init__(self):
        if self.log is None:
            from tqdm import tqdm

            self.log = lambda line: tqdm.write(line, file=sys.stdout)

    @property
    def shown(self) -> bool:
        """Bars only on a terminal: in a log file their carriage returns are noise."""
        return self.bars and sys.stderr.isatty()

    def bar(self, **kw):
        from tqdm import tqdm

        return tqdm(disable=not self.shown, file=sys.stderr, dynamic_ncols=True, **kw)


class CoarseSearch:
    def __init__(self, store: RunStore, space: Space, make_executor: Callable[[], Executor],
                 progress: Optional[Progress] = None):
        self.store = store
        self.space = space
        self.config = CoarseConfig(**store.config)
        self.make_executor = make_executor
        self.progress = progress or Progress()
        self._executor: Optional[Executor] = None
        self.pool: List[Candidate] = []
        self.costs = np.zeros((0, 2), dtype=np.int64)
        self._encoded: Optional[np.ndarray] = None

    # ---- helpers
    def log(self, line: str) -> None:
        self.progress.log(line)

    def full_epochs(self, cand: Candidate) -> int:
        epochs = int(cand.recipe["epochs"])
        return epochs if self.config.epoch_cap is None else min(epochs, self.config.epoch_cap)

    @property
    def encoded(self) -> np.ndarray:
        if self._encoded is None:
            self._encoded = self.space.encode(self.pool)
        return self._encoded

    def score(self, trial: Trial, epoch: int) -> Optional[float]:
        """Predictor target of a trial: accuracy at the calibrated epoch; chance level if it diverged."""
        if trial.status == "diverged":
            return 1.0 / self.config.num_classes
        if trial.status != "done" or not trial.curve:
            return None
        return trial.acc_at(epoch)

    @property
    def final_predictor(self):
        return self.store.run_dir / "predictor.pt"

    def calibration(self) -> Optional[dict]:
        found = self.store.results("calibration")
        return found[-1] if found else None

    # ---- stages
    def run(self, pool=None) -> dict:
        """Run (or continue) the search; ``pool`` = (candidates, costs, sampled) if already computed."""
        requeued = self.store.requeue_running()
        if requeued:
            self.log(f"resume: {requeued} trial(s) interrupted while training go back to the queue")
        try:
            self._load_pool(pool)
            pretrained = self._pretrained()
            for it in range(1, self.config.iterations + 1):
                self._iteration(it, pretrained)
        finally:
            failed = sys.exc_info()[0] is not None
            if self._executor is not None:
                self._executor.close(kill=failed)
                self._executor = None
            if failed:
                self.store.requeue_running()
        last = self.store.predictor_path(self.config.iterations)
        if last is not None:  # copied every time: a run extended by --iterations gets its new final predictor
            tmp = self.final_predictor.with_suffix(".pt.tmp")
            shutil.copyfile(last, tmp)
            tmp.replace(self.final_predictor)
        self.store.set_meta("finished", time.time())
        return self.summary()

    def _load_pool(self, pool) -> None:
        if self.store.pool_info() is not None:
            self.pool, self.costs = self.store.load_pool(self.space)
            return
        if pool is None:
            pool = build_pool(self.space, self.config, progress=self.progress.shown)
        cands, costs, sampled = pool
        self.store.save_pool(self.space, cands, costs, sampled=sampled)
        self.pool, self.costs = cands, np.asarray(costs, dtype=np.int64)
        self.log(f"pool: {sampled} Sobol samples, {len(cands)} within the budget")

    def _pretrained(self):
        from .predictor import Predictor

        path = self.store.predictor_path(0)
        if path is not None:
            return Predictor.load(path, self.space)
        p = Predictor(self.space, ensemble=self.config.ensemble, seed=self.config.seed)
        t = time.time()
        p.pretrain(self.pool, self.costs, progress=self.progress.shown)
        path = self.store.predictor_file(0)
        p.save(path)
        self.store.register_predictor(0, path, stage="pretrained on proxies", n=len(self.pool))
        self.log(f"predictor encoder pretrained on FLOPs/params of {len(self.pool)} candidates "
                 f"({time.time() - t:.1f} s)")
        return p

    def _iteration(self, it: int, pretrained) -> None:
        if not self.store.trials(iteration=it):
            self._queue_batch(it)
        self._train_queued(it)
        if it == 1 and self.calibration() is None:
            self._calibrate()
        if self.store.predictor_path(it) is None:
            self._fit(it, pretrained)

    def _queue_batch(self, it: int) -> None:
        tried = self.store.trial_keys()
        untried = np.array([c.key() not in tried for c in self.pool])
        if it == 1:
            idx = diverse_batch(self.encoded, self.config.batch, self.config.seed)
            how = "diverse (farthest-point over the encoding)"
            epochs = None
        else:
            from .predictor import Predictor

            predictor = Predictor.load(self.store.predictor_path(it - 1), self.space)
            mean, std = predictor.predict_encoded(self.encoded)
            idx = acquisition_batch(mean, std, untried, self.config.batch, self.config.explore)
            how = f"by predicted accuracy + {self.config.explore:g} x ensemble std"
            epochs = self.calibration()["chosen_epoch"]
        if not idx:
            self.log(f"iteration {it}: every pool candidate has been trained; nothing left to choose")
            return
        self.store.add_trials(it, [(i, self.pool[i], self.costs[i, 0], self.costs[i, 1]) for i in idx], epochs)
        self.log(f"iteration {it}: queued {len(idx)} candidates {how}, "
                 + ("full schedule" + (f" capped at {self.config.epoch_cap} epochs" if self.config.epoch_cap else "")
                    if epochs is None else f"{epochs} epochs (calibrated early stop)"))

    def _job(self, trial: Trial) -> TrainJob:
        epochs = self.full_epochs(trial.candidate)
        if trial.target_epochs is not None:
            epochs = min(epochs, trial.target_epochs)
        return TrainJob(trial.id, trial.candidate.to_dict(), self.config.space, self.config.data,
                        self.config.data_root, epochs, self.config.seed, self.config.train_subset)

    def _train_queued(self, it: int) -> None:
        queued = self.store.trials("queued", iteration=it)
        if not queued:
            return
        total = len(self.store.trials(iteration=it))
        if self._executor is None:
            self._executor = self.make_executor()
        ex = self._executor
        overall = self.progress.bar(total=total, initial=total - len(queued), desc=f"iteration {it} training",
                                    unit="trial")
        running: Dict[int, object] = {}  # trial id -> its bar of epochs
        try:
            while queued or ex.in_flight:
                while queued and ex.free_slots > 0:
                    trial = queued.pop(0)
                    job = self._job(trial)
                    where = ex.submit(job)
                    self.store.mark_running(trial.id, where)
                    running[trial.id] = self.progress.bar(total=job.epochs, desc=f"  trial {trial.id} ({where})",
                                                          unit="epoch", leave=False)
                for done in ex.poll(timeout=1.0):
                    self.store.record_result(done.trial_id, done.result)
                    bar = running.pop(done.trial_id, None)
                    if bar is not None:
                        bar.update(max(0, (done.result.get("epochs_run") or 0) - bar.n))
                        bar.close()
                    overall.update(1)
                    self.log(self._trial_line(it, done))
                for trial_id, bar in running.items():
                    behind = ex.epochs_done(trial_id) - bar.n
                    if behind > 0:
                        bar.update(behind)
                    else:
                        bar.refresh()  # the elapsed time moves on
        finally:
            for bar in running.values():
                bar.close()
            overall.close()

    def _trial_line(self, it: int, event: JobDone) -> str:
        r = event.result
        acc = r.get("final_acc")
        line = (f"iter {it} trial {event.trial_id}: {r.get('status')}"
                + (f" val_acc {acc:.3f}" if acc is not None else "")
                + f" after {r.get('epochs_run') or len(r.get('curve') or [])} epoch(s)"
                + (f" in {r['wall_time']:.1f} s" if r.get("wall_time") else "") + f" on {r.get('device')}")
        if r.get("error"):
            line += f" ({r['error']})"
        return line

    def _calibrate(self) -> None:
        cal = calibrate(self.store.trials(iteration=1), self.config.rank_threshold)
        if cal["n_trials"] == 0:
            raise UsageError("no trial of the first batch finished training, so there is nothing to calibrate "
                             f"on{self._errors()}")
        self.store.save_result("calibration", cal)
        curve = ", ".join(f"{e}:{c:.2f}" for e, c in zip(cal["epochs"], cal["correlation"]))
        self.log(f"early-stop calibration ({cal['metric']} of accuracy at epoch e vs final, "
                 f"{cal['n_trials']} trials): {curve or 'n/a'}")
        verdict = (f"reaches {cal['threshold']:g} at epoch {cal['chosen_epoch']}" if cal["reached"]
                   else cal.get("note", f"never reaches {cal['threshold']:g} before the last epoch"))
        self.log(f"early-stop epoch {cal['chosen_epoch']} of {cal['full_epochs']}: {verdict}")

    def _errors(self) -> str:
        errors = sorted({t.error for t in self.store.trials() if t.error})
        return f"; training errors: {'; '.join(errors)[:300]}" if errors else ""

    def training_set(self):
        epoch = self.calibration()["chosen_epoch"]
        pairs = [(t, self.score(t, epoch)) for t in self.store.trials()]
        pairs = [(t, s) for t, s in pairs if s is not None]
        return [t for t, _ in pairs], np.array([s for _, s in pairs], dtype=np.float64)

    def _fit(self, it: int, pretrained) -> None:
        import copy

        from .predictor import Predictor, evaluate

        trials, y = self.training_set()
        if len(trials) < 3:
            raise UsageError(f"only {len(trials)} trial(s) finished with an accuracy, too few to fit the "
                             f"predictor{self._errors()}")
        cands = [t.candidate for t in trials]
        t0 = time.time()
        predictor = copy.deepcopy(pretrained).fit(cands, y, progress=self.progress.shown)
        path = self.store.predictor_file(it)
        predictor.save(path)
        fit_seconds = time.time() - t0
        record = {"iteration": it, "n_train": len(trials), "fit_seconds": fit_seconds, "kendall_tau": None,
                  "spearman_rho": None, "mae": None, "k": None,
                  "method": "k-fold cross-validation, pooled out-of-fold predictions"}
        if len(trials) >= 4:  # every fold must keep >= 3 pairs to fit on
            metrics = evaluate(self.space, cands, y, k=5, seed=self.config.seed, pretrain=pretrained)
            record.update(kendall_tau=metrics["kendall_tau_pooled"], spearman_rho=metrics["spearman_rho_pooled"],
                          mae=metrics["mae_pooled"], k=metrics["k"])
        if it > 1:
            # How well the previous predictor ranked the batch it chose, before seeing it trained.
            batch = [(t, s) for t, s in zip(trials, y) if t.iteration == it]
            if len(batch) >= 2:
                prev = Predictor.load(self.store.predictor_path(it - 1), self.space)
                mean, _ = prev.predict([t.candidate for t, _ in batch])
                record["next_batch_tau"] = rank_correlation(mean, [s for _, s in batch])
        self.store.save_result("predictor_eval", record)
        self.store.register_predictor(it, path, n_train=len(trials))
        held_out = (f"held-out Kendall tau {record['kendall_tau']:.2f} ({record['k']}-fold)"
                    if record["k"] else "too few trials for a held-out measure")
        if "next_batch_tau" in record:
            held_out += f", tau on the batch it chose {record['next_batch_tau']:.2f}"
        self.log(f"iteration {it}: predictor fitted on {len(trials)} trials; {held_out}")

    # ---- summary
    def summary(self, top: int = 5) -> dict:
        cal = self.calibration() or {}
        epoch = cal.get("chosen_epoch")
        trials = self.store.trials()
        scored = [(t, self.score(t, epoch)) for t in trials if t.status == "done"] if epoch else []
        scored.sort(key=lambda ts: -(ts[1] if ts[1] is not None else -1))
        return {"run": str(self.store.run_dir), "config": self.store.config, "calibration": cal,
                "counts": self.store.counts(), "iterations": sorted({t.iteration for t in trials}),
                "best": [{"trial": t.id, "iteration": t.iteration, "score": s, "final_acc": t.final_acc,
                          "epochs_run": t.epochs_run, "flops": t.flops, "params": t.params, "key": t.key}
                         for t, s in scored[:top]],
                "predictor_eval": self.store.results("predictor_eval"),
                "predictor": str(self.final_predictor)}


def format_summary(s: dict) -> str:
    cfg, cal = s["config"], s["calibration"]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(s["counts"].items()))
    lines = [f"coarse search {s['run']}: {sum(s['counts'].values())} trials ({counts}) "
             f"over {len(s['iterations'])} iteration(s)"]
    schedule = "full schedule = each recipe's epochs"
    if cfg.get("epoch_cap"):
        schedule += (f", capped at {cfg['epoch_cap']} epochs of that schedule "
                     "(the learning-rate schedule is not compressed)")
    lines.append(schedule)
    epoch = cal.get("chosen_epoch")
    if cal:
        lines.append(f"early stop: epoch {epoch} of {cal['full_epochs']} "
                     f"({cal['metric']} >= {cal['threshold']:g}: {'yes' if cal['reached'] else 'no'})")
    lines += ["", f"best measured candidates (ranked by val acc at epoch {epoch}):",
              f"  {'trial':>5} {'iter':>4} {'acc@' + str(epoch):>7} {'final':>6} {'epochs':>6} "
              f"{'MFLOPs':>8} {'Mparams':>7}  key"]
    for b in s["best"]:
        lines.append(f"  {b['trial']:>5} {b['iteration']:>4} {b['score']:>7.3f} {b['final_acc'] or 0:>6.3f} "
                     f"{b['epochs_run']:>6} {b['flops'] / 1e6:>8.1f} {b['params'] / 1e6:>7.2f}  {b['key']}")
    lines += ["", "predictor per iteration (held-out = k-fold out-of-fold Kendall tau):",
              f"  {'iter':>4} {'trained':>7} {'held-out tau':>12} {'tau on its next batch':>22}"]
    evals = s["predictor_eval"]
    next_tau = {e["iteration"] - 1: e.get("next_batch_tau") for e in evals}
    for e in evals:
        tau, nxt = e["kendall_tau"], next_tau.get(e["iteration"])
        lines.append(f"  {e['iteration']:>4} {e['n_train']:>7} {'-' if tau is None else f'{tau:.2f}':>12} "
                     f"{'-' if nxt is None else f'{nxt:.2f}':>22}")
    lines.append(f"final predictor: {s['predictor']}")
    return "\n".join(lines)
