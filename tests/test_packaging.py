"""The wheel is self-contained (issue 26, item 1): built from a copy of the source tree (through its
sdist), installed outside it (``pip install --target``, the ``--user`` scheme, editable) and used
from another directory where the source tree is not importable, it finds the ``fbnetv3`` space,
the shipped predictor, the coarse warm-start pairs and every file of the source tree's spaces/,
predictors/, recipes/ and data/ folders (each folder's top-level files: new recipes are covered as
they come). Runs and predictor checkpoints record the jointnas version."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import jointnas
from jointnas.shipped import KINDS

REPO = Path(__file__).resolve().parents[1]

# Run in the installed jointnas, from a directory outside the source tree: what it finds, as JSON.
CHECK = r"""
import argparse, json, sys
import jointnas
from jointnas.catalog import load_scorer, load_space
from jointnas.cli.coarse import _prior_pairs
from jointnas.cli.fine import shipped_predictor
from jointnas.shipped import KINDS, folder

space = load_space("fbnetv3")
predictor = shipped_predictor("fbnetv3")
load_scorer(predictor)  # the checkpoint is intact and scores the space it names
print(json.dumps({
    "package": jointnas.__file__,
    "space": space.name,
    "predictor": str(predictor),
    "pairs": _prior_pairs(argparse.Namespace(prior_pairs=None), space, {}),
    "files": {k: sorted(p.name for p in folder(k).iterdir()) if folder(k).is_dir() else [] for k in KINDS},
}))
"""


def shipped_in_source() -> dict:
    """Each shipped folder's top-level files in the source tree (what setup.py puts in the wheel)."""
    return {k: sorted(p.name for p in (REPO / k).iterdir() if p.is_file() and not p.name.startswith("."))
            if (REPO / k).is_dir() else [] for k in KINDS}


def _pip(*args, cwd=None):
    env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of what a source checkout builds from (the repository's own tree stays untouched:
    no build/ or egg-info left in it, no stale build/ in the wheel)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "jointnas", src / "jointnas", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for kind, names in shipped_in_source().items():  # their top-level files: not data/cache/
        for name in names:
            (src / kind).mkdir(exist_ok=True)
            shutil.copy2(REPO / kind / name, src / kind / name)
    return src


@pytest.fixture(scope="module")
def built(source, tmp_path_factory):
    """(the wheel, the build's output). Built as `python -m build` does: an sdist first, the wheel from
    it, so that a file the sdist leaves out is missing from the wheel too."""
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                           "build_meta.build_sdist(sys.argv[1])", str(dist)], capture_output=True, text=True,
                          cwd=source, env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    sdist = next(dist.glob("jointnas-*.tar.gz"))
    log = proc.stdout + proc.stderr + _pip("wheel", "-v", "--no-deps", "--no-build-isolation", "--no-index",
                                           "-w", str(dist), str(sdist))
    wheels = list(dist.glob("jointnas-*.whl"))
    assert len(wheels) == 1, log[-3000:]
    return wheels[0], log


