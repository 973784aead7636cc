"""``stretch-companion calibrate``: zero the slack strap, then a known weight gives kg."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from device.addons.strap import calibration_path
from device.apps.builder import pin_factory
from device.apps.strap_chips import real_adc_factory, simulated_chip
from device.box.clock import Clock, RealClock, VirtualClock
from device.core.config import Config
from drivers.fake_nau7802 import StrapModel
from drivers.loadcell import (
    MIN_KNOWN_KG,
    SCALE_RANGE,
    LoadCell,
    Scale,
    SensorError,
    save_calibration,
)
from drivers.pins import mock_factory

SAMPLES = 20  # averaged for the zero and for the weight


def calibrate_main(
    config: Config,
    kg: float,
    mock: bool = False,
    ask: Callable[[str], str] = input,
    out: TextIO | None = None,
    clock: Clock | None = None,
) -> int:
    """Walk through tare and a known weight; save offset and scale. Exit code."""
    out = out or sys.stdout
    settings = config.sensor
    if not MIN_KNOWN_KG <= kg <= 200:
        print(f"stretch-companion: --kg {kg:g}: must be a known weight from "
              f"{MIN_KNOWN_KG:g} to 200 kg (a lighter one is lost in the strap's noise)",
              file=sys.stderr)
        return 2
    fake = None
    path = calibration_path(settings, simulated=mock)  # --mock never touches the real one
    try:
        if mock:
            clock = clock or VirtualClock()
            fake, adc = _mock_chip(config, clock)
        else:
            clock = clock or RealClock()
            adc = _real_chip(config, clock)
        adc.begin()
        strap = Scale(adc)
        ask("1/2  Let the strap hang slack, nothing pulling on it, then press Enter ")
        offset = strap.tare(SAMPLES)
        print(f"     zero: {offset:.0f} counts", file=out)
        ask(f"2/2  Hang {kg:g} kg from the strap, let it settle, then press Enter ")
        if fake is not None:
            fake.strap.set_level(clock.now(), kg)  # type: ignore[attr-defined]
        scale = strap.calibrate(kg, SAMPLES)
    except SensorError as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("\ncalibrate: stopped before the end; nothing saved", file=sys.stderr)
        return 1
    if not SCALE_RANGE[0] <= abs(scale) <= SCALE_RANGE[1]:
        print(f"calibrate: {abs(scale):.0f} counts per kg is outside what a strap's load "
              f"cell gives ({SCALE_RANGE[0]:.0f} to {SCALE_RANGE[1]:.0f}); check the weight "
              "and the wiring; nothing saved", file=sys.stderr)
        return 1
    save_calibration(path, offset, scale)
    print(f"Saved {path}: {abs(scale):.0f} counts per kg. The strap now reads in kg.", file=out)
    return 0


def _mock_chip(config: Config, clock: Clock) -> tuple[object, LoadCell]:
    """The configured chip's fake (on fresh mock pins for the HX711) and its driver."""

    fake, make = simulated_chip(config.sensor, clock, mock_factory(), StrapModel(seed=7))
    return fake, make()


def _real_chip(config: Config, clock: Clock) -> LoadCell:
    """The configured chip on the real I2C bus or GPIO pins."""

    settings = config.sensor
    if settings.chip == "hx711":

        try:
            factory = pin_factory(config, mock=False)
        except Exception as exc:  # noqa: BLE001 - no GPIO backend: said as a sensor error
            raise SensorError(f"no GPIO for the HX711: {exc}") from exc
        return real_adc_factory(settings, clock, factory)()
    try:
        return real_adc_factory(settings, clock)()
    except SensorError as exc:
        raise SensorError(f"{exc} (is I2C on? sudo raspi-config nonint do_i2c 0)") from exc
