"""The studio view: every box's availability, stats and sessions, from the broker.

``stretch-companion studio --mqtt URL [--db FILE] [--json] [--follow]``. A persistent MQTT
session (fixed client id, clean session off, QoS 1), so sessions published while the
studio was stopped are delivered when it comes back. Each message is stored (SQLite,
de-duplicated by the session's id) before paho acknowledges it to the broker.

Every message is data: bounded and checked (``device.core.payload``) before anything acts on
it. One that fails is acknowledged all the same (never resent for ever), logged once per
topic and reason, and set aside in the ``quarantine`` table with a count; a bad retained
``stats`` is never stored, so it cannot outlive the broker's copy.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device.addons.mqtt import parse_url, read_password
from device.core.config import _topic
from device.core.errors import ConfigError, UsageError
from device.core.payload import BadPayload, parse_json, session_message, stats_message
from device.core.records import LEGS, session_from_dict
from device.core.tightness import asymmetry
from device.store.paths import default_history_path

log = logging.getLogger(__name__)

ROOT = "stretch-companion"
CLIENT_ID = "stretch-companion-studio"
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS boxes (
        box TEXT PRIMARY KEY,
        online INTEGER,            -- 1 online, 0 offline, NULL never heard
        stats TEXT,                -- the box's last retained stats (JSON)
        seen_us INTEGER            -- last message from it (microseconds since the epoch)
    )""",
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,       -- the session message's id: de-duplication
        box TEXT NOT NULL,
        started TEXT NOT NULL,
        ended TEXT NOT NULL,
        ended_us INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        payload TEXT NOT NULL,     -- the whole message (JSON)
        received_us INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_box ON sessions(box, ended_us)",
    """CREATE TABLE IF NOT EXISTS quarantine (
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,      -- one line: why it was refused
        count INTEGER NOT NULL,    -- how many such messages arrived
        first_us INTEGER NOT NULL,
        last_us INTEGER NOT NULL,
        sample TEXT NOT NULL,      -- the start of the last one (at most 200 characters)
        PRIMARY KEY (topic, reason)
    )""",
    # first_connected: when this studio first reached the broker (ISO time); the broker
    # keeps sessions for it only from then on
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
MAX_QUARANTINE = 200  # distinct (topic, reason) rows kept; the oldest go first
MAX_CLIENT_ID = 128
CLIENT_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _now_us() -> int:
    return time.time_ns() // 1000