def _check(python, cwd, env) -> dict:
    """The CHECK script's findings, run by ``python`` in ``cwd`` with exactly ``env``'s PYTHONPATH."""
    env = dict(env, OMP_NUM_THREADS="1")
    proc = subprocess.run([python, "-c", CHECK], capture_output=True, text=True, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONUSERBASE")}
    return dict(env, **extra)


def _assert_found_inside(found: dict, root: Path) -> None:
    assert Path(found["package"]).is_relative_to(root), found["package"]  # not the source tree
    assert found["space"] == "fbnetv3"
    assert found["predictor"] and Path(found["predictor"]).is_relative_to(root)
    assert found["pairs"] and Path(found["pairs"]).is_relative_to(root)
    assert Path(found["pairs"]).name == "fbnetv3_digits_pairs.jsonl"
    assert found["files"] == shipped_in_source()


def test_the_wheel_carries_every_shipped_file_its_license_and_one_version(built):
    wheel, log = built
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    carried = {k: sorted(n.split("/")[-1] for n in names if n.startswith(f"jointnas/_shipped/{k}/")) for k in KINDS}
    assert carried == shipped_in_source()
    assert carried["spaces"] and carried["predictors"] and carried["data"]
    assert "jointnas/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in meta.splitlines()
    assert f"Version: {jointnas.__version__}" in meta.splitlines()
    assert not any(n.startswith(("share/", "data/", "spaces/")) or ".data/" in n for n in names)
    assert "deprecat" not in log.lower(), [line for line in log.splitlines() if "eprecat" in line]


def test_a_target_install_finds_its_shipped_files_from_another_directory(built, tmp_path):
    wheel, _ = built
    target = tmp_path / "target"
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _assert_found_inside(_check(sys.executable, elsewhere, _clean_env(PYTHONPATH=str(target))), target)


def test_a_user_install_finds_its_shipped_files_from_another_directory(built, tmp_path):
    wheel, _ = built
    python = _nested_python(tmp_path / "venv")  # a venv refuses --user unless it sees the system's packages
    base = tmp_path / "userbase"
    env = _clean_env(PYTHONUSERBASE=str(base), PIP_ROOT_USER_ACTION="ignore", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--user",
                           "--no-warn-script-location", str(wheel)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_found_inside(_check(python, tmp_path, env), base)


def _nested_python(venv: Path) -> str:
    """A new venv's Python that sees the system's packages (so user site-packages are on) and, through
    a .pth line, this interpreter's (jointnas's dependencies, pip), whether or not this one is a venv;
    jointnas itself is then installed anew into it. The .pth adds the directory only: the editable
    finder of this interpreter's own jointnas is not loaded there."""
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in dict.fromkeys(site.getsitepackages() + [sysconfig.get_paths()["purelib"]]) if Path(p).is_dir()]
    Path(purelib, "outer-site-packages.pth").write_text("\n".join(ours) + "\n")
    return python


def test_an_editable_install_reads_the_source_trees_folders(source, tmp_path):
    python = _nested_python(tmp_path / "venv")  # this Python's packages (setuptools, numpy, ...) seen
    env = _clean_env(PIP_ROOT_USER_ACTION="ignore", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "-e", str(source)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = _check(python, tmp_path, env)
    _assert_found_inside(found, source)
    assert Path(found["predictor"]).parent == source / "predictors"


def test_the_installed_fine_command_scores_with_the_shipped_predictor(built, tmp_path):
    wheel, _ = built
    target = tmp_path / "target"
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel))
    proc = subprocess.run([sys.executable, "-m", "jointnas", "fine", "--budget", "600MFLOPs", "--population", "8",
                           "--generations", "1", "--top-k", "1", "--json"], capture_output=True, text=True,
                          cwd=tmp_path, env=_clean_env(PYTHONPATH=str(target), OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    shipped = target / "jointnas" / "_shipped" / "predictors" / "fbnetv3-digits.pt"
    assert json.loads(proc.stdout)["predictor"] == str(shipped)
    assert f"no run under runs/: scoring with the shipped predictor {shipped}" in proc.stderr


def test_runs_and_predictor_checkpoints_record_the_jointnas_version_and_old_checkpoints_still_load(tmp_path):
    from jointnas.catalog import load_scorer, load_space
    from jointnas.store import RunStore
    from jointnas.surrogates.checkpoint import Checkpoint, write

    with RunStore.create(tmp_path / "run", {"space": "fbnetv3", "seed": 0}) as store:
        assert store.get_meta("jointnas_version") == jointnas.__version__
    space = load_space("fbnetv3")
    write(tmp_path / "p.pt", "mlp", space, {"weights": [1.0]})
    assert Checkpoint.read(tmp_path / "p.pt").jointnas_version == jointnas.__version__
    assert "jointnas_version" not in Checkpoint.read(tmp_path / "p.pt").state("mlp", space)
    shipped = REPO / "predictors" / "fbnetv3-digits.pt"  # written before versions were recorded
    assert Checkpoint.read(shipped).jointnas_version is None
    assert load_scorer(shipped).space.name == "fbnetv3"
