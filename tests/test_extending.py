"""README's "Extending jointnas", followed literally: its pyproject.toml, space file and three
plug-in modules (a surrogate, a fine strategy, a model family) become a package in a temporary
directory, installed with pip beside nothing global (--target, then PYTHONPATH); its bash block's
commands then run in subprocesses, so every registration reaches other processes through the
entry points alone."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from jointnas import catalog
from jointnas.cli import main
from jointnas.store import RunStore
from jointnas.surrogates.checkpoint import checkpoint_kind

REPO = Path(__file__).resolve().parents[1]
SECTION = re.search(r"^## Extending jointnas\n(.*?)^## ", (REPO / "README.md").read_text(), flags=re.S | re.M).group(1)
# What a tiny run adds to README's commands (few candidates, trials in the command's own process).
TINY = {"coarse": ["--pool", "64", "--batch", "4", "--iterations", "3", "--ensemble", "2", "--seed", "0",
                   "--executor", "serial", "--no-progress"],
        "fine": ["--population", "20", "--generations", "5"], "report": []}
# The user's objective (README: "an objective as in Python API above"): best near width 40, depth 2, lr 0.01.
OBJECTIVE = '''import math


def score(candidate, report):
    arch, lr = candidate.arch, candidate.recipe["lr"]
    best = 0.9 - ((arch["width"] - 40) / 64) ** 2 - 0.05 * (arch["depth"] - 2) ** 2 - 0.05 * (math.log10(lr) + 2) ** 2
    for epoch in range(1, int(candidate.recipe["epochs"]) + 1):
        report(epoch, best * epoch / (epoch + 1))
'''


def readme_files() -> dict:
    """Path -> text of each fenced block of the section whose first line is a comment naming its file."""
    blocks = re.findall(r"^```(?:python|toml|yaml)\n# (\S+)\n(.*?)^```", SECTION, flags=re.S | re.M)
    return {name: f"# {name}\n{body}" for name, body in blocks}


def readme_commands() -> list:
    block = re.search(r"^```bash\n(.*?)^```", SECTION, flags=re.S | re.M).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The README's package, pip-installed into a folder of its own: (work dir with the space file and
    objective, the commands' environment, that folder)."""
    root = tmp_path_factory.mktemp("extending")
    package, site, work = root / "my-plugins", root / "site", root / "work"
    files = readme_files()
    assert {"pyproject.toml", "tiny-mlp.yaml", "my_plugins/knn.py", "my_plugins/hill.py",
            "my_plugins/tiny_mlp.py"} <= set(files)
    for name, text in files.items():
        path = (work if name.endswith(".yaml") else package) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (package / "my_plugins" / "__init__.py").write_text("")
    (work / "my_objective.py").write_text(OBJECTIVE)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-cache-dir", "--no-index", "--target", str(site), str(package)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    assert (next(site.glob("my_plugins-*.dist-info")) / "entry_points.txt").is_file()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1")
    return work, env, site


def jointnas(argv, work, env):
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{shlex.join(argv)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_the_readme_plugins_drive_coarse_fine_and_report_in_other_processes(installed):
    work, env, _ = installed
    coarse, fine, report = readme_commands()
    assert [c[:2] for c in (coarse, fine, report)] == [["jointnas", "coarse"], ["jointnas", "fine"],
                                                       ["jointnas", "report"]]
    helps = jointnas(["jointnas", "coarse", "--help"], work, env) + jointnas(["jointnas", "fine", "--help"], work, env)
    assert "knn" in helps and "hill-climb" in helps

    log = jointnas(coarse + TINY["coarse"], work, env)
    assert re.search(r"^knn predictor: does not use the FLOPs/params", log, flags=re.M), log   # its own note
    run = work / coarse[coarse.index("--run") + 1]
    with RunStore.open(run) as store:
        trials = store.trials()
        assert store.config["surrogate"] == "knn" and len(trials) == 12 and store.counts() == {"done": 12}
        for t in trials:   # priced by the plug-in family's closed form
            sizes = [16] + [t.candidate.arch["width"]] * t.candidate.arch["depth"] + [4]
            assert t.flops == sum(a * b for a, b in zip(sizes, sizes[1:]))
    assert checkpoint_kind(run / "predictor.pt") == "knn"

    out = jointnas(fine + TINY["fine"], work, env)
    assert "fine search (hill-climb)" in out and "hill climbing, " in out, out
    assert "adaptive genetic search" not in out and "random search" not in out

    out = jointnas(report, work, env)
    missing = out.partition("not available yet: ")[2]
    assert "parity" not in missing and (run / "report_plots" / "parity.png").is_file(), out


def test_the_conformance_suite_checks_the_installed_plugins(installed):
    work, env, _ = installed
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "knn or hill-climb",
                           str(REPO / "tests" / "test_conformance.py")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and re.search(r"\b2 passed", proc.stdout), proc.stdout + proc.stderr


def test_entry_points_are_read_when_a_registry_is_first_listed_and_a_clash_is_refused(installed, monkeypatch, capsys):
    _, _, site = installed
    monkeypatch.syspath_prepend(str(site))   # as PYTHONPATH does for the commands above
    strategies = catalog.Registry("jointnas.strategies", {"random": "jointnas.fine.random:RandomSearch"})
    assert list(strategies) == ["hill-climb", "random"]
    assert catalog.resolve(strategies, "hill-climb", "fine strategy").label == "hill climbing"
    # A built-in name that the package also declares: every command refuses it, in one line.
    clash = catalog.Registry("jointnas.surrogates", {"knn": "jointnas.surrogates.forest:ForestSurrogate"})
    monkeypatch.setattr(catalog, "SURROGATES", clash)
    assert main(["coarse", "--help"]) == 2
    err = capsys.readouterr().err
    assert "my-plugins" in err and "'knn'" in err and err.count("\n") == 1, err