class StudioStore:
    """The studio's SQLite file; thread-safe; each write is one durable transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                     timeout=5.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:
            self._conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def mark_connected(self) -> None:
        """Note the first connection (kept: later ones do not move it)."""
        stamp = datetime.now(UTC).astimezone().isoformat(timespec="seconds")
        with self._lock:
            self._conn.execute("INSERT INTO meta (key, value) VALUES ('first_connected', ?) "
                               "ON CONFLICT DO NOTHING", (stamp,))

    def first_connected(self) -> str | None:
        """When this studio first reached the broker (ISO), or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM meta WHERE key = 'first_connected'").fetchone()
        return row[0] if row else None

    def _box(self, box: str) -> None:
        self._conn.execute("INSERT INTO boxes (box) VALUES (?) ON CONFLICT DO NOTHING", (box,))

    def add_session(self, box: str, message: dict[str, Any]) -> bool:
        """Store a session message; False when its id is already stored. Raises ValueError,
        KeyError or TypeError on a message that is not a session."""
        session_message(message, datetime.now(UTC))  # sizes, ranges, dates
        record = session_from_dict(message)  # the same checks as the box's history
        msg_id = message["id"]
        if not isinstance(msg_id, str) or not msg_id:
            raise ValueError("session message without an id")
        ended_us = int(record.ended.timestamp() * 1_000_000)
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                self._box(box)
                cur = c.execute(
                    "INSERT INTO sessions (id, box, started, ended, ended_us, outcome, payload,"
                    " received_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (msg_id, box, record.started.isoformat(), record.ended.isoformat(),
                     ended_us, record.outcome, json.dumps(message, separators=(",", ":")),
                     _now_us()))
                c.execute("UPDATE boxes SET seen_us = ? WHERE box = ?", (_now_us(), box))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return cur.rowcount == 1

    def set_online(self, box: str, online: bool) -> None:
        with self._lock:
            self._box(box)
            self._conn.execute("UPDATE boxes SET online = ?, seen_us = ? WHERE box = ?",
                               (int(online), _now_us(), box))

    def set_stats(self, box: str, stats: dict[str, Any] | None) -> None:
        """Store a box's stats (checked first: raises BadPayload); None clears them."""
        text = None
        if stats is not None:
            text = json.dumps(stats_message(stats, datetime.now(UTC)), separators=(",", ":"))
        with self._lock:
            self._box(box)
            self._conn.execute("UPDATE boxes SET stats = ?, seen_us = ? WHERE box = ?",
                               (text, _now_us(), box))

    def quarantine(self, topic: str, reason: str, payload: bytes) -> int:
        """Set a refused message aside; how many with this topic and reason so far."""
        now = _now_us()
        sample = payload[:200].decode("utf-8", "replace")
        with self._lock:
            c = self._conn
            c.execute(
                "INSERT INTO quarantine (topic, reason, count, first_us, last_us, sample)"
                " VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (topic, reason) DO UPDATE SET"
                " count = count + 1, last_us = excluded.last_us, sample = excluded.sample",
                (topic[:300], reason[:300], now, now, sample))
            c.execute("DELETE FROM quarantine WHERE rowid NOT IN (SELECT rowid FROM quarantine"
                      " ORDER BY last_us DESC LIMIT ?)", (MAX_QUARANTINE,))
            row = c.execute("SELECT count FROM quarantine WHERE topic = ? AND reason = ?",
                            (topic[:300], reason[:300])).fetchone()
        return row[0] if row else 1

    def quarantined(self) -> list[tuple[str, str, int]]:
        """(topic, reason, count) of every refused kind of message, newest first."""
        with self._lock:
            return self._conn.execute("SELECT topic, reason, count FROM quarantine"
                                      " ORDER BY last_us DESC").fetchall()

    def count(self, box: str | None = None) -> int:
        with self._lock:
            if box is None:
                return self._conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
            return self._conn.execute("SELECT count(*) FROM sessions WHERE box = ?",
                                      (box,)).fetchone()[0]

    def received(self) -> list[tuple[str, str, str, int]]:
        """(box, id, started, received_us) of every session, in arrival order."""
        with self._lock:
            return self._conn.execute(
                "SELECT box, id, started, received_us FROM sessions ORDER BY rowid").fetchall()

    def summary(self) -> list[dict[str, Any]]:
        """One object per box: online, last session, counts, streak, mean hold per leg,
        the last steadiness, each leg's latest tightness answer, and each leg's latest
        tightness index (the strap's measure; 100 = its first weeks) with the left/right
        asymmetry (%), from the sessions or else the box's retained stats."""
        with self._lock:
            boxes = self._conn.execute(
                "SELECT box, online, stats FROM boxes ORDER BY box").fetchall()
            rows = self._conn.execute(
                "SELECT box, id, ended, payload FROM sessions ORDER BY box, ended_us").fetchall()
        sessions: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
        for box, msg_id, ended, payload in rows:
            sessions.setdefault(box, []).append((msg_id, ended, json.loads(payload)))
        out = []
        for box, online, stats_text in boxes:
            stats = _stored_stats(stats_text)
            mine = sessions.get(box, [])
            held: dict[str, list[float]] = {}
            steadiness = None
            tightness: dict[str, str] = {}  # each leg's latest answer to "how tight?"
            index: dict[str, float] = {}  # each leg's latest tightness index
            for _, _, message in mine:
                steady = [h["steadiness"] for h in message.get("holds", [])
                          if h.get("steadiness") is not None]
                if steady:
                    steadiness = round(sum(steady) / len(steady), 1)
                for h in message.get("holds", []):
                    held.setdefault(h["leg"], []).append(float(h["held_s"]))
                    if h.get("tightness"):
                        tightness[h["leg"]] = h["tightness"]
                    if h.get("index") is not None:
                        index[h["leg"]] = float(h["index"])
            last = mine[-1] if mine else None
            out.append({
                "box": box,
                "online": None if online is None else bool(online),
                "last_session": last[1] if last else stats.get("last_session"),
                "last_session_id": last[0] if last else None,
                # the last session's outcome: from its message, else the box's retained
                # stats (a session sent before this studio's first connection)
                "last_outcome": last[2].get("outcome") if last else stats.get("last_outcome"),
                "sessions": len(mine),
                "sessions_this_week": stats.get("sessions_this_week"),
                "streak_days": stats.get("streak_days"),
                "mean_hold_s": {leg: round(sum(v) / len(v), 1) for leg, v in held.items()},
                "last_steadiness": steadiness,
                "last_tightness": tightness,
                "tightness_index": _index_of(index, stats.get("tightness") or {}),
            })
        return out


def _index_of(index: dict[str, float], stats: dict[str, Any]) -> dict[str, float | None]:
    """Each leg's tightness index and the asymmetry (right - left over their mean, %): from
    the sessions this studio has, else from the box's retained stats."""
    if index:  # the studio's own sessions
        legs = {leg: index.get(leg) for leg in LEGS}
        return {**legs, "asymmetry": asymmetry(legs["right"], legs["left"])}
    return {leg: stats.get(leg) for leg in (*LEGS, "asymmetry")}


