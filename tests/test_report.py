"""``jointnas report``: pages built from a small real coarse run, from partial runs, and bad input.

The real run uses a toy 3-stage space (built below) so that its trials train in seconds on
digits; everything else (pool, proxies, predictor, calibration, fine search) is the real code.
"""
import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("matplotlib")

from jointnas.cli import main  # noqa: E402
from jointnas.report import build_report  # noqa: E402
from jointnas.report.plots import PLOT_NAMES  # noqa: E402
from jointnas.report.view import RunView, pareto_front, parity_data  # noqa: E402
from jointnas.store import RunStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BUDGET_MFLOPS = 45


def toy_space_doc() -> dict:
    dim = {"int": lambda lo, hi, step=1: {"type": "int", "low": lo, "high": hi, "step": step},
           "cat": lambda *c: {"type": "categorical", "choices": list(c)}}
    arch = {"resolution": dim["int"](224, 256, 16), "stem_channels": dim["int"](8, 16, 8)}
    for i, (lo, hi) in enumerate([(8, 16), (16, 24), (24, 32)]):
        arch.update({f"s{i}_channels": dim["int"](lo, hi, 8), f"s{i}_depth": dim["int"](1, 2),
                     f"s{i}_kernel": dim["cat"](3, 5), f"s{i}_expansion": dim["int"](1, 3),
                     f"s{i}_kernel_rep": dim["cat"](3, 5), f"s{i}_expansion_rep": dim["int"](1, 3),
                     f"s{i}_se": {"type": "bool"}, f"s{i}_act": dim["cat"]("hswish", "relu")})
    recipe = {"optimizer": dim["cat"]("sgd", "adamw"), "lr": {"type": "float", "low": 1e-3, "high": 0.05, "log": True},
              "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-4, "log": True},
              "label_smoothing": {"type": "float", "low": 0.0, "high": 0.1},
              "mixup_alpha": {"type": "float", "low": 0.0, "high": 0.2},
              "dropout": {"type": "float", "low": 0.0, "high": 0.2},
              "stochastic_depth": {"type": "float", "low": 0.0, "high": 0.1}, "ema": {"type": "bool"},
              "epochs": dim["int"](6, 10, 2), "warmup_epochs": dim["int"](0, 1)}
    return {"name": "toy", "description": "3-stage toy space for fast report tests",
            "deploy": {"in_channels": 3, "num_classes": 1000, "reference_resolution": 224},
            "network": {"stage_strides": [1, 2, 2], "stem_stride": 2, "head_expansion": 2, "head_channels": 64},
            "arch": arch, "recipe": recipe}


def jointnas_cli(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "jointnas", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"jointnas {args[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="session")
def real_run(tmp_path_factory):
    """A finished coarse run (2 iterations of 4 candidates, 2 epochs each) plus a fine search on it.
    Two workers of one thread each: on a busy 2-core machine that is several times faster than
    one worker with two threads."""
    root = tmp_path_factory.mktemp("report_run")
    space = root / "toy.yaml"
    space.write_text(yaml.safe_dump(toy_space_doc(), sort_keys=False))
    run = root / "run"
    jointnas_cli("coarse", "--run", run, "--space", space, "--pool", 64, "--batch", 4, "--iterations", 2,
                 "--epoch-cap", 2, "--budget", f"{BUDGET_MFLOPS}MFLOPs", "--ensemble", 2, "--workers", 2,
                 "--no-progress")
    jointnas_cli("fine", "--run", run, "--budget", f"{BUDGET_MFLOPS}MFLOPs", "--population", 8,
                 "--generations", 3, "--top-k", 3, "--no-progress")
    return run


def decoded_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] >= 200 and image.shape[1] >= 200, image.shape
    assert float(image[..., :3].std()) > 0.01, f"{path} is blank"
    return image


def assert_page_shows(html: str, out: Path, plots: dict) -> None:
    for name, path in plots.items():
        rel = os.path.relpath(path, out.parent)
        assert f"href='{rel}'" in html, f"the page does not link {rel}"
        assert base64.b64encode(path.read_bytes()).decode() in html, f"the page does not embed {name}.png"
    assert html.count("data:image/png;base64,") == len(plots)


