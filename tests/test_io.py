"""jointnas.io: the one atomic write (a temporary file beside the target, fsync, rename)."""
import pytest

from jointnas.io import atomic_file, atomic_write_bytes, atomic_write_text, replacing


def test_atomic_writes_replace_the_file_and_leave_nothing_beside_it(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "one\n")
    atomic_write_bytes(path, b"two\n")
    assert path.read_bytes() == b"two\n"
    with atomic_file(path, "w") as f:
        f.write("three\n")
    assert path.read_text() == "three\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as f:
            f.write(b"half")
            raise RuntimeError("killed mid-write")
    with pytest.raises(RuntimeError):
        with replacing(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("the writer failed")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_path_writer_fills_the_temporary_file_beside_the_target(tmp_path):
    path = tmp_path / "model.ts"
    with replacing(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".model.ts.") and not path.exists()
        tmp.write_bytes(b"model")
    assert path.read_bytes() == b"model"
