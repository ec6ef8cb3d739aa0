"""An autotrain run's comparison in words: the searched recipe and the baseline trained alike
(same epochs, same data, the same seeds), both scored on the validation and test splits, the
difference and its spread over seeds, and which recipe the run returned. ``jointnas autotrain``
prints these lines and ``jointnas report`` shows them in the run's result."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from ..store import RunStore

KIND = "autotrain"   # the store's record of the comparison (jointnas.autotrain.compare)


def comparison_of(run_dir) -> Optional[dict]:
    """The run's last comparison record; None for a run without one (a coarse run)."""
    with RunStore.open(Path(run_dir)) as store:
        return (store.results(KIND) or [None])[-1]


def comparison_lines(record: dict) -> List[str]:
    """The comparison as lines: one per recipe (mean over seeds, each seed), the difference, the verdict."""
    seeds = record.get("seeds") or []
    lines = [f"autotrain: the searched recipe against the baseline ({record['baseline'].get('name')}), "
             f"both trained {record.get('epochs')} epochs on the same data with {len(seeds)} seed(s)"]
    for who in ("answer", "baseline"):
        runs = record[who].get("runs") or []
        label = "searched recipe" if who == "answer" else "baseline"
        lines.append(f"  {label:<15} test {_mean(record['test'], who)}, validation {_mean(record['validation'], who)}"
                     f"  (per seed test: {', '.join(_pct(r.get('test_score')) for r in runs)})")
    for split in ("test", "validation"):
        d = record[split]
        if d["difference"] is not None:
            spread = (f", spread over seeds {100 * d['spread']:.2f} points" if d["spread"] is not None
                      else " (one seed: no spread)")
            lines.append(f"  difference on {split}: {100 * d['difference']:+.2f} points{spread}")
    tau = record.get("predictor_tau")
    if tau is not None:
        lines.append(f"  the predictor's held-out Kendall tau at the end of the search: {tau:.2f}")
    lines.append(f"  {record['verdict']}")
    return lines


def autotrain_lines(run_dir) -> List[str]:
    """:func:`comparison_lines` of the run in ``run_dir``; no lines for a run without a comparison."""
    record = comparison_of(run_dir)
    return comparison_lines(record) if record else []


def _mean(d: dict, who: str) -> str:
    return _pct(d.get(who))


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"
