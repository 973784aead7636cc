"""The simulator: the real device loop and gpiozero devices on mock pins.

Headless, it runs on virtual time (as fast as the CPU allows) unless a speed is asked
for, and is driven by a script of timed inputs.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from device.addons.service import stop_on_signals
from device.apps.builder import Box, build_box, make_voice
from device.box.clock import Clock, RealClock, VirtualClock
from device.box.loop import Listener
from device.core.config import Config, with_overrides
from device.core.script import ACTIONS, SENSOR_ACTIONS, parse_script
from drivers.speech import RecordingSpeaker, Speaker

log = logging.getLogger(__name__)

DEFAULT_SCRIPT = "press@1"
SAFETY_UNTIL_S = 6 * 3600.0  # a headless run on virtual time never runs past this
SCRIPT_MARGIN_S = 30 * 60.0  # ... nor (without --until) past its last input plus this,
# or plus one and a half whole sessions when the config's sessions are longer


def script_margin_s(config: Config) -> float:
    """How long a headless run on virtual time goes on after its script's last input (s):
    ``SCRIPT_MARGIN_S``, or 1.5 times a whole session of ``config`` if that is longer
    (each hold with two minutes for its set-up, question and switch)."""
    s = config.session
    session = s.rounds * len(s.legs) * (s.hold_seconds + 120.0)
    return max(SCRIPT_MARGIN_S, 1.5 * session)


def _clock_words(seconds: float) -> str:
    whole = int(round(seconds))
    h, rest = divmod(whole, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def make_sim(
    config: Config,
    clock: Clock | None = None,
    speaker: Speaker | None = None,
    listeners: list[Listener] | None = None,
    sensor: bool = False,
    seed: int = 1,
    history: Path | None = None,
    start: datetime | None = None,
    web: str | None = None,
    config_path: Path | None = None,
    mqtt: Any = None,
) -> Box:
    """A box on fresh mock pins; virtual time and a recording voice unless given."""
    return build_box(config, mode="sim", clock=clock, speaker=speaker,
                     listeners=listeners or (), sensor=sensor, seed=seed, history=history,
                     wall_start=start, web=web, config_path=config_path, mqtt=mqtt)


def sim_speaker(voice: bool, config: Config) -> Speaker:
    """The headless voice: a recording fake, or the configured real one with ``voice``."""
    return make_voice(config) if voice else RecordingSpeaker()


def run_headless(
    config: Config,
    script: str | None,
    listeners: list[Listener],
    speed: float | None = None,
    until: float | None = None,
    voice: bool = False,
    handle_signals: bool = False,
    history: Path | None = None,
    start: datetime | None = None,
    sensor: bool = False,
    web: str | None = None,
    config_path: Path | None = None,
    mqtt: Any = None,
) -> Box:
    """Run a scripted session to its end; returns the box (for its records). With
    ``mqtt`` the run waits (a few real seconds at most) for the broker to acknowledge
    its sessions before it returns."""
    if script is None:
        # No script: start a session and let it run through by itself.
        script = DEFAULT_SCRIPT
        config = with_overrides(config, session={"switch": "auto"})
    sensor = sensor or config.sensor.enabled
    actions = parse_script(script, SENSOR_ACTIONS if sensor else ACTIONS)
    clock: Clock = RealClock(speed) if speed else VirtualClock()
    box = make_sim(config, clock=clock, speaker=sim_speaker(voice, config), listeners=listeners,
                   sensor=sensor, history=history, start=start, web=web,
                   config_path=config_path, mqtt=mqtt)
    box.add_script(actions)
    if handle_signals:

        stop_on_signals(box.loop.stop)
    limit = until if until is not None else (None if speed else SAFETY_UNTIL_S)
    last = max((a.at for a in actions), default=0.0)
    margin = script_margin_s(config)
    if until is None and not speed:
        limit = min(SAFETY_UNTIL_S, last + margin)
    try:
        box.loop.run(until=limit, stop_when_done=until is None)
        state = box.loop.view().state
        if until is None and not speed and state != "idle" \
                and not box.loop.stop_event.is_set():
            log.warning(
                "headless run stopped at %s of virtual time, %d min after the script's "
                "last input (at %s): the box was still waiting in %s; that session is kept "
                "as interrupted. Add the presses it waits for to the script, or give "
                "--until SECONDS to run longer.", _clock_words(limit or 0.0), margin // 60,
                _clock_words(last), state)
        box.loop.interrupt()  # a session still going when the run ends is kept, interrupted
        drain = getattr(box.speaker, "drain", None)
        if drain is not None and not box.loop.stop_event.is_set():
            drain()  # the last line ("All done...") reaches the player before the run ends
    finally:
        box.close()
    return box
