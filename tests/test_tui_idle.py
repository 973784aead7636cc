"""The terminal simulator idles: no frame timer while nothing moves, panels redrawn only
when what they show changed, and the newcomer's stumbles (title, speed, voice, strap gauge,
voice panel, keys in --help)."""

from __future__ import annotations

import asyncio
import time

import pytest

from device.apps import tui
from device.apps.cli import main
from device.apps.tui import LIGHT_FPS, WARNING_S, ScreenLog, StretchApp, SwitchableVoice
from device.box.events import SpeakEvent, TensionEvent
from device.core.breath import breath_level, duty
from device.core.config import Config
from tests.test_tui import hand_box, into_hold, shows, until


def test_idle_screen_has_no_timer_and_does_not_redraw() -> None:
    box, clock, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            assert await until(pilot, shows(app, "IDLE"))
            assert await until(pilot, lambda: app._timer is None)
            draws = app.draws
            for _ in range(10):
                await pilot.pause(0.05)
            assert app._timer is None and app.draws == draws  # asleep: nothing scheduled
            await into_hold(pilot, app, clock)
            clock.tick(0.5)
            # the light moves: a refresh is always pending, LIGHT_FPS apart at most
            assert await until(pilot, lambda: app._timer is not None)
            assert app._timer_at - app._drawn_at <= 1 / LIGHT_FPS + 1e-3
            await pilot.press("q")

    asyncio.run(go())


def test_only_changed_panels_are_redrawn() -> None:
    box, clock, _, _ = hand_box()
    app = StretchApp(box.config, box=box)
    updates: dict[str, int] = {}

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await into_hold(pilot, app, clock)
            real = tui.Static.update

            def counting(self, *args, **kwargs):
                updates[self.id] = updates.get(self.id, 0) + 1
                return real(self, *args, **kwargs)

            tui.Static.update = counting  # type: ignore[method-assign]
            light = app.query_one("#light", tui.KeptLines)
            try:
                draws = app.draws
                shows = sum(light.redrawn.values())
                for _ in range(8):
                    clock.tick(0.4)
                    await pilot.pause(0.12)
                assert app.draws > draws + 3
                assert sum(light.redrawn.values()) > shows + 3  # the light moved
                assert updates.get("voice", 0) <= 1 and updates.get("help", 0) == 0
                assert updates.get("title", 0) == 0
            finally:
                tui.Static.update = real  # type: ignore[method-assign]
            await pilot.press("q")

    asyncio.run(go())


def test_speed_is_shown_once_and_the_slowest_says_so() -> None:
    box, _, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(100, 24)) as pilot:
            await pilot.press("plus")
            assert await until(pilot, shows(app, "speed 2x"))
            assert app.screen_text().splitlines()[0].count("speed") == 1  # not again in a notice
            await pilot.press("minus")
            assert await until(pilot, shows(app, "speed 1x"))
            await pilot.press("minus")  # already the slowest
            assert await until(pilot, shows(app, "already at 1x, the slowest"))
            await pilot.press("q")

    asyncio.run(go())


def test_a_warning_leaves_the_title_after_a_while() -> None:
    log = ScreenLog()
    log.emit(__import__("logging").makeLogRecord(
        {"msg": "strap sensor lost (NAU7802 at 0x2A: I/O error)", "levelno": 30,
         "name": "device.addons.strap"}))
    now = time.monotonic()
    assert log.current(now)[0].startswith("strap sensor lost")
    assert log.current(now + WARNING_S + 0.1) is None
    box, _, _, _ = hand_box()
    app = StretchApp(box.config, box=box, screen_log=log)

    async def go() -> None:
        async with app.run_test(size=(100, 24)) as pilot:
            assert await until(pilot, shows(app, "strap sensor lost"))
            # the strap came back
            box.port.update_view(tension=2.0, tension_units="kg", sensor_status="ok")
            box.bus.publish(TensionEvent(1.0, 2.0, "kg"))
            assert await until(pilot, lambda: "strap sensor lost" not in app.screen_text())
            await pilot.press("q")

    asyncio.run(go())


class MutedCard:
    available = False
    last_error = "no sound card (aplay: cannot open audio device default)"

    def say(self, text: str) -> None:
        raise AssertionError("not asked")

    def busy(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_voice_failure_says_why() -> None:
    voice = SwitchableVoice(inner=MutedCard())  # type: ignore[arg-type]
    assert voice.status == f"voice failed: {MutedCard.last_error} (text only)"


def test_voice_panel_uses_the_room_it_has() -> None:
    box, _, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(100, 40)) as pilot:
            for i in range(15):
                box.loop.spoken.append(f"line number {i:02d}")
            box.bus.publish(SpeakEvent(1.0, "line number 14", "x", 1.0))
            assert await until(pilot, shows(app, "line number 14"))
            text = app.screen_text()
            assert sum(f"line number {i:02d}" in text for i in range(15)) > 6
            await pilot.press("q")

    asyncio.run(go())


def test_sim_help_lists_the_keys(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["sim", "--help"])
    out = capsys.readouterr().out
    assert "keys on screen" in out
    for key in ("space", "long press", "mute", "faster", "strap", "quit"):
        assert key in out


def _breath_duties(frames: int = 380) -> list[float]:
    """The light's PWM duty over one slow breath, as the box's frames set it."""
    config = Config()
    period = config.breath.period
    return [duty(breath_level(period * i / frames, config.breath, config.light))
            for i in range(frames)]


