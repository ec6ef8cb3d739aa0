"""The report's four plots, drawn with matplotlib from a :class:`~jointnas.report.view.RunView`:
measured accuracy vs FLOPs, the predictors' held-out parity, the early-stop calibration and the
learning curves. Each is a :class:`Section`: its PNG, or why it is not there yet.

matplotlib is an optional extra (``pip install 'jointnas[report]'``), so it is imported only
inside the functions that draw, never when this module is imported."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..budget import format_flops
from ..coarse.ranking import rule
from ..errors import UsageError
from ..trial import entry_score
from .view import (RunView, accuracy_vs_flops, budget_of, counts_text, pareto_front, parity_bars, parity_data,
                   parity_limits, plural, score_bounds, status_text, stopped_early)

INSTALL_HINT = "pip install 'jointnas[report]'"
PLOT_NAMES = ("accuracy_vs_flops", "parity", "calibration", "learning_curves")
DPI = 110


class Plotter:
    """Figures on matplotlib's Agg canvas, without pyplot and its global state."""

    STYLE = {"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 9}

    def __init__(self):
        try:
            import matplotlib  # the optional extra jointnas[report]: imported only when a report is drawn
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


def marks_outside(fig) -> List[str]:
    """Plots of a drawn ``fig`` whose points or bars (scatter and error-bar collections in data
    coordinates) reach beyond the axis limits, so are cut off at the plot's frame."""
    from matplotlib.collections import LineCollection, PathCollection  # the optional extra: only to draw

    out = []
    for ax in fig.axes:
        (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
        for coll in ax.collections:
            if isinstance(coll, LineCollection) and coll.get_transform() == ax.transData:
                points = [xy for seg in coll.get_segments() for xy in seg]
            elif isinstance(coll, PathCollection) and coll.get_offset_transform() == ax.transData:
                points = list(coll.get_offsets())
            else:
                continue
            if any(not (x0 <= x <= x1 and y0 <= y <= y1) for x, y in points):
                out.append(f"plot {ax.get_title()!r}")
                break
    return out


def _iteration_colors(iterations: Sequence[int]) -> Dict[int, tuple]:
    import matplotlib  # the optional extra: imported only to draw

    cmap = matplotlib.colormaps["tab10"]
    return {it: cmap(i % 10) for i, it in enumerate(sorted(set(iterations)))}


@dataclass
class Section:
    name: str
    title: str
    caption: str = ""
    png: Optional[bytes] = None
    missing: Optional[str] = None  # why the plot is not there yet
    notes: Tuple[str, ...] = ()   # what the page lists below the plot
    clipped: Tuple[str, ...] = ()  # parts drawn beyond the figure's edges (none, when the layout is right)
    cut: Tuple[str, ...] = ()      # plots whose points or bars reach beyond their axes (none, when limits fit)
    legend: Tuple[str, ...] = ()   # the figure legend's entries

    def draw(self, fig) -> None:
        self.png = _png(fig)
        self.clipped = tuple(texts_outside(fig))
        self.cut = tuple(marks_outside(fig))
        self.legend = tuple(t.get_text() for legend in fig.legends for t in legend.get_texts())


def plot_accuracy_vs_flops(view: RunView, mpl: Plotter) -> Section:
    sec = Section("accuracy_vs_flops", "Measured accuracy vs FLOPs")
    trials, flops, acc = accuracy_vs_flops(view)
    if not trials:
        sec.missing = f"no trial has finished training yet ({status_text(view)})"
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
    won = [i for i, t in enumerate(trials) if view.winner and t.id == view.winner.trial.id]
    if won:
        ax.scatter(flops[won], acc[won], marker="*", s=260, facecolors="none", edgecolors="black", linewidths=1.4,
                   label=f"winner: trial {view.winner.trial.id}", zorder=4)
    if max_flops is not None:
        ax.axvline(max_flops / 1e6, color="crimson", ls="--", lw=1.4, label=f"budget {format_flops(max_flops)}")
    ax.set_xlabel("MFLOPs of the deployable model (fvcore, 1 multiply-add = 1 flop)")
    ax.set_ylabel("validation accuracy" + (f" at epoch {epoch}" if epoch else " (final)"))
    ax.yaxis.set_major_formatter(mpl.percent())
    ax.set_title(plural(len(trials), "trained candidate"))
    fig.legend(loc="outside right upper")
    sec.draw(fig)
    failed = {s: n for s, n in view.counts().items() if s in ("diverged", "oom", "failed")}
    early = any(stopped_early(view, t) for t in trials)
    sec.caption = ("Every candidate that finished training, coloured by the iteration that chose it, at one "
                   f"fidelity: {rule(epoch, fidelity=view.fidelity_label)}. "
                   + ("The star is the run's winner (see Result). " if won else "")
                   + ("Triangles were trained only to that epoch; the others ran longer, and their later "
                      "accuracies are in the learning curves. " if early else "")
                   + ("The dashed line is the FLOPs budget. " if max_flops else "The run has no FLOPs budget. ")
                   + (f"Not shown: {counts_text(failed)}." if failed else ""))
    return sec


def plot_parity(view: RunView, mpl: Plotter) -> Section:
    sec = Section("parity", "Predictor: predicted vs measured on held-out trials")
    try:
        data, notes = parity_data(view)
    except UsageError as e:  # a damaged or foreign checkpoint must not take the whole page down
        sec.missing = f"the run's predictor checkpoints cannot be read ({e})"
        return sec
    sec.notes = tuple(notes)
    if not data:
        fitted = [p for p in view.predictors if int(p["iteration"]) >= 1]
        sec.missing = ("no accuracy predictor has been fitted yet (the first is fitted after iteration 1's trials)"
                       if not fitted else "each predictor is checked on the batch it chooses for the next "
                       "iteration, and none of those has two measured trials yet")
        return sec
    from matplotlib.ticker import MaxNLocator  # the optional extra: imported only to draw

    ncols = min(len(data), 3)
    nrows = -(-len(data) // ncols)
    fig, axes = mpl.figure(4.8 * ncols, 5.0 * nrows, nrows, ncols)
    for ax in axes.flat[len(data):]:
        ax.set_visible(False)
    bounds = score_bounds(view.config)
    for ax, p in zip(axes.flat, data):
        low, high = parity_bars(p, bounds)
        lo, hi = parity_limits(p, low, high)
        ax.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1)
        ax.errorbar(p.measured, p.predicted, yerr=[p.predicted - low, high - p.predicted], fmt="none",
                    ecolor="tab:blue", alpha=0.4, lw=1)
        ax.scatter(p.measured, p.predicted, s=24, color="tab:blue", zorder=3)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
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
                   "ensemble spread (±1 std), cut at the scores a trial can have"
                   + (f" ({bounds[0]:.0%} to {bounds[1]:.0%})." if bounds else "."))
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
    full = cal.get("full_epochs")
    # The last epoch of a capped first batch is the final score itself: its correlation is 1 by construction.
    itself = full is not None and epochs[-1] == full
    fig, axes = mpl.figure(10, 4.2)
    ax = axes[0, 0]
    ax.plot(epochs, corr, marker="o", color="tab:blue", label=f"{label}: epoch e vs final")
    if itself:
        ax.plot(epochs[-1:], corr[-1:], marker="o", ms=11, mfc="none", mec="grey", ls="none",
                label="the final score itself: 1 by construction")
    if threshold is not None:
        ax.axhline(threshold, color="crimson", ls="--", lw=1.2, label=f"threshold {threshold:g}")
    if chosen is not None:
        ax.axvline(chosen, color="tab:green", lw=1.5, alpha=0.8,
                   label=f"chosen epoch {chosen}" + ("" if reached else " (threshold not reached)"))
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_ylim(min(-0.05, min(corr) - 0.05), 1.05)
    ax.set_xticks(_integer_ticks(epochs))
    ax.set_title(f"accuracy at each epoch vs the final (epoch {full or '?'}): "
                 f"{cal.get('n_trials', '?')} trials of iteration 1")
    fig.legend(loc="outside right upper")
    sec.draw(fig)
    sec.caption = ("The first iteration's candidates, trained to their full schedule, ranked by validation "
                   "accuracy after each epoch and at the end; later iterations train only to the first epoch "
                   "whose ranking agrees with the final one at least as much as the threshold.")
    if itself:
        cap = view.config.get("epoch_cap")
        sec.caption += (f" Iteration 1 trained every trial for {full} epochs" + (" (the run's epoch cap)" if cap == full
                        else "") + f", so epoch {full} is the final score and its correlation is 1 by construction: "
                        "only the earlier epochs test the early stop.")
        if reached and chosen == full:
            sec.caption += (f" No earlier epoch reached the threshold, so the early stop saves nothing: every later "
                            f"trial also trains {full} epochs.")
    if not reached:
        sec.caption += " No earlier epoch reached the threshold, so later iterations train the full schedule."
    return sec


def plot_learning_curves(view: RunView, mpl: Plotter) -> Section:
    sec = Section("learning_curves", "Learning curves")
    trials = [t for t in view.trials if t.curve]
    if not trials:
        sec.missing = f"no trial has recorded a learning curve yet ({status_text(view)})"
        return sec
    colors = _iteration_colors([t.iteration for t in trials])
    best = next((t for t in trials if view.winner and t.id == view.winner.trial.id), None)
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
        ax.plot([p["epoch"] for p in best.curve], [entry_score(p) for p in best.curve], color="black", lw=2.6,
                marker="o", ms=3, label=_winner_label(view, best), zorder=5)
    chosen = (view.calibration or {}).get("chosen_epoch")
    if chosen is not None and (view.calibration or {}).get("reached"):
        ax.axvline(chosen, color="tab:green", ls=":", lw=1.3, label=f"early-stop epoch {chosen}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.yaxis.set_major_formatter(mpl.percent())
    ax.set_xticks(_integer_ticks([p["epoch"] for t in trials for p in t.curve]))
    ax.set_title(plural(len(trials), "trial"))
    fig.legend(loc="outside right upper")
    sec.draw(fig)
    sec.caption = ("Validation accuracy after each epoch; thin lines by iteration, the run's winner in black "
                   f"(the trial the Result block names; trials are {rule(view.rank_epoch, fidelity=view.fidelity_label)})"
                   "." + (f" {_winner_end(view)}" if best is not None and view.winner.expected is not None else ""))
    return sec


def _winner_label(view: RunView, trial) -> str:
    """The winner's legend entry: its score where it was ranked."""
    score = next((s for t, s in view.ranked() if t.id == trial.id), None)
    at = f" at epoch {view.rank_epoch}" if view.rank_epoch else ""
    return f"winner: trial {trial.id} ({100 * score:.1f}%{at})" if score is not None else f"winner: trial {trial.id}"


def _winner_end(view: RunView) -> str:
    """Where the winner's curve was expected to end (it chose the winner), and where it did when retrained."""
    retrained = ((view.final or {}).get("winner") or {}) if view.winner.retrained else {}
    end = f"epoch {retrained['epochs']}" if retrained.get("epochs") else "the end of its schedule"
    text = (f"Trial {view.winner.trial.id} won because its curve was expected to reach "
            f"{100 * view.winner.expected:.1f}% at {end}")
    if retrained.get("final_acc") is not None:
        text += f"; retrained that long, it measured {100 * retrained['final_acc']:.1f}%"
    return text + "."


def _integer_ticks(values: Sequence[int]) -> List[int]:
    lo, hi = int(min(values)), int(max(values))
    step = max(1, -(-(hi - lo + 1) // 12))
    return list(range(lo, hi + 1, step))


def _metric_label(metric: str) -> str:
    return {"kendall_tau_b": "Kendall τ-b", "kendall_tau": "Kendall τ", "spearman_rho": "Spearman ρ"}.get(
        str(metric), str(metric))


PLOTS = (plot_accuracy_vs_flops, plot_parity, plot_calibration, plot_learning_curves)  # in PLOT_NAMES order
