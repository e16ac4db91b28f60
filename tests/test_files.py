"""Atomic writes: all or nothing, with the usual file permissions."""

from __future__ import annotations

import os
import stat

import pytest

from gpt_keras.runs.files import atomic_path, write_json, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_text(tmp_path / "config.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["config.json"]


def test_the_temporary_keeps_the_suffix_and_lands_with_the_umask_mode(tmp_path):
    with atomic_path(tmp_path / "model.weights.h5") as temporary:
        assert temporary.name.endswith(".weights.h5") and temporary.parent == tmp_path
        temporary.write_bytes(b"x")
    mode = stat.S_IMODE(os.stat(tmp_path / "model.weights.h5").st_mode)
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask


def test_write_json_is_readable_text(tmp_path):
    write_json(tmp_path / "a" / "v.json", ["", "[UNK]", "mosel"])
    assert (tmp_path / "a" / "v.json").read_text() == '[\n  "",\n  "[UNK]",\n  "mosel"\n]\n'
