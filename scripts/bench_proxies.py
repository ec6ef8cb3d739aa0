"""Benchmark: closed-form proxies on a whole pool vs. fvcore per model, side by side in one run.

Usage: python scripts/bench_proxies.py [--pool 20000] [--fvcore-models 20] [--seed 0] [--no-write]

Times ``count_costs`` on a ``--pool``-candidate fbnetv3 pool (cold block cache, then warm), times
fvcore (``count_cost_fvcore``) on ``--fvcore-models`` evenly spaced members of the same pool,
checks that both agree on those, and replaces the ``## Proxies`` section of BENCHMARKS.md.
"""
import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jointnas import count_cost_fvcore, count_costs, load_space, sample_pool
from jointnas.families.mbconv_cost import _block_cost

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nMeasured figures; each section names the command that produced it.\n"


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def write_section(text: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) the ``## Proxies`` section, leaving the other sections alone."""
    doc = path.read_text() if path.is_file() else HEADER
    pattern = re.compile(r"^## Proxies\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: text, doc, count=1)
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=20000, help="pool size (default 20000)")
    parser.add_argument("--fvcore-models", type=int, default=20, help="pool members timed with fvcore (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print the section instead of updating BENCHMARKS.md")
    args = parser.parse_args(argv)

    space = load_space("fbnetv3")
    load_before = load_average()
    t = time.perf_counter()
    pool = sample_pool(space, args.pool, seed=args.seed)
    sample_s = time.perf_counter() - t

    _block_cost.cache_clear()
    t = time.perf_counter()
    costs = count_costs(pool, space, progress=True)
    fast_cold_s = time.perf_counter() - t
    t = time.perf_counter()
    again = count_costs(pool, space)
    fast_warm_s = time.perf_counter() - t
    assert np.array_equal(costs, again)

    picks = np.linspace(0, len(pool) - 1, args.fvcore_models).round().astype(int)
    fvcore_times, mismatches = [], []
    for i in picks:
        t = time.perf_counter()
        ref = count_cost_fvcore(pool[i].arch, space)
        fvcore_times.append(time.perf_counter() - t)
        if (ref.flops, ref.params) != tuple(costs[i]):
            mismatches.append(int(i))
        print(f"fvcore {len(fvcore_times)}/{len(picks)}: {fvcore_times[-1]:.2f} s", file=sys.stderr)
    load_after = load_average()

    fast_per_model = fast_cold_s / len(pool)
    fvcore_per_model = float(np.mean(fvcore_times))
    ratio = fvcore_per_model / fast_per_model
    shared = float(load_before.split()[0]) > 0.5
    shared_note = ("Other jobs shared the cores, so absolute times (fvcore's especially) are slower and\n"
                   "noisier than on an idle machine." if shared else "No other work ran on the machine.")
    command = "python scripts/bench_proxies.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    section = f"""## Proxies

Command: `{command}` ({time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()},
{os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads).
Load average (1/5/15 min): {load_before} before and {load_after} after the run.
{shared_note}
The speed-up compares both paths measured in the same run.

| what | figure |
|---|---|
| pool | {len(pool)} fbnetv3 candidates, seed {args.seed} (sampling took {sample_s:.1f} s, not counted) |
| `count_costs`, cold block cache | {fast_cold_s:.2f} s for the pool = {fast_per_model * 1e6:.0f} us per model |
| `count_costs`, warm block cache | {fast_warm_s:.2f} s for the pool = {fast_warm_s / len(pool) * 1e6:.0f} us per model |
| fvcore `FlopCountAnalysis` + `parameter_count` | {len(picks)} evenly spaced pool members: {fvcore_per_model:.2f} s per model (min {min(fvcore_times):.2f}, max {max(fvcore_times):.2f}) |
| speed-up (fvcore / cold fast path, per model) | {ratio:,.0f}x |
| fvcore for the whole pool, extrapolated | {fvcore_per_model * len(pool) / 3600:.1f} h |
| agreement on the fvcore-timed members | {len(picks) - len(mismatches)}/{len(picks)} identical (FLOPs and params) |

Exactness is asserted in `tests/test_proxies.py` (7 presets and 50 pool members at on- and off-grid
resolutions, fvcore vs. fast path).
"""
    if mismatches:
        print(f"fast path disagrees with fvcore on pool members {mismatches}", file=sys.stderr)
    if args.no_write:
        print(section)
    else:
        write_section(section)
        print(section)
        print(f"updated {BENCHMARKS}", file=sys.stderr)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
