"""Bad space files are refused when read, with one line and exit code 2, before any work."""
import os

import pytest
import yaml

from test_coarse import tiny_space_doc



def _space_file(tmp_path, edit):
    doc = tiny_space_doc()
    edit(doc)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_a_random_bytes_space_file_is_refused(tmp_path, refused):
    path = tmp_path / "noise.yaml"
    path.write_bytes(os.urandom(4096))
    refused(["train", "--preset", "FBNetV3_A", "--space", str(path)], str(path))


def test_an_int_range_with_fractional_bounds_is_refused_not_truncated(tmp_path, refused):
    path = _space_file(tmp_path, lambda d: d["arch"].update(s0_depth={"type": "int", "low": 2.5, "high": 12.7}))
    refused(["train", "--preset", "FBNetV3_A", "--space", path], "s0_depth.low: 2.5 is not a whole number")


def test_whole_float_bounds_of_an_int_range_are_accepted():
    from jointnas.space.dims import IntDim, parse_dim

    assert parse_dim("arch", "d", {"type": "int", "low": 2.0, "high": 12}) == IntDim("d", 2, 12, 1)


@pytest.mark.parametrize("key, spec", [("s1_depth", {"type": "int", "low": 0, "high": 2}),
                                       ("s2_channels", {"type": "categorical", "choices": [0, 24]})])
def test_a_stage_of_zero_blocks_or_channels_is_refused(tmp_path, refused, key, spec):
    path = _space_file(tmp_path, lambda d: d["arch"].update({key: spec}))
    refused(["train", "--preset", "FBNetV3_A", "--space", path], f"{key}: lowest value 0 is below 1")
