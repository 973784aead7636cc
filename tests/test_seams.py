"""The boundary around the loop: the bus, slow subscribers, the read model, the command
port, and the builder making the same box for every command."""

from __future__ import annotations

import ast
import shutil
import threading
import time
from pathlib import Path

import pytest

from device.apps.builder import LoopCommands, build_box
from device.box.bus import EventBus
from device.box.clock import RealClock
from device.box.events import (
    CATALOGUE,
    HoldEvent,
    LedEvent,
    SessionEvent,
    StateEvent,
    TensionEvent,
)
from device.core.config import Config, with_overrides
from device.core.machine import State
from drivers.speech import RecordingSpeaker
from tests.tools import need

ROOT = Path(__file__).resolve().parent.parent


# ---- the bus ------------------------------------------------------------------------------


def test_led_frames_go_only_to_subscribers_that_name_them() -> None:
    bus = EventBus()
    everything, lights = [], []
    bus.subscribe(everything.append)
    bus.subscribe(lights.append, ["led"])
    bus.publish(LedEvent(0.0, 0.5))
    bus.publish(StateEvent(0.0, "idle", None, 0))
    assert [e.kind for e in everything] == ["state"]
    assert [e.kind for e in lights] == ["led"]


def test_a_full_queue_drops_light_first_never_state_hold_or_session(caplog) -> None:
    bus = EventBus()
    gate = threading.Event()
    got: list = []

    def slow(event) -> None:
        gate.wait(10)
        got.append(event)

    sub = bus.subscribe(slow, ["led", "tension", "state", "hold", "session"], queued=True,
                        name="slow-page", maxsize=5)
    bus.publish(StateEvent(0.0, "setup", "right", 1))  # taken by the thread, which blocks
    time.sleep(0.05)  # let the worker pick it up (it then waits on the gate)
    for i in range(200):
        bus.publish(LedEvent(i, i / 200))
        bus.publish(TensionEvent(i, 1.0, "kg"))
        if i % 50 == 0:
            bus.publish(StateEvent(i, "hold", "right", 1))
    bus.publish(HoldEvent(200.0, "right", 1, 60.0, 60.0, "complete"))
    bus.publish(SessionEvent(201.0, "complete", 2))
    gate.set()
    assert bus.drain(5)
    kinds = [e.kind for e in got]
    assert kinds.count("state") == 5 and kinds.count("hold") == 1 and kinds.count("session") == 1
    assert kinds.count("led") + kinds.count("tension") <= 5
    assert sub.queue is not None and sub.queue.dropped > 0
    assert sum("fell behind" in r.message for r in caplog.records) == 1  # said once
    bus.close()


def test_a_queue_full_of_events_it_must_keep_says_once_that_it_fell_behind(caplog) -> None:
    bus = EventBus()
    gate = threading.Event()
    got: list = []
    bus.subscribe(lambda e: (gate.wait(10), got.append(e)), ["state"], queued=True,
                  name="slow-state", maxsize=2)
    for i in range(6):  # nothing lossy to drop: the queue grows, and says so once
        bus.publish(StateEvent(float(i), "hold", "right", 1))
    gate.set()
    assert bus.drain(5)
    assert [e.t for e in got] == [float(i) for i in range(6)]
    assert sum("slow-state fell behind" in r.message for r in caplog.records) == 1
    bus.close()


def test_a_failing_in_loop_subscriber_does_not_stop_the_others(caplog) -> None:
    bus = EventBus()
    got: list = []

    def broken(event) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.subscribe(got.append)
    bus.publish(StateEvent(0.0, "idle", None, 0))
    assert len(got) == 1 and "boom" in caplog.text


def test_every_event_kind_has_its_json_form() -> None:
    for kind, cls in CATALOGUE.items():
        assert cls.kind == kind
    hold = HoldEvent(1.0, "left", 1, 60.0, 59.5, "early", (("mean", 5.0), ("peak", 6.0),
                                                            ("steadiness", 80.0)))
    assert hold.to_json() == {"t": 1.0, "kind": "hold", "leg": "left", "round": 1,
                              "planned_s": 60.0, "held_s": 59.5, "ended": "early",
                              "mean": 5.0, "peak": 6.0, "steadiness": 80.0}
    assert SessionEvent(2.0, "complete", 2).transcript() == {
        "t": 2.0, "kind": "session", "outcome": "complete", "holds": 2}


