"""One place that builds the whole box from the config: pins, light, buzzer, voice, the
device loop, its bus, and the add-ons (transcript, strap, history/habit, and the outputs).

Every command uses it: ``run`` (real pins), ``sim`` on screen and headless, ``selftest``
and the benchmarks. A new output is one module with ``attach(box, ...)`` and one line in
``build_box``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from device.box.bus import EventBus
from device.box.clock import Clock, VirtualClock
from device.box.loop import BoxView, DeviceLoop, Listener, Parts
from device.core.config import Config
from device.core.machine import Press
from device.core.routine import Routine, load_routine
from device.core.script import PRESS_S, Action
from drivers.parts import Beeper, BreathLight, StrapButton
from drivers.speech import RecordingSpeaker, SilentSpeaker, Speaker

log = logging.getLogger(__name__)

DOUBLE_GAP_S = 0.3  # a double press from the command port: the second this much later (s)


# ---- parts -------------------------------------------------------------------------------


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


def make_voice(config: Config, routine: Routine | None = None) -> Speaker:
    """The box's voice as configured: pyttsx3 with the WAV cue cache, ``voice.player`` and
    ``voice.audio_device``, or silence when ``voice.enabled`` is false. The one place a
    real voice is made."""
    from drivers.speech import make_speaker

    v = config.voice
    if not v.enabled:
        return SilentSpeaker()
    routine = routine or load_routine(config.routine.file or None)
    return make_speaker(v.enabled, v.rate, v.volume, v.voice,
                        fixed_lines=routine.fixed_lines(config.session.legs),
                        audio_device=v.audio_device, player=v.player)


# ---- the command port --------------------------------------------------------------------


class LoopCommands:
    """Presses injected into the loop (a box on real pins: the socket, the network)."""

    def __init__(self, loop: DeviceLoop) -> None:
        self.loop = loop

    def press(self) -> None:
        """A short press, as if the button had been tapped (thread-safe)."""
        self.loop.command(Press.SHORT)

    def long_press(self) -> None:
        """A long press: cancel (thread-safe)."""
        self.loop.command(Press.LONG)

    def double_press(self) -> None:
        """Two quick presses: in the set-up, straight to the hold (thread-safe)."""
        self.loop.command(Press.SHORT)
        self.loop.command(Press.SHORT)


class PinCommands:
    """Presses on the simulator's mock button pin, so they go through gpiozero."""

    def __init__(self, box: Box) -> None:
        self.box = box

    def press(self, seconds: float = PRESS_S) -> None:
        """Press the button now and let go ``seconds`` later (loop time)."""
        box = self.box
        pin = box.button_pin
        pin.drive_low()
        now = box.loop.clock.now() - box.loop.origin
        box.loop.schedule(now + seconds, pin.drive_high)

    def long_press(self) -> None:
        """Hold the button past the long-press time."""
        self.press(self.box.config.session.long_press_seconds + PRESS_S)

    def double_press(self) -> None:
        """Two quick presses on the loop's clock (0.3 s apart), whatever the simulator's
        speed: in the set-up, straight to the hold."""
        box = self.box
        self.press()
        now = box.loop.clock.now() - box.loop.origin
        box.loop.schedule(now + DOUBLE_GAP_S, self.press)

    def strap(self, action: str, arg: float | None = None) -> None:
        """A strap action on the simulated strap (harder, softer, bounce, unplug, replug,
        toggle_plug, set_level), run in the loop's thread."""
        strap = self.box.strap
        if strap is None:
            raise ValueError("no simulated strap is fitted")
        fn = getattr(strap, action)
        self.box.loop.call_soon(lambda: fn() if arg is None else fn(arg))


# ---- the box -----------------------------------------------------------------------------


@dataclass
class Box:
    """The whole box: loop, bus, parts, add-ons, a read model and a command port."""

    config: Config
    loop: DeviceLoop
    factory: Any
    speaker: Speaker
    commands: Any = None
    strap: Any = None  # the simulated strap (sim only)
    sensor: Any = None  # the strap sensor add-on, when fitted
    habit: Any = None  # history and habit, when a history is kept
    addons: list[Any] = field(default_factory=list)
    handlers: dict[str, Callable[[Action], None]] = field(default_factory=dict)
    _closed: bool = False

    @property
    def bus(self) -> EventBus:
        """The loop's event bus."""
        return self.loop.bus

    @property
    def clock(self) -> Clock:
        """The injected clock."""
        return self.loop.clock

    def view(self) -> BoxView:
        """The read model (safe from any thread)."""
        return self.loop.view()

    # simulator helpers (mock pins)
    @property
    def button_pin(self) -> Any:
        """The mock pin under the button (drive_low = pressed)."""
        return self.factory.pin(self.config.pins.button)

    @property
    def led_pin(self) -> Any:
        """The mock PWM pin under the light."""
        return self.factory.pin(self.config.pins.led)

    @property
    def buzzer_pin(self) -> Any:
        """The mock pin under the buzzer."""
        return self.factory.pin(self.config.pins.buzzer)

    def press_now(self, seconds: float = PRESS_S) -> None:
        """Press the button now and release it ``seconds`` later (loop time)."""
        self.commands.press(seconds) if isinstance(self.commands, PinCommands) \
            else self.commands.press()

    def long_press_now(self) -> None:
        """Hold the button past the long-press time."""
        self.commands.long_press()

    def add_script(self, actions: Sequence[Action]) -> None:
        """Schedule each scripted action at its time (s after the loop's origin)."""
        for action in actions:
            handler = self.handlers[action.name]
            self.loop.schedule(action.at, lambda a=action, h=handler: h(a))

    def close(self) -> None:
        """Add-ons closed (queued ones finish what they have), outputs off, pins released."""
        if self._closed:
            return
        self._closed = True
        for addon in reversed(self.addons):
            try:
                addon.close()
            except Exception:
                log.exception("closing %s failed", type(addon).__name__)
        self.loop.bus.close()
        close_parts(self.loop.parts)




