"""The studio on a real Mosquitto takes every message as data (issue 22).

A poison session message (100,000 nested brackets), a retained ``stats`` that is not an
object, figures out of range and a session from the year 9999 are acknowledged, logged
once and set aside in the quarantine table; a valid session sent after them arrives, and
a restarted studio is not fed the poison again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from device.apps.studio import Studio, StudioStore
from device.core.payload import BadPayload, parse_json, session_message, stats_message
from device.core.records import session_to_dict
from tests.broker import INSTALL, MOSQUITTO, Mosquitto
from tests.mqtt_box import START, session
from tests.tools import need

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 10.0
TOPIC = "stretch-companion/box1"



@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    need(MOSQUITTO is not None, "mosquitto", INSTALL)
    m = Mosquitto(tmp_path / "broker", tls=False)
    m.start()
    yield m
    m.stop()


def message(i: int) -> dict:
    return {"id": f"box1-{i}", "box": "box1", **session_to_dict(session(i))}


def send(port: int, items: list[tuple[str, bytes, bool]]) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for topic, payload, retain in items:
            c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)
    finally:
        c.disconnect()
        c.loop_stop()


def wait_until(pred, timeout_s: float = WAIT_S) -> bool:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_poison_and_bad_stats_are_set_aside_and_the_valid_session_arrives(
        broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "studio.db"
    store = StudioStore(db)
    s = Studio(broker.url, store).start()  # the persistent session exists from here
    assert s.subscribed.wait(WAIT_S)
    s.stop()
    poison = b"[" * 100_000 + b"]" * 100_000
    year_9999 = {**message(5), "id": "box1-9999",
                 "started": "9999-01-01T00:00:00+00:00", "ended": "9999-01-01T00:02:00+00:00"}
    huge_hold = message(2)
    huge_hold["id"] = "box1-huge"
    huge_hold["holds"][0]["held_s"] = 1e308
    send(broker.port, [
        (f"{TOPIC}/stats", b"[]", True),  # retained, not an object
        (f"{TOPIC}/session", poison, False),
        (f"{TOPIC}/session", b"[" * 30_000 + b"]" * 30_000, False),  # under the size limit
        (f"{TOPIC}/session", json.dumps(year_9999).encode(), False),
        (f"{TOPIC}/session", json.dumps(huge_hold).encode(), False),
        (f"{TOPIC}/session", json.dumps(message(1)).encode(), False),
    ])
    caplog.set_level(logging.WARNING, "device.studio")
    s = Studio(broker.url, store).start()
    try:
        assert wait_until(lambda: store.count() == 1)
        assert wait_until(lambda: s.refused >= 5)  # the retained stats may come twice
        # every poisoned session set aside (so acknowledged) before this studio stops
        assert wait_until(lambda: sum(n for topic, _, n in store.quarantined()
                                      if topic.endswith("/session")) >= 4), store.quarantined()
        assert [r[1] for r in store.received()] == ["box1-1"]
        reasons = {topic.rsplit("/", 1)[1] + ": " + reason
                   for topic, reason, _ in store.quarantined()}
        assert any("stats: must be a JSON object" in r for r in reasons), reasons
        assert any("200000 bytes (at most 65536)" in r for r in reasons), reasons
        assert any("nested 30000 deep" in r for r in reasons), reasons
        assert any("in the future" in r for r in reasons), reasons
        assert any("held_s" in r for r in reasons), reasons
        refused = [r for r in caplog.records if "refused a message" in r.getMessage()]
        assert len(refused) == 5
        rows = store.summary()
        assert rows[0]["streak_days"] is None and rows[0]["sessions"] == 1
    finally:
        s.stop()
    stats_seen = dict(((t, r), n) for t, r, n in store.quarantined())
    # the broker holds nothing more for the studio: every bad message was acknowledged
    send(broker.port, [(f"{TOPIC}/stats", b"[]", True), (f"{TOPIC}/stats", b"", True)])
    s = Studio(broker.url, store).start()
    try:
        assert s.settle()
        assert s.refused >= 1  # the new [] (queued, perhaps retained too): counted
        now_seen = {(t, r): n for t, r, n in store.quarantined()}
        assert set(now_seen) == set(stats_seen)
        for (topic, reason), n in now_seen.items():  # no old poison came back
            if "stats" in topic:
                assert n > stats_seen[(topic, reason)]
            else:
                assert n == stats_seen[(topic, reason)]
        assert s.new_sessions == 0 and store.count() == 1
    finally:
        s.stop()
    r = subprocess.run([sys.executable, "-m", "device", "studio", "--mqtt", broker.url,
                        "--db", str(db), "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["sessions"] == 1
    store.close()


def test_stats_stored_before_the_checks_do_not_break_the_table(tmp_path: Path) -> None:
    db = tmp_path / "studio.db"
    StudioStore(db).close()
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO boxes (box, online, stats) VALUES ('a', 1, '[]'),"
                  " ('b', 0, '{\"streak_days\": -5}')")
    store = StudioStore(db)
    rows = store.summary()
    assert [(r["box"], r["streak_days"]) for r in rows] == [("a", None), ("b", None)]
    store.close()


def test_figures_out_of_range_are_refused() -> None:
    now = START + timedelta(days=30)
    good = {"sessions_this_week": 3, "streak_days": 2, "minutes_today": 4.5,
            "last_session": START.isoformat(), "last_outcome": "complete",
            "next_hold_s": {"right": 60.0, "left": 75.0}, "updated": now.isoformat()}
    assert stats_message(good, now) == good
    for bad in ({"streak_days": -5}, {"streak_days": True}, {"minutes_today": 1e308},
                {"last_session": "9999-01-01T00:00:00+00:00"},
                {"last_session": "2026-01-01T00:00:00"}, {"next_hold_s": {"left": -1}},
                {"sessions_this_week": 1.5}, {"nope": 1}):
        with pytest.raises(BadPayload):
            stats_message({**good, **bad}, now)
    ok = message(1)
    assert session_message(ok, now) == ok
    for change in ({"started": "9999-01-01T00:00:00+00:00"}, {"id": ""}, {"id": 7},
                   {"holds": [{}] * 65}, {"ended": START.isoformat()}):
        with pytest.raises(BadPayload):
            session_message({**ok, **change}, now)
    long_hold = replace(session(1).holds[0], held_s=86401.0)
    with pytest.raises(BadPayload, match="held_s"):
        session_message({**ok, "holds": [session_to_dict(replace(
            session(1), holds=(long_hold,)))["holds"][0]]}, now)


def test_parse_json_is_bounded_and_depth_safe() -> None:
    assert parse_json(b'{"a": [1, {"b": "[[[["}]}') == {"a": [1, {"b": "[[[["}]}
    for bad, why in ((b"[" * 60_000, "nested 60000 deep"), (b"x" * 70_000, "bytes"),
                     (b"\xff", "UTF-8"), (b"NaN", "not a number"), (b"[1,", "not JSON"),
                     (b'{"a": Infinity}', "not a number")):
        with pytest.raises(BadPayload, match=why):
            parse_json(bad)


def test_studio_client_id_is_bounded(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "device", "studio", "--mqtt",
                        "mqtt://127.0.0.1:1", "--db", str(tmp_path / "s.db"),
                        "--client-id", "x" * 70_000],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "--client-id" in r.stderr


def test_the_box_s_own_messages_pass_the_studio_s_checks() -> None:
    """Every figure a box sends (the strap's relaxation fields, each leg's tightness in
    stats) is one the studio accepts: the two sides share the core's field lists."""
    from datetime import UTC, datetime, timedelta

    from device.addons.mqtt import OutboxEntry, session_payload
    from device.core.payload import session_message, stats_message
    from device.core.records import RELAX_FIELDS, HoldRecord, SessionRecord

    now = datetime.now(UTC)
    figures = dict.fromkeys(RELAX_FIELDS, 12.5)
    hold = HoldRecord("right", 1, 60.0, 60.0, "complete", mean=5.0, peak=6.0,
                      steadiness=90.0, tightness="tight", overpull_s=0.0, **figures)
    record = SessionRecord(now - timedelta(minutes=5), now - timedelta(minutes=2), "complete",
                           "hamstring", (hold,))
    message = json.loads(json.dumps(session_payload(OutboxEntry(1, "box1-1", record), "box1")))
    assert session_message(message, now)["holds"][0]["tau_s"] == 12.5
    stats = {"sessions_this_week": 1, "tightness": {"right": 98.0, "left": 104.0,
                                                     "asymmetry": -5.9}}
    assert stats_message(stats, now) == stats