def test_the_glow_changes_once_per_colour_the_terminal_can_draw() -> None:
    duties = _breath_duties()
    true = {tui.glow_shown(d, "truecolor") for d in duties}
    eight_bit = {tui.glow_shown(d, "256") for d in duties}
    plain = {tui.glow_shown(d, None) for d in duties}
    assert len(true) > 100  # a new colour nearly every frame
    assert 2 < len(eight_bit) <= 30  # the palette's steps of amber
    assert 2 <= len(plain) <= 5  # no colour: only the shade
    assert tui.glow_shown(0.0, "256") is None  # off
    for d in duties:  # the 256-colour glow is the palette colour nearest what truecolor draws
        shown = tui.glow_shown(d, "256")
        if shown is not None:
            assert shown[0] == tui.glow_shown(d, "truecolor")[0]


def test_a_256_colour_screen_redraws_the_glow_only_when_its_colour_steps() -> None:
    box, clock, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            app.palette = "256"
            await into_hold(pilot, app, clock)
            light = app.query_one("#light", tui.KeptLines)
            seen: set[object] = set()
            glows, lower = light.redrawn[0], light.redrawn[1]
            duties = set()
            for _ in range(40):
                clock.tick(0.1)
                await pilot.pause(0.03)
                seen.add(tui.glow_shown(float(box.led_pin.state or 0.0), "256"))
                duties.add(tui.format_duty(float(box.led_pin.state or 0.0)))
            await pilot.pause(0.15)
            assert len(duties) > 30  # truecolor would draw a new glow each time
            assert 1 <= light.redrawn[0] - glows <= len(seen) + 1 < 20
            assert light.redrawn[1] - lower == light.redrawn[0] - glows  # both glow rows
            await pilot.press("q")

    asyncio.run(go())


@pytest.mark.parametrize("size", [(80, 24), (50, 14)])
def test_the_light_and_buzzer_panels_at_full_and_compact_sizes(size) -> None:
    box, clock, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=size) as pilot:
            await into_hold(pilot, app, clock)
            clock.tick(1.0)
            if size[0] >= 70:  # the start beep's flash has gone: the buzzer is quiet again
                assert await until(pilot, shows(app, "quiet"))

            def pin() -> str:  # read each time: the loop thread sets it after the tick
                return tui.format_duty(float(box.led_pin.state or 0.0))

            assert await until(pilot, lambda: pin() in app.screen_text())
            duty = pin()
            text = app.screen_text()
            light = app.query_one("#light", tui.KeptLines)
            shade = tui.glow_shown(float(box.led_pin.state or 0.0), app.palette)
            assert shade is not None  # the glow: rows of its shade, the panel's width
            assert shade[0] * light.size.width in text and light.size.width >= 16
            if size[0] >= 70:
                assert f"PWM {duty}" in text and "quiet" in text
            else:
                assert duty in text and "PWM" not in text  # compact: the value alone
            await pilot.press("q")

    asyncio.run(go())


def test_a_failing_frame_ends_the_screen_with_its_error() -> None:
    box, clock, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    def broken(*_args: object) -> None:
        raise ValueError("frame broke")

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            assert await until(pilot, shows(app, "IDLE"))
            app._draw = broken  # type: ignore[method-assign]
            app.schedule_refresh(0.0)
            await pilot.pause(0.3)

    with pytest.raises(ValueError, match="frame broke"):
        asyncio.run(go())
    assert app._timer is None


def test_the_pwm_readout_changes_at_a_meters_rate_and_ends_on_the_pins_value() -> None:
    box, clock, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await into_hold(pilot, app, clock)
            light = app.query_one("#light", tui.KeptLines)
            before = light.redrawn[2]
            started = time.monotonic()
            duties = set()
            for _ in range(40):
                clock.tick(0.1)
                await pilot.pause(0.03)
                duties.add(tui.format_duty(float(box.led_pin.state or 0.0)))
            elapsed = time.monotonic() - started
            changes = light.redrawn[2] - before
            assert len(duties) > 30  # the pin took a new duty nearly every tick
            assert 2 <= changes <= elapsed * tui.READOUT_HZ + 2  # the readout: a meter's rate
            # the light moves no more (the hand clock stands): the pin's value is drawn
            assert await until(pilot, shows(app, f"PWM {tui.format_duty(box.led_pin.state)}"))
            await pilot.press("q")

    asyncio.run(go())


def test_kept_lines_show_their_rows_after_the_panel_is_resized_and_back() -> None:
    """A row that changed while the panel was another width is drawn new at the old one."""
    from textual.app import App, ComposeResult

    class Panel(App[None]):
        def compose(self) -> ComposeResult:
            yield tui.KeptLines(id="kept")

    app = Panel()

    def line(panel: tui.KeptLines) -> str:
        return "".join(segment.text for segment in panel.render_line(0)).rstrip()

    async def go() -> None:
        async with app.run_test(size=(40, 5)) as pilot:
            panel = app.query_one("#kept", tui.KeptLines)
            panel.show(((("first", None),),))
            await pilot.pause()
            assert line(panel) == "first"
            await pilot.resize_terminal(60, 5)
            await pilot.pause()
            panel.show(((("second", tui.BOLD),),))
            await pilot.pause()
            assert line(panel) == "second" and panel.size.width == 60
            await pilot.resize_terminal(40, 5)
            await pilot.pause()
            assert panel.size.width == 40
            assert line(panel) == "second"  # not the line kept from when it was 40 wide
            assert len(panel.render_line(0).text) == 40  # padded to the panel's width

    asyncio.run(go())