def test_report_of_a_real_run_has_every_plot(real_run, tmp_path, capsys):
    out = tmp_path / "pages" / "run.html"
    assert main(["report", str(real_run), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    plot_dir = tmp_path / "pages" / "run_plots"
    plots = {name: plot_dir / f"{name}.png" for name in PLOT_NAMES}
    assert sorted(p.name for p in plot_dir.iterdir()) == sorted(p.name for p in plots.values())
    for path in plots.values():
        decoded_png(path)
    html = out.read_text()
    assert_page_shows(html, out, plots)
    assert "Not available" not in html
    with RunStore.open(real_run) as store:
        config, counts = store.config, store.counts()
        fine = store.results("fine")[-1]
    for text in (config["space"], config["evaluator"], f"{config['pool']} Sobol samples", f"<td>{config['seed']}</td>",
                 f"≤ {BUDGET_MFLOPS:.1f} MFLOPs", "1 multiply-add = 1 flop", "cpu ("):
        assert text in html, text
    assert "trials: " + ", ".join(f"{n} {status}" for status, n in counts.items()) in html
    for entry in fine["top"]:  # the fine search's top-k table, with predicted accuracy ± spread
        assert f"{100 * entry['predicted_acc']:.1f}% ± {100 * entry['predicted_std']:.1f}" in html
        assert entry["key"] in html


def test_parity_agrees_with_the_runs_own_next_batch_check(real_run):
    view = RunView.read(real_run)
    data, notes = parity_data(view)
    # Predictor 1 is checked on iteration 2's batch; predictor 2 has no later batch.
    assert [p.iteration for p in data] == [1]
    assert len(notes) == 1 and "iteration 2" in notes[0]
    parity = data[0]
    second = [t for t in view.trials if t.iteration == 2 and t.status in ("done", "diverged")]
    assert len(parity.measured) == len(second)
    recorded = {e["iteration"]: e for e in view.predictor_evals}
    assert parity.metrics["kendall_tau"] == pytest.approx(recorded[2]["next_batch_tau"], abs=1e-6)
    assert np.all(parity.spread >= 0) and np.all((parity.predicted > -0.5) & (parity.predicted < 1.5))


def test_report_of_a_partial_run(real_run, tmp_path):
    """A run that stopped during iteration 1: some trials measured, one running, no calibration, no predictor."""
    with RunStore.open(real_run) as full:
        config, first = full.config, full.trials(iteration=1)
    run = tmp_path / "partial"
    with RunStore.create(run, config) as store:
        ids = store.add_trials(1, [(t.pool_index, t.candidate, t.flops, t.params) for t in first])
        for trial_id, trial in zip(ids[:2], first):
            store.mark_running(trial_id)
            store.record_result(trial_id, {"status": trial.status, "curve": trial.curve, "final_acc": trial.final_acc,
                                           "epochs_run": trial.epochs_run, "device": trial.device,
                                           "wall_time": trial.wall_time})
        store.mark_running(ids[2])
    out = tmp_path / "report.html"
    # An earlier full report at the same place: its parity/calibration PNGs must not outlive it.
    build_report(real_run, out)
    report = build_report(run, out)
    assert sorted(report.plots) == ["accuracy_vs_flops", "learning_curves"]
    assert sorted(report.missing) == ["calibration", "parity"]
    assert "2 of 4 finished" in report.missing["calibration"]
    assert sorted(p.name for p in (tmp_path / "report_plots").iterdir()) == \
        ["accuracy_vs_flops.png", "learning_curves.png"]
    for path in report.plots.values():
        decoded_png(path)
    html = out.read_text()
    assert_page_shows(html, out, report.plots)
    assert html.count("Not available yet:") == 3  # parity, calibration, fine search
    assert "not retrained yet" in html.split("id='result'")[1].split("</table>")[0]  # a provisional winner
    assert "still going or was interrupted (2 trials not finished)" in html


def test_report_of_a_run_without_trials(tmp_path, capsys):
    run = tmp_path / "fresh"
    RunStore.create(run, {"space": "fbnetv3", "data": "digits", "pool": 100, "seed": 3, "budget": None}).close()
    assert main(["report", str(run)]) == 0
    assert "not available yet: accuracy_vs_flops, calibration, learning_curves, parity" in capsys.readouterr().out
    html = (run / "report.html").read_text()
    assert "data:image/png" not in html and html.count("Not available yet:") == 7
    assert "none (every pool candidate allowed)" in html and "not sampled yet" in html
    assert list((run / "report_plots").iterdir()) == []


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        flops = rng.integers(1, 30, size=25).astype(float)
        acc = rng.random(25).round(2)
        dominated = {i for i in range(25) for j in range(25)
                     if flops[j] <= flops[i] and acc[j] >= acc[i] and (flops[j], acc[j]) != (flops[i], acc[i])}
        front = pareto_front(flops, acc)
        undominated = {i for i in range(25) if i not in dominated}
        # Exact duplicates count once; every front point is undominated and every undominated value is on it.
        assert set(front) <= undominated
        assert {(flops[i], acc[i]) for i in front} == {(flops[i], acc[i]) for i in undominated}
        assert list(flops[front]) == sorted(flops[front])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_not_a_run_is_one_line_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert re.match(r"jointnas report: error: .* is not a jointnas run \(no run\.db in it\)\n$", one_line_error(capsys))
    assert main(["report", str(tmp_path / "absent")]) == 2
    one_line_error(capsys)


def test_out_that_is_a_directory_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    RunStore.create(run, {"space": "fbnetv3", "data": "digits", "pool": 10, "seed": 0}).close()
    assert main(["report", str(run), "--out", str(tmp_path)]) == 2
    assert "is a directory" in one_line_error(capsys)


def test_missing_matplotlib_names_the_extra(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    RunStore.create(run, {"space": "fbnetv3", "data": "digits", "pool": 10, "seed": 0}).close()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["report", str(run)]) == 2
    assert "pip install 'jointnas[report]'" in one_line_error(capsys)
    assert not (run / "report.html").exists()


# --------------------------------------------------------------------------- one fidelity, layout, legend
def _run_with_curves(real_run, tmp_path, curves_by_trial, chosen_epoch):
    """A copy of ``real_run``'s first trials with the given curves and calibration epoch."""
    with RunStore.open(real_run) as full:
        config, trials = full.config, full.trials()
    run = tmp_path / "crafted"
    with RunStore.create(run, config) as store:
        store.save_result("calibration", {"chosen_epoch": chosen_epoch, "reached": True, "epochs": [1, 2],
                                          "correlation": [0.5, 1.0], "threshold": 0.7, "full_epochs": 2})
        for (iteration, curve), t in zip(curves_by_trial, trials):
            (trial_id,) = store.add_trials(iteration, [(t.pool_index, t.candidate, t.flops, t.params)])
            store.mark_running(trial_id)
            store.record_result(trial_id, {"status": "done", "curve": [
                {"epoch": e + 1, "val_acc": a, "val_loss": 1.0, "train_loss": 1.0} for e, a in enumerate(curve)],
                "final_acc": curve[-1], "epochs_run": len(curve), "device": "cpu", "wall_time": 1.0})
    return run


def test_report_ranks_and_plots_every_trial_at_the_calibrated_epoch(real_run, tmp_path):
    from jointnas.report.view import accuracy_vs_flops

    # Trial 1 ran 3 epochs (first batch) and ends highest, but at the calibrated epoch 1 it is below trial 2.
    run = _run_with_curves(real_run, tmp_path, [(1, [0.30, 0.60, 0.95]), (2, [0.50]), (2, [0.40])], chosen_epoch=1)
    view = RunView.read(run)
    assert [(t.id, s) for t, s in view.ranked()] == [(2, 0.50), (3, 0.40), (1, 0.30)]
    trials, _, acc = accuracy_vs_flops(view)
    assert [t.id for t in trials] == [2, 3, 1] and list(acc) == [0.50, 0.40, 0.30]
    report = build_report(run, tmp_path / "r.html")
    html = report.html_path.read_text()
    assert "ranked by validation accuracy at epoch 1, the run&#x27;s calibrated early stop" in html
    table = html.split("Best measured candidates")[1]
    assert table.index("<tr class='winner'><td>2 ★ winner</td>") < table.index("<tr><td>3</td>") \
        < table.index("<tr><td>1</td>")


def test_learning_curve_legend_lists_only_iterations_that_draw_something(real_run, tmp_path):
    from jointnas.report.plots import Plotter, plot_learning_curves

    run = _run_with_curves(real_run, tmp_path, [(1, [0.3, 0.6]), (1, [0.2, 0.5]), (2, [0.4])], chosen_epoch=1)
    mpl = Plotter()
    with mpl.style():
        sec = plot_learning_curves(RunView.read(run), mpl)
    # Trial 3 (iteration 2) is the best at epoch 1, so the winner, drawn in black: iteration 2 draws nothing else.
    assert [x for x in sec.legend if x.startswith("iteration")] == ["iteration 1"]
    assert "winner: trial 3 (40.0% at epoch 1)" in sec.legend


def test_every_plot_fits_in_its_figure(real_run, monkeypatch):
    import jointnas.report.plots as report
    from jointnas.report.plots import Plotter
    from jointnas.report.view import Parity

    mpl = Plotter()
    view = RunView.read(real_run)
    rng = np.random.default_rng(0)
    many = [Parity(k, rng.random(9), rng.random(9) * 1.2 - 0.1, rng.random(9) * 0.3,
                   {"kendall_tau": -0.333, "spearman_rho": 0.123, "mae": 0.2456}) for k in range(1, 6)]
    with mpl.style():
        sections = [plot(view, mpl) for plot in (report.plot_accuracy_vs_flops, report.plot_parity,
                                                 report.plot_calibration, report.plot_learning_curves)]
        monkeypatch.setattr(report, "parity_data", lambda view: (many, []))
        sections.append(report.plot_parity(view, mpl))  # five panels on two rows
        fig, axes = mpl.figure(2, 2)
        axes[0, 0].set_title("a title far too long for a figure two inches wide " * 2)
        assert report.texts_outside(fig)  # the check sees what a PNG would cut off
    for sec in sections:
        assert sec.png is not None and sec.clipped == () and sec.cut == (), (sec.name, sec.clipped, sec.cut)


def test_an_unwritable_report_file_is_refused_before_drawing(real_run, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["report", str(real_run), "--out", str(tmp_path / "file" / "r.html")]) == 2
    assert "is a file" in one_line_error(capsys)


# --------------------------------------------------------------------------- one winner, the Result block
def _result_lines(html: str) -> list:
    """The Result block's lines as a reader sees them: one per row label and per <br>-separated line."""
    import html as html_lib

    block = html.split("<h2 id='result'>Result</h2>")[1].split("<h2")[0]
    text = re.sub(r"<br>|</th>|</tr>|</p>", "\n", block)
    return [html_lib.unescape(line).strip() for line in re.sub(r"<[^>]+>", "", text).split("\n") if line.strip()]


def _winner_marks(report) -> dict:
    """Which trial each part of a written report marks as the winner."""
    from jointnas.report.plots import Plotter, plot_accuracy_vs_flops, plot_learning_curves

    html = report.html_path.read_text()
    view, mpl = RunView.read(Path(re.search(r"<h1>jointnas run <code>(.*?)</code>", html).group(1)).resolve()), Plotter()
    with mpl.style():
        flops, curves = plot_accuracy_vs_flops(view, mpl), plot_learning_curves(view, mpl)
    first = lambda pattern, texts: {int(m.group(1)) for t in texts for m in [re.match(pattern, t)] if m}  # noqa: E731
    return {"result": first(r"trial (\d+) of iteration", _result_lines(html)),
            "table": {int(n) for n in re.findall(r"<tr class='winner'><td>(\d+) ★ winner</td>", html)},
            "flops plot": first(r"winner: trial (\d+)$", flops.legend),
            "curves plot": first(r"winner: trial (\d+) ", curves.legend)}


def test_every_part_of_the_report_marks_the_summarys_winner(real_run, tmp_path):
    from jointnas.coarse.run import CoarseRun
    from jointnas.coarse.summary import summary

    with CoarseRun.open(real_run) as run:
        final = summary(run)["final"]
    assert final is not None  # the real run's result stage retrained its winner
    marks = _winner_marks(build_report(real_run, tmp_path / "r.html"))
    assert marks == {part: {final["trial"]} for part in marks}, marks


def test_the_stored_result_names_the_winner_even_when_the_ranking_puts_another_first(real_run, tmp_path):
    # Trial 2 is first at the calibrated epoch; the result stage (e.g. by extrapolation) retrained trial 1.
    run = _run_with_curves(real_run, tmp_path, [(1, [0.30, 0.60]), (2, [0.50, 0.70]), (2, [0.20, 0.40])],
                           chosen_epoch=2)
    with RunStore.open(run) as store:
        trial = store.trials()[0]
        store.save_result("final", {"trial": trial.id, "key": trial.key, "expected_final": 0.91,
                                    "chosen_by": "extrapolated from the score at epoch 2; held-out tau 0.7",
                                    "predicted": 0.55, "searched_score": 0.60, "fidelity_label": "full", "epoch": 2,
                                    "winner": {"status": "done", "epochs": 8, "final_acc": 0.93, "test_score": 0.92}})
    assert RunView.read(run).ranked()[0][0].id == 2
    report = build_report(run, tmp_path / "r.html")
    marks = _winner_marks(report)
    assert marks == {part: {trial.id} for part in marks}, marks
    lines = _result_lines(report.html_path.read_text())
    assert "at the end of its schedule: extrapolated 91.00 %; measured validation 93.00 % after 8 epochs" in lines
    at = lines.index("at epoch 2: measured 60.00 %")  # the predictions of that score follow it
    assert lines[at + 1] == "the run's last predictor (fitted on this measurement too) gives 55.00 %"
    assert "test 92.00 %, validation 93.00 %" in lines


def test_result_block_is_at_the_top_in_short_lines(real_run, tmp_path):
    html = build_report(real_run, tmp_path / "r.html").html_path.read_text()
    assert "<pre" not in html
    assert html.index("<h2 id='result'>Result</h2>") < html.index("<h2>Run configuration</h2>") \
        < html.index("<h2>Trials</h2>")
    lines = _result_lines(html)
    for label in ("Winner", "Why it won", "Winner measured", "Baseline", "Predicted vs measured", "Weights"):
        assert label in lines, label
    assert all(len(line) <= 120 for line in lines), max(lines, key=len)
    weights = real_run / "winner" / "weights.pt"
    assert weights.is_file() and str(weights) in lines
    assert f"model, candidate = jointnas.catalog.load_trained({str(weights.parent)!r})" in lines
    assert "none (the space has no preset)" in lines  # the toy space has no preset to train as a baseline


def test_config_table_shows_values_not_python_reprs(real_run, tmp_path):
    from jointnas.report.view import human

    with RunStore.open(real_run) as full:
        config = dict(full.config, baseline=None, fidelities=[], first_batch=None, final=True,
                      evaluator_options={"data_root": None, "train_subset": None, "extra": {"a": 1, "b": []}})
    run = tmp_path / "odd"
    RunStore.create(run, config).close()
    html = build_report(run, tmp_path / "r.html").html_path.read_text()
    table = html.split("<h2>Run configuration</h2>")[1].split("</table>")[0]
    cells = re.findall(r"<td>(.*?)</td>", table, re.S)
    for repr_text in ("None", "[]", "{", "True", "False"):
        assert not any(repr_text in c for c in cells), (repr_text, cells)
    assert "<td>baseline</td><td>the space&#x27;s first preset</td>" in table  # not "None" above a result
    assert human(config["evaluator_options"]) == "data_root: not set\ntrain_subset: not set\nextra:\n  a: 1\n  b: none"


def test_baseline_row_names_the_preset_the_result_stage_trains(tmp_path):
    from jointnas.report.page import config_rows

    view = RunView(run_dir=tmp_path, config={"baseline": None}, trials=[], calibration=None, predictor_evals=[],
                   predictors=[], fine=None, space=__import__("jointnas.catalog", fromlist=["x"]).load_space("fbnetv3"))
    assert dict(config_rows(view))["baseline"] == "FBNetV3_A (the space's first preset)"


def test_parity_axes_hold_every_bar_and_stop_near_the_score_bounds(real_run, monkeypatch):
    import jointnas.report.plots as report
    from jointnas.report.view import Parity, parity_bars, parity_limits

    # Spreads reaching past 100 % and below 0 %: bars are cut at the bounds, and the axes hold them.
    p = Parity(1, np.array([0.85, 0.9, 0.95, 0.3]), np.array([0.8, 0.75, 0.9, 0.1]), np.array([0.3, 0.1, 0.25, 0.2]),
               {"kendall_tau": 0.5, "spearman_rho": 0.6, "mae": 0.1})
    low, high = parity_bars(p, (0.0, 1.0))
    lo, hi = parity_limits(p, low, high)
    assert np.all(low <= p.predicted) and np.all(p.predicted <= high) and high.max() == 1.0 and low.min() == 0.0
    assert lo <= min(low.min(), p.measured.min()) and hi >= max(high.max(), p.measured.max())
    assert -0.05 < lo and hi < 1.05
    mpl = report.Plotter()
    monkeypatch.setattr(report, "parity_data", lambda view: ([p], []))
    with mpl.style():
        sec = report.plot_parity(RunView.read(real_run), mpl)
        fig, axes = mpl.figure(3, 3)
        axes[0, 0].errorbar([0.5], [0.5], yerr=[0.7])
        axes[0, 0].set_ylim(0, 1)
        assert report.marks_outside(fig)  # the check sees a bar the frame cuts off
    assert sec.cut == () and sec.clipped == ()


def test_calibration_says_when_its_last_epoch_is_the_final_score(real_run):
    from jointnas.report.plots import Plotter, plot_calibration

    view = RunView.read(real_run)
    assert view.calibration["epochs"][-1] == view.calibration["full_epochs"] == 2  # every trial capped at 2 epochs
    mpl = Plotter()
    with mpl.style():
        sec = plot_calibration(view, mpl)
    assert "the final score itself: 1 by construction" in sec.legend
    assert "epoch 2 is the final score and its correlation is 1 by construction" in sec.caption


def test_a_held_out_prediction_is_labelled_held_out_with_its_interval(real_run, tmp_path):
    # Runs made since the result stage stores the winner's out-of-fold prediction say so; the page
    # must not call it the refit predictor's (which had seen the trial).
    run = _run_with_curves(real_run, tmp_path, [(1, [0.30, 0.60]), (2, [0.50, 0.70])], chosen_epoch=2)
    with RunStore.open(run) as store:
        trial = store.trials()[0]
        store.save_result("final", {"trial": trial.id, "key": trial.key, "expected_final": None,
                                    "chosen_by": "the ranking", "predicted": 0.55,
                                    "predicted_interval": [0.41, 0.69, 0.8],
                                    "predicted_how": "k-fold out-of-fold", "searched_score": 0.60,
                                    "fidelity_label": "full", "epoch": 2,
                                    "winner": {"status": "done", "epochs": 8, "final_acc": 0.93, "test_score": 0.92}})
    lines = _result_lines(build_report(run, tmp_path / "r.html").html_path.read_text())
    at = lines.index("at epoch 2: measured 60.00 %")
    assert lines[at + 1] == "held out (the predictor fitted without it) expected 55.00 %, 80 % interval 41.00 % to 69.00 %"
    assert not any("fitted on this measurement too" in line for line in lines)
