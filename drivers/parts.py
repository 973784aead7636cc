"""The box's GPIO parts as thin gpiozero wrappers; the pin factory is passed in.

Nothing here knows about stretching or time: the device loop decides when things
happen (on its injected clock) and calls these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpiozero import PWMLED, Buzzer, DigitalInputDevice, TonalBuzzer
from gpiozero.tones import Tone

BUTTON_BOUNCE_S = 0.02

# Tones (Hz) for a passive buzzer, by beep name.
TONES = {"start": 880.0, "tick": 660.0, "breath": 262.0, "count": 880.0, "end": 1320.0,
         "cancel": 330.0}  # breath: a soft low tone at each in-breath


class StrapButton:
    """The one push button (to GND, internal pull-up); ``listen`` reports its edges.

    A plain ``DigitalInputDevice``, not gpiozero's ``Button``: a ``Button`` starts a hold
    thread that wakes 10 times a second for ``when_held``, and long presses are timed on
    the injected clock (``device.core.presses``) instead. Edges arrive from the pin factory's
    own callback (on a Pi: lgpio's alert thread, asleep until an edge), so an idle box
    sleeps and closing the button is immediate."""

    def __init__(self, pin: int, pin_factory: Any) -> None:
        self.device = DigitalInputDevice(pin, pull_up=True, bounce_time=BUTTON_BOUNCE_S,
                                         pin_factory=pin_factory)

    def listen(self, on_change: Callable[[bool], None]) -> None:
        """Call ``on_change(True)`` on press and ``on_change(False)`` on release."""
        self.device.when_activated = lambda: on_change(True)
        self.device.when_deactivated = lambda: on_change(False)

    @property
    def is_pressed(self) -> bool:
        """True while the button is held down."""
        return bool(self.device.is_active)

    def close(self) -> None:
        """Release the pin."""
        if self.device.when_activated is not None:
            self.device.when_activated = None
            self.device.when_deactivated = None
        self.device.close()


class BreathLight:
    """The breathing-light LED on a PWM pin: ``value`` is the duty cycle 0..1."""

    def __init__(self, pin: int, pin_factory: Any) -> None:
        self.device = PWMLED(pin, pin_factory=pin_factory)
        self._pin = self.device.pin  # written directly per frame (active high, no blink)
        self._value = 0.0

    @property
    def duty(self) -> float:
        """The duty cycle last written (no pin access: cheap enough for every frame)."""
        return self._value

    @property
    def value(self) -> float:
        """Duty cycle the pin is driven at (read back from the pin)."""
        return float(self.device.value)

    @value.setter
    def value(self, duty: float) -> None:
        duty = min(1.0, max(0.0, duty))
        if duty != self._value:
            self._value = duty
            # the pin itself: PWMLED.value's own checks (range, blink thread, attribute
            # guard) cost several calls a frame, and the loop never blinks the LED
            self._pin.state = duty

    def off(self) -> None:
        """Dark."""
        self.value = 0.0

    def close(self) -> None:
        """Off, and release the pin."""
        try:
            self.off()
        finally:
            self.device.close()


class Beeper:
    """The buzzer: active (on/off) with ``Buzzer`` or passive with ``TonalBuzzer``."""

    def __init__(self, pin: int, kind: str, pin_factory: Any) -> None:
        self.kind = kind
        self.device: Buzzer | TonalBuzzer
        if kind == "passive":
            self.device = TonalBuzzer(pin, mid_tone=Tone(880.0), octaves=2,
                                      pin_factory=pin_factory)
        else:
            self.device = Buzzer(pin, pin_factory=pin_factory)
        self.sounding: str | None = None

    def on(self, name: str) -> None:
        """Start the beep called ``name`` (its tone on a passive buzzer)."""
        if isinstance(self.device, TonalBuzzer):
            self.device.play(Tone(TONES.get(name, 880.0)))
        else:
            self.device.on()
        self.sounding = name

    def off(self) -> None:
        """Silence."""
        if isinstance(self.device, TonalBuzzer):
            self.device.stop()
        else:
            self.device.off()
        self.sounding = None

    def close(self) -> None:
        """Silent, and release the pin."""
        try:
            self.off()
        finally:
            self.device.close()
