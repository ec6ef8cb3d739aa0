import textwrap

import numpy as np
import pytest
import yaml

from jointnas import Candidate, SpaceError, load_space
from jointnas.catalog import space_from_dict
from jointnas.space import CategoricalDim, FloatDim, IntDim


def test_loads_by_name_and_path(space):
    assert space.name == "fbnetv3"
    assert load_space(space.source).fingerprint() == space.fingerprint()
    assert space.family.deploy.in_channels == 3 and space.family.deploy.num_classes == 1000


def test_required_recipe_dimensions(space):
    for name in ("optimizer", "lr", "weight_decay", "label_smoothing", "mixup_alpha", "dropout",
                 "stochastic_depth", "ema", "epochs", "warmup_epochs"):
        assert name in space.recipe
    assert set(space.recipe["optimizer"].choices) == {"sgd", "rmsprop", "adamw"}
    assert space.recipe["lr"].log and space.recipe["weight_decay"].log
    res = space.arch["resolution"]
    assert res.low <= 224 and res.high >= 272 and res.step == 8


def test_unknown_space_names_the_choices():
    with pytest.raises(SpaceError, match="available: .*fbnetv3"):
        load_space("nope")


def _write(tmp_path, text):
    p = tmp_path / "bad.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def _base_doc(space):
    """A valid document built from the shipped space file, to be broken one key at a time."""
    return yaml.safe_load(open(space.source))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["recipe"].update(lr={"type": "float", "low": 0.1, "high": 0.01, "log": True}), r"recipe\.lr: empty range"),
    (lambda d: d["arch"].update(s1_depth={"type": "int", "low": 5, "high": 3}), r"arch\.s1_depth: empty or ragged range"),
    (lambda d: d["recipe"].update(ema={"type": "bool", "colour": "red"}), r"recipe\.ema: unknown key\(s\) colour"),
    (lambda d: d.update(extras=1), r"unknown top-level key\(s\) extras"),
    (lambda d: d["recipe"].update(dropout={"type": "gaussian"}), r"recipe\.dropout\.type: unknown type"),
    (lambda d: d["arch"].pop("s2_kernel"), r"arch\.s2_kernel: required"),
    (lambda d: d["recipe"].update(optimizer={"type": "categorical", "choices": ["sgd"]}), r"recipe\.optimizer\.choices"),
    (lambda d: d["recipe"].update(resolution={"type": "bool"}), r"also used in arch"),
    (lambda d: d["presets"]["FBNetV3_A"]["arch"].update(s1_depth=40), r"presets\.FBNetV3_A: .*s1_depth=40 is outside"),
])
def test_malformed_spaces_name_file_and_key(tmp_path, space, mutate, message):
    doc = _base_doc(space)
    mutate(doc)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpaceError, match=message) as err:
        load_space(path)
    assert str(path) in str(err.value)


def test_duplicate_keys_are_refused(tmp_path):
    p = _write(tmp_path, """\
        name: dup
        arch: {}
        recipe:
          lr: {type: float, low: 0.1, high: 1.0}
          lr: {type: float, low: 0.2, high: 1.0}
        """)
    with pytest.raises(SpaceError, match=r"bad\.yaml: duplicate key 'lr' at line 5"):
        load_space(p)


