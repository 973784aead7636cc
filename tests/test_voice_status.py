"""One voice status, from what actually happened to the last line, on every surface
(issue 24): the box's view (which the page, ``status`` and MQTT send as it is) and the
terminal screen. The real speaker (``Pyttsx3Speaker``) runs on fake engines and players:
no engine, no player, a failing player, a working one."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from device.apps.sim import make_sim
from device.core.config import Config
from device.core.voice_status import screen_words, voice_status
from drivers.speech import Pyttsx3Speaker
from tests.test_speech import NO_CARD, FakeEngine, FakePlayer


class EspeakEngine(FakeEngine):
    """pyttsx3's espeak driver as it names itself (it plays its own lines with aplay)."""

    driver_name = "espeak"


def _speaker(tmp_path: Any, engine: Any = None, **kw: Any) -> Pyttsx3Speaker:
    kw.setdefault("process_factory", FakePlayer())
    factory = engine if callable(engine) and not isinstance(engine, FakeEngine) else (
        lambda: engine or FakeEngine())
    return Pyttsx3Speaker(engine_factory=factory, cache_dir=tmp_path / "cache",
                          timeout_margin_s=2.0, timeout_factor=0.0, start_timeout_s=2.0, **kw)


def _run(speaker: Pyttsx3Speaker, until: float = 12.0) -> dict[str, Any]:
    """Start a session on virtual time, let the voice finish its lines, return the view
    as the page, ``status`` and MQTT get it."""
    box = make_sim(Config(), speaker=speaker)
    try:
        box.loop.schedule(0.5, box.press_now)
        box.loop.run(until=until)
        assert speaker.wait_idle(10)
        return box.view().to_json()
    finally:
        box.close()


def _screen(view: dict[str, Any]) -> str:
    return screen_words(view["voice_status"], view["voice_off_reason"])


def test_no_engine(tmp_path: Any) -> None:
    def broken() -> Any:
        raise OSError("no speech engine here")

    view = _run(_speaker(tmp_path, broken))
    assert view["voice_status"] == "failed"
    assert "no speech engine here" in view["voice_off_reason"] or \
        "did not start" in view["voice_off_reason"]
    assert _screen(view).startswith("voice failed:")


def test_no_player_with_espeak_is_failed_not_on(tmp_path: Any, caplog: Any) -> None:
    """espeak-ng but no aplay: the engine would also play through aplay ("sh: 1: aplay:
    not found" for every line), so the voice is failed, said once, with the fix."""
    def no_player(argv: list[str], **kwargs: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    caplog.set_level(logging.INFO)
    engine = EspeakEngine()
    speaker = _speaker(tmp_path, engine, process_factory=no_player, which=lambda name: None)
    view = _run(speaker)
    assert view["voice_status"] == "failed"
    assert "install alsa-utils" in view["voice_off_reason"]
    assert engine.said == []  # nothing handed to an engine that cannot be heard
    messages = [r.getMessage() for r in caplog.records if r.name == "drivers.speech"]
    assert not any("instead" in m for m in messages)
    assert sum("install alsa-utils" in m for m in messages) == 1
    assert _screen(view).startswith("voice failed:") and len(_screen(view)) < 90


def test_no_player_with_an_engine_that_plays_itself_is_on(tmp_path: Any) -> None:
    def no_player(argv: list[str], **kwargs: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    engine = FakeEngine()
    view = _run(_speaker(tmp_path, engine, process_factory=no_player,
                         which=lambda name: None))
    assert engine.said and view["voice_status"] == "on"


def test_a_failing_player_is_failed_from_its_first_line(tmp_path: Any) -> None:
    """aplay but no sound card: failed at once (not "on" until it gives up)."""
    view = _run(_speaker(tmp_path, process_factory=FakePlayer(returncode=1, stderr=NO_CARD)),
                until=2.0)
    assert view["voice_status"] == "failed"
    assert "audio open error" in view["voice_off_reason"]
    assert "aplay -l" not in _screen(view)  # the screen's line stays short
    assert _screen(view).startswith("voice failed: ")


def test_a_working_player_is_on(tmp_path: Any) -> None:
    player = FakePlayer()
    view = _run(_speaker(tmp_path, process_factory=player))
    assert player.argvs and view["voice_status"] == "on" and view["voice_off_reason"] == ""
    assert _screen(view) == "voice on"


def test_a_player_that_recovers_is_on_again(tmp_path: Any) -> None:
    """The status is the last line's: one failure, then a line heard, is "on"."""
    class Flaky(FakePlayer):
        def __call__(self, argv: list[str], **kwargs: Any) -> Any:
            self.returncode, self.stderr = (1, NO_CARD) if not self.argvs else (0, b"")
            return super().__call__(argv, **kwargs)

    view = _run(_speaker(tmp_path, process_factory=Flaky()))
    assert view["voice_status"] == "on"


@pytest.mark.parametrize("args,expected", [
    ((False, True, True), ("off", "voice.enabled = false")),
    ((True, False, None, "engine gone"), ("failed", "engine gone")),
    ((True, True, False, "player failed"), ("failed", "player failed")),
    ((True, True, True, "old error"), ("on", "")),
    ((True, None, None), ("on", "")),
    ((True, True, True, "", "say raised"), ("failed", "say raised")),
])
def test_the_one_rule(args: tuple[Any, ...], expected: tuple[str, str]) -> None:
    assert voice_status(*args) == expected


def test_the_screen_shows_the_views_status_and_a_short_reason() -> None:
    from device.apps.tui import SwitchableVoice

    long = "the player 'aplay' failed (exit 1): " + "x" * 200
    assert screen_words("failed", long).endswith("… (text only)")
    assert len(screen_words("failed", long)) < 90
    voice = SwitchableVoice(inner=_FailedInner())
    assert voice.available is False and voice.last_line_ok is False  # forwarded to the box


class _FailedInner:
    available = False
    last_line_ok = False
    last_error = "no sound"

    def say(self, text: str) -> None:
        pass

    def busy(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_mqtt_state_carries_the_same_voice_status(tmp_path: Any) -> None:
    from device.addons.mqtt import state_payload

    view = _run(_speaker(tmp_path, process_factory=FakePlayer(returncode=1, stderr=NO_CARD)),
                until=2.0)
    payload = state_payload(view)
    assert payload["voice_status"] == "failed"
    assert "audio open error" in payload["voice_off_reason"]
    assert state_payload(_run(_speaker(tmp_path / "ok")))["voice_status"] == "on"
