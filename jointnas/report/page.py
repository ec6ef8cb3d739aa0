"""``jointnas report``: one self-contained HTML page (PNG plots embedded) showing a run.

The page is built from whatever the run's store holds right now, so it works on a run that
is still going or was interrupted: a section whose data does not exist yet says why instead.
Each plot is also written as a PNG next to the page (``<page>_plots/<name>.png``).
matplotlib is an optional extra (``pip install 'jointnas[report]'``) imported only here.
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote

import numpy as np

from ..budget import format_flops, parse_flops, parse_params
from ..errors import UsageError
from ..io import check_writable_dir, check_writable_file
from ..coarse.ranking import best_trials, cheap_runs, rule
from ..store.run_store import RunStore, Trial
from ..trial import entry_score

INSTALL_HINT = "pip install 'jointnas[report]'"
PLOT_NAMES = ("accuracy_vs_flops", "parity", "calibration", "learning_curves")
FLOPS_NOTE = "FLOPs are fvcore's count of the deployable model; 1 multiply-add = 1 flop."
DPI = 110


# ---------------------------------------------------------------------------- what the run holds
def _space_of(store: RunStore):
    from ..coarse.search import run_space
    from ..errors import JointnasError

    try:
        return run_space(store)
    except JointnasError:
        return None  # a run whose space cannot be rebuilt here: the report shows what needs no predictor

@dataclass
class RunView:
    """A snapshot of a run's store, read once."""

    run_dir: Path
    config: dict
    trials: List[Trial]
    calibration: Optional[dict]
    predictor_evals: List[dict]
    predictors: List[dict]
    fine: Optional[dict]
    finished: Optional[float] = None  # when the coarse loop last ran to its end
    pool_size: Optional[int] = None   # candidates kept in the pool (within the budget)
    space: Optional[object] = None     # the SearchSpace the run searched
    final: Optional[dict] = None       # the winner retrained at full fidelity, beside the baseline
    cheap: Dict[int, dict] = field(default_factory=dict)  # first-batch runs at the calibrated fidelity

    @classmethod
    def read(cls, run_dir) -> "RunView":
        with RunStore.open(run_dir) as store:
            fine = store.results("fine")
            calibration = store.results("calibration")
            return cls(run_dir=Path(run_dir), config=store.config or {}, trials=store.trials(),
                       calibration=calibration[-1] if calibration else None,
                       predictor_evals=store.results("predictor_eval"), predictors=store.predictors(),
                       fine=fine[-1] if fine else None, finished=store.get_meta("finished"),
                       pool_size=(store.pool_info() or {}).get("size"), space=_space_of(store),
                       final=(store.results("final") or [None])[-1],
                       cheap=cheap_runs(calibration[-1] if calibration else None, store.results("fidelity_trial")))

    @property
    def measured(self) -> List[Trial]:
        """Trials that finished training with an accuracy."""
        return [t for t in self.trials if t.status == "done" and t.final_acc is not None]

    @property
    def rank_epoch(self) -> Optional[int]:
        """The epoch at which trials are compared (:mod:`jointnas.coarse.ranking`)."""
        return (self.calibration or {}).get("chosen_epoch")

    @property
    def fidelity_label(self) -> str:
        return (self.calibration or {}).get("fidelity_label") or "full"

    def ranked(self, top: Optional[int] = None) -> List[Tuple[Trial, float]]:
        """(trial, accuracy at :attr:`rank_epoch`) of the measured trials, best first."""
        return best_trials(self.measured, self.rank_epoch, top, self.cheap)

    def counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out


def budget_of(config: dict) -> Tuple[Optional[int], Optional[int]]:
    """(max_flops, max_params) of a run config (numbers, or text such as "600MFLOPs"); None = no bound."""
    def read(value, parse):
        if value is None or isinstance(value, (int, float)):
            return None if value is None else int(value)
        try:
            return parse(value)
        except UsageError:
            return None

    return read(config.get("budget"), parse_flops), read(config.get("max_params"), parse_params)


