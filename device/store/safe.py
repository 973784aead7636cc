"""The history the device uses: never raises into a session, never loses one it was given.

A locked, read-only or corrupt store costs nothing but a log line: the record stays in
memory (retried on the next ``record`` or ``flush``) and is appended as one JSON line to a
fallback file beside the database, imported once the store works again. When even the
fallback file cannot be written (disk full, no writable folder), ``save`` says so
(``IN_MEMORY``): the session lives only in memory until a retry reaches the store.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from device.core.records import (
    HoldRecord,
    SessionRecord,
    instant_us,
    session_from_dict,
    session_to_dict,
)
from device.store.paths import default_fallback_path
from device.store.protocol import StoreQueries
from device.store.sqlite import History

log = logging.getLogger(__name__)

SAVED = "saved"  # in the store
IN_FILE = "file"  # not in the store, but in the fallback file (imported later)
IN_MEMORY = "memory"  # neither: kept in memory only, retried while the process runs


class SafeHistory(StoreQueries):
    """``History`` for the device loop: never raises, never loses a session it was given.

    On a failure (locked, read-only, corrupt, newer schema, missing directory) ``record``
    returns False, logs one warning per outage, keeps the session in memory (retried on the
    next ``record``/``flush``) and appends it as one JSON line to ``fallback_path``. Once
    the store works again, memory and fallback file are written to it (idempotently) and
    the fallback file is removed. Queries answer from store plus memory, or from memory
    alone while the store is down. Call ``flush()`` at start-up and at shutdown.
    """

    def __init__(self, path: Path | str, fallback_path: Path | str | None = None, *,
                 timeout_s: float = 2.0, opener: Callable[[], History] | None = None,
                 outbox: bool = False,
                 logger: logging.Logger | None = None) -> None:
        self.path = Path(path)
        self.fallback_path = (Path(fallback_path) if fallback_path is not None
                              else default_fallback_path(self.path))
        self._opener = opener or (lambda: History(self.path, timeout_s=timeout_s,
                                                  outbox=outbox))
        self._log = logger or log
        self._store: History | None = None
        self._pending: list[SessionRecord] = []
        self._failing = False
        self._fallback_failing = False
        self._memory_only: set[int] = set()  # start instants of sessions only in memory
        self._lock = threading.RLock()

    @property
    def pending(self) -> tuple[SessionRecord, ...]:
        """Sessions waiting in memory for the store."""
        return tuple(self._pending)

    @property
    def ok(self) -> bool:
        """False while the store is failing."""
        return not self._failing

    @property
    def memory_only(self) -> int:
        """Pending sessions that are in neither the store nor the fallback file."""
        with self._lock:
            return len(self._memory_only)

    def record(self, session: SessionRecord) -> bool:
        """Save ``session``; True if it (and everything pending) reached the store."""
        return self.save(session) == SAVED

    def save(self, session: SessionRecord) -> str:
        """Save ``session``: ``SAVED`` (in the store), ``IN_FILE`` (in the fallback file,
        retried) or ``IN_MEMORY`` (neither could be written: kept in memory, retried)."""
        with self._lock:
            self._pending.append(session)
            if self._drain():
                return SAVED
            if self._append_fallback(session):
                return IN_FILE
            self._memory_only.add(instant_us(session.started))
            return IN_MEMORY

    def flush(self) -> bool:
        """Retry pending sessions and import the fallback file; True when nothing is left."""
        with self._lock:
            return self._drain()

    def close(self) -> None:
        """Flush what can be flushed and close the store."""
        with self._lock:
            self._drain()
            self._close()

    def _open(self) -> History:
        if self._store is None:
            self._store = self._opener()
        return self._store

    def _close(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except Exception:  # noqa: BLE001 - closing a broken store must not raise
                pass
            self._store = None

    def _fail(self, e: BaseException) -> None:
        if not self._failing:
            self._failing = True
            self._log.warning("history store unavailable (%s); sessions are kept in memory "
                              "(%d now) and in %s, and retried", e, len(self._pending),
                              self.fallback_path)
        else:
            self._log.debug("history still failing: %s", e)
        self._close()

    def _drain(self) -> bool:
        try:
            store = self._open()
            while self._pending:
                store.record(self._pending[0])
                self._pending.pop(0)
            imported = self._import_fallback(store)
        except Exception as e:  # noqa: BLE001 - nothing may raise into the session
            self._fail(e)
            return False
        if self._memory_only:
            self._log.warning("history store %s works again: %d session(s) kept only in "
                              "memory are saved now", self.path, len(self._memory_only))
            self._memory_only.clear()
        if self._failing:
            self._failing = False
            self._log.info("history store %s works again%s", self.path,
                           f"; imported {imported} session(s)" if imported else "")
        return True

    def _append_fallback(self, session: SessionRecord) -> bool:
        """Append ``session`` to the fallback file; False if it cannot be written."""
        try:
            self.fallback_path.parent.mkdir(parents=True, exist_ok=True)
            line = {**session_to_dict(session), "boot_id": session.boot_id,
                    "mono_s": session.mono_s}  # so an untrusted one can still be corrected
            with open(self.fallback_path, "a", encoding="utf-8") as f:
                if session.uid is not None:
                    line["uid"] = session.uid  # imported once, under its own id
                f.write(json.dumps(line, separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except (OSError, TypeError, ValueError) as e:
            if not self._fallback_failing:
                self._fallback_failing = True
                self._log.warning("cannot write fallback file %s either: %s",
                                  self.fallback_path, e)
            return False
        self._fallback_failing = False
        return True

    def _import_fallback(self, store: History) -> int:
        """Write the fallback file's sessions to ``store`` and remove it; count written."""
        try:
            lines = self.fallback_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return 0
        except OSError as e:
            self._log.debug("cannot read fallback file %s: %s", self.fallback_path, e)
            return 0
        written = bad = 0
        for line in lines:
            if not line.strip():
                continue
            try:
                session = session_from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                bad += 1  # a line torn by a power cut
                continue
            written += store.record(session)
        if bad:
            self._log.warning("skipped %d unreadable line(s) in %s", bad, self.fallback_path)
        try:
            self.fallback_path.unlink()
        except OSError as e:
            self._log.debug("cannot remove fallback file %s: %s", self.fallback_path, e)
        return written

    def correct_dates(self, boot_id: str, offset_s: float) -> int | None:
        """See ``History.correct_dates`` (pending sessions written first); None while the
        store is down."""
        with self._lock:
            if not self._drain():
                return None
            try:
                return self._open().correct_dates(boot_id, offset_s)
            except Exception as e:  # noqa: BLE001 - nothing may raise into the session
                self._fail(e)
                return None

    # ----------------------------------------------------------------- queries

    def _stored(self, fetch: Callable[[History], list[Any]]) -> list[Any]:
        with self._lock:
            try:
                return fetch(self._open())
            except Exception as e:  # noqa: BLE001
                self._fail(e)
                return []

    def complete_starts(self, since: datetime | None = None) -> list[datetime]:
        """Start times of complete sessions (from ``since``), stored or pending."""
        starts = {instant_us(t): t for t in self._stored(lambda h: h.complete_starts(since))}
        for s in self._pending:
            if s.outcome == "complete" and s.trusted and (since is None or s.started >= since):
                starts.setdefault(instant_us(s.started), s.started)
        return sorted(starts.values())

    def recent(self, limit: int = 30) -> list[SessionRecord]:
        """The latest ``limit`` sessions, stored or pending, newest first."""
        stored = self._stored(lambda h: h.recent(limit))
        merged = sorted(_merge(stored, self._pending), key=lambda s: s.started, reverse=True)
        return merged[:limit]

    def sessions(self, since: datetime | None = None,
                 until: datetime | None = None) -> list[SessionRecord]:
        """Sessions started in [since, until), stored or pending, oldest first."""
        stored = self._stored(lambda h: h.sessions(since, until))
        pending = [s for s in self._pending if (since is None or s.started >= since)
                   and (until is None or s.started < until)]
        return sorted(_merge(stored, pending), key=lambda s: s.started)

    def first_fitted(self, leg: str, limit: int) -> list[HoldRecord]:
        """The oldest ``limit`` fitted holds of ``leg``, stored or pending."""
        stored = self._stored(lambda h: h.first_fitted(leg, limit))
        pending = [h for s in sorted(self._pending, key=lambda s: s.started) for h in s.holds
                   if h.leg == leg and h.settled is not None]
        return (stored + pending)[:limit]


def _merge(stored: Iterable[SessionRecord],
           pending: Iterable[SessionRecord]) -> list[SessionRecord]:
    """Stored plus pending sessions, one per start instant."""
    seen: dict[int, SessionRecord] = {instant_us(s.started): s for s in stored}
    for s in pending:
        seen.setdefault(instant_us(s.started), s)
    return list(seen.values())
