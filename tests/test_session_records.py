"""What a session leaves behind when it stops early, when the store is slow or locked,
and when nothing can be written: the hold in progress, the history off the loop, the
unsaved session kept in memory and said so."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

import pytest

from device.apps.cli import main
from device.apps.sim import make_sim
from device.core.config import Config
from device.core.script import parse_script
from device.store.sqlite import History
from tests.conftest import Events

START = "2026-01-05T08:00:00+00:00"
WALL = datetime.fromisoformat(START)


def headless(tmp_path: Path, script: str, *extra: str) -> list[dict]:
    events = tmp_path / "events.jsonl"
    argv = ["sim", "--headless", "--quiet", "--history", str(tmp_path / "h.db"),
            "--start", START, "--events", str(events), "--script", script, *extra]
    assert main(argv) == 0
    return [json.loads(line) for line in events.read_text().splitlines()]


def test_a_cancelled_hold_is_in_the_transcript_and_the_history(tmp_path: Path) -> None:
    got = headless(tmp_path, "press@1,press@8,press@8.3,long@38")  # a double press: hold
    hold = [e for e in got if e["kind"] == "hold"]
    assert [(h["leg"], h["round"], h["planned_s"], h["ended"]) for h in hold] == \
        [("right", 1, 60.0, "cancelled")]
    assert abs(hold[0]["held_s"] - 31.6) < 0.2  # the long press is told apart after 2 s
    session = next(e for e in got if e["kind"] == "session")
    assert session["outcome"] == "cancelled" and session["holds"] == 1
    with History(tmp_path / "h.db") as h:
        (stored,) = h.recent()
    assert stored.outcome == "cancelled"
    assert [(x.leg, x.ended) for x in stored.holds] == [("right", "cancelled")]


def test_an_interrupted_hold_is_recorded(tmp_path: Path) -> None:
    got = headless(tmp_path, "press@1,press@8,press@8.3", "--until", "50")
    hold = [e for e in got if e["kind"] == "hold"]
    assert [(h["ended"], round(h["held_s"], 1)) for h in hold] == [("interrupted", 41.6)]
    with History(tmp_path / "h.db") as h:
        (stored,) = h.recent()
    assert stored.outcome == "interrupted" and stored.holds[0].ended == "interrupted"


# ---- the history off the loop ----------------------------------------------------------

# start, a double press to the hold, after the tightness question on to the left leg and
# straight to its hold
SESSION = "press@1,press@2,press@2.3,press@90,press@91,press@91.3"


def _session(db: Path, listener, start: datetime = WALL) -> object:
    box = make_sim(Config(), listeners=[listener], history=db, start=start)
    box.add_script(parse_script(SESSION))
    box.loop.run(until=3000, stop_when_done=True)
    box.close()
    return box


def test_a_locked_database_does_not_hold_up_the_summary_or_the_light(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the database locked (BEGIN EXCLUSIVE) until the summary is
    spoken: the loop must get there without waiting for the write, which then succeeds;
    no store call runs in the loop's thread; the transcript is the unlocked run's."""
    plain = Events()
    _session(tmp_path / "plain.db", plain)

    db = tmp_path / "locked.db"
    History(db).close()  # the schema, in WAL mode
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    loop_thread: list[threading.Thread] = []
    store_calls: list[str] = []
    for name in ("record", "complete_starts", "recent", "sessions"):
        original = getattr(History, name)

        def spy(self, *a, _original=original, _name=name, **k):  # noqa: ANN001, ANN202
            if loop_thread and threading.current_thread() is loop_thread[0]:
                store_calls.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(History, name, spy)
    events = Events()
    seen: dict[str, bool] = {}

    def listener(event: dict) -> None:
        events(event)
        if event["kind"] == "button" and not loop_thread:
            loop_thread.append(threading.current_thread())
        if event["kind"] == "speak" and event["key"] == "summary":
            seen["history_first"] = bool(events.kind("history"))
            locker.execute("ROLLBACK")  # the other process lets go

    _session(db, listener)
    locker.close()
    assert seen == {"history_first": False}
    assert store_calls == []
    assert [e["saved"] for e in events.kind("history")] == [True]
    assert list(events) == list(plain)
    with History(db) as h:
        assert h.count() == 1


