"""Session history: one SQLite file, queries for the spoken summary, and hold progression.

* ``History``: the store. Schema versioned with ``PRAGMA user_version`` and a list of
  migrations; WAL journal with ``synchronous=FULL``; each session (session row plus its
  hold rows) is written in one transaction, so a power cut leaves the file consistent
  and every earlier session intact. A session's start instant is its identity: recording
  the same session twice stores it once.
* ``SafeHistory``: what the device loop uses. A locked, read-only or corrupt store never
  raises into the session: the record stays in memory (retried on the next ``record`` or
  ``flush``) and is appended as one JSON line to a fallback file, imported later.
* Pure functions over start times (streak, week counts, done today) and over a leg's
  recent sessions (``next_hold_seconds``), and ``summary_line`` for the voice.

Times are aware datetimes, always passed in ("now" is never read here); days and weeks
(ISO, Monday start) are those of the given time zone. Durations are in seconds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

LEGS = ("right", "left")
OUTCOMES = ("complete", "cancelled", "interrupted")
HOLD_ENDS = ("complete", "early")
MAX_HOLD_S = 300.0  # the product allows holds of 60 s to 5 min

APP_DIR = "stretch-companion"
DB_NAME = "history.db"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class HistoryError(Exception):
    """The history file cannot be used; the message says which file and why."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class HoldRecord:
    """One hold of one leg: planned and held seconds, how it ended, strap figures if fitted."""

    leg: str  # "right" | "left"
    round: int  # 1-based
    planned_s: float
    held_s: float
    ended: str  # "complete" | "early"
    mean: float | None = None  # strap tension (kg, or relative units without calibration)
    peak: float | None = None
    steadiness: float | None = None  # 0..100

    def __post_init__(self) -> None:
        object.__setattr__(self, "round", int(self.round))  # numpy numbers become plain ones
        for name in ("planned_s", "held_s", "mean", "peak", "steadiness"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))
        if self.leg not in LEGS:
            raise ValueError(f"hold leg {self.leg!r}: must be one of {LEGS}")
        if self.round < 1:
            raise ValueError(f"hold round {self.round}: must be >= 1")
        if self.ended not in HOLD_ENDS:
            raise ValueError(f"hold ended {self.ended!r}: must be one of {HOLD_ENDS}")
        for name in ("planned_s", "held_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"hold {name} {value!r}: must be a finite number >= 0")
        if self.steadiness is not None and not 0 <= self.steadiness <= 100:
            raise ValueError(f"hold steadiness {self.steadiness!r}: must be 0..100")


@dataclass(frozen=True)
class SessionRecord:
    """One session: aware start and end, outcome, routine name and its holds in order."""

    started: datetime  # aware
    ended: datetime  # aware
    outcome: str  # "complete" | "cancelled" | "interrupted"
    routine: str  # e.g. "hamstring"
    holds: tuple[HoldRecord, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("started", "ended"):
            if _is_naive(getattr(self, name)):
                raise ValueError(f"session {name} must be an aware datetime")
        if self.ended < self.started:
            raise ValueError("session ended before it started")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"session outcome {self.outcome!r}: must be one of {OUTCOMES}")
        object.__setattr__(self, "holds", tuple(self.holds))


@dataclass(frozen=True)
class LegSession:
    """One session seen from one leg: when, its outcome, and that leg's holds (maybe none)."""

    started: datetime
    outcome: str
    holds: tuple[HoldRecord, ...]

    @classmethod
    def of(cls, session: SessionRecord, leg: str) -> LegSession:
        """The ``leg`` view of ``session``."""
        return cls(session.started, session.outcome,
                   tuple(h for h in session.holds if h.leg == leg))


def _is_naive(dt: datetime) -> bool:
    return dt.tzinfo is None or dt.utcoffset() is None


def _micros(dt: datetime) -> int:
    """Exact microseconds since the Unix epoch (the session's identity and sort key)."""
    return (dt - _EPOCH) // _US


def session_to_dict(s: SessionRecord) -> dict[str, Any]:
    """The stable JSON shape of a session (see ``history_report`` for the documentation)."""
    return {
        "started": s.started.isoformat(),
        "ended": s.ended.isoformat(),
        "outcome": s.outcome,
        "routine": s.routine,
        "holds": [
            {"leg": h.leg, "round": h.round, "planned_s": h.planned_s, "held_s": h.held_s,
             "ended": h.ended, "mean": h.mean, "peak": h.peak, "steadiness": h.steadiness}
            for h in s.holds
        ],
    }


def session_from_dict(d: Mapping[str, Any]) -> SessionRecord:
    """Inverse of ``session_to_dict``; raises ValueError/KeyError/TypeError on bad input."""
    holds = tuple(
        HoldRecord(leg=h["leg"], round=int(h["round"]), planned_s=float(h["planned_s"]),
                   held_s=float(h["held_s"]), ended=h["ended"], mean=h.get("mean"),
                   peak=h.get("peak"), steadiness=h.get("steadiness"))
        for h in d["holds"]
    )
    return SessionRecord(datetime.fromisoformat(d["started"]), datetime.fromisoformat(d["ended"]),
                         d["outcome"], d["routine"], holds)


# --------------------------------------------------------------------------- paths & zone


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


def local_zone(env: Mapping[str, str] | None = None) -> tzinfo:
    """The machine's zone with its DST rules: ``$TZ``, else /etc/localtime, else a fixed offset."""
    env = os.environ if env is None else env
    name = env.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return datetime.now().astimezone().tzinfo or UTC


# --------------------------------------------------------------------------- pure stats


def _zone(now: datetime, tz: tzinfo | None) -> tzinfo:
    if _is_naive(now):
        raise ValueError("now must be an aware datetime")
    return tz if tz is not None else now.tzinfo  # type: ignore[return-value]


def local_day(dt: datetime, tz: tzinfo) -> date:
    """The calendar day of ``dt`` in zone ``tz``."""
    return dt.astimezone(tz).date()


def week_start(day: date) -> date:
    """The Monday of ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def streak_days(complete_starts: Iterable[datetime], now: datetime,
                tz: tzinfo | None = None) -> int:
    """Consecutive days (in ``tz``) with a complete session, ending today or yesterday.

    Today counts when done; if today is not done yet, a streak ending yesterday is alive.
    """
    zone = _zone(now, tz)
    today = local_day(now, zone)
    days = {local_day(s, zone) for s in complete_starts if s <= now}
    day = today if today in days else today - timedelta(days=1)
    n = 0
    while day in days:
        n += 1
        day -= timedelta(days=1)
    return n


def done_today(complete_starts: Iterable[datetime], now: datetime,
               tz: tzinfo | None = None) -> bool:
    """True when a complete session started today (in ``tz``), at or before ``now``."""
    zone = _zone(now, tz)
    today = local_day(now, zone)
    return any(local_day(s, zone) == today for s in complete_starts if s <= now)


def sessions_per_week(complete_starts: Iterable[datetime], now: datetime, weeks: int = 8,
                      tz: tzinfo | None = None) -> list[tuple[date, int]]:
    """(Monday, complete sessions) for the last ``weeks`` ISO weeks in ``tz``, oldest first."""
    if weeks < 1:
        raise ValueError("weeks must be >= 1")
    zone = _zone(now, tz)
    this_monday = week_start(local_day(now, zone))
    mondays = [this_monday - timedelta(weeks=k) for k in range(weeks - 1, -1, -1)]
    counts = dict.fromkeys(mondays, 0)
    for s in complete_starts:
        if s <= now:
            monday = week_start(local_day(s, zone))
            if monday in counts:
                counts[monday] += 1
    return list(counts.items())


def sessions_this_week(complete_starts: Iterable[datetime], now: datetime,
                       tz: tzinfo | None = None) -> int:
    """Complete sessions in ``now``'s ISO week (Monday start) in ``tz``, up to ``now``."""
    return sessions_per_week(complete_starts, now, 1, tz)[0][1]


def minutes_today(sessions: Iterable[SessionRecord], now: datetime,
                  tz: tzinfo | None = None) -> float:
    """Minutes held today in ``tz``: every hold of every session started today, any outcome."""
    zone = _zone(now, tz)
    today = local_day(now, zone)
    return sum(h.held_s for s in sessions
               if s.started <= now and local_day(s.started, zone) == today
               for h in s.holds) / 60.0


# --------------------------------------------------------------------------- progression


@dataclass(frozen=True)
class Progression:
    """The next hold for one leg (seconds) and why."""

    hold_s: float  # the next hold's length
    previous_s: float  # the length the leg was last offered (or the base)
    grew: bool  # True when earned: say "Your right-leg hold grows to 75 seconds."
    streak: int  # qualifying sessions in a row at previous_s
    needed: int  # sessions needed to grow


def next_hold_seconds(sessions: Sequence[LegSession], base_s: float, step_s: float = 15,
                      max_s: float = MAX_HOLD_S, sessions_needed: int = 3,
                      require_steady: float | None = None) -> Progression:
    """Progression for one leg, from that leg's sessions newest first (``History.leg_progress``).

    The current length is the newest offered hold (never below ``base_s`` nor above
    ``max_s``). Counting back from the newest session, a complete session whose holds for
    the leg were all planned at the current length, all held to the end and (when
    ``require_steady`` is set and the strap reported it) at least that steady, adds one;
    a cancelled session, an early end or another length stops the count. Interrupted
    sessions (shutdown, power) and sessions without this leg are neutral. After
    ``sessions_needed`` in a row the hold grows by ``step_s``, up to ``max_s``.
    """
    if not 0 < base_s <= max_s <= MAX_HOLD_S:
        raise ValueError(f"need 0 < base_s <= max_s <= {MAX_HOLD_S:g} s")
    if step_s <= 0 or sessions_needed < 1:
        raise ValueError("step_s must be > 0 and sessions_needed >= 1")
    relevant = [s for s in sessions if s.outcome != "interrupted"]
    offered = next((max(h.planned_s for h in s.holds) for s in relevant if s.holds), base_s)
    current = min(max(offered, base_s), max_s)
    streak = 0
    for s in relevant:
        if s.outcome == "cancelled":
            break
        if not s.holds:
            continue
        if any(abs(h.planned_s - current) > 0.5 or h.ended != "complete" for h in s.holds):
            break
        if require_steady is not None and any(
                h.steadiness is not None and h.steadiness < require_steady for h in s.holds):
            break
        streak += 1
    if streak >= sessions_needed and current < max_s:
        return Progression(min(current + step_s, max_s), current, True, streak, sessions_needed)
    return Progression(current, current, False, streak, sessions_needed)


def growth_line(leg: str, hold_s: float) -> str:
    """What the voice says when a leg's hold grows."""
    return f"Your {leg}-leg hold grows to {duration_words(hold_s)}."


# --------------------------------------------------------------------------- spoken summary


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def duration_words(seconds: float) -> str:
    """Seconds as spoken: "60 seconds", "1 minute 30 seconds", "5 minutes"."""
    s = max(0, int(round(seconds)))
    if s < 90:
        return _plural(s, "second")
    m, r = divmod(s, 60)
    return _plural(m, "minute") + (f" {_plural(r, 'second')}" if r else "")


def _steadiness_words(value: float) -> str:
    word = "steady" if value >= 75 else "fairly steady" if value >= 50 else "shaky"
    return f"{word} strap, {round(value)} out of 100"


def summary_line(holds: Sequence[HoldRecord], sessions_this_week: int, streak_days: int) -> str:
    """A short friendly line for the voice after a session.

    E.g. "Nice work. Right leg 60 seconds, left leg 60 seconds. That's 3 sessions this
    week, and a 2 day streak." Early ends and the strap's steadiness are mentioned.
    """
    legs: dict[str, list[HoldRecord]] = {}
    for h in holds:
        legs.setdefault(h.leg, []).append(h)
    parts: list[str] = []
    plain = True
    for leg, hs in legs.items():
        text = f"{leg} leg {duration_words(sum(h.held_s for h in hs))}"
        if len(hs) > 1:
            text += f" over {len(hs)} holds"
        extras = []
        if any(h.ended == "early" for h in hs):
            extras.append("ended early")
        steady = [h.steadiness for h in hs if h.steadiness is not None]
        if steady:
            extras.append(_steadiness_words(sum(steady) / len(steady)))
        plain = plain and not extras
        parts.append(", ".join([text, *extras]))
    if not holds:
        opener = "Session over."
    elif any(h.ended == "early" for h in holds):
        opener = "Good effort."
    else:
        opener = "Nice work."
    sentences = [opener]
    if parts:
        sentences += [", ".join(parts) + "."] if plain else [p + "." for p in parts]
    week = ("" if sessions_this_week <= 0 else "That's your first session this week"
            if sessions_this_week == 1 else f"That's {sessions_this_week} sessions this week")
    if streak_days >= 2:
        streak = f"a {streak_days} day streak"
        week = f"{week}, and {streak}" if week else f"That's {streak}"
    if week:
        sentences.append(week + ".")
    sentences[1:] = [s[0].upper() + s[1:] for s in sentences[1:]]
    return " ".join(sentences)


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class OutboxEntry:
    """A session waiting for the broker: outbox row id, message id, the session."""

    id: int
    msg_id: str
    session: SessionRecord


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
)
SCHEMA_VERSION = len(MIGRATIONS)