def test_every_event_round_trips_through_json() -> None:
    """A whole two-leg session with the strap (bouncing, over-pull, unplug): each event on
    the bus, as JSON text and back, is the same event; its kind picks its class."""
    import json

    from device.box.events import Event
    from device.core.script import ACTIONS, SENSOR_ACTIONS, parse_script

    seen: list[Event] = []
    config = with_overrides(Config(), session={"switch": "auto"})
    script = ("press@1,tension@3:0,press@20,press@20.3,tension@22:6,bounce@30:4,"
              "tension@50:14,tension@55:6,press@85,press@86,unplug@150,replug@158")
    box = build_box(config, sensor=True)
    box.bus.subscribe(seen.append, CATALOGUE.keys(), name="test")
    box.add_script(parse_script(script, {**ACTIONS, **SENSOR_ACTIONS}))
    box.loop.run(until=900, stop_when_done=True)
    box.close()
    kinds = {e.kind for e in seen}
    assert {"state", "speak", "hold", "session", "tension", "led", "coach", "sensor",
            "tightness", "buzz", "button"} <= kinds
    for event in seen:
        again = Event.from_json(json.loads(json.dumps(event.to_json())))
        assert again == event and type(again) is type(event)
    session = next(e for e in seen if isinstance(e, SessionEvent))
    assert session.results and session.to_json()["results"][0]["leg"] == "right"
    with pytest.raises(ValueError, match="unknown event kind"):
        Event.from_json({"t": 0, "kind": "nope"})
    with pytest.raises(ValueError, match="state event"):
        Event.from_json({"t": 0, "kind": "state"})


# ---- a slow subscriber never stalls the loop -------------------------------------------------


def test_a_blocked_subscriber_changes_nothing_and_loses_no_session_hold_or_state(events):
    """On virtual time a loop that waited for it would never finish: the whole session
    runs with the subscriber blocked, the transcript is the same as without it, and once
    released it gets every state, hold and session event."""
    config = with_overrides(Config(), session={"switch": "auto"})

    def run(blocked: bool) -> tuple[list, list]:
        seen: list = []
        gate = threading.Event()
        box = build_box(config, listeners=[seen.append])
        got: list = []
        if blocked:
            box.bus.subscribe(lambda e: (gate.wait(30), got.append(e)), queued=True,
                              name="stuck", maxsize=8)
        box.add_script([])
        box.loop.schedule(1.0, box.press_now)
        box.loop.run(stop_when_done=True)
        gate.set()
        box.close()
        return seen, got

    plain, _ = run(False)
    with_slow, got = run(True)
    assert with_slow == plain
    want = [e for e in plain if e["kind"] in ("state", "hold", "session")]
    assert [e.transcript() for e in got if e.kind in ("state", "hold", "session")] == want


def test_a_subscriber_blocking_for_seconds_does_not_delay_the_hold_on_real_time() -> None:
    speed = 60.0  # a 60 s hold takes 1 s of real time
    config = with_overrides(Config(), light={"hz": 50})
    box = build_box(config, clock=RealClock(speed))
    holds: list = []
    frames: list = []
    box.bus.subscribe(holds.append, ["hold"])
    box.bus.subscribe(lambda e: frames.append(e.t) if box.loop.state is State.HOLD else None,
                      ["led"])
    box.bus.subscribe(lambda e: time.sleep(2.0), ["led", "state", "hold", "speak"],
                      queued=True, name="sleepy")
    box.loop.schedule(0.1, box.press_now)
    # a double press skips the set-up: both presses in one pass of the loop, so they are
    # 0 s apart on the box's clock however late a busy machine wakes it (two presses
    # scheduled 0.3 clock s apart are 5 ms of real time here: a late wake merged them)
    box.loop.schedule(3.0, LoopCommands(box.loop).double_press)
    box.loop.schedule(3.0 + 60.0 + 5.0, box.loop.stop)
    box.loop.run(until=3.0 + 60.0 + 6.0)
    box.close()
    assert holds, "the hold did not end"
    frame_s = speed / config.light.hz  # one light frame, in clock seconds
    assert abs(holds[0].held_s - holds[0].planned_s) <= frame_s
    # the light kept breathing: a loop that waited on the sleeper would leave 2 s (120 clock
    # s) gaps; allow a busy machine a few late frames, nothing like that
    gaps = [b - a for a, b in zip(frames, frames[1:], strict=False)]
    assert len(frames) > 20 and max(gaps) <= 10 * frame_s


