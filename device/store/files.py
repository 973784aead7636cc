"""Small files the box writes (settings, pairings): replaced whole and atomically."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, *, mode: int | None = None, backup: bool = False,
                 keep_owner: bool = False) -> None:
    """Replace ``path`` with ``text``: a temp file beside it, fsync, rename, fsync of the
    folder, so a power cut leaves the old file or the new one. ``mode``: the new file's
    permissions (default: the old file's, else 0644); ``backup``: keep the old file as
    ``.bak``; ``keep_owner``: the new file keeps the old one's owner (root editing a file
    of the service's user)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    if mode is None:
        mode = old.st_mode & 0o777 if old is not None else 0o644
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        if keep_owner and old is not None and (old.st_uid, old.st_gid) != (os.getuid(),
                                                                           os.getgid()):
            with contextlib.suppress(PermissionError):
                os.fchown(fd, old.st_uid, old.st_gid)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if backup and old is not None:
            shutil.copy2(path, path.with_name(path.name + ".bak"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
