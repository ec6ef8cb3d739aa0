"""``jointnas report``: one self-contained HTML page (PNG plots embedded) showing a run.

The page is built from whatever the run's store holds right now, so it works on a run that
is still going or was interrupted: a section whose data does not exist yet says why instead.
Each plot is also written as a PNG next to the page (``<page>_plots/<name>.png``).
The run is read by :mod:`jointnas.report.view` and drawn by :mod:`jointnas.report.plots`.
"""
from __future__ import annotations

import base64
import datetime
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple
from urllib.parse import quote

from ..budget import format_flops
from ..coarse.ranking import rule
from ..coarse.summary import format_final
from ..errors import UsageError
from ..io import FLOPS_NOTE_SHORT, atomic_write_bytes, check_writable_dir, check_writable_file
from .autotrain import autotrain_lines
from .plots import PLOTS, Plotter, Section
from .result import pct, result_rows
from .view import RunView, baseline_text, budget_of, human, plural, predictor_eval_rows, status_text

FLOPS_NOTE = f"FLOPs: {FLOPS_NOTE_SHORT}"


def _table(header: Sequence[str], rows: Sequence[Sequence], cls: str = "", marked: Sequence[bool] = ()) -> str:
    """A table; the rows whose ``marked`` entry is true get class 'winner'."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(("<tr class='winner'>" if i < len(marked) and marked[i] else "<tr>")
                   + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for i, row in enumerate(rows))
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def notes_html(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    return "<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"


def predictor_checks_html(view: RunView) -> str:
    """The run's own per-iteration checks of its predictor, shown with the parity plot."""
    rows = predictor_eval_rows(view)
    if not rows:
        return ""
    return ("<h3>The run's own predictor checks</h3>" + _table(
        ["after iteration", "trained on", "k-fold τ", "k-fold ρ", "k-fold MAE (pts)", "τ on its next batch"],
        rows) + "<p class='sub'>k-fold: pooled out-of-fold predictions over the trials it was fitted on; "
        "next batch: the candidates it chose for the following iteration, once trained.</p>")


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
    device = ", ".join(f"{d} ({plural(n, 'trial')})" for d, n in sorted(devices.items())) or "no trial finished yet"
    if "device" in cfg:
        device = f"{cfg['device']}; trials ran on: {device}"
    pool = str(cfg.get("pool", "?")) + " Sobol samples" + (
        f", {view.pool_size} within the budget" if view.pool_size is not None else ", not sampled yet")
    rows = [("space", cfg.get("space", "?")),
            ("evaluator", cfg.get("evaluator") or cfg.get("data") or "a Python function (not importable by name)"),
            ("pool", pool), ("seed", cfg.get("seed", "?")), ("device", device),
            ("budget", budget + f" — {FLOPS_NOTE}"), ("baseline", baseline_text(view))]
    shown = {"space", "data", "evaluator", "pool", "seed", "device", "budget", "max_flops", "max_params", "baseline"}
    rows += [(k, _short(human(v))) for k, v in sorted(cfg.items()) if k not in shown]
    return [(k, human(v)) for k, v in rows]


def _short(text: str, limit: int = 400) -> str:
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
    return out + best_html(view)


def best_html(view: RunView, top: int = 5) -> str:
    """The best measured trials by the ranking rule, the winner marked (and added when it is not among them)."""
    ranked = view.ranked()
    if not ranked:
        return ""
    winner = view.winner.trial.id if view.winner else None
    best = ranked[:top] + [(t, s) for t, s in ranked[top:] if t.id == winner]
    epoch = view.rank_epoch
    later = any(t.final_acc is not None and abs(t.final_acc - s) > 1e-12 for t, s in best)
    header = (["trial", "iteration", f"accuracy at epoch {epoch}" if epoch else "accuracy"]
              + (["last measured accuracy"] if later else []) + ["epochs run", "schedule"]
              + (["expected at the end of its schedule"] if view.expected else [])
              + ["MFLOPs", "M params", "resolution", "optimizer", "lr"])
    rows, marked = [], []
    for t, score in best:
        recipe = t.candidate.recipe
        rows.append([f"{t.id} ★ winner" if t.id == winner else t.id, t.iteration, f"{100 * score:.2f}%"]
                    + ([f"{100 * t.final_acc:.2f}%" if t.final_acc is not None else "–"] if later else [])
                    + [t.epochs_run or len(t.curve), recipe.get("epochs", "–")]
                    + ([pct(view.expected.get(t.id))] if view.expected else [])
                    + [f"{t.flops / 1e6:.1f}", f"{t.params / 1e6:.2f}", t.candidate.arch.get("resolution", "?"),
                       recipe.get("optimizer", "?"), _num(recipe.get("lr"))])
        marked.append(t.id == winner)
    why = ("; the winner is the trial expected to end its schedule best" if view.winner and view.winner.expected
           is not None else "")
    return ("<h3>Best measured candidates</h3>" + f"<p class='sub'>{html.escape(rule(epoch) + why)}.</p>"
            + _table(header, rows, "best", marked))


