"""Atomic writes: a reader sees the old file or the complete new one, never half of either."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import tempfile
import time
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
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(err, OSError):
            raise naming(err, path) from err
        raise


def naming(err: OSError, path: PathLike) -> OSError:
    """``err`` again, saying which destination it was about: a full disk's ``[Errno 28]`` names the file the
    user asked for, not a temp file beside it (or nothing). Keeps the errno and so the subclass
    (``PermissionError``, ...)."""
    if err.errno is None:
        return OSError(f"cannot write {path}: {err}")
    return OSError(err.errno, err.strerror or str(err), str(path))


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


def check_writable(path: PathLike, what: str, kind: str = "file") -> Path:
    """Check, before any work, that ``path`` can be written later, creating nothing.

    The nearest existing ancestor must be a directory this process can create entries in; an existing ``path``
    must be a ``kind`` (``file`` or ``dir``) and, for a file, writable.

    Args:
        what: how the message names the path, e.g. ``"--json"``.
    Raises:
        OSError: ``"<what> <path>: <reason>"``.
    """
    target = Path(path)
    if target.exists():
        if kind == "file" and target.is_dir():
            raise OSError(f"{what} {path}: is a directory, not a file")
        if kind == "dir" and not target.is_dir():
            raise OSError(f"{what} {path}: is a file, not a directory")
        if kind == "file" and not os.access(target, os.W_OK):
            raise OSError(f"{what} {path}: the file is not writable")
    ancestor = target.absolute().parent if target.exists() else target.absolute()
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OSError(f"{what} {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OSError(f"{what} {path}: cannot create anything in {ancestor} (permission denied)")
    return target


#: A ``.partial-`` folder of a process on this host that is gone is removed by the next run; one without a
#: readable owner (an older name format, another host) only once it is this old.
STALE_PARTIAL_SECONDS = 24 * 3600


def _host() -> str:
    return socket.gethostname().replace("~", "_")


def _owner_tag() -> str:
    """``HOST~PID~``: the start of a work folder's random suffix, so a later run can tell whose it is."""
    return f"{_host()}~{os.getpid()}~"


def _is_stale(leftover: Path, tag: str) -> bool:
    owner = tag.split("~")
    if len(owner) == 3 and owner[1].isdigit():
        if owner[0] != _host():
            return False  # another machine's process (a shared file system): cannot tell, keep it
        try:
            os.kill(int(owner[1]), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False  # exists (owned by another user) or cannot tell
        return False
    try:
        return time.time() - leftover.stat().st_mtime > STALE_PARTIAL_SECONDS
    except OSError:
        return False


def remove_stale_partials(final: PathLike) -> list[Path]:
    """Remove the leftovers of killed :func:`atomic_directory` runs for ``final``: its ``.partial-`` and
    ``.old-`` siblings whose creating process (host and PID are in the name) no longer runs on this host, or, for
    names without them, that are older than :data:`STALE_PARTIAL_SECONDS`. A live run's folder is never touched.
    A run killed between moving the old output aside and moving the new one in left the old one in its ``.old-``
    folder: it is put back at ``final`` first.

    Returns:
        the removed folders.
    """
    final = Path(final)
    parent = final.absolute().parent
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for kind in ("partial", "old"):
        prefix = f".{final.name}.{kind}-"
        for leftover in sorted(parent.glob(f"{prefix}*")):
            if leftover.is_dir() and not leftover.is_symlink() and _is_stale(leftover, leftover.name[len(prefix) :]):
                previous = leftover / final.name
                if kind == "old" and previous.exists() and not final.exists():
                    os.replace(previous, final)  # killed between its two renames: the previous output comes back
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
    return removed


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
    remove_stale_partials(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{_owner_tag()}", dir=parent))
    try:
        yield tmp
        try:
            if final.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-{_owner_tag()}", dir=parent))
                os.replace(final, trash / final.name)
                os.replace(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, final)
        except OSError as err:
            raise naming(err, final) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