def _stored_stats(stats_text: str | None) -> dict[str, Any]:
    """Stats as stored, checked again: a file written before the checks may hold anything."""
    if not stats_text:
        return {}
    try:
        return stats_message(parse_json(stats_text), datetime.now(UTC))
    except BadPayload:
        return {}


def table(rows: list[dict[str, Any]]) -> str:
    """The studio table, one line per box."""
    head = ("box", "online", "last session", "week", "streak", "mean hold R/L (s)",
            "steadiness", "tightness R/L", "index R/L (asym %)")
    lines = [head]
    for r in rows:
        online = {True: "yes", False: "no", None: "?"}[r["online"]]
        last = (r["last_session"] or "-")[:16].replace("T", " ")
        if r.get("last_outcome"):
            last += f" {r['last_outcome']}"
        mean = "/".join(f"{r['mean_hold_s'][leg]:.0f}" if leg in r["mean_hold_s"] else "-"
                        for leg in LEGS)
        answers = r.get("last_tightness") or {}
        tight = "/".join(answers.get(leg, "-").replace("_", " ") for leg in LEGS)
        idx = r.get("tightness_index") or {}
        measure = "-"
        if idx.get("right") is not None or idx.get("left") is not None:
            measure = "/".join(f"{idx[leg]:.0f}" if idx.get(leg) is not None else "-"
                               for leg in LEGS)
            if idx.get("asymmetry") is not None:
                measure += f" ({idx['asymmetry']:+.0f})"
        lines.append((r["box"], online, last, _show(r["sessions_this_week"]),
                      _show(r["streak_days"]), mean, _show(r["last_steadiness"]),
                      "-" if not answers else tight, measure))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths,
                                                                  strict=True)).rstrip()
                     for line in lines)


def _show(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


class Studio:
    """The consumer: subscribes with a persistent session and stores what arrives."""

    def __init__(self, url: str, store: StudioStore, *, client_id: str = CLIENT_ID,
                 root: str = ROOT, username: str = "", password: str | None = None,
                 ca_file: str | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        import paho.mqtt.client as mqtt


        self.host, self.port, self.tls = parse_url(url)
        self.url = url
        self.store = store
        self.root = root
        self.on_change = on_change
        self.subscribed = threading.Event()
        self.last_message = time.monotonic()
        self.new_sessions = 0
        self.duplicates = 0  # session messages whose id was already stored
        self.refused = 0  # messages set aside in quarantine
        self._bad_logged: set[tuple[str, str]] = set()  # (topic, reason) said once each
        self._down_logged = False
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False,
                        manual_ack=True)
        if username:
            c.username_pw_set(username, password)
        if self.tls:
            import ssl

            c.tls_set_context(ssl.create_default_context(cafile=ca_file))
        c.reconnect_delay_set(min_delay=0.2, max_delay=10)  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.suppress_exceptions = True  # a bug in a callback is logged, never kills paho's thread
        self.client = c

    def start(self) -> Studio:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def settle(self, quiet_s: float = 0.4, max_s: float = 5.0) -> bool:
        """Wait until subscribed and nothing arrived for ``quiet_s`` (at most ``max_s``)."""
        deadline = time.monotonic() + max_s
        if not self.subscribed.wait(max_s):
            return False
        while time.monotonic() < deadline:
            idle = time.monotonic() - self.last_message
            if idle >= quiet_s:
                return True
            time.sleep(min(quiet_s - idle, deadline - time.monotonic(), 0.1) + 0.001)
        return True

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.warning("studio: broker %s refused the connection: %s", self.url, reason)
            return
        self._down_logged = False
        self.store.mark_connected()
        client.subscribe([(f"{self.root}/+/{name}", 1)
                          for name in ("availability", "stats", "session")])

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        if not self._down_logged:
            self._down_logged = True
            log.warning("studio: cannot connect to %s; retrying", self.url)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        if not self._down_logged and not reason.is_failure:
            return
        if not self._down_logged:
            self._down_logged = True
            log.warning("studio: lost %s (%s); retrying", self.url, reason)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        self.last_message = time.monotonic()
        self.subscribed.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        """Store first, then acknowledge (QoS 1): what is acknowledged is stored."""
        self.last_message = time.monotonic()
        parts = msg.topic.split("/")
        box, name = parts[-2], parts[-1]
        payload = bytes(msg.payload)
        try:
            if len(box) > 128:
                raise BadPayload("box name over 128 characters")
            if name == "availability":
                if payload == b"":
                    pass  # a cleared retained message: nothing to note
                elif payload not in (b"online", b"offline"):
                    raise BadPayload("must be online or offline")
                else:
                    self.store.set_online(box, payload == b"online")
            elif name == "stats":
                # an empty retained message clears the stats; anything else is checked
                self.store.set_stats(box, parse_json(payload) if payload else None)
            elif name == "session":
                if self.store.add_session(box, parse_json(payload)):
                    self.new_sessions += 1
                else:
                    self.duplicates += 1
        except sqlite3.Error as exc:
            # not stored, not acknowledged: the broker sends it again after a reconnect
            log.error("studio: cannot store a message (%s); reconnecting", exc)
            client.disconnect()
            return
        except Exception as exc:  # noqa: BLE001 - whatever it was, it is set aside
            self._refuse(msg.topic, exc, payload)
        if msg.qos > 0:
            client.ack(msg.mid, msg.qos)
        if self.on_change is not None:
            self.on_change()

    def _refuse(self, topic: str, exc: BaseException, payload: bytes) -> None:
        """Set a bad message aside (it is acknowledged all the same); say so once per
        topic and reason."""
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        self.refused += 1
        try:
            self.store.quarantine(topic, reason, payload)
        except sqlite3.Error as err:
            log.warning("studio: cannot note a refused message (%s)", err)
        key = (topic, reason)
        if key not in self._bad_logged and len(self._bad_logged) < 1000:
            self._bad_logged.add(key)
            log.warning("studio: refused a message on %s (%s); set aside in quarantine",
                        topic[:200], reason)


def add_studio_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt", metavar="URL", required=True,
                        help="broker, e.g. mqtt://broker.lan:1883 or mqtts://broker.lan:8883")
    parser.add_argument("--db", metavar="FILE",
                        help="the studio's database (default: studio.db in the state folder)")
    parser.add_argument("--json", action="store_true", help="print JSON, one object per box")
    parser.add_argument("--follow", action="store_true", help="keep the table live")
    parser.add_argument("--client-id", default=CLIENT_ID,
                        help=f"persistent session name at the broker (default {CLIENT_ID})")
    parser.add_argument("--root", default=ROOT,
                        help=f"first topic level of the boxes' base topics (default {ROOT})")
    parser.add_argument("--username", default="", help="user name at the broker")
    parser.add_argument("--password-file", metavar="FILE", help="file holding the password")
    parser.add_argument("--ca-file", metavar="FILE", help="CA certificate for mqtts://")


