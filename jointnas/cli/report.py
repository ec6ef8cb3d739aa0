"""``jointnas report RUN_DIR``: a self-contained HTML page of a run's plots and tables."""
from __future__ import annotations

from pathlib import Path


def register(sub):
    p = sub.add_parser("report", help="write an HTML page with a run's plots (needs jointnas[report])",
                       description="Write a self-contained HTML page (PNG plots embedded) showing a run: its "
                       "config, measured accuracy vs FLOPs with the Pareto front and budget, the predictor's "
                       "held-out parity per iteration, the early-stop calibration, learning curves and the fine "
                       "search's top candidates; for a one-shot run, the op weights per edge over the epochs as heat maps, the "
                       "skip count per epoch, the supernet's curves and the derived cell. Works on a run that is "
                       "still going or was interrupted. Each "
                       "plot is also written as a PNG into FILE_plots/ beside the page.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="a run directory made by 'jointnas coarse' or 'jointnas oneshot'")
    p.add_argument("--out", type=Path, metavar="FILE.html", help="where to write the page "
                   "(default: RUN_DIR/report.html)")
    p.set_defaults(func=run)


def run(args):
    from ..report import build_report  # it loads the run store: the other commands (`jointnas fine`) start without it
    from ..report.oneshot import build_oneshot_report, is_oneshot_dir

    build = build_oneshot_report if is_oneshot_dir(args.run_dir) else build_report
    report = build(args.run_dir, args.out)
    line = f"wrote {report.html_path} ({len(report.plots)} plots in {report.html_path.stem}_plots/)"
    if report.missing:
        line += "; not available yet: " + ", ".join(sorted(report.missing))
    for result_line in report.result:
        print(result_line)
    print(line)
    return 0
