"""Building the box: parts on a pin factory, a voice, and the device loop around them."""

from __future__ import annotations

from typing import Any

from device.clock import Clock
from device.config import Config
from device.loop import DeviceLoop, Listener, Parts
from device.routine import Routine, load_routine
from drivers.parts import Beeper, BreathLight, StrapButton
from drivers.speech import Speaker


def build_parts(config: Config, factory: Any, speaker: Speaker, is_mock: bool) -> Parts:
    """Button, light and buzzer on ``factory`` at the configured pins, plus ``speaker``."""
    pins = config.pins
    button = StrapButton(pins.button, factory)
    try:
        light = BreathLight(pins.led, factory)
        beeper = Beeper(pins.buzzer, config.buzzer.kind, factory)
    except Exception:
        button.close()
        raise
    return Parts(button=button, light=light, beeper=beeper, speaker=speaker,
                 factory=factory, is_mock=is_mock)


def close_parts(parts: Parts) -> None:
    """Light and buzzer off, voice stopped, pins released."""
    for close in (parts.beeper.close, parts.light.close, parts.speaker.close):
        try:
            close()
        except Exception:  # closing is best effort; the next part still gets closed
            pass
    if parts.button is not None:
        try:
            parts.button.close()
        except Exception:
            pass


def build_loop(
    config: Config,
    clock: Clock,
    parts: Parts,
    listeners: list[Listener] | None = None,
    routine: Routine | None = None,
    **kwargs: Any,
) -> DeviceLoop:
    """The device loop for ``config`` (routine from the config unless given)."""
    routine = routine or load_routine(config.routine.file or None)
    return DeviceLoop(config, routine, clock, parts, listeners=listeners, **kwargs)
