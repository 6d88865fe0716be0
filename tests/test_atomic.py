"""Atomic writes (occ_ros.io.atomic): all-or-nothing replacement, and the file mode a plain open() gives."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from occ_ros.io.atomic import atomic_savez_compressed, atomic_write_bytes


def test_atomic_write_has_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "labels.npz"
    atomic_savez_compressed(path, semantics=np.zeros(3, np.uint8))
    before = path.read_bytes()

    def crash(src, dst):  # the rename never happens, as in a crash mid-write
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        atomic_savez_compressed(path, semantics=np.ones(3, np.uint8))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.npz"]