def final_lines(view: RunView) -> List[str]:
    """The winner's full-fidelity retraining beside the baseline, as ``jointnas coarse`` prints it."""
    return (format_final(view.final) if view.final else []) + autotrain_lines(view.run_dir)


def result_html(view: RunView) -> str:
    """The Result block: one labelled row per fact, each a few short lines."""
    rows = result_rows(view)
    if not rows:
        return "<p class='missing'>Not available yet: no trial has finished training, so the run has no winner.</p>"
    body = "".join(f"<tr><th>{html.escape(label)}</th><td>{'<br>'.join(html.escape(x) for x in lines)}</td></tr>"
                   for label, lines in rows)
    return f"<table class='result'><tbody>{body}</tbody></table>"


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


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1150px;margin:24px auto;
padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:4px} h2{margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:1.05em}
table{border-collapse:collapse;margin:8px 0;font-size:0.92em}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f4f4f4} table.config td:first-child{font-weight:600;white-space:nowrap}
table.config td{white-space:pre-wrap} tr.winner td{background:#fff3c4;font-weight:600}
table.result{font-size:1em;max-width:100%} table.result th{white-space:nowrap;width:11em;background:#eef4fb}
figure{margin:10px 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:0.92em;margin-top:4px}
.missing{background:#fff8e1;border-left:4px solid #f0b400;padding:8px 12px}
.sub{color:#666} ul.notes{color:#555;font-size:0.92em} code{background:#f4f4f4;padding:0 3px}
"""


def render_html(view: RunView, sections: Sequence[Section], plot_links: Dict[str, str]) -> str:
    now = _when(datetime.datetime.now().timestamp())
    status = status_text(view)
    pending = sum(t.status in ("queued", "running") for t in view.trials)
    if pending or not view.finished:
        status += "; the run is still going or was interrupted" + (f" ({plural(pending, 'trial')} not "
                                                                   "finished)" if pending else "")
    else:
        status += "; the coarse search finished " + _when(view.finished)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>jointnas report: {html.escape(view.run_dir.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>jointnas run <code>{html.escape(str(view.run_dir))}</code></h1>",
             f"<p class='sub'>Report made {now} from the run's store; {html.escape(status)}.</p>",
             "<h2 id='result'>Result</h2>", result_html(view),
             "<h2>Run configuration</h2>", _table(["setting", "value"], config_rows(view), "config"),
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
        parts.append(notes_html(sec.notes) + (predictor_checks_html(view) if sec.name == "parity" else ""))
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
        sections = [plot(view, mpl) for plot in PLOTS]
    try:
        return _write_report(view, sections, out)
    except OSError as e:
        raise UsageError(f"cannot write the report to {out} ({e}); pick another place for it") from None


def _write_report(view: RunView, sections: Sequence[Section], out: Path) -> Report:
    plots, missing, links = write_plots(sections, out)
    _write_atomic(out, render_html(view, sections, links).encode("utf-8"))
    return Report(out, plots, missing, final_lines(view))


def write_plots(sections: Sequence[Section], out: Path):
    """Write each section's PNG beside the page ``out`` (in ``<stem>_plots/``): (plots by name,
    why each missing one is missing, links relative to the page)."""
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
    return plots, missing, links


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _write_atomic(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)
