"""The simulator: the real device loop and gpiozero devices on mock pins.

Headless, it runs on virtual time (as fast as the CPU allows) unless a speed is asked
for, and is driven by a script of timed inputs.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from device.apps.builder import Box, build_box, make_voice
from device.box.clock import Clock, RealClock, VirtualClock
from device.box.loop import Listener
from device.core.config import Config, with_overrides
from device.core.script import ACTIONS, SENSOR_ACTIONS, Action, parse_script
from drivers.speech import RecordingSpeaker, Speaker

log = logging.getLogger(__name__)

DEFAULT_SCRIPT = "press@1"
SAFETY_UNTIL_S = 6 * 3600.0  # a headless run on virtual time never runs past this


class SimStrap:
    """A strap you can pull on: the fake NAU7802's strap model, driven by keys or a script."""

    STEP_KG = 1.0
    RAMP_S = 0.5

    def __init__(self, fake: Any, clock: Clock) -> None:
        self.fake = fake
        self.model = fake.strap
        self.clock = clock
        self.level_kg = 0.0
        self.plugged = True

    def set_level(self, kg: float) -> None:
        """From now on a steady ``kg`` (reached over half a second)."""
        self.level_kg = max(0.0, kg)
        self.model.set_level(self.clock.now(), self.level_kg, ramp_s=self.RAMP_S)

    def harder(self) -> None:
        """Pull a kilogram harder."""
        self.set_level(self.level_kg + self.STEP_KG)

    def softer(self) -> None:
        """Ease off a kilogram."""
        self.set_level(self.level_kg - self.STEP_KG)

    def bounce(self, seconds: float = 4.0) -> None:
        """A few seconds of bouncing."""
        self.model.bounce(self.clock.now(), seconds)

    def unplug(self) -> None:
        """Pull the sensor's cable."""
        self.plugged = False
        self.fake.unplug()

    def replug(self) -> None:
        """Plug it back (it powers up afresh)."""
        self.plugged = True
        self.fake.replug()

    def toggle_plug(self) -> None:
        """Unplug or replug."""
        if self.plugged:
            self.unplug()
        else:
            self.replug()


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


def add_strap(box: Box, seed: int = 1) -> SimStrap:
    """Fit the simulated strap sensor: the real driver over a register-level fake chip."""
    from device.addons.strap import attach
    from drivers.fake_nau7802 import FakeNAU7802, StrapModel
    from drivers.nau7802 import NAU7802

    loop = box.loop
    settings = box.config.sensor
    fake = FakeNAU7802(loop.clock, StrapModel(seed=seed), address=settings.address,
                       log_limit=1000)
    strap = SimStrap(fake, loop.clock)

    def make_adc() -> NAU7802:
        return NAU7802(fake, loop.clock, settings.address, gain=settings.gain, sps=settings.sps)

    from device.addons.strap import load_strap_calibration

    box.sensor = attach(loop, settings, make_adc, load_strap_calibration(settings, simulated=True))
    box.strap = strap

    def arg(action: Action) -> float:
        try:
            return float(action.arg)
        except ValueError:
            from device.core.script import ScriptError

            raise ScriptError(f"script item {action.name}@{action.at:g}:{action.arg}: "
                              "needs a number after the colon") from None

    box.handlers["tension"] = lambda a: strap.set_level(arg(a))
    box.handlers["bounce"] = lambda a: strap.bounce(arg(a) if a.arg else 4.0)
    box.handlers["unplug"] = lambda a: strap.unplug()
    box.handlers["replug"] = lambda a: strap.replug()
    return strap


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
        from device.addons.service import stop_on_signals

        stop_on_signals(box.loop.stop)
    limit = until if until is not None else (None if speed else SAFETY_UNTIL_S)
    try:
        box.loop.run(until=limit, stop_when_done=until is None)
        box.loop.interrupt()  # a session still going when the run ends is kept, interrupted
        drain = getattr(box.speaker, "drain", None)
        if drain is not None and not box.loop.stop_event.is_set():
            drain()  # the last line ("All done...") reaches the player before the run ends
    finally:
        box.close()
    return box
