"""Where the history files live (the database and its fallback file beside it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP_DIR = "stretch-companion"
DB_NAME = "history.db"


def default_history_path(service: bool, env: Mapping[str, str] | None = None,
                         home: Path | None = None) -> Path:
    """Where the history lives.

    ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``) wins when present; else
    ``/var/lib/stretch-companion`` under the service; else ``$XDG_STATE_HOME/stretch-companion``
    (an absolute path, per the XDG spec), falling back to ``~/.local/state/stretch-companion``.
    """
    env = os.environ if env is None else env
    state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state_dir:
        return Path(state_dir) / DB_NAME
    if service:
        return Path("/var/lib") / APP_DIR / DB_NAME
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / APP_DIR / DB_NAME
    return (home or Path.home()) / ".local" / "state" / APP_DIR / DB_NAME


def default_fallback_path(db_path: Path) -> Path:
    """The JSON-lines file beside the database for sessions it could not take."""
    return db_path.with_name(db_path.stem + "-unsaved.jsonl")
