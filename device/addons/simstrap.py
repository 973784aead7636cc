"""The simulated strap add-on: the real strap add-on and NAU7802 driver over a register-level
fake chip whose strap model a person (keys) or a script (``tension@``, ``bounce@``,
``unplug@``, ``replug@``) pulls on.
"""

from __future__ import annotations

from collections.abc import Callable

from device.addons.strap import StrapSensor, load_strap_calibration
from device.addons.strap import attach as attach_strap
from device.box.clock import Clock
from device.box.port import BoxPort
from drivers.fake_nau7802 import FakeNAU7802, StrapModel
from drivers.nau7802 import NAU7802


class SimStrap:
    """A strap you can pull on: the fake NAU7802's strap model, driven by keys or a script."""

    STEP_KG = 1.0
    RAMP_S = 0.5

    def __init__(self, fake: FakeNAU7802, clock: Clock) -> None:
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

    def actions(self) -> dict[str, Callable[[float | None], None]]:
        """What a script may do to the strap: ``tension@T:KG``, ``bounce@T[:S]``,
        ``unplug@T``, ``replug@T`` (the number after the colon, or None)."""
        return {
            "tension": lambda kg: self.set_level(0.0 if kg is None else kg),
            "bounce": lambda s: self.bounce(4.0 if s is None else s),
            "unplug": lambda _: self.unplug(),
            "replug": lambda _: self.replug(),
        }


class SimStrapAddon:
    """The fitted simulated strap: ``strap`` to pull on, ``sensor`` the strap add-on."""

    def __init__(self, strap: SimStrap, sensor: StrapSensor) -> None:
        self.strap = strap
        self.sensor = sensor

    def close(self) -> None:
        """Nothing to release (the fake chip is memory)."""


def attach(port: BoxPort, seed: int = 1) -> SimStrapAddon:
    """Fit the simulated strap to the box on ``port`` (``seed``: its noise)."""
    settings = port.config.sensor
    clock = port.clock
    fake = FakeNAU7802(clock, StrapModel(seed=seed), address=settings.address, log_limit=1000)
    strap = SimStrap(fake, clock)

    def make_adc() -> NAU7802:
        return NAU7802(fake, clock, settings.address, gain=settings.gain, sps=settings.sps)

    sensor = attach_strap(port, settings, make_adc,
                          load_strap_calibration(settings, simulated=True))
    addon = SimStrapAddon(strap, sensor)
    port.provide(strap)
    return addon