def attach_transcript(bus: EventBus, listener: Listener) -> None:
    """A transcript reader gets every event (light frames too) as its JSON dict."""
    from device.addons import transcript

    transcript.attach(bus, listener)


def build_box(
    config: Config,
    *,
    mode: str = "sim",
    clock: Clock | None = None,
    speaker: Speaker | None = None,
    listeners: Iterable[Listener] = (),
    sensor: bool = False,
    seed: int = 1,
    history: Path | None = None,
    wall_start: datetime | None = None,
    factory: Any = None,
    routine: Routine | None = None,
    web: str | None = None,
    config_path: Path | None = None,
    mqtt: Any = None,
) -> Box:
    """Build the box for ``mode``: ``sim`` (mock pins, simulated strap with ``sensor``,
    a recording voice unless ``speaker`` is given) or ``run`` (``factory`` pins, the real
    voice and, when ``sensor.enabled``, the real strap). ``listeners`` read the transcript;
    ``history`` keeps sessions there (else only the plain spoken summary). ``web`` (HOST:PORT)
    serves the phone page there, as ``[web] enabled`` does at ``[web] listen``; its settings
    are read from and saved to ``config_path``. ``mqtt`` (a ``device.addons.mqtt.Endpoint``)
    publishes to a broker."""
    simulated = mode != "run"
    routine = routine or load_routine(config.routine.file or None)
    clock = clock or VirtualClock()
    if factory is None:
        factory = pin_factory(config, mock=simulated)
    if speaker is None:
        speaker = RecordingSpeaker() if simulated else make_voice(config, routine)
    parts = build_parts(config, factory, speaker,
                        is_mock=simulated or config.pins.factory == "mock")
    bus = EventBus()
    for listener in listeners:  # first: the transcript sees each event before add-ons act
        attach_transcript(bus, listener)
    loop = DeviceLoop(config, routine, clock, parts, bus)
    box = Box(config=config, loop=loop, factory=factory, speaker=speaker)
    box.commands = PinCommands(box) if simulated else LoopCommands(loop)
    box.handlers["press"] = lambda a: box.press_now()
    box.handlers["long"] = lambda a: box.long_press_now()
    try:
        # ---- the add-ons: one line each ----
        if simulated and sensor:
            _attach_simulated_strap(box, seed)
        elif not simulated and config.sensor.enabled:
            _attach_real_strap(box)
        if history is not None:
            box.habit = _attach_history(box, routine, history, wall_start,
                                        outbox=mqtt is not None)
        else:
            box.addons.append(_attach_plain_summary(box))
        if not simulated or config.control.socket:
            _attach_control(box)
        if web is not None or config.web.enabled:
            box.addons.append(_attach_web(box, web or config.web.listen, history, config_path))
        if mqtt is not None:
            box.addons.append(_attach_mqtt(box, mqtt, history, wall_start))
    except Exception:
        box.close()
        raise
    return box


def _attach_web(box: Box, listen: str, history: Path | None, config_path: Path | None) -> Any:
    from device.addons import web

    simulated = not isinstance(box.commands, LoopCommands)
    return web.attach(box, listen, config_path=config_path, history_path=history,
                      simulator=simulated, announce=sys.stderr if simulated else None)


def _attach_simulated_strap(box: Box, seed: int) -> None:
    from device.apps.sim import add_strap

    add_strap(box, seed=seed)


def _attach_real_strap(box: Box) -> None:
    from device.addons import strap

    settings = box.config.sensor
    box.sensor = strap.attach(box.loop, settings, strap.pi_adc_factory(settings, box.clock),
                              strap.load_strap_calibration(settings))


def _attach_history(box: Box, routine: Routine, path: Path, start: datetime | None,
                    outbox: bool = False) -> Any:
    from device.addons import habit
    from device.box.clock import wall_clock

    added = habit.attach(box.loop, box.config, routine, path, wall_clock(box.clock, start),
                         outbox=outbox)
    box.addons.append(added)
    return added


def _attach_control(box: Box) -> None:
    from device.addons import control

    server = control.attach(box)  # the control socket: press, long, status
    if server is not None:
        box.addons.append(server)


def _attach_mqtt(box: Box, ep: Any, history: Path | None, start: datetime | None) -> Any:
    from device.addons import mqtt

    return mqtt.attach(box, ep, history=history, wall_start=start)


def _attach_plain_summary(box: Box) -> Any:
    from device.addons.habit import PlainSummary

    return PlainSummary(box.loop)


def pin_factory(config: Config, mock: bool) -> Any:
    """gpiozero's pin factory: fresh mock pins, or the real backend of ``pins.factory``."""
    from drivers.pins import mock_factory, real_factory

    return mock_factory() if mock else real_factory(config.pins.factory)


