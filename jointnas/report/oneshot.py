"""``jointnas report`` on a one-shot run: the op weights of every edge over the epochs as heat maps
(one small map per edge: ops down, epochs across, darker = more weight), the skip count of the
derived cell per epoch (the collapse monitor), the supernet's train and validation curves, and the
derived cell listed with its cost, its NAS-Bench-201 accuracies and its training from scratch."""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import UsageError
from ..io import check_writable_dir, check_writable_file
from ..oneshot.names import edge_names, op_names
from ..oneshot.outcome import genotype_text, result_lines
from ..oneshot.run import EPOCH, RESULT, OneShotRunConfig, is_oneshot_run
from ..store import RunStore
from .page import _CSS, Report, _table, _write_atomic, write_plots
from .plots import Plotter, Section


@dataclass
class OneShotView:
    run_dir: Path
    config: OneShotRunConfig
    history: List[dict]
    result: Optional[dict] = None
    stored: Dict = field(default_factory=dict)

    @classmethod
    def read(cls, run_dir) -> "OneShotView":
        with RunStore.open(run_dir) as store:
            results = store.results(RESULT)
            return cls(Path(run_dir), OneShotRunConfig.from_dict(store.config),
                       sorted(store.results(EPOCH), key=lambda r: r["epoch"]), results[-1] if results else None,
                       store.config)

    def alpha_sets(self) -> List[str]:
        """The op-weight sets of the records (normal, reduce), not the PC-DARTS edge weights."""
        return [k for k in self.history[0]["alphas"] if not k.endswith("beta")] if self.history else []


def is_oneshot_dir(run_dir) -> bool:
    if not RunStore.is_run(run_dir):
        return False
    with RunStore.open(run_dir) as store:
        return is_oneshot_run(store)