class History:
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
                c.execute("BEGIN IMMEDIATE")
                try:
                    version = self._check_version()  # another process may have migrated
                    for step in MIGRATIONS[version:]:
                        for statement in step:
                            c.execute(statement)
                    c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    c.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
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
                        "INSERT INTO sessions (started_us, started, ended_us, ended, outcome,"
                        " routine) VALUES (?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (started_us) DO NOTHING",
                        (_micros(session.started), session.started.isoformat(),
                         _micros(session.ended), session.ended.isoformat(),
                         session.outcome, session.routine))
                    if cur.rowcount == 0:
                        c.execute("ROLLBACK")
                        return False
                    c.executemany(
                        "INSERT INTO holds (session_id, seq, leg, round, planned_s, held_s,"
                        " ended, mean, peak, steadiness) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(cur.lastrowid, i, h.leg, h.round, h.planned_s, h.held_s, h.ended,
                          h.mean, h.peak, h.steadiness) for i, h in enumerate(session.holds)])
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

    def outbox_pending(self, after: int = 0, limit: int = 100) -> list[OutboxEntry]:
        """Undelivered outbox entries with an id above ``after``, oldest first."""
        def run(c: sqlite3.Connection) -> list[OutboxEntry]:
            rows = c.execute(
                "SELECT o.id, o.msg_id, s.started_us FROM outbox o JOIN sessions s"
                " ON s.id = o.session_id WHERE o.delivered_us IS NULL AND o.id > ?"
                " ORDER BY o.id LIMIT ?", (after, limit)).fetchall()
            out = []
            for oid, msg_id, started_us in rows:
                session = self._load("WHERE started_us = ?", (started_us,), "", None)[0]
                out.append(OutboxEntry(oid, msg_id, session))
            return out
        return self._query(run)

    def outbox_delivered(self, entry_id: int, at: datetime) -> None:
        """Mark an outbox entry delivered (the broker acknowledged it at ``at``)."""
        with self._lock:
            try:
                self._conn.execute("UPDATE outbox SET delivered_us = ? WHERE id = ?"
                                   " AND delivered_us IS NULL", (_micros(at), entry_id))
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
            sql = f"SELECT id, started, ended, outcome, routine FROM sessions {where} {order}"
            rows = c.execute(sql + (f" LIMIT {int(limit)}" if limit is not None else ""),
                             args).fetchall()
            holds: dict[int, list[HoldRecord]] = {r[0]: [] for r in rows}
            ids = list(holds)
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                for hr in c.execute(
                        "SELECT session_id, leg, round, planned_s, held_s, ended, mean, peak,"
                        f" steadiness FROM holds WHERE session_id IN ({','.join('?' * len(chunk))})"
                        " ORDER BY session_id, seq", chunk):
                    holds[hr[0]].append(HoldRecord(*hr[1:]))
            return [SessionRecord(datetime.fromisoformat(r[1]), datetime.fromisoformat(r[2]),
                                  r[3], r[4], tuple(holds[r[0]])) for r in rows]
        return self._query(run)

    def recent(self, limit: int = 10) -> list[SessionRecord]:
        """The last ``limit`` sessions, newest first."""
        return self._load("", (), "ORDER BY started_us DESC", limit)

    def sessions(self, since: datetime | None = None,
                 until: datetime | None = None) -> list[SessionRecord]:
        """Sessions started in [since, until), oldest first (all when both are None)."""
        lo = _micros(since) if since is not None else -(2**62)
        hi = _micros(until) if until is not None else 2**62
        return self._load("WHERE started_us >= ? AND started_us < ?", (lo, hi),
                          "ORDER BY started_us", None)

    def count(self) -> int:
        """Number of sessions stored."""
        return self._query(lambda c: c.execute("SELECT count(*) FROM sessions").fetchone()[0])

    def complete_starts(self, since: datetime | None = None) -> list[datetime]:
        """Start times of complete sessions (from ``since``), oldest first."""
        lo = _micros(since) if since is not None else -(2**62)
        return self._query(lambda c: [datetime.fromisoformat(r[0]) for r in c.execute(
            "SELECT started FROM sessions WHERE outcome = 'complete' AND started_us >= ?"
            " ORDER BY started_us", (lo,))])

    def leg_progress(self, leg: str, limit: int = 30) -> list[LegSession]:
        """The last ``limit`` sessions seen from ``leg``, newest first (for progression)."""
        return [LegSession.of(s, leg) for s in self.recent(limit)]

    # queries for the loop and the report; tz defaults to now's zone

    def streak_days(self, now: datetime, tz: tzinfo | None = None) -> int:
        """See ``streak_days``."""
        return streak_days(self.complete_starts(), now, tz)

    def done_today(self, now: datetime, tz: tzinfo | None = None) -> bool:
        """See ``done_today``."""
        return done_today(self.complete_starts(now - timedelta(days=2)), now, tz)

    def sessions_this_week(self, now: datetime, tz: tzinfo | None = None) -> int:
        """See ``sessions_this_week``."""
        return sessions_this_week(self.complete_starts(now - timedelta(days=9)), now, tz)

    def sessions_per_week(self, now: datetime, weeks: int = 8,
                          tz: tzinfo | None = None) -> list[tuple[date, int]]:
        """See ``sessions_per_week``."""
        starts = self.complete_starts(now - timedelta(weeks=weeks, days=2))
        return sessions_per_week(starts, now, weeks, tz)

    def minutes_today(self, now: datetime, tz: tzinfo | None = None) -> float:
        """See ``minutes_today``."""
        return minutes_today(self.sessions(since=now - timedelta(days=2)), now, tz)


