"""The session store: one SQLite file, versioned schema, one transaction per session.

Schema versioned with ``PRAGMA user_version`` and a list of migrations; WAL journal with
``synchronous=FULL``; each session (session row plus its hold rows) is written in one
transaction, so a power cut leaves the file consistent and every earlier session intact.
A session's start instant is its identity: recording the same session twice stores it
once. Queries return ``device.core.records`` types; the day and week figures are the pure
functions of ``device.core.streaks`` over what is stored.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from device.core.records import RELAX_FIELDS, HoldRecord, SessionRecord, instant_us
from device.store.protocol import StoreQueries


class HistoryError(Exception):
    """The history file cannot be used; the message says which file and why."""


# MIGRATIONS[i] takes the schema from version i to i + 1; append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            started_us INTEGER NOT NULL UNIQUE,  -- microseconds since the Unix epoch
            started TEXT NOT NULL,               -- ISO 8601 with the offset it was recorded in
            ended_us INTEGER NOT NULL,
            ended TEXT NOT NULL,
            outcome TEXT NOT NULL,
            routine TEXT NOT NULL
        )""",
        """CREATE TABLE holds (
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,                -- order within the session, 0-based
            leg TEXT NOT NULL,
            round INTEGER NOT NULL,
            planned_s REAL NOT NULL,
            held_s REAL NOT NULL,
            ended TEXT NOT NULL,
            mean REAL,
            peak REAL,
            steadiness REAL,
            PRIMARY KEY (session_id, seq)
        )""",
        "CREATE INDEX sessions_outcome ON sessions(outcome, started_us)",
    ),
    (  # 2: the MQTT outbox, one row per session to publish, written with the session
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,              -- publishing order
            session_id INTEGER NOT NULL UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
            msg_id TEXT NOT NULL UNIQUE,         -- the message's id, for de-duplication
            delivered_us INTEGER                 -- broker's acknowledgement; NULL = not yet
        )""",
        "CREATE INDEX outbox_pending ON outbox(delivered_us, id)",
    ),
    (  # 3 (issue 13): the streak and week queries read the index alone (covering: no row
        # reads of the sessions table)
        "DROP INDEX sessions_outcome",
        "CREATE INDEX sessions_outcome_started ON sessions(outcome, started_us, started)",
    ),
    (  # 4 (issue 11): the answer to "how tight was that?" and the seconds over-pulled
        "ALTER TABLE holds ADD COLUMN tightness TEXT",  # easy, tight, very_tight or NULL
        "ALTER TABLE holds ADD COLUMN overpull_s REAL",
    ),
    (  # (issue 22): a session is stored once per its own id, not per start instant (three
        # simulated runs with the same --start are three sessions). SQLite cannot drop the
        # UNIQUE of started_us in place: the table is rebuilt (run with foreign keys off, so
        # the holds and the outbox keep their rows); old rows get "started-<us>" as id.
        """CREATE TABLE sessions_by_uid (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,            -- the session's own id: de-duplication
            started_us INTEGER NOT NULL,         -- microseconds since the Unix epoch
            started TEXT NOT NULL,               -- ISO 8601 with the offset it was recorded in
            ended_us INTEGER NOT NULL,
            ended TEXT NOT NULL,
            outcome TEXT NOT NULL,
            routine TEXT NOT NULL
        )""",
        "INSERT INTO sessions_by_uid (id, uid, started_us, started, ended_us, ended, outcome,"
        " routine) SELECT id, 'started-' || started_us, started_us, started, ended_us, ended,"
        " outcome, routine FROM sessions",
        "DROP TABLE sessions",
        "ALTER TABLE sessions_by_uid RENAME TO sessions",
        "CREATE INDEX sessions_outcome_started ON sessions(outcome, started_us, started)",
        "CREATE INDEX sessions_started ON sessions(started_us)",
    ),
    (  # issue 21: how each hold relaxed (device.core.relaxation) and its tightness index
        "ALTER TABLE holds ADD COLUMN settled REAL",
        "ALTER TABLE holds ADD COLUMN relax_30 REAL",
        "ALTER TABLE holds ADD COLUMN relax_45 REAL",
        "ALTER TABLE holds ADD COLUMN relax_end REAL",
        "ALTER TABLE holds ADD COLUMN tau_s REAL",
        "ALTER TABLE holds ADD COLUMN fit REAL",
        "ALTER TABLE holds ADD COLUMN tension_s REAL",
        "ALTER TABLE holds ADD COLUMN tightness_index REAL",
    ),
    (  # (issue 20): "it hurt" beside the hold, the time in the stretch before the hold
        # clock, and the hold length set when it was held (what the person set wins)
        "ALTER TABLE holds ADD COLUMN hurt INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE holds ADD COLUMN pre_s REAL",
        "ALTER TABLE holds ADD COLUMN base_s REAL",
    ),
    (  # (issue 25): how each session's dates were known (device.core.timetrust); a session
        # from before this knew nothing better than its clock, as then: 'synced'
        "ALTER TABLE sessions ADD COLUMN clock TEXT NOT NULL DEFAULT 'synced'",
        "ALTER TABLE sessions ADD COLUMN boot_id TEXT",  # the boot it was recorded in
        "ALTER TABLE sessions ADD COLUMN mono_s REAL",  # monotonic seconds at its start
        # the streak and week queries still read the index alone, the marker included
        "DROP INDEX sessions_outcome_started",
        "CREATE INDEX sessions_outcome_started_clock"
        " ON sessions(outcome, started_us, started, clock)",
    ),
)
_RELAX_COLUMNS = ("settled", "relax_30", "relax_45", "relax_end", "tau_s", "fit", "tension_s",
                  "tightness_index")  # RELAX_FIELDS of device.core.records, as columns
SCHEMA_VERSION = len(MIGRATIONS)
# the start times streaks and weeks are counted from (read from the covering index alone)
COMPLETE_STARTS = ("SELECT started FROM sessions WHERE outcome = 'complete' AND started_us >= ?"
                   " AND clock != 'untrusted' ORDER BY started_us")


@dataclass(frozen=True)
class OutboxEntry:
    """A session waiting for the broker: outbox row id, message id, the session."""

    id: int
    msg_id: str
    session: SessionRecord


class History(StoreQueries):
    """The SQLite store (one file at ``path``); thread-safe; raises ``HistoryError``.

    Durability: WAL with ``synchronous=FULL`` fsyncs the log at every commit, so a session
    the loop was told is saved survives a power cut. NORMAL would also never corrupt the
    file under WAL, but could drop the last sessions; at a few commits a day the fsync
    costs nothing worth saving.
    """

    def __init__(self, path: Path | str, *, timeout_s: float = 5.0,
                 read_only: bool = False, outbox: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.outbox = outbox  # record() also queues each new session in the MQTT outbox
        self._lock = threading.RLock()
        try:
            if read_only:
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, timeout=timeout_s,
                                             isolation_level=None, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, timeout=timeout_s,
                                             isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as e:
            raise HistoryError(f"cannot open history file {self.path}: {e}") from e
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        c = self._conn
        try:
            version = self._check_version()
            c.execute("PRAGMA foreign_keys=ON")
            if self.read_only:
                if version < SCHEMA_VERSION:
                    raise HistoryError(f"history file {self.path} has schema version {version}, "
                                       f"older than {SCHEMA_VERSION}; open it writable to upgrade")
                return
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=FULL")
            if version < SCHEMA_VERSION:
                # a migration may rebuild a table: no cascades while it does (a no-op
                # inside a transaction, so set here, and back on after the COMMIT)
                c.execute("PRAGMA foreign_keys=OFF")
                c.execute("BEGIN IMMEDIATE")
                try:
                    version = self._check_version()  # another process may have migrated
                    for step in MIGRATIONS[version:]:
                        for statement in step:
                            c.execute(statement)
                    c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    if c.execute("PRAGMA foreign_key_check").fetchone() is not None:
                        raise sqlite3.IntegrityError("a migration broke a reference")
                    c.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
                finally:
                    c.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as e:
            raise HistoryError(f"cannot use history file {self.path}: {e}") from e

    def _check_version(self) -> int:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"history file {self.path} has schema version {version}, this program knows "
                f"up to {SCHEMA_VERSION}; upgrade stretch-companion")
        return version

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    @property
    def schema_version(self) -> int:
        """The file's ``PRAGMA user_version``."""
        return self._query(lambda c: c.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Close the connection (a WAL checkpoint happens when the last one closes)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- writing

    def record(self, session: SessionRecord) -> bool:
        """Store ``session`` and its holds in one transaction; False if already stored."""
        with self._lock:
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    cur = c.execute(
                        "INSERT INTO sessions (uid, started_us, started, ended_us, ended,"
                        " outcome, routine, clock, boot_id, mono_s)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (uid) DO NOTHING",
                        (session.uid or f"started-{instant_us(session.started)}",
                         instant_us(session.started), session.started.isoformat(),
                         instant_us(session.ended), session.ended.isoformat(),
                         session.outcome, session.routine, session.clock, session.boot_id,
                         session.mono_s))
                    if cur.rowcount == 0:
                        c.execute("ROLLBACK")
                        return False
                    c.executemany(
                        "INSERT INTO holds (session_id, seq, leg, round, planned_s, held_s,"
                        " ended, mean, peak, steadiness, tightness, overpull_s, "
                        + ", ".join(_RELAX_COLUMNS) + ", hurt, pre_s, base_s)"
                        " VALUES (" + ", ".join("?" * (15 + len(_RELAX_COLUMNS))) + ")",
                        [(cur.lastrowid, i, h.leg, h.round, h.planned_s, h.held_s, h.ended,
                          h.mean, h.peak, h.steadiness, h.tightness, h.overpull_s,
                          *(getattr(h, f) for f in RELAX_FIELDS), int(h.hurt), h.pre_s,
                          h.base_s)
                         for i, h in enumerate(session.holds)])
                    if self.outbox:
                        c.execute("INSERT INTO outbox (session_id, msg_id) VALUES (?, ?)",
                                  (cur.lastrowid, uuid.uuid4().hex))
                    c.execute("COMMIT")
                    return True
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.Error as e:
                raise HistoryError(f"cannot write history file {self.path}: {e}") from e

    # ----------------------------------------------------------------- the outbox

    def outbox_pending(self, limit: int = 100) -> list[OutboxEntry]:
        """Undelivered outbox entries, oldest first."""
        def run(c: sqlite3.Connection) -> list[OutboxEntry]:
            rows = c.execute(
                "SELECT o.id, o.msg_id, o.session_id FROM outbox o"
                " WHERE o.delivered_us IS NULL ORDER BY o.id LIMIT ?", (limit,)).fetchall()
            return [OutboxEntry(oid, msg_id, self._load("WHERE id = ?", (sid,), "", None)[0])
                    for oid, msg_id, sid in rows]
        return self._query(run)

    def outbox_delivered(self, entry_id: int, at: datetime) -> None:
        """Mark an outbox entry delivered (the broker acknowledged it at ``at``)."""
        with self._lock:
            try:
                self._conn.execute("UPDATE outbox SET delivered_us = ? WHERE id = ?"
                                   " AND delivered_us IS NULL", (instant_us(at), entry_id))
            except sqlite3.Error as e:
                raise HistoryError(f"cannot write history file {self.path}: {e}") from e

    def outbox_count(self, delivered: bool = False) -> int:
        """How many outbox entries are (un)delivered."""
        cond = "IS NOT NULL" if delivered else "IS NULL"
        return self._query(lambda c: c.execute(
            f"SELECT count(*) FROM outbox WHERE delivered_us {cond}").fetchone()[0])

    # ----------------------------------------------------------------- reading

    def _query(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                return fn(self._conn)
            except sqlite3.Error as e:
                raise HistoryError(f"cannot read history file {self.path}: {e}") from e

    def _load(self, where: str, args: Sequence[Any], order: str,
              limit: int | None) -> list[SessionRecord]:
        def run(c: sqlite3.Connection) -> list[SessionRecord]:
            sql = ("SELECT id, started, ended, outcome, routine, clock, boot_id, mono_s"
                   f" FROM sessions {where} {order}")
            rows = c.execute(sql + (f" LIMIT {int(limit)}" if limit is not None else ""),
                             args).fetchall()
            holds: dict[int, list[HoldRecord]] = {r[0]: [] for r in rows}
            ids = list(holds)
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                for hr in c.execute(
                        "SELECT session_id, leg, round, planned_s, held_s, ended, mean, peak,"
                        " steadiness, tightness, overpull_s, " + ", ".join(_RELAX_COLUMNS)
                        + ", hurt, pre_s, base_s FROM holds"
                        f" WHERE session_id IN ({','.join('?' * len(chunk))})"
                        " ORDER BY session_id, seq", chunk):
                    holds[hr[0]].append(HoldRecord(*hr[1:]))
            return [SessionRecord(datetime.fromisoformat(r[1]), datetime.fromisoformat(r[2]),
                                  r[3], r[4], tuple(holds[r[0]]), clock=r[5], boot_id=r[6],
                                  mono_s=r[7])
                    for r in rows]
        return self._query(run)

    def first_fitted(self, leg: str, limit: int) -> list[HoldRecord]:
        """The oldest ``limit`` holds of ``leg`` with a relaxation fit (its first weeks,
        for the tightness baseline)."""
        def run(c: sqlite3.Connection) -> list[HoldRecord]:
            rows = c.execute(
                "SELECT h.planned_s, h.held_s, h.ended, h.settled, h.relax_30, h.relax_end"
                " FROM holds h JOIN sessions s ON s.id = h.session_id"
                " WHERE h.leg = ? AND h.settled IS NOT NULL"
                " ORDER BY s.started_us, h.seq LIMIT ?", (leg, limit)).fetchall()
            return [HoldRecord(leg, 1, p, held, ended, settled=f0, relax_30=r30, relax_end=re)
                    for p, held, ended, f0, r30, re in rows]
        return self._query(run)

    def recent(self, limit: int = 10) -> list[SessionRecord]:
        """The last ``limit`` sessions, newest first."""
        return self._load("", (), "ORDER BY started_us DESC", limit)

    def sessions(self, since: datetime | None = None,
                 until: datetime | None = None) -> list[SessionRecord]:
        """Sessions started in [since, until), oldest first (all when both are None)."""
        lo = instant_us(since) if since is not None else -(2**62)
        hi = instant_us(until) if until is not None else 2**62
        return self._load("WHERE started_us >= ? AND started_us < ?", (lo, hi),
                          "ORDER BY started_us", None)

    def iter_sessions(self, batch: int = 500) -> Iterator[SessionRecord]:
        """Every session, oldest first, read ``batch`` at a time (memory stays flat)."""
        after = -(2**62)
        while True:
            chunk = self._load("WHERE started_us > ?", (after,), "ORDER BY started_us", batch)
            if not chunk:
                return
            yield from chunk
            if len(chunk) < batch:
                return
            after = instant_us(chunk[-1].started)

    def plot_buckets(self, most: int = 1000) -> list[SessionRecord]:
        """The history for a chart, aggregated in SQL: per leg and per bucket of days (the
        calendar day the session was recorded in; wider buckets when there are more than
        ``most`` days), one stand-in session per bucket with one hold per leg: mean held,
        longest planned, ended early if any was, mean steadiness. Noon of the bucket's
        first day, in the offset of its first session."""
        def run(c: sqlite3.Connection) -> list[SessionRecord]:
            span = c.execute("SELECT min(julianday(substr(started, 1, 10))),"
                             " max(julianday(substr(started, 1, 10))) FROM sessions").fetchone()
            if span[0] is None:
                return []
            width = max(1, math.ceil((span[1] - span[0] + 1) / most))
            rows = c.execute(
                "SELECT CAST((julianday(substr(s.started, 1, 10)) - ?) / ? AS INTEGER) AS b,"
                " min(s.started), h.leg, avg(h.held_s), max(h.planned_s),"
                " max(h.ended = 'early'), avg(h.steadiness)"
                " FROM holds h JOIN sessions s ON s.id = h.session_id"
                " GROUP BY b, h.leg ORDER BY b, h.leg", (span[0], width)).fetchall()
            out: list[SessionRecord] = []
            last, holds, at = None, [], None
            for b, first, leg, held, planned, early, steady in rows + [(None,) * 7]:
                if b != last and at is not None:
                    out.append(SessionRecord(at, at, "complete", "chart", tuple(holds)))
                    holds = []
                if b is None:
                    break
                if b != last:
                    day = datetime.fromisoformat(first)
                    at = day.replace(hour=12, minute=0, second=0, microsecond=0)
                    last = b
                holds.append(HoldRecord(leg, 1, planned, held, "early" if early else "complete",
                                        steadiness=steady))
            return out
        return self._query(run)

    def count(self) -> int:
        """Number of sessions stored."""
        return self._query(lambda c: c.execute("SELECT count(*) FROM sessions").fetchone()[0])

    def complete_starts(self, since: datetime | None = None) -> list[datetime]:
        """Start times of complete sessions (from ``since``), oldest first; only those whose
        dates can be trusted (an ``untrusted`` one counts in no streak or week)."""
        lo = instant_us(since) if since is not None else -(2**62)
        return self._query(lambda c: [datetime.fromisoformat(r[0]) for r in c.execute(
            COMPLETE_STARTS, (lo,))])

    def correct_dates(self, boot_id: str, offset_s: float) -> int:
        """The ``untrusted`` sessions of boot ``boot_id``, dated again now that true time
        there is monotonic seconds + ``offset_s``: both dates moved by the same amount,
        marked ``corrected``. Returns how many (0 when none)."""
        with self._lock:
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    rows = c.execute(
                        "SELECT id, started, ended, mono_s FROM sessions WHERE clock ="
                        " 'untrusted' AND boot_id = ? AND mono_s IS NOT NULL",
                        (boot_id,)).fetchall()
                    for sid, started, ended, mono in rows:
                        t0, t1 = datetime.fromisoformat(started), datetime.fromisoformat(ended)
                        shift = timedelta(seconds=mono + offset_s - t0.timestamp())
                        t0, t1 = t0 + shift, t1 + shift
                        c.execute("UPDATE sessions SET started_us = ?, started = ?, ended_us = ?,"
                                  " ended = ?, clock = 'corrected' WHERE id = ?",
                                  (instant_us(t0), t0.isoformat(), instant_us(t1),
                                   t1.isoformat(), sid))
                    c.execute("COMMIT")
                    return len(rows)
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.Error as e:
                raise HistoryError(f"cannot write history file {self.path}: {e}") from e
