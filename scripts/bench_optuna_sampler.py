"""JointNASSampler against Optuna's own samplers on the recorded tables (issue 26, item 3).

The protocol, the tables and the report are scripts/bench_search.py's (needs the ``bench``
extra): every evaluation answers ONE seed's recorded value drawn at random, a repeat searches
the whole table for at most ``--cap`` evaluations, and counts the evaluations until a top-1 %
(top-0.1 %) configuration by the mean over seeds is evaluated, and the search's own ms per
suggestion (everything but the evaluations: Optuna's study, the sampler). Each method is an
Optuna study driven by ask/tell with the same parameters (op names categorical, HPOBench grids
an integer index):

- ``optuna-jointnas``: ``JointNASSampler(seed=...)`` with its defaults;
- ``optuna-tpe``: ``TPESampler(seed=...)`` (Optuna 5's default: multivariate);
- ``optuna-gp``: ``GPSampler(seed=...)``.

    flock /tmp/jointnas-heavy.lock python scripts/bench_optuna_sampler.py --repeats 10 \\
        --methods optuna-jointnas optuna-tpe --stop-at-top01 --out benchmarks/optuna-sampler.jsonl
    python scripts/bench_optuna_sampler.py --report benchmarks/optuna-sampler.jsonl

Every other flag is bench_search.py's; results are appended per repeat (a killed run resumes).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_search  # noqa: E402


def run_jointnas_sampler(table, ev, seed, cap=None, **options):
    """``JointNASSampler(seed=seed, **options)`` in an ask/tell study over the table's columns."""
    import optuna

    from jointnas.integrations.optuna import JointNASSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=JointNASSampler(seed=seed, **options))
    while True:
        trial = study.ask()
        study.tell(trial, ev(bench_search.row_of_indices(table, bench_search._optuna_params(trial, table))))


def _import_everything() -> None:
    """Imports are not a search's time: every method's are done before any repeat starts (GPSampler's torch too)."""
    import optuna  # noqa: F401
    import sklearn.tree  # noqa: F401
    import torch  # noqa: F401

    import jointnas.coarse.policies  # noqa: F401
    import jointnas.integrations.optuna  # noqa: F401
    import jointnas.surrogates.forest  # noqa: F401


bench_search.METHODS["optuna-jointnas"] = (run_jointnas_sampler, {})
METHODS = ["optuna-jointnas", "optuna-tpe", "optuna-gp"]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--methods" not in argv and "--report" not in argv:
        argv += ["--methods", *METHODS]
    if "--report" not in argv:
        _import_everything()
    return bench_search.main(argv)


if __name__ == "__main__":
    sys.exit(main())