def test_the_table_shows_each_leg_s_tightness_index_and_the_asymmetry(tmp_path: Path) -> None:
    """Issue 21: the strap's measure in the studio: from a box's sessions (each leg's latest
    index, their asymmetry), else from its retained stats (a box whose sessions came before
    the studio's first connection)."""
    from device.apps.studio import table

    db = tmp_path / "studio.db"
    StudioStore(db).close()
    with_index = message(1)
    for h, idx in zip(with_index["holds"], (96.0, 104.0), strict=False):
        h["index"] = idx
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO boxes (box, online, stats) VALUES ('box1', 1, NULL), ('box2', 1,"
                  " '{\"tightness\": {\"right\": 90.0, \"left\": 99.0, \"asymmetry\": -9.5}}')")
    store = StudioStore(db)
    assert store.add_session("box1", with_index)
    rows = {r["box"]: r for r in store.summary()}
    legs = [h["leg"] for h in with_index["holds"]]
    want = dict(zip(legs, (96.0, 104.0), strict=False))
    assert rows["box1"]["tightness_index"] == {**want, "asymmetry": -8.0 if legs[0] == "right"
                                               else 8.0}
    assert rows["box2"]["tightness_index"] == {"right": 90.0, "left": 99.0, "asymmetry": -9.5}
    text = table(list(rows.values()))
    assert "index R/L (asym %)" in text and "90/99 (-10)" in text
    store.close()
