"""Which load-cell chip the strap opens (``sensor.chip``), real or simulated.

The NAU7802 sits on I2C (``sensor.i2c_bus``, ``sensor.address``); the HX711 on two GPIOs
(``sensor.data_pin``, ``sensor.clock_pin``) of the box's own pin factory. Both give a
``drivers.loadcell.LoadCell``; everything after that (tare, calibration, coaching) is the
same. The simulated chips are the drivers' fakes: the NAU7802's register-level fake, or
the HX711's pin-level fake on the box's mock pins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from device.core.config import SensorSettings
from drivers.clock import Clock
from drivers.loadcell import NOMINAL_COUNTS_PER_UNIT, Calibration, LoadCell

SIM_POWER_DOWN_S = 0.01
"""The simulated HX711 on a scaled real clock powers down only past this (s): such a clock
cannot time the chip's 60 us (on virtual time the true 60 us holds)."""


def chip_name(settings: SensorSettings) -> str:
    """The chip as people write it: "NAU7802" or "HX711"."""
    return "HX711" if settings.chip == "hx711" else "NAU7802"


def hx711_max_rate(settings: SensorSettings, calibration: Calibration | None = None) -> float:
    """The HX711 plausibility bound in counts per second at gain 128: ``max_rate_kg_s``
    through the calibration's counts per kg (the nominal counts before calibration)."""
    per_kg = NOMINAL_COUNTS_PER_UNIT
    if calibration is not None and calibration.scale:
        per_kg = abs(calibration.scale) * 128 / settings.gain
    return settings.max_rate_kg_s * per_kg


def make_hx711(settings: SensorSettings, clock: Clock, factory: Any,
               calibration: Calibration | None = None) -> Any:
    """The HX711 driver on ``factory``'s pins (not yet begun)."""
    # deferred: only the configured chip's driver is loaded
    from drivers.hx711 import HX711

    return HX711(factory, clock, data_pin=settings.data_pin, clock_pin=settings.clock_pin,
                 gain=settings.gain, sps=settings.sps,
                 max_rate=hx711_max_rate(settings, calibration))


def real_adc_factory(settings: SensorSettings, clock: Clock, factory: Any = None,
                     calibration: Calibration | None = None) -> Callable[[], LoadCell]:
    """Make the real chip: the NAU7802 on its I2C bus (opened once it is there), or the
    HX711 on ``factory``'s pins (one driver, begun afresh after each failure: its pins
    stay claimed)."""
    if settings.chip == "hx711":
        adc = make_hx711(settings, clock, factory, calibration)
        return lambda: adc
    # deferred: only the configured chip's driver is loaded
    from drivers.nau7802 import NAU7802, open_bus

    bus: list[object] = []

    def make() -> LoadCell:
        if not bus:
            bus.append(open_bus(settings.i2c_bus))
        return NAU7802(bus[0], clock, settings.address, gain=settings.gain,  # type: ignore[arg-type]
                       sps=settings.sps)

    return make


def simulated_chip(settings: SensorSettings, clock: Clock, factory: Any, strap: Any,
                   calibration: Calibration | None = None, real_clock: bool = False
                   ) -> tuple[Any, Callable[[], LoadCell]]:
    """The fake chip reading ``strap`` (a ``StrapModel``) and a maker of its driver. The
    fake has ``unplug()``/``replug()`` either way."""
    if settings.chip == "hx711":
        # deferred: only the configured chip's driver is loaded
        from drivers.fake_hx711 import FakeHX711
        from drivers.hx711 import POWER_DOWN_S

        fake: Any = FakeHX711(factory, clock, strap, data_pin=settings.data_pin,
                              clock_pin=settings.clock_pin, sps=settings.sps,
                              power_down_s=SIM_POWER_DOWN_S if real_clock else POWER_DOWN_S)
        adc = make_hx711(settings, clock, factory, calibration)
        return fake, lambda: adc
    # deferred: only the configured chip's driver is loaded
    from drivers.fake_nau7802 import FakeNAU7802
    from drivers.nau7802 import NAU7802

    fake = FakeNAU7802(clock, strap, address=settings.address, log_limit=1000)

    def make() -> LoadCell:
        return NAU7802(fake, clock, settings.address, gain=settings.gain, sps=settings.sps)

    return fake, make
