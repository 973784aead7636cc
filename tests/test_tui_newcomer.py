"""The simulator's screen for a newcomer (issue 24): the pairing code on a line of its own,
a voice error that does not fill the title."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from device.apps.builder import build_box
from device.apps.tui import StretchApp
from device.box.clock import VirtualClock
from device.core.config import Config
from tests.test_tui import until


def test_the_pairing_code_has_a_line_of_its_own(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    box = build_box(Config(), mode="sim", clock=VirtualClock(), web="127.0.0.1:0",
                    config_path=tmp_path / "c.toml")
    app = StretchApp(box.config, box=box)
    handle = next(a for a in box.addons if hasattr(a, "code"))

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            def line() -> str:
                return next((row for row in app.screen_text().splitlines()
                             if "pair with code" in row), "")
            assert await until(pilot, lambda: handle.code in line())
            assert line().strip().startswith("phone page http://127.0.0.1:")
            assert "Stretch Companion" not in line()  # not cut off the end of the title
            await pilot.press("q")

    try:
        asyncio.run(go())
    finally:
        box.close()


def test_no_page_no_line(tmp_path: Path) -> None:
    box = build_box(Config(), mode="sim", clock=VirtualClock())
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.1)
            assert "pair with code" not in app.screen_text()
            await pilot.press("q")

    try:
        asyncio.run(go())
    finally:
        box.close()


def test_strap_keys_only_with_a_strap_and_mute_does_not_echo_the_title() -> None:
    from device.apps.tui import KEY_HELP, key_help

    assert "strap" in key_help(100, True) and "strap" not in key_help(100, False)
    assert key_help(100, True) == KEY_HELP
    box = build_box(Config(), mode="sim", clock=VirtualClock())
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(100, 24)) as pilot:
            await pilot.pause(0.1)
            assert "b u strap" not in app.screen_text()
            await pilot.press("m")
            assert await until(pilot, lambda: "muted · words on screen only"
                               in app.screen_text())
            await pilot.press("m")
            assert await until(pilot, lambda: "words on screen only" not in app.screen_text())
            title = app.screen_text().splitlines()[0]
            assert title.count("voice on") == 1, title
            await pilot.press("q")

    try:
        asyncio.run(go())
    finally:
        box.close()


def test_idle_shows_the_next_hold_chosen_with_l() -> None:
    from tests.test_tui import hand_box

    box, clock, _, _ = hand_box()
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(100, 24)) as pilot:
            assert await until(pilot, lambda: "next hold 1:00 a leg" in app.screen_text())
            await pilot.press("l")
            clock.tick(1.0)
            clock.tick(1.5)  # past the long-press time: 1 -> 2 minutes
            assert await until(pilot, lambda: "next hold 2:00 a leg" in app.screen_text())
            await pilot.press("q")

    asyncio.run(go())


def test_the_strap_gauge_reaches_the_ceiling_and_says_what_rel_is() -> None:
    from device.box.events import TensionEvent
    from tests.test_tui import FakeStrap, hand_box

    box, _, _, _ = hand_box()
    box.strap = FakeStrap()  # type: ignore[attr-defined]
    app = StretchApp(box.config, box=box)

    async def go() -> None:
        async with app.run_test(size=(100, 24)) as pilot:
            box.port.update_view(tension=12.0, tension_units="rel", sensor_status="ok",
                                 tension_ceiling=15.0)
            box.bus.publish(TensionEvent(1.0, 12.0, "rel"))
            assert await until(pilot, lambda: " 12.0 rel" in app.screen_text())
            text = app.screen_text()
            gauge = next(row for row in text.splitlines() if "12.0 rel" in row)
            assert gauge.rstrip(" │").endswith(" 15")  # not 10: the ceiling is on the scale
            assert "ceiling 15" in text and "rel: relative units" in text
            assert "0 rel ·" not in text
            await pilot.press("q")

    asyncio.run(go())