# --------------------------------------------------------------------------- fault-tolerant


def default_fallback_path(db_path: Path) -> Path:
    """The JSON-lines file beside the database for sessions it could not take."""
    return db_path.with_name(db_path.stem + "-unsaved.jsonl")


class SafeHistory:
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
                 logger: logging.Logger | None = None, outbox: bool = False) -> None:
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
        self._lock = threading.RLock()

    @property
    def pending(self) -> tuple[SessionRecord, ...]:
        """Sessions waiting in memory for the store."""
        return tuple(self._pending)

    @property
    def ok(self) -> bool:
        """False while the store is failing."""
        return not self._failing

    def record(self, session: SessionRecord) -> bool:
        """Save ``session``; True if it (and everything pending) reached the store."""
        with self._lock:
            self._pending.append(session)
            if self._drain():
                return True
            self._append_fallback(session)
            return False

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
        if self._failing:
            self._failing = False
            self._log.info("history store %s works again%s", self.path,
                           f"; imported {imported} session(s)" if imported else "")
        return True

    def _append_fallback(self, session: SessionRecord) -> None:
        try:
            self.fallback_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.fallback_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(session_to_dict(session), separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except (OSError, TypeError, ValueError) as e:
            if not self._fallback_failing:
                self._fallback_failing = True
                self._log.warning("cannot write fallback file %s either: %s",
                                  self.fallback_path, e)

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

    # ----------------------------------------------------------------- queries

    def _stored(self, fetch: Callable[[History], list[Any]]) -> list[Any]:
        with self._lock:
            try:
                return fetch(self._open())
            except Exception as e:  # noqa: BLE001
                self._fail(e)
                return []

    def _complete_starts(self, since: datetime | None = None) -> list[datetime]:
        starts = {_micros(t): t for t in self._stored(lambda h: h.complete_starts(since))}
        for s in self._pending:
            if s.outcome == "complete":
                starts.setdefault(_micros(s.started), s.started)
        return list(starts.values())

    def streak_days(self, now: datetime, tz: tzinfo | None = None) -> int:
        """See ``streak_days``."""
        return streak_days(self._complete_starts(), now, tz)

    def done_today(self, now: datetime, tz: tzinfo | None = None) -> bool:
        """See ``done_today``."""
        return done_today(self._complete_starts(now - timedelta(days=2)), now, tz)

    def sessions_this_week(self, now: datetime, tz: tzinfo | None = None) -> int:
        """See ``sessions_this_week``."""
        return sessions_this_week(self._complete_starts(now - timedelta(days=9)), now, tz)

    def minutes_today(self, now: datetime, tz: tzinfo | None = None) -> float:
        """See ``minutes_today``."""
        stored = self._stored(lambda h: h.sessions(since=now - timedelta(days=2)))
        return minutes_today(_merge(stored, self._pending), now, tz)

    def leg_progress(self, leg: str, limit: int = 30) -> list[LegSession]:
        """See ``History.leg_progress``; pending sessions included."""
        stored = self._stored(lambda h: h.recent(limit))
        merged = sorted(_merge(stored, self._pending), key=lambda s: s.started, reverse=True)
        return [LegSession.of(s, leg) for s in merged[:limit]]


def _merge(stored: Iterable[SessionRecord],
           pending: Iterable[SessionRecord]) -> list[SessionRecord]:
    """Stored plus pending sessions, one per start instant."""
    seen: dict[int, SessionRecord] = {_micros(s.started): s for s in stored}
    for s in pending:
        seen.setdefault(_micros(s.started), s)
    return list(seen.values())