def test_a_database_locked_throughout_changes_nothing_but_the_history_event(
        tmp_path: Path) -> None:
    """Locked for the whole run (the write gives up after its busy timeout): the virtual-
    time transcript is the unlocked run's but for ``saved``; the session waits in the
    fallback file."""
    plain = Events()
    _session(tmp_path / "plain.db", plain)
    db = tmp_path / "locked.db"
    History(db).close()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        locked = Events()
        _session(db, locked)
    finally:
        locker.close()
    assert [e["saved"] for e in locked.kind("history")] == [False]
    assert [{**e, "saved": True} if e["kind"] == "history" else e for e in locked] == plain
    assert (tmp_path / "locked-unsaved.jsonl").exists()


def test_the_history_event_comes_after_the_write_in_the_loop(tmp_path: Path) -> None:
    """On virtual time the history event is published when the box goes idle (the write
    takes no virtual time), right after the idle state."""
    events = Events()
    _session(tmp_path / "h.db", events)
    kinds = [(e["kind"], e.get("state")) for e in events if e["kind"] != "led"]
    at = kinds.index(("history", None))
    assert kinds[at - 1] == ("state", "idle")
    assert events.kind("history")[0]["t"] == events.kind("state")[-1]["t"]


# ---- nothing writable ------------------------------------------------------------------

def test_a_session_that_cannot_be_written_anywhere_is_kept_said_and_retried(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be")  # no folder, even for root
    db = blocker / "history.db"
    events = Events()
    with caplog.at_level(logging.WARNING):
        box = make_sim(Config(), listeners=[events], history=db, start=WALL)
        box.add_script(parse_script(SESSION))
        box.loop.run(until=3000, stop_when_done=True)
    assert [e["saved"] for e in events.kind("history")] == [False]
    spoken = [e for e in events.kind("speak") if e["key"] == "history.not_saved"]
    assert len(spoken) == 1 and "couldn't save" in spoken[0]["text"]
    assert "could not be saved" in caplog.text and str(db) in caplog.text
    assert [s.outcome for s in box.habit.history.pending] == ["complete"]
    # the folder can be made; the next change of state retries, while the box runs
    assert box.bus.drain(10)  # the writer's own retry at idle has failed by now
    assert box.habit.history.pending
    blocker.unlink()
    blocker.mkdir()
    box.loop.schedule(box.loop.clock.now() - box.loop.origin + 1, box.press_now)
    box.loop.run(until=box.loop.clock.now() - box.loop.origin + 3)
    assert box.bus.drain(10)
    assert box.habit.history.pending == ()
    box.close()
    with History(db) as h:
        (stored,) = h.recent()
    assert stored.outcome == "complete" and len(stored.holds) == 2


def test_on_a_running_clock_the_history_event_is_published_by_the_loop(tmp_path: Path) -> None:
    """Real time (sped up): the writer hands its result to the loop, which publishes it
    while it runs (not only when the box closes)."""
    from device.box.clock import RealClock

    events = Events()
    box = make_sim(Config(), clock=RealClock(20.0), listeners=[events],
                   history=tmp_path / "h.db", start=WALL)
    publishers: list[threading.Thread] = []

    def on_history(event: object) -> None:
        publishers.append(threading.current_thread())
        box.loop.stop()

    box.bus.subscribe(on_history, ["history"])
    box.add_script(parse_script("press@5,long@10"))
    box.loop.run(until=3600)  # stopped by the history event, long before this
    running_thread = threading.current_thread()
    box.close()
    assert publishers == [running_thread]
    assert [e["outcome"] for e in events.kind("history")] == ["cancelled"]
    assert events.kind("history")[0]["t"] < 600
