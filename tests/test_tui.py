"""The terminal simulator, driven headlessly with Textual's pilot.

Most tests run the real device loop in its thread on a hand-driven clock: time moves only
when a test says so, so what the screen shows can be compared with the mock pins without
racing the loop. Waits poll a bounded number of times; nothing sleeps for seconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from device.addons import transcript
from device.apps import tui
from device.apps.builder import (
    Box,
)
from device.apps.sim import make_sim
from device.apps.tui import (
    EVENTS_KEPT,
    NO_STRAP,
    StretchApp,
    SwitchableVoice,
    bar,
    format_duty,
    format_left,
    led_rgb,
    next_speed,
)
from device.box.events import BuzzEvent, LedEvent, SensorEvent, TensionEvent
from device.core.breath import duty
from device.core.config import Config, with_overrides
from drivers.speech import RecordingSpeaker


class HandClock:
    """A clock the test moves by hand (``tick``), at a settable speed like RealClock's.

    The loop really waits on it (briefly, in real time) so the loop thread stays alive,
    but its time only moves when told: no race between the screen and the pins."""

    virtual = False

    def __init__(self) -> None:
        self._now = 0.0
        self._speed = 1.0
        self._wake: threading.Event | None = None

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        self._speed = value

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        pass

    def wait(self, wake: threading.Event, seconds: float) -> bool:
        return wake.wait(0.005)

    def wait_until(self, wake: threading.Event, when: float | None) -> bool:
        self._wake = wake
        return wake.wait(0.005)

    def tick(self, real_seconds: float) -> None:
        """Let ``real_seconds`` of wall time pass (times the speed on the clock)."""
        self._now += real_seconds * self._speed
        if self._wake is not None:
            self._wake.set()


class Events(list):
    def __call__(self, event: dict) -> None:
        self.append(event)

    def kind(self, kind: str) -> list[dict]:
        return [e for e in self if e["kind"] == kind]


def hand_box(config: Config | None = None) -> tuple[Box, HandClock, RecordingSpeaker, Events]:
    clock = HandClock()
    speaker = RecordingSpeaker()
    events = Events()
    box = make_sim(config or Config(), clock=clock, speaker=SwitchableVoice(inner=speaker),
                   listeners=[events])
    return box, clock, speaker, events


async def until(pilot, cond: Callable[[], bool], tries: int = 200) -> bool:
    """Poll ``cond`` between short pilot pauses (at most ~4 s, usually a frame or two)."""
    for _ in range(tries):
        if cond():
            return True
        await pilot.pause(0.02)
    return cond()


def shows(app: StretchApp, text: str) -> Callable[[], bool]:
    return lambda: text in app.screen_text()


async def press_and_release(pilot, clock: HandClock, key: str = "space") -> None:
    await pilot.press(key)
    clock.tick(0.2)  # a short press is released 0.1 s (loop time) later


async def double_press(pilot, app: StretchApp, clock: HandClock) -> None:
    """Two short presses 0.2 s apart (the second once the loop has let go of the first)."""
    await press_and_release(pilot, clock)
    assert await until(pilot, lambda: app.box.button_pin.state == 1)
    await press_and_release(pilot, clock)


async def into_hold(pilot, app: StretchApp, clock: HandClock) -> None:
    await press_and_release(pilot, clock)
    assert await until(pilot, lambda: app.loop.machine.state.value == "setup")
    await double_press(pilot, app, clock)  # a double press skips the set-up
    assert await until(pilot, lambda: app.loop.machine.state.value == "hold")


# ---- the screen follows the box -------------------------------------------------------------


def test_press_starts_and_the_light_on_screen_follows_the_pin() -> None:
    box, clock, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            assert await until(pilot, shows(app, "IDLE"))
            assert await until(pilot, shows(app, "PWM 0.000"))
            await press_and_release(pilot, clock)
            assert await until(pilot, shows(app, "SET-UP"))
            assert await until(pilot, lambda: box.led_pin.state > 0)  # set just after the state
            glow = box.led_pin.state
            assert glow == pytest.approx(duty(box.config.light.glow))
            assert await until(pilot, shows(app, f"PWM {format_duty(box.led_pin.state)}"))
            assert f"PWM {format_duty(box.led_pin.state)}" in app.screen_text()

            await double_press(pilot, app, clock)  # into the hold: the light breathes
            assert await until(pilot, lambda: app.loop.machine.state.value == "hold")
            clock.tick(1.3)
            assert await until(pilot, shows(app, "HOLD"))
            # a wake 1.3 s late catches the light up over a few frames (real time): read
            # the pin once it has settled and the screen shows it
            seen: list[float] = []

            def settled() -> bool:
                seen.append(box.led_pin.state)
                return (len(seen) > 3 and len(set(seen[-4:])) == 1
                        and f"PWM {format_duty(seen[-1])}" in app.screen_text())

            assert await until(pilot, settled)
            value = box.led_pin.state
            assert value != glow and 0 < value < 1
            assert f"PWM {format_duty(value)}" in app.screen_text()
            assert "breathe in" in app.screen_text()  # 1.4 s into a 4 s in-breath
            clock.tick(3.5)
            assert await until(pilot, shows(app, "breathe out"))
            assert await until(pilot, shows(app, f"PWM {format_duty(box.led_pin.state)}"))
            assert box.led_pin.state != value
            assert await until(pilot, shows(app, "0:56 left"))  # 60 s hold, 4.8 s in
            await pilot.press("q")

    asyncio.run(go())


def test_long_press_cancels() -> None:
    box, clock, _, events = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await press_and_release(pilot, clock)
            assert await until(pilot, shows(app, "SET-UP"))
            await pilot.press("l")
            clock.tick(1.0)
            clock.tick(1.2)  # past the 2 s long press
            assert await until(pilot, shows(app, "CANCELLED"))
            await pilot.press("q")

    asyncio.run(go())
    assert [e["action"] for e in events.kind("button")] == ["press", "long"]
    assert events.kind("session")[-1]["outcome"] == "cancelled"


def test_q_quits_cleanly_light_off_and_session_interrupted() -> None:
    box, clock, _, events = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await into_hold(pilot, app, clock)
            clock.tick(2.0)
            assert await until(pilot, lambda: box.led_pin.state > 0.05)
            await pilot.press("q")

    asyncio.run(go())
    assert app.thread is not None and not app.thread.is_alive()
    assert box.led_pin.state == 0
    assert box.buzzer_pin.state == 0
    assert events.kind("session")[-1]["outcome"] == "interrupted"
    assert app.return_code == 0


def test_plus_speeds_the_clock_and_the_hold_runs_down_faster() -> None:
    box, clock, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await into_hold(pilot, app, clock)
            left0 = app.box.view().hold_left_s
            clock.tick(1.0)
            left1 = app.box.view().hold_left_s
            assert left0 - left1 == pytest.approx(1.0)
            await pilot.press("plus")
            assert await until(pilot, lambda: clock.speed == 2.0)
            assert await until(pilot, shows(app, "speed 2x"))
            clock.tick(1.0)  # one second of wall time now takes two off the hold
            left2 = app.box.view().hold_left_s
            assert left1 - left2 == pytest.approx(2.0)
            for _ in range(5):
                await pilot.press("plus")
            assert await until(pilot, lambda: clock.speed == 30.0)
            await pilot.press("minus")
            assert await until(pilot, lambda: clock.speed == 10.0)
            assert await until(pilot, shows(app, "speed 10x"))
            await pilot.press("q")

    asyncio.run(go())


def test_tiny_terminal_and_resizes_do_not_crash() -> None:
    box, clock, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(40, 12)) as pilot:
            assert await until(pilot, shows(app, "q quit"))  # the key line stays visible
            await into_hold(pilot, app, clock)
            for key in ("up", "down", "b", "u", "m", "m", "plus", "minus"):
                await pilot.press(key)
            clock.tick(2.0)
            assert await until(pilot, shows(app, "left"))
            for size in ((80, 24), (20, 5), (40, 12), (120, 40), (1, 1), (40, 12)):
                await pilot.resize_terminal(*size)
                await pilot.pause(0.05)
                assert app.screen_text() is not None
            assert await until(pilot, shows(app, "q quit"))
            await pilot.press("q")

    asyncio.run(go())
    assert app.crashed is None


# ---- voice, buzzer, strap ---------------------------------------------------------------------


def test_mute_drops_lines_but_shows_them_and_silences_the_bell() -> None:
    box, clock, speaker, _ = hand_box()
    app = StretchApp(box.config, box=box)
    bells: list[int] = []
    app.bell = lambda: bells.append(1)  # type: ignore[method-assign]

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("m")
            assert app.voice.muted
            assert await until(pilot, shows(app, "muted"))
            await press_and_release(pilot, clock)
            first = "Right leg first. Let's set up."
            assert await until(pilot, shows(app, first))
            assert speaker.spoken == []  # shown, not spoken
            await double_press(pilot, app, clock)  # the hold starts with a beep
            assert await until(pilot, shows(app, "♪ BEEP"))
            await pilot.pause(0.1)
            assert bells == []
            await pilot.press("m")
            assert not app.voice.muted
            clock.tick(21.0)  # a reminder is due 20 s into the hold
            assert await until(pilot, lambda: len(speaker.spoken) >= 1)
            assert await until(pilot, shows(app, speaker.spoken[-1][:30]))  # and shown
            await press_and_release(pilot, clock)  # end the hold early: the end beep
            assert await until(pilot, lambda: bells != [])
            await pilot.press("q")

    asyncio.run(go())


class DeadVoice:
    available = False

    def say(self, text: str) -> None:
        raise AssertionError("a voice that is not available is never asked to speak")

    def busy(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _wait_for(cond: Callable[[], bool]) -> bool:
    done = threading.Event()
    for _ in range(200):
        if cond():
            return True
        done.wait(0.01)
    return cond()


def test_voice_that_cannot_start_falls_back_to_text_with_one_notice() -> None:
    made: list[int] = []

    def make() -> DeadVoice:
        made.append(1)
        return DeadVoice()

    voice = SwitchableVoice(make=make)
    assert _wait_for(lambda: voice.notice is not None)
    voice.say("hello")  # dropped, no error
    voice.set_muted(True)
    voice.set_muted(False)  # no second try, no second notice
    assert made == [1] and voice.status == "text only"

    def broken() -> DeadVoice:
        raise OSError("no audio device")

    voice = SwitchableVoice(make=broken)
    assert _wait_for(lambda: voice.notice is not None)
    assert "no audio device" in (voice.notice or "")


def test_voice_notice_appears_once_on_screen(monkeypatch) -> None:
    monkeypatch.setattr(tui, "real_voice", lambda config: DeadVoice)
    app = StretchApp(Config(), speed=1.0)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            assert await until(pilot, shows(app, "voice unavailable"))
            assert app.screen_text().count("voice unavailable") == 1
            await pilot.press("q")

    asyncio.run(go())


def test_started_muted_makes_no_voice_until_unmuted() -> None:
    made: list[int] = []

    def make() -> RecordingSpeaker:
        made.append(1)
        return RecordingSpeaker()

    voice = SwitchableVoice(make=make, muted=True)
    voice.say("not spoken")
    assert made == [] and voice.status == "muted"
    voice.set_muted(False)
    assert _wait_for(lambda: voice.status == "voice on")
    voice.say("spoken")
    assert made == [1]


class FakeStrap:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def harder(self) -> None:
        self.calls.append("harder")

    def softer(self) -> None:
        self.calls.append("softer")

    def bounce(self) -> None:
        self.calls.append("bounce")

    def toggle_plug(self) -> None:
        self.calls.append("toggle_plug")


def test_strap_keys_without_a_sensor_say_so() -> None:
    box, _, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(100, 24)) as pilot:
            assert await until(pilot, shows(app, NO_STRAP))  # the tension panel
            await pilot.press("up")
            assert await until(pilot, lambda: app.screen_text().count(NO_STRAP) == 2)
            await pilot.press("q")

    asyncio.run(go())


def test_strap_keys_and_tension_gauge_with_a_sensor() -> None:
    box, _, _, _ = hand_box()
    strap = FakeStrap()
    box.strap = strap  # type: ignore[attr-defined]  # as the sensor issue will add it
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("up", "down", "b", "u")
            assert await until(pilot, lambda: len(strap.calls) == 4)
            assert strap.calls == ["harder", "softer", "bounce", "toggle_plug"]
            # as the strap add-on does: the read model, then an event (which wakes the screen)
            box.port.update_view(tension=3.2, tension_units="kg", sensor_status="ok")
            box.bus.publish(TensionEvent(1.0, 3.2, "kg"))
            assert await until(pilot, shows(app, "3.2 kg"))
            assert "aim for 1-" in app.screen_text()  # the gauge has a scale and a band
            # noise just after zeroing
            box.port.update_view(tension=-1.7, tension_units="kg", sensor_status="ok")
            box.bus.publish(TensionEvent(1.1, -1.7, "kg"))
            assert await until(pilot, shows(app, "  0.0 kg"))
            box.port.update_view(tension=None, tension_units="kg", sensor_status="unplugged")
            box.bus.publish(SensorEvent(2.0, "unplugged"))
            assert await until(pilot, shows(app, "strap sensor: unplugged"))
            await pilot.press("q")

    asyncio.run(go())


# ---- the real clock, at high speed ------------------------------------------------------------


def test_whole_box_on_the_real_clock_at_high_speed(tmp_path) -> None:
    from datetime import datetime

    from device.store.sqlite import History

    speaker = RecordingSpeaker()
    config = with_overrides(Config(), light={"hz": 20})  # fewer light frames to draw at 1000x
    db = tmp_path / "sim-history.db"
    before = datetime.now().astimezone()
    app = StretchApp(config, speed=1000.0, speaker=speaker, history=db)
    events = Events()
    transcript.attach(app.box.port, events)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("space")  # ~40 s of set-up and a 60 s hold: ~0.1 s here
            # ~1 s here; a busy machine may take longer (bounded: ~20 s at most)
            ok = await until(pilot, lambda: app.loop.machine.state.value == "switch", 1000)
            assert ok, [e for e in events if e["kind"] != "led"]
            assert await until(pilot, shows(app, "SWITCH LEGS"))
            await pilot.press("minus")
            assert await until(pilot, lambda: app.loop.clock.speed == 30.0)
            await pilot.press("q")

    asyncio.run(go())
    assert events.kind("hold")[0]["ended"] == "complete"
    assert events.kind("session")[-1]["outcome"] == "interrupted"
    assert speaker.spoken
    assert app.box.led_pin.state == 0
    # minutes of sped-up time are stored ending now, never in the future (as headless runs)
    after = datetime.now().astimezone()
    with History(db, read_only=True) as h:
        (session,) = h.sessions()
    assert before <= session.ended <= after
    assert (session.ended - session.started).total_seconds() >= 60  # its length is kept


# ---- bounded memory -----------------------------------------------------------------------------


def test_event_hand_over_is_bounded() -> None:
    box, _, _, _ = hand_box()
    app = StretchApp(box.config, box=box)
    for i in range(10_000):
        box.bus.publish(BuzzEvent(i, "tick", 0.05))
        box.bus.publish(LedEvent(i, 0.5))  # never handed over at all
    assert len(app.events) == EVENTS_KEPT
    assert all(e["kind"] == "buzz" for e in app.events)
    box.close()


# ---- without Textual, and run_tui ----------------------------------------------------------------


def test_run_tui_without_textual_says_how_to_get_it(monkeypatch, capsys) -> None:
    for name in [m for m in sys.modules if m == "textual" or m.startswith("textual.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "textual", None)
    path = Path(tui.__file__)
    spec = importlib.util.spec_from_file_location("device_tui_without_textual", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.HAVE_TEXTUAL is False
    assert module.run_tui(Config()) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pip install 'stretch-companion[sim]'" in err[0] and "--headless" in err[0]


def test_run_tui_routes_warnings_to_the_screen(monkeypatch) -> None:
    root = logging.getLogger()
    stream = logging.StreamHandler()
    root.addHandler(stream)
    seen = {}

    def fake_run(self: StretchApp) -> None:
        seen["stream_removed"] = stream not in root.handlers
        logging.getLogger("device.box.loop").warning("something odd")
        seen["lines"] = list(self.screen_log.lines) if self.screen_log else []
        seen["speed"] = self.loop.clock.speed
        self.stop_box()

    monkeypatch.setattr(StretchApp, "run", fake_run)
    try:
        config = with_overrides(Config(), voice={"enabled": False})
        assert tui.run_tui(config, speed=5.0, mute=True) == 0
    finally:
        root.removeHandler(stream)
    assert seen == {"stream_removed": True, "lines": ["something odd"], "speed": 5.0}


@pytest.mark.parametrize("signame", ["SIGHUP", "SIGTERM"])
def test_a_hang_up_quits_like_q_and_records_the_session(tmp_path, signame) -> None:
    """The terminal running the simulator closed (SIGHUP), or SIGTERM: exit 0, the session
    recorded as interrupted, no WAL files left (not exit 129 with nothing stored)."""
    import os
    import pty
    import select
    import signal
    import subprocess
    import time

    from device.store.sqlite import History

    db = tmp_path / "sim-history.db"
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", XDG_CONFIG_HOME=str(tmp_path),
               XDG_STATE_HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "device", "sim", "--mute", "--speed", "5",
                             "--history", str(db)], cwd=Path(__file__).resolve().parent.parent,
                            env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    screen = b""

    def read_for(seconds: float) -> None:
        nonlocal screen
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    return

    try:
        for _ in range(200):  # up to ~10 s on a busy machine: the set-up's first line shown
            read_for(0.05)
            if b"SET-UP" in screen or b"IDLE" in screen:
                break
        os.write(master, b" ")  # a session starts
        for _ in range(200):
            read_for(0.05)
            if b"SET-UP" in screen:
                break
        assert b"SET-UP" in screen
        proc.send_signal(getattr(signal, signame))
        for _ in range(200):
            read_for(0.05)
            if proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    assert code == 0
    assert not list(tmp_path.glob("sim-history.db-*"))  # no -wal or -shm left behind
    with History(db, read_only=True) as h:
        assert [s.outcome for s in h.sessions()] == ["interrupted"]


# ---- small pieces -------------------------------------------------------------------------------


def test_speed_steps() -> None:
    assert next_speed(1, 1) == 2 and next_speed(2, 1) == 5 and next_speed(10, 1) == 30
    assert next_speed(30, 1) == 30 and next_speed(1, -1) == 1
    assert next_speed(3, 1) == 5 and next_speed(3, -1) == 2
    assert next_speed(1000, -1) == 30 and next_speed(1000, 1) == 1000


def test_formatting() -> None:
    assert format_left(60) == "1:00" and format_left(59.2) == "1:00" and format_left(0.4) == "0:01"
    assert format_left(0) == "0:00" and format_left(-1) == "0:00"
    assert format_duty(0.123456) == "0.123"
    assert bar(0.5, 4) == "██░░" and bar(0, 3) == "░░░" and bar(2, 2) == "██"
    assert led_rgb(0.0) == (0, 0, 0) and led_rgb(1.0) == tui.LED_RGB
    reds = [led_rgb(d / 10)[0] for d in range(11)]
    assert reds == sorted(reds)