# ---- the read model and the command port ------------------------------------------------------


def test_read_model_from_another_thread_and_commands_through_the_port() -> None:
    box = build_box(Config(), clock=RealClock(50.0), speaker=RecordingSpeaker(), sensor=True)
    thread = threading.Thread(target=box.loop.run, daemon=True)
    thread.start()
    try:
        assert box.view().state == "idle"
        box.commands.press()
        deadline = time.monotonic() + 5
        while box.view().state != "setup" and time.monotonic() < deadline:
            time.sleep(0.01)
        view = box.view()
        assert view.state == "setup" and view.leg == "right" and view.rounds == 1
        assert view.sensor_status == "ok" and view.voice_status == "on"
        box.commands.strap("set_level", 6.0)
        port = LoopCommands(box.loop)  # two presses at once: a double press skips set-up
        port.press()
        port.press()
        while box.view().state != "hold" and time.monotonic() < deadline:
            time.sleep(0.01)
        while (box.view().tension or 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        view = box.view()
        assert view.state == "hold" and view.hold_planned_s == 60.0
        assert view.breath_phase in ("in", "out") and 0 < view.hold_left_s <= 60
        assert view.tension is not None and view.tension > 3
        assert view.to_json()["spoken"] == list(view.spoken)
        box.commands.long_press()
        while box.view().state not in ("idle", "cancelled") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert box.view().state in ("idle", "cancelled")
    finally:
        box.loop.stop()
        thread.join(5)
        box.close()


def test_loop_commands_inject_presses_on_a_box_without_a_simulated_button() -> None:
    box = build_box(Config())
    port = LoopCommands(box.loop)
    port.press()
    box.loop.run(until=1.0)
    assert box.loop.state is State.SETUP
    port.press()
    port.press()  # a double press: straight to the hold
    box.loop.run(until=2.0)
    assert box.loop.state is State.HOLD
    port.long_press()
    box.loop.run(until=3.0)
    assert box.loop.state in (State.CANCELLED, State.IDLE)
    box.close()


def test_a_failing_voice_shows_why_in_the_read_model() -> None:
    box = build_box(Config(), speaker=RecordingSpeaker(fail=True))
    box.loop.schedule(1.0, box.press_now)
    box.loop.run(until=3.0)
    view = box.view()
    assert view.voice_status == "failed" and "audio device" in view.voice_off_reason
    box.close()


# ---- the boundary itself ------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_loop_does_not_import_the_history_store_or_add_ons() -> None:
    names = _imports(ROOT / "device" / "box" / "loop.py")
    banned = ("device.history", "device.addons", "device.store")
    assert not {n for n in names if n.startswith(banned)}


def test_add_ons_use_the_loop_api_not_its_insides() -> None:
    """No add-on (nor the screen, the page, MQTT or the control socket) reaches into the
    machine, the cue queue, the loop's parts or private fields, or assigns a loop field:
    only the builder, which makes the loop, and the loop itself may."""
    import re

    inside = re.compile(r"\bloop\.(machine|cues|parts|_\w+)\b|\bloop\.\w+\s*=[^=]|\.listeners")
    owners = {"loop.py", "builder.py", "machine.py"}
    for path in sorted((ROOT / "device").rglob("*.py")):
        if path.name in owners:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not inside.search(line), f"{path.relative_to(ROOT)}:{n} {line.strip()}"


# ---- the terminal simulator honours voice.player -----------------------------------------------


def _voice_here() -> bool:
    try:
        import pyttsx3  # noqa: F401
    except Exception:
        return False
    return shutil.which("espeak-ng") is not None


def test_terminal_simulator_plays_every_cue_through_the_configured_player(tmp_path) -> None:
    need(_voice_here(), "espeak-ng", "apt-get install espeak-ng libespeak-ng1")
    from device.apps.tui import StretchApp

    log = tmp_path / "played.log"
    player = tmp_path / "player.sh"  # logs each play: its own process id, then its arguments
    player.write_text(f'#!/bin/sh\necho "$$ $@" >> {log}\n')
    player.chmod(0o755)
    config = with_overrides(Config(), voice={"player": f"{player} --from-config",
                                             "audio_device": "plughw:CARD=Test"})
    app = StretchApp(config, speed=20.0)
    spoken: list[str] = []
    app.box.bus.subscribe(lambda e: spoken.append(e.text), ["speak"])

    def plays() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    counted: list[int] = []  # plays the voice counted, once they match the player's log

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            deadline = time.monotonic() + 30
            while not app.voice.has_voice or app.voice.status != "voice on":
                assert time.monotonic() < deadline, app.voice.status
                await pilot.pause(0.05)
            await pilot.press("space")
            voice = app.voice._inner  # the real voice behind the simulator's mute switch
            while len(spoken) < 3 or len(plays()) < 3 or voice.lines_spoken != len(plays()):
                assert time.monotonic() < deadline, (spoken, plays(), voice.lines_spoken)
                await pilot.pause(0.05)
            counted.append(voice.lines_spoken)
            await pilot.press("q")

    import asyncio

    asyncio.run(go())
    calls = plays()
    assert len(calls) >= 3 and counted[0] >= 3
    pids = [call.split(" ", 1)[0] for call in calls]
    assert len(set(pids)) == len(pids)  # each play was a process of its own
    for call in calls:
        args = call.split(" ", 1)[1]
        assert args.startswith("-D plughw:CARD=Test --from-config ") and args.endswith(".wav")
        assert Path(args.rsplit(" ", 1)[1]).read_bytes()[:4] == b"RIFF"  # a cached cue
    assert len(calls) <= len(spoken)


def test_set_hold_planner_hands_back_the_planner_it_replaces() -> None:
    """MQTT's ``next_hold_seconds`` overrides one session's holds through the loop API and
    asks the planner it replaced for every other (no reach into the machine)."""
    from device.addons.mqtt import NextHold

    box = build_box(with_overrides(Config(), session={"hold_seconds": 75}))
    assert box.loop.set_hold_planner(lambda leg: 80.0)("right") == 75.0
    next_hold = NextHold(box.port)
    assert next_hold.plan("left") == 80.0
    next_hold.set(90)
    box.commands.press()
    box.loop.run(until=0.5)
    assert next_hold.plan("left") == 90.0 and box.view().state == "setup"
    box.close()


@pytest.mark.parametrize("port", ["pins", "loop"])
def test_a_double_press_from_the_command_port_goes_straight_to_the_hold(port: str) -> None:
    box = build_box(Config())
    commands = box.commands if port == "pins" else LoopCommands(box.loop)
    box.loop.schedule(1.0, commands.press)
    box.loop.run(until=3.0)
    assert box.loop.state is State.SETUP
    box.loop.call_soon(commands.double_press)
    box.loop.run(until=5.0)
    assert box.loop.state is State.HOLD
    box.close()


def test_the_screen_key_h_double_presses_at_high_speed() -> None:
    import asyncio

    from device.apps.tui import StretchApp

    app = StretchApp(Config(), speed=10.0, speaker=RecordingSpeaker())

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("space")
            deadline = time.monotonic() + 10
            while app.box.view().state != "setup":
                assert time.monotonic() < deadline
                await pilot.pause(0.02)
            await pilot.press("h")
            while app.box.view().state != "hold":
                assert time.monotonic() < deadline, app.box.view().state
                await pilot.pause(0.02)
            await pilot.press("q")

    asyncio.run(go())
