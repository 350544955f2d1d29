"""A full disk or an unwritable output folder ends a stage in one line naming the folder, not a traceback.

Every entry point that writes a folder wraps its work in :func:`exit_on_write_error`. The stages
themselves remove their temp files when a write fails (atomic writes in :mod:`common.atomic`, the
stages' own scratch folders), so what is left is exactly what a rerun resumes from.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

# disk full, quota, read-only file system, permission, file-size limit (RLIMIT_FSIZE), a file where a folder must be
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                          errno.ENOTDIR})
EXIT_WRITE_FAILED = 1


def _inside(path: str, folder: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
        return True
    except ValueError:
        return False


def write_error_message(exc: OSError, stage: str, folder: str | os.PathLike) -> str | None:
    """The one-line message for a write failure under ``folder``; None when ``exc`` is not one."""
    if exc.errno not in WRITE_ERRNOS:
        return None
    folder = Path(folder)
    reason = exc.strerror or str(exc)
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    path = os.fsdecode(exc.filename) if exc.filename is not None else None
    if path is not None and not _inside(path, folder) and exc.errno in (errno.EACCES, errno.EPERM):
        return f"{stage}: cannot access {path}: {reason} ({name})"  # an input, not the output folder
    where = f" (at {path})" if path is not None and path != str(folder) else ""
    return f"{stage}: cannot write to {folder}: {reason} ({name}){where}; temp files removed, rerun to resume"


@contextlib.contextmanager
def exit_on_write_error(stage: str, folder: str | os.PathLike) -> Iterator[None]:
    """Turn a write failure (disk full, read-only, ...) into ``SystemExit`` with one line; re-raise others."""
    try:
        yield
    except OSError as exc:
        message = write_error_message(exc, stage, folder)
        if message is None:
            raise
        raise SystemExit(message) from None
