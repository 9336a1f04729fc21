"""Atomic file writes: a crash leaves the old file or the new one, never half.

Every file nst_jax writes (images, run records, checkpoints, the weight
cache) goes through :func:`write`: a temporary file in the same directory,
flushed and fsynced, given the usual umask-based mode, then ``os.replace``d
over the target.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Callable, Optional

_MODE: Optional[int] = None


def _file_mode() -> int:
    # mkstemp makes 0600 files; give the result the usual umask-based mode.
    # Reading the umask means setting it, so do it once.
    global _MODE
    if _MODE is None:
        mask = os.umask(0o022)
        os.umask(mask)
        _MODE = 0o666 & ~mask
    return _MODE


def _fsync_dir(parent: str) -> None:
    # Makes the rename itself durable; not every OS/filesystem allows it.
    with contextlib.suppress(OSError):
        fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write(path: str, write_fn: Callable[[BinaryIO], None]) -> None:
    """Calls ``write_fn(file)`` on a temp file, then renames it to ``path``.

    Parent folders are created. On any failure the temp file is removed and
    an existing file at ``path`` is untouched; the exception propagates.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, suffix=".tmp",
                               prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(parent)


def write_bytes(path: str, data: bytes) -> None:
    write(path, lambda f: f.write(data))