def test_invalid_yaml_is_one_clear_error(tmp_path):
    p = _write(tmp_path, "name: [unclosed\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(p)


def test_a_yaml_syntax_error_names_its_line_and_column(tmp_path):
    p = _write(tmp_path, "name: s\narch:\n  depth: {type: int, low: 1\n  width: {type: int, low: 1, high: 4}\n")
    with pytest.raises(SpaceError, match=r"bad\.yaml: not valid YAML at line 4, column 8: .*expected ',' or '}'.* "
                                         r"\(while parsing a flow mapping\)$"):  # libyaml's words or PyYAML's
        load_space(p)


def test_yaml_is_loaded_safely(tmp_path):
    p = _write(tmp_path, "name: !!python/object/apply:os.system ['echo hacked']\narch: {}\nrecipe: {}\n")
    with pytest.raises(SpaceError):
        load_space(p)


def test_dimension_mapping_stays_in_range():
    u = np.linspace(0, 0.999999, 1001)
    d = IntDim("x", 16, 32, 8)
    assert set(d.from_unit(u)) == {16, 24, 32}
    f = FloatDim("lr", 1e-3, 1.0, log=True)
    v = np.array(f.from_unit(u))
    assert v.min() >= 1e-3 and v.max() <= 1.0
    # log scale: the median is the geometric middle
    assert abs(np.log10(np.median(v)) - (-1.5)) < 0.01
    c = CategoricalDim("opt", ("a", "b", "c"))
    assert set(c.from_unit(u)) == {"a", "b", "c"}


def test_float_values_are_rounded_to_6_digits_exactly_as_printing_them_would():
    from jointnas.space.dims import round_6g

    rng = np.random.default_rng(0)
    values = np.concatenate([
        np.exp(rng.uniform(np.log(1e-30), np.log(1e30), 50_000)),  # beyond the exact powers of ten too
        rng.random(50_000), -rng.random(10_000),
        np.round(rng.random(20_000), 7),                          # many ties at the 6th digit
        [0.0, -0.0, 1.0, 0.1, 0.1234565, 123456.5, 1234565.0, 9.999995e-3, 9.9999949e-3, 999999.5, 99999.95,
         5e-324, 1e-300, 1e300, np.inf, -np.inf, np.nan]])
    expected = np.array([float(f"{x:.6g}") for x in values])
    for part in (slice(None), slice(-17, None)):  # vectorised, and printed (a short array)
        got, want = round_6g(values[part]), expected[part]
        same = (got.view(np.int64) == want.view(np.int64)) | (np.isnan(got) & np.isnan(want))
        assert same.all(), values[part][~same][:5]
    f = FloatDim("lr", 1e-3, 0.1, log=True)
    u = rng.random(1000)
    assert f.from_unit(u) == [float(f"{x:.6g}") for x in np.exp(np.log(1e-3) + u * (np.log(0.1) - np.log(1e-3)))]
    assert all(type(x) is float for x in f.from_unit(u[:3]))


def test_encoding_layout_and_ranges(space):
    from jointnas import sample_pool

    pool = sample_pool(space, 300, seed=1) + [space.preset(n) for n in space.presets if n != "FBNetV3_G"]
    x = space.encode(pool)
    assert x.shape == (len(pool), space.encoding_width)
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    schema = space.encoding_schema()
    assert sum(s["width"] for s in schema) == space.encoding_width
    assert sum(s["width"] for s in schema if s["part"] == "arch") == space.arch_width
    # one-hot blocks sum to one per row
    for s in schema:
        if s["kind"] == "categorical":
            np.testing.assert_allclose(x[:, s["offset"]:s["offset"] + s["width"]].sum(1), 1.0)
    # log dims are encoded on the log scale
    lr = next(s for s in schema if s["name"] == "lr")
    lows = Candidate(pool[0].arch, dict(pool[0].recipe, lr=space.recipe["lr"].low))
    mids = Candidate(pool[0].arch, dict(pool[0].recipe, lr=float(np.sqrt(space.recipe["lr"].low * space.recipe["lr"].high))))
    assert space.encode([lows])[0, lr["offset"]] == pytest.approx(0.0)
    assert space.encode([mids])[0, lr["offset"]] == pytest.approx(0.5, abs=1e-5)


def test_fingerprint_changes_with_ranges(space):
    doc = yaml.safe_load(open(space.source))
    doc["recipe"]["lr"]["high"] = 0.9
    assert space_from_dict(doc).fingerprint() != space.fingerprint()
    assert space_from_dict(yaml.safe_load(open(space.source))).fingerprint() == space.fingerprint()


def test_cli_output_into_a_closed_pipe_exits_quietly():
    """`jointnas describe | head -1`: the reader leaves early; no traceback, shell-style exit code."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-c", "import sys; from jointnas.cli import main; "
                               "sys.exit(main(['describe']))"], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert done.returncode == 141


def test_cli_help_does_not_import_torch():
    """`jointnas --help` and usage errors answer in a fraction of a second: torch loads only for real work."""
    import subprocess
    import sys

    code = ("import sys; from jointnas.cli import build_parser; build_parser(); import jointnas; "
            "jointnas.load_space('fbnetv3'); print(sorted(m for m in ('torch', 'scipy.stats') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