def pareto_front(flops: Sequence[float], acc: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats on both fewer FLOPs and higher accuracy, by FLOPs."""
    order = np.lexsort((-np.asarray(acc, dtype=float), np.asarray(flops, dtype=float)))
    front, best = [], -np.inf
    for i in order:
        if acc[i] > best:
            front.append(i)
            best = acc[i]
    return np.asarray(front, dtype=int)


# ---------------------------------------------------------------------------- parity data
@dataclass
class Parity:
    iteration: int              # the predictor saved after this iteration
    measured: np.ndarray
    predicted: np.ndarray
    spread: np.ndarray
    metrics: dict


def diverged_score(config: dict) -> Optional[float]:
    if "diverged_score" in config:
        return config["diverged_score"]
    classes = config.get("num_classes")  # runs from before evaluators
    return 1.0 / classes if classes else None


def predictor_target(view: RunView, trial: Trial) -> Optional[float]:
    """What the run fits its predictor to: accuracy at the calibrated early-stop epoch (the
    final one before calibration), chance level for a diverged trial, nothing otherwise."""
    epoch = (view.calibration or {}).get("chosen_epoch") or len(trial.curve)
    return trial.measured_score(epoch, diverged_score(view.config))


def parity_data(view: RunView) -> Tuple[List[Parity], List[str]]:
    """Held-out (measured, predicted) pairs per fitted predictor, and why others have none.

    The predictor saved after iteration k chose the batch of iteration k+1 before any of it
    was trained, so that batch is held out from it: the same check as the run's "tau on its
    next batch". The last predictor has no later batch; the run's k-fold metrics cover it.
    """
    from ..surrogates import load_surrogate
    from ..surrogates.evaluate import ranking_metrics

    out, notes = [], []
    for entry in view.predictors:
        k, path = int(entry["iteration"]), Path(entry["path"])
        if k < 1:
            continue  # iteration 0 is the encoder pretrained on FLOPs/params; it predicts no accuracy
        held_out = [(t, predictor_target(view, t)) for t in view.trials if t.iteration == k + 1]
        held_out = [(t, y) for t, y in held_out if y is not None]
        if len(held_out) < 2:
            if k >= int(view.config.get("iterations") or 0):
                notes.append(f"the predictor after iteration {k} is the run's last: no later batch checks it; "
                             "see its k-fold metrics below")
            else:
                notes.append(f"predictor after iteration {k}: the batch it chose (iteration {k + 1}) has "
                             f"{len(held_out)} measured trial(s) so far")
            continue
        if not path.is_file():
            notes.append(f"predictor after iteration {k}: checkpoint {path} is missing")
            continue
        mean, std = load_surrogate(path, view.space).predict([t.candidate for t, _ in held_out])
        measured = np.array([y for _, y in held_out], dtype=float)
        mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
        out.append(Parity(k, measured, mean, std, ranking_metrics(measured, mean)))
    return out, notes


def predictor_eval_rows(view: RunView) -> List[list]:
    """The run's own per-iteration predictor quality records, as table rows."""
    nxt = {int(e["iteration"]) - 1: e.get("next_batch_tau") for e in view.predictor_evals if "iteration" in e}
    rows = []
    for e in view.predictor_evals:
        it = e.get("iteration")
        rows.append([it, e.get("n_train", "?"), _fmt(e.get("kendall_tau")), _fmt(e.get("spearman_rho")),
                     _fmt(e.get("mae"), 100, ".1f"), _fmt(nxt.get(it))])
    return rows


def _fmt(value, scale: float = 1.0, spec: str = ".2f") -> str:
    return format(value * scale, spec) if isinstance(value, (int, float)) else "–"


# ---------------------------------------------------------------------------- plotting
class Plotter:
    """Figures on matplotlib's Agg canvas, without pyplot and its global state."""

    STYLE = {"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 9}

    def __init__(self):
        try:
            import matplotlib
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            from matplotlib.ticker import PercentFormatter
        except ImportError:
            raise UsageError(f"jointnas report draws with matplotlib, which is not installed; {INSTALL_HINT}") from None
        self._canvas, self._figure, self._percent = FigureCanvasAgg, Figure, PercentFormatter
        self.style = lambda: matplotlib.rc_context(self.STYLE)

    def figure(self, width: float, height: float, nrows: int = 1, ncols: int = 1):
        fig = self._figure(figsize=(width, height), dpi=DPI, layout="constrained")
        self._canvas(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for ax in axes.flat:
            ax.grid(True, alpha=0.3)
        return fig, axes

    def percent(self):
        """A fresh formatter per axis (a formatter reads the range of the one axis it is bound to)."""
        return self._percent(xmax=1)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def texts_outside(fig) -> List[str]:
    """What of a drawn ``fig`` reaches beyond its edges (so is clipped in the PNG): each plot with
    its title, axis labels and tick labels, each figure legend."""
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    parts = [(f"plot {ax.get_title()!r}", ax.get_tightbbox(renderer)) for ax in fig.axes if ax.get_visible()]
    parts += [("legend", legend.get_window_extent(renderer)) for legend in fig.legends]
    return [name for name, box in parts if box is not None and
            (box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1)]


def _iteration_colors(iterations: Sequence[int]) -> Dict[int, tuple]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {it: cmap(i % 10) for i, it in enumerate(sorted(set(iterations)))}


@dataclass
class Section:
    name: str
    title: str
    caption: str = ""
    png: Optional[bytes] = None
    missing: Optional[str] = None  # why the plot is not there yet
    extra_html: str = ""
    clipped: Tuple[str, ...] = ()  # parts drawn beyond the figure's edges (none, when the layout is right)
    legend: Tuple[str, ...] = ()   # the figure legend's entries

    def draw(self, fig) -> None:
        self.png = _png(fig)
        self.clipped = tuple(texts_outside(fig))
        self.legend = tuple(t.get_text() for legend in fig.legends for t in legend.get_texts())


def stopped_early(view: RunView, trial: Trial) -> bool:
    """Whether the early-stop epoch cut this trial short of the schedule iteration 1 trains."""
    if trial.target_epochs is None:
        return False
    full = int(trial.candidate.recipe.get("epochs", trial.target_epochs))
    cap = view.config.get("epoch_cap")
    return trial.target_epochs < (min(full, cap) if cap else full)


def accuracy_vs_flops(view: RunView) -> Tuple[List[Trial], np.ndarray, np.ndarray]:
    """(measured trials, their MFLOPs, their accuracy at the run's ranking epoch): one fidelity."""
    ranked = view.ranked()
    return ([t for t, _ in ranked], np.array([t.flops for t, _ in ranked], dtype=float) / 1e6,
            np.array([score for _, score in ranked], dtype=float))


def plot_accuracy_vs_flops(view: RunView, mpl: Plotter) -> Section:
    sec = Section("accuracy_vs_flops", "Measured accuracy vs FLOPs")
    trials, flops, acc = accuracy_vs_flops(view)
    if not trials:
        sec.missing = f"no trial has finished training yet ({_status_text(view)})"
        return sec
    epoch = view.rank_epoch
    max_flops, _ = budget_of(view.config)
    colors = _iteration_colors([t.iteration for t in trials])
    fig, axes = mpl.figure(10.5, 5.2)
    ax = axes[0, 0]
    for it, color in colors.items():
        for early, marker in ((False, "o"), (True, "^")):
            idx = [i for i, t in enumerate(trials) if t.iteration == it and stopped_early(view, t) == early]
            if idx:
                label = f"iteration {it} ({len(idx)}{', early-stopped' if early else ''})"
                ax.scatter(flops[idx], acc[idx], color=color, marker=marker, s=36, alpha=0.85,
                           edgecolors="white", linewidths=0.5, label=label, zorder=3)
    # Every point is at the same fidelity (accuracy at the ranking epoch), so one front is meaningful.
    front = pareto_front(flops, acc)
    ax.step(flops[front], acc[front], where="post", color="black", lw=1.4, label="Pareto front", zorder=2)
    if max_flops is not None:
        ax.axvline(max_flops / 1e6, color="crimson", ls="--", lw=1.4, label=f"budget {format_flops(max_flops)}")
    ax.set_xlabel("MFLOPs of the deployable model (fvcore, 1 multiply-add = 1 flop)")
    ax.set_ylabel("validation accuracy" + (f" at epoch {epoch}" if epoch else " (final)"))
    ax.yaxis.set_major_formatter(mpl.percent())
    ax.set_title(_plural(len(trials), "trained candidate"))
    fig.legend(loc="outside right upper")
    sec.draw(fig)
    failed = {s: n for s, n in view.counts().items() if s in ("diverged", "oom", "failed")}
    early = any(stopped_early(view, t) for t in trials)
    sec.caption = ("Every candidate that finished training, coloured by the iteration that chose it, at one "
                   f"fidelity: {rule(epoch, fidelity=view.fidelity_label)}. "
                   + ("Triangles were trained only to that epoch; the others ran longer, and their later "
                      "accuracies are in the learning curves. " if early else "")
                   + ("The dashed line is the FLOPs budget. " if max_flops else "The run has no FLOPs budget. ")
                   + (f"Not shown: {_counts_text(failed)}." if failed else ""))
    return sec


def plot_parity(view: RunView, mpl: Plotter) -> Section:
    sec = Section("parity", "Predictor: predicted vs measured on held-out trials")
    rows = predictor_eval_rows(view)
    if rows:
        sec.extra_html = ("<h3>The run's own predictor checks</h3>" + _table(
            ["after iteration", "trained on", "k-fold τ", "k-fold ρ", "k-fold MAE (pts)", "τ on its next batch"],
            rows) + "<p class='sub'>k-fold: pooled out-of-fold predictions over the trials it was fitted on; "
            "next batch: the candidates it chose for the following iteration, once trained.</p>")
    try:
        data, notes = parity_data(view)
    except UsageError as e:  # a damaged or foreign checkpoint must not take the whole page down
        sec.missing = f"the run's predictor checkpoints cannot be read ({e})"
        return sec
    if notes:
        sec.extra_html = "<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + \
            "</ul>" + sec.extra_html
    if not data:
        fitted = [p for p in view.predictors if int(p["iteration"]) >= 1]
        sec.missing = ("no accuracy predictor has been fitted yet (the first is fitted after iteration 1's trials)"
                       if not fitted else "each predictor is checked on the batch it chooses for the next "
                       "iteration, and none of those has two measured trials yet")
        return sec
    from matplotlib.ticker import MaxNLocator

    ncols = min(len(data), 3)
    nrows = -(-len(data) // ncols)
    fig, axes = mpl.figure(4.8 * ncols, 5.0 * nrows, nrows, ncols)
    for ax in axes.flat[len(data):]:
        ax.set_visible(False)
    for ax, p in zip(axes.flat, data):
        lo = min(p.measured.min(), (p.predicted - p.spread).min())
        hi = max(p.measured.max(), (p.predicted + p.spread).max())
        pad = 0.05 * (hi - lo) + 0.005
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", ls="--", lw=1)
        ax.errorbar(p.measured, p.predicted, yerr=p.spread, fmt="none", ecolor="tab:blue", alpha=0.4, lw=1)
        ax.scatter(p.measured, p.predicted, s=24, color="tab:blue", zorder=3)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal", adjustable="box")
        for axis in (ax.xaxis, ax.yaxis):  # few ticks: percent labels of a narrow panel must not collide
            axis.set_major_locator(MaxNLocator(5))
            axis.set_major_formatter(mpl.percent())
        m = p.metrics
        ax.set_title(f"after iteration {p.iteration}, on iteration {p.iteration + 1} ({len(p.measured)} trials)\n"
                     f"τ {m['kendall_tau']:.2f} · ρ {m['spearman_rho']:.2f} · MAE {100 * m['mae']:.1f} pts",
                     fontsize=10)
        ax.set_xlabel("measured accuracy")
        ax.set_ylabel("predicted (ensemble mean)")
    sec.draw(fig)
    sec.caption = ("Each predictor against the batch it chose for the next iteration, before that batch was "
                   "trained (so held out from it). Measured = what the run fits the predictor to: accuracy at "
                   "the early-stop epoch, chance level for a diverged trial. Kendall τ, Spearman ρ, mean "
                   "absolute error in accuracy points; the dashed diagonal is a perfect prediction, bars the "
                   "ensemble spread (±1 std).")
    return sec


def plot_calibration(view: RunView, mpl: Plotter) -> Section:
    sec = Section("calibration", "Early-stop calibration")
    cal = view.calibration
    if cal is None:
        first = [t for t in view.trials if t.iteration == 1]
        done = sum(t.status in ("done", "diverged", "oom", "failed") for t in first)
        sec.missing = ("the early-stop epoch is calibrated once the first iteration's trials have finished "
                       f"({done} of {len(first)} finished)")
        return sec
    epochs, corr = cal.get("epochs") or [], cal.get("correlation") or []
    chosen, reached = cal.get("chosen_epoch"), bool(cal.get("reached"))
    if not corr or len(corr) != len(epochs):
        sec.missing = (f"the run could not rank its first iteration ({cal.get('note') or 'no correlations recorded'})"
                       + (f"; it trains later iterations for {chosen} epochs" if chosen else ""))
        return sec
    label = _metric_label(cal.get("metric", "rank correlation"))
    threshold = cal.get("threshold")
    fig, axes = mpl.figure(10, 4.2)
    ax = axes[0, 0]
    ax.plot(epochs, corr, marker="o", color="tab:blue", label=f"{label}: epoch e vs final")
    if threshold is not None:
        ax.axhline(threshold, color="crimson", ls="--", lw=1.2, label=f"threshold {threshold:g}")
    if chosen is not None:
        ax.axvline(chosen, color="tab:green", lw=1.5, alpha=0.8,
                   label=f"chosen epoch {chosen}" + ("" if reached else " (threshold not reached)"))
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_ylim(min(-0.05, min(corr) - 0.05), 1.05)
    ax.set_xticks(_integer_ticks(epochs))
    ax.set_title(f"rank correlation of accuracy at each epoch with the final accuracy "
                 f"({cal.get('n_trials', '?')} trials of iteration 1)")
    fig.legend(loc="outside right upper")
    sec.draw(fig)
    sec.caption = ("The first iteration's candidates, trained to their full schedule, ranked by validation "
                   "accuracy after each epoch and at the end; later iterations train only to the first epoch "
                   "whose ranking agrees with the final one at least as much as the threshold.")
    if not reached:
        sec.caption += " No earlier epoch reached the threshold, so later iterations train the full schedule."
    return sec


def plot_learning_curves(view: RunView, mpl: Plotter) -> Section:
    sec = Section("learning_curves", "Learning curves")
    trials = [t for t in view.trials if t.curve]
    if not trials:
        sec.missing = f"no trial has recorded a learning curve yet ({_status_text(view)})"
        return sec
    colors = _iteration_colors([t.iteration for t in trials])
    ranked = view.ranked(top=1)
    best, best_score = ranked[0] if ranked else (None, None)
    fig, axes = mpl.figure(10.5, 4.8)
    ax = axes[0, 0]
    drawn = set()
    for t in trials:
        if t is not best:
            # A one-epoch curve is a single point: a line through it would draw nothing.
            ax.plot([p["epoch"] for p in t.curve], [entry_score(p) for p in t.curve], color=colors[t.iteration],
                    lw=0.8, alpha=0.45, marker="o" if len(t.curve) == 1 else None, ms=3)
            drawn.add(t.iteration)
    for it, color in colors.items():  # legend entries at full opacity, one per iteration that drew something
        if it in drawn:
            ax.plot([], [], color=color, lw=1.5, label=f"iteration {it}")
    if best is not None:
        at = f" at epoch {view.rank_epoch}" if view.rank_epoch else ""
        ax.plot([p["epoch"] for p in best.curve], [entry_score(p) for p in best.curve], color="black", lw=2.6,
                marker="o", ms=3, label=f"best: trial {best.id} ({100 * best_score:.1f}%{at}, "
                                        f"{format_flops(best.flops)})", zorder=5)
    chosen = (view.calibration or {}).get("chosen_epoch")
    if chosen is not None and (view.calibration or {}).get("reached"):
        ax.axvline(chosen, color="tab:green", ls=":", lw=1.3, label=f"early-stop epoch {chosen}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.yaxis.set_major_formatter(mpl.percent())
    ax.set_xticks(_integer_ticks([p["epoch"] for t in trials for p in t.curve]))
    ax.set_title(_plural(len(trials), "trial"))
    fig.legend(loc="outside right upper")
    sec.draw(fig)
    sec.caption = ("Validation accuracy after each epoch; thin lines by iteration, the best measured trial in black "
                   f"({rule(view.rank_epoch, fidelity=view.fidelity_label)}).")
    return sec


def _integer_ticks(values: Sequence[int]) -> List[int]:
    lo, hi = int(min(values)), int(max(values))
    step = max(1, -(-(hi - lo + 1) // 12))
    return list(range(lo, hi + 1, step))


def _metric_label(metric: str) -> str:
    return {"kendall_tau_b": "Kendall τ-b", "kendall_tau": "Kendall τ", "spearman_rho": "Spearman ρ"}.get(
        str(metric), str(metric))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _counts_text(counts: Dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no trials"


def _status_text(view: RunView) -> str:
    return "trials: " + _counts_text(view.counts())


# ---------------------------------------------------------------------------- tables
def _table(header: Sequence[str], rows: Sequence[Sequence], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def config_rows(view: RunView) -> List[Tuple[str, str]]:
    cfg = view.config
    max_flops, max_params = budget_of(cfg)
    budget = "none (every pool candidate allowed)"
    if max_flops is not None:
        budget = f"≤ {format_flops(max_flops)} ({max_flops:,} flops)"
        if max_params is not None:
            budget += f", ≤ {max_params / 1e6:.2f} M params"
    devices: Dict[str, int] = {}
    for t in view.trials:
        if t.device:
            devices[t.device] = devices.get(t.device, 0) + 1
    device = ", ".join(f"{d} ({_plural(n, 'trial')})" for d, n in sorted(devices.items())) or "no trial finished yet"
    if "device" in cfg:
        device = f"{cfg['device']}; trials ran on: {device}"
    pool = str(cfg.get("pool", "?")) + " Sobol samples" + (
        f", {view.pool_size} within the budget" if view.pool_size is not None else ", not sampled yet")
    rows = [("space", cfg.get("space", "?")), ("evaluator", cfg.get("evaluator") or cfg.get("data", "?")),
            ("pool", pool),
            ("seed", cfg.get("seed", "?")), ("device", device), ("budget", budget + f" — {FLOPS_NOTE}")]
    shown = {"space", "data", "evaluator", "pool", "seed", "device", "budget", "max_flops", "max_params"}
    rows += [(k, _short(v)) for k, v in sorted(cfg.items()) if k not in shown]
    return [(k, str(v)) for k, v in rows]


def _short(value, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def trials_html(view: RunView) -> str:
    if not view.trials:
        return "<p class='missing'>Not available yet: no trial has been queued.</p>"
    iterations = sorted({t.iteration for t in view.trials})
    statuses = [s for s in ("done", "running", "queued", "diverged", "oom", "failed")
                if any(t.status == s for t in view.trials)]
    rows = [[it] + [sum(t.iteration == it and t.status == s for t in view.trials) for s in statuses]
            for it in iterations]
    out = _table(["iteration"] + statuses, rows, "counts")
    best = view.ranked(top=5)
    if best:
        epoch = view.rank_epoch
        out += "<h3>Best measured candidates</h3>" + f"<p class='sub'>{html.escape(rule(epoch))}.</p>" + _table(
            ["trial", "iteration", f"accuracy at epoch {epoch}" if epoch else "accuracy", "final accuracy",
             "epochs", "MFLOPs", "M params", "resolution", "optimizer", "lr"],
            [[t.id, t.iteration, f"{100 * score:.2f}%", f"{100 * t.final_acc:.2f}%", t.epochs_run or len(t.curve),
              f"{t.flops / 1e6:.1f}", f"{t.params / 1e6:.2f}", t.candidate.arch.get("resolution", "?"),
              t.candidate.recipe.get("optimizer", "?"), _num(t.candidate.recipe.get("lr"))] for t, score in best])
    return out


def final_lines(view: RunView) -> List[str]:
    """The winner's full-fidelity retraining beside the baseline, as ``jointnas coarse`` prints it."""
    from ..coarse.summary import format_final

    return format_final(view.final) if view.final else []


def final_html(view: RunView) -> str:
    lines = final_lines(view)
    if not lines:
        return "<p class='missing'>Not available yet: the winner is retrained when the coarse search ends.</p>"
    return "<pre>" + html.escape("\n".join(lines)) + "</pre>"


def fine_html(view: RunView) -> str:
    fine = view.fine
    if fine is None:
        return ("<p class='missing'>Not available yet: no fine search has been saved in this run "
                "(<code>jointnas fine --run RUN_DIR --budget ...</code> adds one).</p>")
    top = fine.get("top") or []
    if not top:
        return "<p class='missing'>Not available: the fine search's result lists no candidates.</p>"
    budget, search = fine.get("budget") or {}, fine.get("search") or {}
    intro = [f"budget ≤ {format_flops(budget['max_flops'])}"] if budget.get("max_flops") else []
    intro += [f"{search[key]} {label}" for key, label in (("generations", "generations"),
                                                          ("scored", "candidates scored")) if key in search]
    if "stop_reason" in search:
        intro.append(f"stopped: {search['stop_reason']}")
    if (fine.get("selection") or {}).get("ties"):
        intro.append(fine["selection"]["ties"])
    measured = {t.key: t for t in view.measured}
    rows = []
    for i, entry in enumerate(top):
        recipe = (entry.get("candidate") or {}).get("recipe", {})
        std = entry.get("predicted_std")
        trial = measured.get(entry.get("key"))
        rows.append([entry.get("rank", i + 1),
                     f"{100 * entry['predicted_acc']:.1f}%" + (f" ± {100 * std:.1f}" if std is not None else ""),
                     f"{100 * trial.final_acc:.1f}% (trial {trial.id}, {trial.epochs_run} epochs)" if trial else "–",
                     *((f"{entry['flops'] / 1e6:.1f}", f"{entry['params'] / 1e6:.2f}")
                       if entry.get("flops") is not None else ("–", "–")),  # a space without family
                     entry.get("resolution", "?"), recipe.get("optimizer", "?"), _num(recipe.get("lr")),
                     recipe.get("epochs", "?"), entry.get("key", "")])
    return (f"<p>{html.escape('; '.join(intro))}</p>" if intro else "") + _table(
        ["rank", "predicted accuracy ± spread (pts)", "measured in this run", "MFLOPs", "M params", "resolution",
         "optimizer", "lr", "recipe epochs", "key"], rows, "fine")


def _num(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v if v is not None else "?")


# ---------------------------------------------------------------------------- the page
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1150px;margin:24px auto;
padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:4px} h2{margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:1.05em}
table{border-collapse:collapse;margin:8px 0;font-size:0.92em}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f4f4f4} table.config td:first-child{font-weight:600;white-space:nowrap}
figure{margin:10px 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:0.92em;margin-top:4px}
.missing{background:#fff8e1;border-left:4px solid #f0b400;padding:8px 12px}
.sub{color:#666} ul.notes{color:#555;font-size:0.92em} code{background:#f4f4f4;padding:0 3px}
"""


def render_html(view: RunView, sections: Sequence[Section], plot_links: Dict[str, str]) -> str:
    now = _when(datetime.datetime.now().timestamp())
    status = _status_text(view)
    pending = sum(t.status in ("queued", "running") for t in view.trials)
    if pending or not view.finished:
        status += "; the run is still going or was interrupted" + (f" ({_plural(pending, 'trial')} not "
                                                                   "finished)" if pending else "")
    else:
        status += "; the coarse search finished " + _when(view.finished)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>jointnas report: {html.escape(view.run_dir.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>jointnas run <code>{html.escape(str(view.run_dir))}</code></h1>",
             f"<p class='sub'>Report made {now} from the run's store; {html.escape(status)}.</p>",
             "<h2>Run configuration</h2>", _table(["setting", "value"], config_rows(view), "config"),
             "<h2 id='result'>Result</h2>", final_html(view),
             "<h2>Trials</h2>", trials_html(view)]
    for sec in sections:
        parts.append(f"<h2 id='{sec.name}'>{html.escape(sec.title)}</h2>")
        if sec.png is None:
            parts.append(f"<p class='missing'>Not available yet: {html.escape(sec.missing or 'no data')}.</p>")
        else:
            data = base64.b64encode(sec.png).decode("ascii")
            link = html.escape(plot_links[sec.name])
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(sec.title)}'>"
                         f"<figcaption>{html.escape(sec.caption)} <a href='{link}'>PNG file</a></figcaption></figure>")
        parts.append(sec.extra_html)
    parts += ["<h2 id='fine'>Fine search: top candidates</h2>", fine_html(view), "</body></html>"]
    return "\n".join(parts)


@dataclass
class Report:
    html_path: Path
    plots: Dict[str, Path]      # written PNG files by plot name
    missing: Dict[str, str]     # plot name -> why it is not there yet
    result: List[str] = field(default_factory=list)   # the run's final result, as lines


def build_report(run_dir, out=None) -> Report:
    """Write the report page of ``run_dir`` (default ``RUN_DIR/report.html``) and its PNGs."""
    mpl = Plotter()  # fail on a missing extra before reading anything
    view = RunView.read(run_dir)
    out = Path(out) if out is not None else view.run_dir / "report.html"
    if out.is_dir():
        raise UsageError(f"report file {out} is a directory; give the HTML file to write, e.g. "
                         f"{out / 'report.html'}")
    check_writable_file(out, "report file")
    check_writable_dir(out.with_name(out.stem + "_plots"), "report plot folder")
    with mpl.style():
        sections = [plot(view, mpl) for plot in (plot_accuracy_vs_flops, plot_parity, plot_calibration,
                                                 plot_learning_curves)]
    try:
        return _write_report(view, sections, out)
    except OSError as e:
        raise UsageError(f"cannot write the report to {out} ({e}); pick another place for it") from None


def _write_report(view: RunView, sections: Sequence[Section], out: Path) -> Report:
    plot_dir = out.with_name(out.stem + "_plots")
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots, missing, links = {}, {}, {}
    for sec in sections:
        path = plot_dir / f"{sec.name}.png"
        if sec.png is None:
            missing[sec.name] = sec.missing or "no data"
            if path.exists():  # from an earlier report of this run: it no longer matches the page
                path.unlink()
            continue
        _write_atomic(path, sec.png)
        plots[sec.name] = path
        links[sec.name] = quote(Path(os.path.relpath(path, out.parent)).as_posix())
    _write_atomic(out, render_html(view, sections, links).encode("utf-8"))
    return Report(out, plots, missing, final_lines(view))


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
