"""Every ```python block of README.md and predictors/README.md runs as printed.

Each block runs in its own namespace, in order, in a scratch directory that sees the
repository's data/ and predictors/ (the blocks read them by relative path, as from a clone).
"""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READMES = [REPO / "README.md", REPO / "predictors" / "README.md"]


def python_blocks(path: Path):
    return [code for _, _, code in marked_blocks(path)]


def marked_blocks(path: Path):
    """(slow?, needed module or "", code) of each python block; ``<!-- slow -->`` on the line
    before marks one that takes minutes (it runs with ``-m slow``); ``<!-- needs MODULE -->``
    (before that) one that is skipped where MODULE does not import (another tool's extra)."""
    found = re.findall(r"^(?:<!-- needs ([\w.]+) -->\n)?(<!-- slow -->\n)?```python\n(.*?)^```", path.read_text(),
                       flags=re.S | re.M)
    return [(bool(slow), needs, code) for needs, slow, code in found]


@pytest.fixture
def clone_dir(tmp_path, monkeypatch):
    for name in ("data", "predictors"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_python_snippet_of_the_readmes_is_a_python_block():
    # Fenced blocks that import jointnas but are not marked python would escape the test below.
    for path in READMES:
        fences = re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), flags=re.S | re.M)
        unmarked = [body for lang, body in fences if lang != "python" and re.search(r"^(from|import) jointnas",
                                                                                    body, flags=re.M)]
        assert not unmarked, f"{path.name}: Python snippet(s) not marked ```python: {unmarked}"
    assert all(python_blocks(p) for p in READMES)


@pytest.mark.parametrize("readme, index", [
    pytest.param(p, i, marks=[pytest.mark.slow] if slow else [], id=f"{p.relative_to(REPO)}-{i + 1}")
    for p in READMES for i, (slow, _, _) in enumerate(marked_blocks(p))])
def test_the_readme_python_block_runs_as_printed(readme, index, clone_dir, capsys):
    _, needs, code = marked_blocks(readme)[index]
    if needs:
        pytest.importorskip(needs, exc_type=ImportError)  # ray.tune raises ImportError without its extra
    exec(compile(code, f"{readme.name} python block {index + 1}", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    if readme.name == "README.md" and "readme-demo" in code:  # the space-and-objective example
        assert "'model': 'mobilenet_v3_small'" in out  # the only model under 100 MFLOPs
        assert (clone_dir / "runs" / "readme-demo" / "predictor.pt").is_file()
    if readme.name == "README.md" and "StopSearch" in code:  # a budget, a pool of rows, a stop
        assert "'reason': 'found the best row'" in out and "'done': " in out
    if readme.name == "README.md" and "Study" in code:  # ask/tell: two batches told, a surrogate fitted
        assert (clone_dir / "runs" / "my-loop" / "predictors").is_dir() and "Candidate(" in out
