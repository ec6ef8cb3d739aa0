"""``jointnas fine --pareto``: the front of predicted accuracy against FLOPs (or params) in one
search, as a table, a plot and JSON (:func:`jointnas.fine.pareto.pareto_search`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from ..errors import UsageError
from ..fine.pareto import pareto_search
from ..io import FLOPS_NOTE, FLOPS_NOTE_SHORT
from .fine_output import write_outputs

INSTALL_HINT = "pip install 'jointnas[report]'"


def check(args) -> None:
    """Refuse what does not go with --pareto, before any search."""
    if args.strategy != "evolution":
        raise UsageError(f"--pareto runs its own multi-objective search (NSGA-II); drop --strategy {args.strategy}")


def run(args, settings, budget, predictor, space, seeds, source: dict, store) -> int:
    try:
        check(args)
        if space.family is None:
            raise UsageError(f"--pareto: space {space.name} has no model family, so its candidates have no FLOPs or "
                             "params to draw a front against; drop --pareto (without --budget, fine ranks it by predicted accuracy alone)")
        progress = not args.no_progress and sys.stderr.isatty()
        result = pareto_search(predictor, space, objective=args.pareto, budget=budget, seeds=seeds,
                               settings=settings, progress=progress)
        payload = dict(result.to_dict(), space=space.name, **source, measured_seeds=result.seeded)
        if store is not None:
            store.save_result("fine-pareto", payload)
        run_dir = Path(source["run"]) if "run" in source else None
    finally:
        if store is not None:
            store.close()
    dirs = write_outputs(args, payload, result.members, space, context=dict(
        source, space=space.name, budget=payload["budget"], seed=settings.seed, pareto=args.pareto))
    if dirs:
        sys.stderr.write(f"exported members {result.names[0]}-{result.names[-1]} to {args.export}/ as rank1-"
                         f"rank{len(dirs)}, cheapest first (train one with: jointnas train --candidate "
                         f"{dirs[0] / 'candidate.json'} --data ...)\n")
    plot = plot_path(args, run_dir)
    if plot is None:
        sys.stderr.write("no plot drawn: pass --out FILE.json (or --export DIR) to draw the front beside it\n")
    else:
        try:
            draw(result, plot)
            sys.stderr.write(f"drew the front: {plot}\n")
        except UsageError as e:
            sys.stderr.write(f"no plot drawn: {e}\n")
    print(json.dumps(payload, indent=2, sort_keys=True) if args.json else format_table(result, source))
    return 0


def plot_path(args, run_dir: Optional[Path]) -> Optional[Path]:
    """Beside --out's JSON, else in --export's folder, else in the run's folder."""
    if args.out is not None:
        return args.out.with_name(args.out.stem + "-front.png")
    if args.export is not None:
        return args.export / "front.png"
    if run_dir is not None:
        return run_dir / "pareto-front.png"
    return None


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _cost_label(objective: str) -> str:
    return f"MFLOPs ({FLOPS_NOTE_SHORT})" if objective == "flops" else "M params"


def format_table(result, source: dict) -> str:
    axis = f"FLOPs ({FLOPS_NOTE})" if result.objective == "flops" else "params"
    risk = result.settings.risk
    front = result.front
    lo, hi = result.cost(front[0]), result.cost(front[-1])
    unit = (lambda v: f"{v / 1e6:.1f} MFLOPs") if result.objective == "flops" else (lambda v: f"{v / 1e6:.2f} M params")
    seeded = f", {result.seeded} of the run's measured candidates seeded" if "run" in source else ""
    lines = [f"Pareto fine search: predicted accuracy against {axis}; predictor {source['predictor']}",
             f"NSGA-II, {result.generations} generations, {result.scored} candidates scored in "
             f"{result.wall_time:.2f} s ({result.scored_per_second:.0f}/s){seeded}; {result.stop_reason}",
             f"front: {_n(len(front), 'non-dominated candidate')} from {unit(lo)} to {unit(hi)} (hypervolume "
             f"{result.hypervolume:.4f} of log cost x score); "
             + (f"score = predicted mean - {risk:g} x spread" if risk else "score = predicted mean"),
             f"{_n(len(result.members), 'member')} spread evenly in log cost along it, cheapest first; every FLOPs and "
             "params figure is the exact count of the member's deployable model"]
    if result.budget is not None:
        lines.append(f"capped by budget {result.budget.describe()}")
    if len(front) == 1:
        lines.append("the front is one candidate: the predictor scores the cheapest reached as high as any dearer one")
    lines.append("")
    members = result.members
    res = "resolution" in members[0].candidate.arch
    header = ["member", "pred acc", "± spread", "score", "MFLOPs", "M params"] + (["res"] if res else []) + ["key"]
    rows = []
    for name, s in zip(result.names, members):
        row = [name, f"{100 * s.mean:.2f}%", f"{100 * s.std:.2f}", f"{s.score:.4f}", f"{s.flops / 1e6:.1f}",
               f"{s.params / 1e6:.2f}"]
        rows.append(row + ([str(s.candidate.arch["resolution"])] if res else []) + [s.candidate.key()])
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def draw(result, path: Path) -> None:
    """The front as a step line, its members as labelled points with the predictor's spread."""
    from ..report.plots import Plotter  # matplotlib, the optional extra: imported only to draw

    try:
        plotter = Plotter()
    except UsageError:
        raise UsageError(f"matplotlib is not installed; {INSTALL_HINT}") from None
    with plotter.style():
        fig, axes = plotter.figure(6.4, 4.2)
        ax = axes[0, 0]
        x = [result.cost(s) / 1e6 for s in result.front]
        ax.step(x, [s.mean for s in result.front], where="post", color="0.6", lw=1,
                label=f"front ({len(result.front)} candidates)")
        mx = [result.cost(s) / 1e6 for s in result.members]
        ax.errorbar(mx, [s.mean for s in result.members], yerr=[s.std for s in result.members], fmt="o",
                    color="tab:blue", capsize=3, label="members (± ensemble spread)")
        for name, xi, s in zip(result.names, mx, result.members):
            ax.annotate(name, (xi, s.mean), textcoords="offset points", xytext=(4, -12))
        ax.set_xscale("log")
        from matplotlib.ticker import FuncFormatter  # Plotter has imported matplotlib by now

        for axis in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
            axis(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(_cost_label(result.objective))
        ax.set_ylabel("predicted accuracy")
        ax.yaxis.set_major_formatter(plotter.percent())
        ax.set_title("Predicted accuracy against " + ("FLOPs" if result.objective == "flops" else "params"))
        ax.legend(loc="lower right")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
