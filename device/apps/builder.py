"""One place that builds the whole box from the config: pins, light, buzzer, voice, the
device loop, its bus, the add-on port, and the add-ons (transcript, strap, history/habit,
sd_notify, control socket, phone page, MQTT).

Every command uses it: ``run`` (real pins), ``sim`` on screen and headless, ``selftest``
and the benchmarks. A new output is one module in ``device/addons/`` with
``attach(port, ...)`` returning a handle with ``close()``, and one line in ``build_box``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from device.addons import control, habit, hold_log, service, simstrap, strap, transcript
from device.addons.habit import Habit
from device.addons.notify import Notifier
from device.addons.simstrap import SimStrap
from device.addons.strap import StrapSensor
from device.apps.strap_chips import real_adc_factory, simulated_chip
from device.box.bus import EventBus
from device.box.clock import Clock, RealClock, VirtualClock, wall_clock
from device.box.loop import BoxView, DeviceLoop, Listener, Parts
from device.box.port import AddonHandle, BoxPort
from device.core.config import Config, SensorSettings
from device.core.machine import Press
from device.core.routine import Routine, load_routine
from device.core.script import PRESS_S, Action, ScriptError
from device.core.timetrust import TimeTrust
from drivers.fake_nau7802 import StrapModel
from drivers.loadcell import Calibration, LoadCell
from drivers.parts import Beeper, BreathLight, StrapButton
from drivers.pins import mock_factory, real_factory
from drivers.speech import RecordingSpeaker, SilentSpeaker, Speaker, make_speaker

if TYPE_CHECKING:  # the mqtt add-on is imported only when a broker is configured
    from device.addons.mqtt import Endpoint

T = TypeVar("T")

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
        now = box.loop.input_time()
        pin.drive_low()
        # the release is timed: the press lasts ``seconds`` of box time however late the
        # loop gets to it (at 1000x a busy machine's 10 ms is 10 s: a long press)
        box.loop.schedule(now + seconds, pin.drive_high, timed=True)

    def long_press(self) -> None:
        """Hold the button past the long-press time."""
        self.press(self.box.config.session.long_press_seconds + PRESS_S)

    def double_press(self) -> None:
        """Two quick presses on the loop's clock (0.3 s apart), whatever the simulator's
        speed: in the set-up, straight to the hold."""
        box = self.box
        now = box.loop.input_time()
        self.press()
        box.loop.schedule(now + DOUBLE_GAP_S, self.press, timed=True)

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

    loop: DeviceLoop
    port: BoxPort
    factory: Any  # gpiozero's pin factory (third-party, untyped)
    speaker: Speaker
    commands: PinCommands | LoopCommands
    strap: SimStrap | None = None  # the simulated strap (sim only)
    sensor: StrapSensor | None = None  # the strap sensor add-on, when fitted
    habit: Habit | None = None  # history and habit, when a history is kept
    notifier: Notifier | None = None  # sd_notify (run)
    addons: list[AddonHandle] = field(default_factory=list)
    handlers: dict[str, Callable[[Action], None]] = field(default_factory=dict)
    _closed: bool = False

    @property
    def config(self) -> Config:
        """The config in use (a saved one replaces it between sessions)."""
        return self.loop.config

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
        if isinstance(self.commands, PinCommands):
            self.commands.press(seconds)
        else:
            self.commands.press()

    def long_press_now(self) -> None:
        """Hold the button past the long-press time."""
        self.commands.long_press()

    def add_script(self, actions: Sequence[Action]) -> None:
        """Schedule each scripted action at its time (s after the loop's origin)."""
        for action in actions:
            self.loop.schedule(action.at, partial(self.handlers[action.name], action))

    def attach(self, handle: T) -> T:
        """Keep an add-on's handle, to be closed with the box."""
        self.addons.append(handle)  # type: ignore[arg-type]  # T has close(): AddonHandle
        return handle

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
        self.port.close()
        self.loop.bus.close()
        close_parts(self.loop.parts)


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
    mqtt: Endpoint | None = None,
    notifier: Notifier | None = None,
    trust: TimeTrust | None = None,
) -> Box:
    """Build the box for ``mode``: ``sim`` (mock pins, simulated strap with ``sensor``,
    a recording voice unless ``speaker`` is given) or ``run`` (``factory`` pins, the real
    voice, sd_notify through ``notifier`` and, when ``sensor.enabled``, the real strap).
    ``listeners`` read the transcript; ``history`` keeps sessions there (else only the
    plain spoken summary). ``web`` (HOST:PORT) serves the phone page there, as ``[web]
    enabled`` does at ``[web] listen``; its settings are read from and saved to
    ``config_path``. ``mqtt`` publishes to a broker. ``trust`` (``run``) is offered to the
    add-ons: sessions are stamped with how their dates were known (device.core.timetrust).

    Every add-on is attached here, the same way: ``attach(port, ...)`` returns a handle
    the box closes."""
    simulated = mode != "run"
    routine = routine or load_routine(config.routine.file or None)
    clock = clock or VirtualClock()
    if factory is None:
        factory = pin_factory(config, mock=simulated)
    if speaker is None:
        speaker = RecordingSpeaker() if simulated else make_voice(config, routine)
    parts = build_parts(config, factory, speaker,
                        is_mock=simulated or config.pins.factory == "mock")
    loop = DeviceLoop(config, routine, clock, parts, EventBus())
    commands: PinCommands | LoopCommands = LoopCommands(loop)
    port = BoxPort(loop, commands, simulated=simulated)
    box = Box(loop=loop, port=port, factory=factory, speaker=speaker, commands=commands)
    if trust is not None:
        port.provide(trust)
    if simulated:
        box.commands = port.commands = PinCommands(box)
    box.handlers["press"] = lambda a: box.press_now()
    box.handlers["long"] = lambda a: box.long_press_now()
    try:
        # ---- the add-ons: one line each ----
        for listener in listeners:  # first: the transcript sees each event before add-ons
            box.attach(transcript.attach(port, listener))
        if simulated and sensor:
            _fit_simulated_strap(box, box.attach(_simulated_strap(port, seed, factory)))
        elif not simulated and config.sensor.enabled:
            calibration = strap.load_strap_calibration(config.sensor)
            box.sensor = box.attach(strap.attach(
                port, config.sensor,
                strap_adc_factory(config.sensor, clock, factory, calibration), calibration))
        if history is not None:
            box.habit = box.attach(habit.attach(port, history, wall_clock(clock, wall_start),
                                                outbox=mqtt is not None))
        else:
            box.attach(habit.PlainSummary(port))
        if not simulated:
            box.notifier = notifier or Notifier()
            box.attach(service.attach(port, box.notifier))
        if not simulated or config.control.socket:
            _keep(box, control.attach(port))
        if web is not None or config.web.enabled:
            box.attach(_attach_web(port, web or config.web.listen, history, config_path))
        if mqtt is not None:
            box.attach(_attach_mqtt(port, mqtt, history, wall_start))
        if config.history.hold_log:
            box.attach(hold_log.attach(port, config.history.hold_log))
    except Exception:
        box.close()
        raise
    return box


