"""Writing a planner's file so that it is always the complete old or the complete new one.

A new version is written to a hidden temp file in the same folder, flushed to disk, and
renamed over the target (an atomic rename on one file system). A process killed before the
rename leaves the old file untouched and a temp file behind; the next save of that workbook
removes the temp files of processes that no longer run.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path

__all__ = ["temp_path", "commit_file"]

_log = logging.getLogger(__name__)


def temp_path(path: Path) -> Path:
    """A hidden temp name next to ``path`` for this process; stale ones of dead processes go."""
    _sweep(path)
    return path.with_name(f".~{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}{path.suffix or '.xlsx'}")


def commit_file(tmp: Path, target: Path) -> None:
    """fsync ``tmp``, rename it over ``target``, fsync the folder: after a power cut the
    target is the old or the new file, never an empty one."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    if hasattr(os, "O_DIRECTORY"):   # POSIX: make the rename itself durable
        fd = os.open(target.parent, os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sweep(path: Path) -> None:
    pattern = re.compile(rf"^\.~{re.escape(path.stem)}\.(\d+)\.[0-9a-f]{{8}}{re.escape(path.suffix or '.xlsx')}$")
    try:
        candidates = list(path.parent.iterdir()) if path.parent.is_dir() else []
    except OSError:
        return
    for p in candidates:
        m = pattern.match(p.name)
        if m and not _alive(int(m.group(1))):
            try:
                p.unlink()
                _log.info("removed %s, left by an interrupted save", p.name)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True   # exists (another user's) or cannot tell: keep the file
    return True
