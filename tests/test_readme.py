"""The README's Python example runs as printed (each block marked ``<!-- runnable -->``)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def runnable_blocks():
    text = README.read_text()
    return re.findall(r"<!-- runnable -->\n```python\n(.*?)```", text, flags=re.S)


def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = runnable_blocks()
    assert blocks, "the README lost its runnable example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert "'model': 'mobilenet_v3_small'" in out          # the only model under 100 MFLOPs
    assert (tmp_path / "runs" / "readme-demo" / "predictor.pt").is_file()