def default_db() -> Path:

    return default_history_path(service=False).with_name("studio.db")


def studio_main(args: argparse.Namespace) -> int:
    """``studio``: take what the broker holds, store it, print the table (or follow)."""

    try:
        parse_url(args.mqtt)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    client_id = args.client_id
    if not (0 < len(client_id) <= MAX_CLIENT_ID and set(client_id) <= CLIENT_ID_CHARS):
        shown = client_id if len(client_id) <= 40 else client_id[:37] + "..."
        raise UsageError(f"--client-id {shown!r}: must be 1 to {MAX_CLIENT_ID} letters, "
                         "digits, '-', '_' or '.'")
    if _topic(args.root, empty_ok=False) is not None:
        raise UsageError(f"--root {args.root!r}: must be a topic without '+', '#' or '$'")
    password = read_password(args.password_file) if args.password_file else None
    try:
        store = StudioStore(args.db or default_db())
    except (sqlite3.Error, OSError) as exc:
        raise UsageError(f"--db {args.db}: cannot use it ({exc})") from None

    def show() -> None:
        rows = store.summary()
        if args.json:
            print(json.dumps(rows, indent=None if args.follow else 2), flush=True)
        else:
            if args.follow:
                sys.stdout.write("\x1b[H\x1b[2J")
            stamp = datetime.now(UTC).astimezone().strftime("%H:%M:%S")
            since = (store.first_connected() or "now")[:16].replace("T", " ")
            print(f"{table(rows)}\n({len(rows)} box(es), {stamp}; sessions are those sent "
                  f"since this studio first connected, {since}: the broker keeps none from "
                  "before, so earlier ones show only in each box's last session, week and "
                  "streak)", flush=True)

    changed = threading.Event()
    studio = Studio(args.mqtt, store, client_id=args.client_id, root=args.root,
                    username=args.username, password=password, ca_file=args.ca_file,
                    on_change=changed.set)
    studio.start()
    try:
        if not studio.settle():
            print(f"stretch-companion studio: no answer from {args.mqtt} within 5 s; "
                  "showing what is stored", file=sys.stderr)
        show()
        while args.follow:
            if changed.wait(1.0):
                time.sleep(0.2)  # let a burst land before redrawing
                changed.clear()
                show()
    except KeyboardInterrupt:
        pass
    finally:
        studio.stop()
        store.close()
    return 0
