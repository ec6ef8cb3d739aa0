"""Tables (Markdown) and the regret plot of ``bench_search.py`` results (JSON lines files)."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ORDER = ["jointnas-shipped", "jointnas-best", "jointnas-forest", "jointnas-mlp", "jointnas-blend", "random",
         "evolution", "optuna-tpe", "optuna-tpe-independent", "optuna-gp", "smac-rf"]


def load(paths) -> Dict[str, Dict[str, List[dict]]]:
    """task -> method -> repeats (last record of a (task, method, repeat) wins)."""
    seen = {}
    for path in ([paths] if isinstance(paths, (str, Path)) else paths):
        if not Path(path).is_file():
            continue
        for line in Path(path).read_text().splitlines():
            r = json.loads(line)
            seen[(r["task"], r["method"], r["repeat"])] = r
    out: Dict[str, Dict[str, List[dict]]] = defaultdict(lambda: defaultdict(list))
    for (task, method, _), r in sorted(seen.items()):
        out[task][method].append(r)
    return out


def _hits(runs, key):
    cap = runs[0]["cap"]
    v = np.array([r[key] if r[key] is not None else cap + 1 for r in runs], dtype=float)
    return v, cap


def _q(v, cap, q) -> float:
    return float(np.percentile(v, q))


def _fmt(x, cap) -> str:
    return f">{cap}" if x > cap else f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def summary_row(runs) -> dict:
    out = {"repeats": len(runs)}
    for key in ("hit_top1", "hit_top01"):
        v, cap = _hits(runs, key)
        out[key] = {"median": _q(v, cap, 50), "p25": _q(v, cap, 25), "p75": _q(v, cap, 75),
                    "hit": float(np.mean(v <= cap)), "cap": cap}
    out["regret_at_cap"] = float(np.median([0.0 if r["stopped"] == "best found" else r["regret"][-1] for r in runs]))
    out["ms"] = 1000 * float(np.median([r["search_s_per_suggestion"] for r in runs]))
    cpu = [r["search_cpu_ms_per_suggestion"] for r in runs if "search_cpu_ms_per_suggestion" in r]
    out["cpu_ms"] = float(np.median(cpu)) if cpu else None   # rows from before it was recorded have none
    return out


def ordered(methods):
    return sorted(methods, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))


def report(paths, plot: Optional[Path] = None) -> str:
    data = load(paths)
    lines, medians = [], defaultdict(dict)
    for task in data:
        lines += [f"**{task}**", "",
                  "| method | repeats | evals to top-1 %: median [p25, p75] | hit | "
                  "evals to top-0.1 %: median [p25, p75] | hit | median regret at the cap (pp) | ms / suggestion | "
                  "CPU ms / suggestion |",
                  "|---|---:|---|---:|---|---:|---:|---:|---:|"]
        for m in ordered(data[task]):
            s = summary_row(data[task][m])
            a, b = s["hit_top1"], s["hit_top01"]
            medians[m][task] = a["median"]
            lines.append(f"| {m} | {s['repeats']} | {_fmt(a['median'], a['cap'])} [{_fmt(a['p25'], a['cap'])}, "
                         f"{_fmt(a['p75'], a['cap'])}] | {a['hit']:.0%} | {_fmt(b['median'], b['cap'])} "
                         f"[{_fmt(b['p25'], b['cap'])}, {_fmt(b['p75'], b['cap'])}] | {b['hit']:.0%} | "
                         f"{s['regret_at_cap']:.2f} | {s['ms']:.1f} | "
                         + ("-" if s["cpu_ms"] is None else f"{s['cpu_ms']:.1f}") + " |")
        lines.append("")
    tasks = list(data)
    lines += ["**Geometric mean over tasks** of the median evaluations to a top-1 % configuration "
              "(a median beyond the cap counts as cap + 1)", "",
              "| method | " + " | ".join(tasks) + " | geometric mean | / Optuna TPE |",
              "|---|" + "---:|" * (len(tasks) + 2)]
    tpe = None
    if all(t in medians.get("optuna-tpe", {}) for t in tasks):
        tpe = math.exp(np.mean([math.log(medians["optuna-tpe"][t]) for t in tasks]))
    for m in ordered(medians):
        if not all(t in medians[m] for t in tasks):
            continue
        g = math.exp(np.mean([math.log(medians[m][t]) for t in tasks]))
        ratio = f"{g / tpe:.2f}" if tpe else "-"
        lines.append(f"| {m} | " + " | ".join(f"{medians[m][t]:.1f}" for t in tasks) + f" | {g:.1f} | {ratio} |")
    if plot:
        _plot(data, plot)
        lines += ["", f"Plot: `{plot}`"]
    return "\n".join(lines)


def _plot(data, path: Path) -> None:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = list(data)
    cols = min(2, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    cmap = matplotlib.colormaps["tab10"]
    with matplotlib.rc_context({"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 8}):
        fig = Figure(figsize=(5.2 * cols, 3.8 * rows), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, cols, squeeze=False)
        methods = ordered({m for t in tasks for m in data[t]})
        for ax, task in zip(axes.flat, tasks):
            ax.grid(True, alpha=0.3)
            for i, m in enumerate(methods):
                runs = data[task].get(m)
                if not runs:
                    continue
                cap = runs[0]["cap"]
                curves = np.zeros((len(runs), cap))
                for j, r in enumerate(runs):
                    c = np.asarray(r["regret"])
                    curves[j, :len(c)] = c
                    curves[j, len(c):] = 0.0 if r["stopped"] == "best found" else c[-1]
                med = np.median(curves, axis=0)
                ax.plot(np.arange(1, cap + 1), np.maximum(med, 1e-3), color=cmap(i % 10),
                        lw=2.2 if m.startswith("jointnas") else 1.3, label=f"{m} ({len(runs)})")
            ax.set_yscale("log")
            ax.set_title(task)
            ax.set_xlabel("evaluations")
            ax.set_ylabel("median regret (accuracy points; 1e-3 = found)")
            ax.legend(loc="upper right", fontsize=7)
        for ax in list(axes.flat)[len(tasks):]:
            ax.set_visible(False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=110)
