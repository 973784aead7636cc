"""The simulated strap add-on: the real strap add-on and the real driver of ``sensor.chip``
over its fake chip (the NAU7802's register-level fake, or the HX711's pin-level fake on the
box's mock pins) whose strap model a person (keys) or a script (``tension@``, ``bounce@``,
``unplug@``, ``replug@``) pulls on; the strap's leg relaxes as a held hamstring does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from device.addons.strap import StrapSensor
from device.addons.strap import attach as attach_strap
from device.box.clock import Clock
from device.box.events import StateEvent
from device.box.port import BoxPort
from drivers.fake_nau7802 import StrapModel
from drivers.loadcell import Calibration, LoadCell


class SimStrap:
    """A strap you can pull on: the fake chip's strap model (NAU7802 or HX711), driven by
    keys or a script, on a leg that relaxes as a held hamstring does.

    Each level set (``tension@``, a key) is the force at the moment it is reached; from
    there the leg relaxes by ``legs[leg] = (fraction, tau_s)``: ``F0 * (1 - fraction *
    (1 - exp(-t / tau_s)))``, the leg being the one in set-up or hold. Bounces and unplugs
    act on top. The person adds a slow drift (``DRIFT_KG_PER_MIN``), a breath's sway
    (``SWAY_KG``) and noise at the ADC's level (``NOISE_KG``).
    """

    STEP_KG = 1.0
    RAMP_S = 0.5
    NOISE_KG = 0.02
    """Noise at the ADC's level (kg, standard deviation)."""
    DRIFT_KG_PER_MIN = -0.03
    SWAY_KG = 0.05
    SWAY_PERIOD_S = 10.0

    def __init__(self, fake: Any, clock: Clock,
                 legs: dict[str, tuple[float, float]] | None = None) -> None:
        self.fake = fake
        self.model: StrapModel = fake.strap
        self.clock = clock
        self.level_kg = 0.0
        self.plugged = True
        self.legs = dict(legs or {})
        self.leg: str | None = None
        self.model.noise_kg = self.NOISE_KG
        self.model.creep_kg_per_min = self.DRIFT_KG_PER_MIN
        self.model.sway_kg = self.SWAY_KG
        self.model.sway_period_s = self.SWAY_PERIOD_S

    def on_leg(self, leg: str | None) -> None:
        """The person now holds ``leg``: its relaxation applies from here on."""
        if leg is None or leg == self.leg:
            return
        self.leg = leg
        if leg in self.legs:
            self.model.relax, self.model.tau_s = self.legs[leg]

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


def attach(port: BoxPort, fake: Any, make_adc: Callable[[], LoadCell],
           calibration: Calibration | None = None) -> SimStrapAddon:
    """Fit the simulated strap to the box on ``port``: ``fake`` is the chip's fake (its
    ``strap`` the model pulled on), ``make_adc`` the real driver over it (the builder picks
    both for ``sensor.chip``: ``device/apps/strap_chips.py``)."""
    settings = port.config.sensor
    strap = SimStrap(fake, port.clock, {
        "right": (settings.sim_relax_right / 100.0, settings.sim_tau_right),
        "left": (settings.sim_relax_left / 100.0, settings.sim_tau_left)})
    port.on(StateEvent, lambda e: strap.on_leg(e.leg))
    sensor = attach_strap(port, settings, make_adc, calibration)
    addon = SimStrapAddon(strap, sensor)
    port.provide(strap)
    return addon