def plot_alphas(view: OneShotView, mpl: Plotter, name: str) -> Section:
    sec = Section(f"alphas_{name}", f"Op weights per edge over the epochs ({name} cell)",
                  "Each map is one edge of the cell: its ops down, the epochs across, the colour the op's "
                  "softmax weight against the uniform 1/ops (red above, blue below; the colour bar gives the "
                  "weights). The dot marks each edge's strongest op at the last epoch"
                  + (" (the derived cell keeps a node's two strongest edges, 'none' excepted)." if
                     view.config.space == "darts" else ", the op the derived cell takes."))
    if not view.history:
        sec.missing = "no epoch has finished yet"
        return sec
    import numpy as np

    data = np.array([h["alphas"][name] for h in view.history])  # epochs, edges, ops
    edges, ops = edge_names(view.config.space), op_names(view.config.space)
    n = data.shape[1]
    cols = min(n, 7 if n > 6 else 3)
    rows = math.ceil(n / cols)
    fig, axes = mpl.figure(1.9 * cols + 1.2, 1.5 * rows + 0.6, rows, cols)
    uniform = 1.0 / data.shape[2]
    spread = max(float(np.abs(data - uniform).max()), 1e-4)
    image = None
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.set_visible(False)
            continue
        ax.grid(False)
        image = ax.imshow(data[:, k, :].T, aspect="auto", cmap="RdBu_r", vmin=uniform - spread,
                          vmax=uniform + spread, interpolation="nearest",
                          extent=(0.5, len(view.history) + 0.5, len(ops) - 0.5, -0.5))
        ax.plot([len(view.history)], [int(data[-1, k].argmax())], "ko", ms=4)
        ax.set_title(edges[k] if k < len(edges) else f"edge {k}", fontsize=9)
        ax.set_yticks(range(len(ops)))
        ax.set_yticklabels(ops if k % cols == 0 else [], fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        if k // cols == rows - 1:
            ax.set_xlabel("epoch", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="op weight")
    sec.draw(fig)
    return sec


def plot_skips(view: OneShotView, mpl: Plotter) -> Section:
    cell = "cell" if view.config.space == "nb201" else "normal cell"
    sec = Section("skip_count", "Skip connections in the derived cell over the epochs (collapse monitor)",
                  f"Skip connections in the {cell} derived after each epoch. A count that climbs towards every "
                  "edge is DARTS's known collapse to parameter-free ops.")
    if not view.history:
        sec.missing = "no epoch has finished yet"
        return sec
    fig, axes = mpl.figure(6.0, 2.8)
    ax = axes[0, 0]
    epochs = [h["epoch"] + 1 for h in view.history]
    ax.step(epochs, [h["skip_count"] for h in view.history], where="mid", marker="o", color="tab:red")
    limit = view.config.settings.get("max_skips")
    if view.config.settings.get("remedy", "none") != "none" and limit is not None:
        ax.axhline(limit, color="grey", ls="--", lw=1, label=f"remedy's limit ({limit})")
        ax.legend(loc="upper left")
    most = 6 if view.config.space == "nb201" else 8
    ax.set_ylim(-0.3, most + 0.3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("skip connections")
    ax.set_title(f"{view.config.strategy} on {view.config.space}")
    sec.draw(fig)
    return sec


def plot_curves(view: OneShotView, mpl: Plotter) -> Section:
    sec = Section("supernet_curves", "Supernet training curves",
                  "Accuracy and loss of the supernet per epoch: train on the w half, validation on the alpha "
                  "half (measured before each step's w update, as the reference code does).")
    if not view.history:
        sec.missing = "no epoch has finished yet"
        return sec
    fig, axes = mpl.figure(9.0, 3.0, 1, 2)
    epochs = [h["epoch"] + 1 for h in view.history]
    for ax, metric in zip(axes[0], ("acc", "loss")):
        for part, label in (("train", "train (w half)"), ("valid", "validation (alpha half)")):
            ax.plot(epochs, [h.get(f"{part}_{metric}") for h in view.history], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_title("accuracy" if metric == "acc" else "loss")
        if metric == "acc":
            ax.yaxis.set_major_formatter(mpl.percent())
    axes[0, 0].legend(loc="lower right")
    sec.draw(fig)
    return sec


def render(view: OneShotView, sections: List[Section], links: Dict[str, str]) -> str:
    c = view.config
    done = f"{len(view.history)} of {c.settings.get('epochs')} epochs done"
    state = "finished" if view.result else "still going or interrupted"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>jointnas one-shot report: "
             f"{html.escape(view.run_dir.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>jointnas one-shot run <code>{html.escape(str(view.run_dir))}</code></h1>",
             f"<p class='sub'>{html.escape(c.strategy)} on the {html.escape(c.space)} space, data "
             f"{html.escape(c.data)}; {done}; the run is {state}.</p>", "<h2 id='result'>Derived cell</h2>"]
    if view.history:
        arch = _derived(view)
        parts.append("<p>" + html.escape(genotype_text(c.space, arch)) + "</p>")
        parts.append(_table(["dimension", "op / inputs"], [[k, v] for k, v in arch.items()], "config"))
    if view.result:
        parts.append("<ul class='notes'>" + "".join(f"<li>{html.escape(line)}</li>"
                                                    for line in result_lines(c, view.result)) + "</ul>")
    rows = [[h["epoch"] + 1, f"{h.get('train_acc', 0):.4f}", f"{h.get('valid_acc', 0):.4f}", h["skip_count"],
             f"{h['seconds']:.1f}"] for h in view.history]
    parts += ["<h2>Epochs</h2>", _table(["epoch", "train acc", "valid acc", "skips", "seconds"], rows)]
    for sec in sections:
        parts.append(f"<h2 id='{sec.name}'>{html.escape(sec.title)}</h2>")
        if sec.png is None:
            parts.append(f"<p class='missing'>Not available yet: {html.escape(sec.missing or 'no data')}.</p>")
            continue
        data = base64.b64encode(sec.png).decode("ascii")
        parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(sec.title)}'>"
                     f"<figcaption>{html.escape(sec.caption)} <a href='{html.escape(links[sec.name])}'>PNG file</a>"
                     "</figcaption></figure>")
    settings = [[k, v] for k, v in sorted(c.settings.items())]
    parts += ["<h2>Search settings</h2>", _table(["setting", "value"], settings, "config"), "</body></html>"]
    return "\n".join(parts)


def _derived(view: OneShotView) -> dict:
    return view.result["candidate"]["arch"] if view.result else view.history[-1]["derived"]


def build_oneshot_report(run_dir, out=None) -> Report:
    """Write the report page of the one-shot run ``run_dir`` (default ``RUN_DIR/report.html``) and its PNGs."""
    mpl = Plotter()
    view = OneShotView.read(run_dir)
    out = Path(out) if out is not None else view.run_dir / "report.html"
    if out.is_dir():
        raise UsageError(f"report file {out} is a directory; give the HTML file to write, e.g. {out / 'report.html'}")
    check_writable_file(out, "report file")
    check_writable_dir(out.with_name(out.stem + "_plots"), "report plot folder")
    with mpl.style():
        sections = [plot_alphas(view, mpl, name) for name in view.alpha_sets() or ["normal"]]
        sections += [plot_skips(view, mpl), plot_curves(view, mpl)]
    plots, missing, links = write_plots(sections, out)
    _write_atomic(out, render(view, sections, links).encode("utf-8"))
    lines = result_lines(view.config, view.result) if view.result else []
    return Report(out, plots, missing, lines)
