"""The README names the default surrogate, and that is the one the searches use."""
import re
from pathlib import Path

from jointnas import CoarseConfig, catalog
from jointnas import autotrain

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_default() -> str:
    found = re.findall(r"default surrogate of `coarse`, `autotrain` and searches on recorded tables is\s+`(\w+)`",
                       README.read_text())
    assert len(found) == 1, "README.md should name the default surrogate once"
    return found[0]


def test_the_default_surrogate_is_the_one_the_readme_names():
    name = readme_default()
    assert name in catalog.SURROGATES
    assert CoarseConfig().surrogate == name
    assert autotrain.SURROGATE == name