def _keep(box: Box, handle: AddonHandle | None) -> None:
    """An add-on that may decline to run (it said why in the log)."""
    if handle is not None:
        box.attach(handle)


def _simulated_strap(port: BoxPort, seed: int, factory: Any) -> simstrap.SimStrapAddon:
    """The simulated strap on the chosen chip's fake (the HX711's on ``factory``'s pins)."""
    settings = port.config.sensor
    calibration = strap.load_strap_calibration(settings, simulated=True)
    fake, make_adc = simulated_chip(settings, port.clock, factory, StrapModel(seed=seed),
                                    calibration, real_clock=isinstance(port.clock, RealClock))
    return simstrap.attach(port, fake, make_adc, calibration)


def _fit_simulated_strap(box: Box, fitted: simstrap.SimStrapAddon) -> None:
    """The simulated strap's script actions: ``tension@``, ``bounce@``, ``unplug@``..."""
    box.strap, box.sensor = fitted.strap, fitted.sensor
    for name, act in fitted.strap.actions().items():
        box.handlers[name] = partial(_act, act)


def _act(act: Callable[[float | None], None], action: Action) -> None:
    act(_number(action))


def _number(action: Action) -> float | None:
    """The number after a script item's colon (None when there is none)."""
    if not action.arg:
        return None
    try:
        return float(action.arg)
    except ValueError:
        raise ScriptError(f"script item {action.name}@{action.at:g}:{action.arg}: "
                          "needs a number after the colon") from None


def _attach_web(port: BoxPort, listen: str, history: Path | None,
                config_path: Path | None) -> AddonHandle:
    from device.addons import web  # the web extra (Starlette, uvicorn): only when asked for

    return web.attach(port, listen, config_path=config_path, history_path=history,
                      simulator=port.simulated,
                      announce=sys.stderr if port.simulated else None)


def _attach_mqtt(port: BoxPort, ep: Endpoint, history: Path | None,
                 start: datetime | None) -> AddonHandle:
    from device.addons import mqtt  # the mqtt extra (paho): only when asked for

    return mqtt.attach(port, ep, history=history, wall_start=start)


def strap_adc_factory(settings: SensorSettings, clock: Clock, factory: Any = None,
                      calibration: Calibration | None = None) -> Callable[[], LoadCell]:
    """Make the real strap sensor (``sensor.chip``): the NAU7802 on its I2C bus (opened
    once it is there) or the HX711 on ``factory``'s pins; see ``apps/strap_chips.py``."""
    return real_adc_factory(settings, clock, factory, calibration)


def pin_factory(config: Config, mock: bool) -> Any:
    """gpiozero's pin factory: fresh mock pins, or the real backend of ``pins.factory``."""
    return mock_factory() if mock else real_factory(config.pins.factory)


