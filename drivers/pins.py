"""Pin factories: real gpiozero backends on a Pi, ``MockFactory`` everywhere else.

Vendor backends (lgpio, RPi.GPIO) are imported only inside gpiozero's own factory
code when asked for, never at module level here: off a Pi they raise on import.
"""

from __future__ import annotations

import os
import platform
import warnings
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin


class PinFactoryError(Exception):
    """No pin backend works here; the message says what to install."""


def mock_factory() -> MockFactory:
    """A fresh mock factory whose pins can do PWM (the breathing light needs it)."""
    return MockFactory(pin_class=MockPWMPin)


def pi_model() -> str:
    """The Pi model from the device tree, or '' off a Pi."""
    try:
        with open("/proc/device-tree/model", encoding="ascii", errors="replace") as f:
            return f.read().strip("\x00\n ")
    except OSError:
        return ""


def _install_hint(model: str) -> str:
    if "Raspberry Pi 5" in model:
        return "on a Pi 5 only lgpio works: sudo apt install python3-lgpio (or pip install lgpio)"
    if model:
        return "install lgpio: sudo apt install python3-lgpio (or RPi.GPIO: python3-rpi.gpio)"
    return (
        "this is not a Raspberry Pi: use `stretch-companion sim` (mock pins), "
        "or set pins.factory = \"mock\""
    )


def real_factory(name: str = "") -> Any:
    """gpiozero's pin factory as it would pick it (``name`` or GPIOZERO_PIN_FACTORY)."""
    from gpiozero import Device
    from gpiozero.exc import BadPinFactory

    name = name or os.environ.get("GPIOZERO_PIN_FACTORY", "")
    if name == "mock":
        return mock_factory()
    try:
        if name:
            return _by_name(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Device._default_pin_factory()
    except (BadPinFactory, Exception) as exc:  # backends raise all sorts off a Pi
        model = pi_model() or platform.machine()
        raise PinFactoryError(
            f"no GPIO backend works here ({exc}); {_install_hint(pi_model())} [{model}]"
        ) from None


def _by_name(name: str) -> Any:
    from importlib.metadata import entry_points

    group = entry_points(group="gpiozero_pin_factories")
    return group[name].load()()


def trim_states(factory: Any, keep: int = 64) -> None:
    """Keep only the last ``keep`` recorded states of each mock pin (memory stays flat)."""
    for pin in list(getattr(factory, "pins", {}).values()):
        states = getattr(pin, "states", None)
        if states is not None and len(states) > keep * 2:
            del states[: len(states) - keep]
