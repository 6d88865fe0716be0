"""Atomic writes: a reader sees the old file or the complete new one, never half of either."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` is process-wide, so setting
    and restoring it races with other threads creating files)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it over ``path``.

    The file gets the mode a plain ``open(path, "w")`` would give (0666 minus the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez_compressed(path: PathLike, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` through a temp file. Output is byte-identical for identical arrays."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds too narrowly
    atomic_write_bytes(path, buf.getvalue())


def check_writable_dir(path: PathLike) -> Path:
    """Create ``path``'s parent if needed and check that files can be created there.

    Raises:
        PermissionError / OSError with a message naming the directory.
    """
    parent = Path(path).resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise OSError(f"cannot write to {parent}: {err.strerror or err}") from None
    return parent


@contextlib.contextmanager
def atomic_directory(final: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to ``final`` only on success.

    Yields the temporary directory (a sibling of ``final``). If the body raises, the temporary
    directory is removed and ``final`` is untouched. An existing ``final`` is an error unless
    ``overwrite``; then it is replaced only after the new one is complete.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; choose another output or pass --force to replace it")
    parent = check_writable_dir(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=parent))
    try:
        yield tmp
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=parent))
            os.replace(final, trash / final.name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
