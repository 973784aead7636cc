"""NAU7802 24-bit load-cell ADC over I2C (smbus2): a ``LoadCell`` giving raw counts.

The bus is passed in (anything with smbus2.SMBus's ``read_byte_data``,
``write_byte_data`` and ``read_i2c_block_data``), so nothing touches /dev/i2c-* at
import and tests can hand in ``drivers.fake_nau7802.FakeNAU7802``. Every wait goes
through the injected clock. Any I/O error, time-out or chip fault raises one exception
type, ``drivers.loadcell.SensorError``, which the device loop treats as "sensor absent".
Tare, units and calibration are the load-cell layer's (``drivers/loadcell.py``), not this
chip's.

Power-up follows the datasheet's sequencing as the SparkFun library does it: reset
(RR), power up digital and analog (PUD, PUA), wait for PUR, start cycles (CS), LDO and
gain, sample rate, clock chopper off, PGA output cap on, LDO settle, internal offset
calibration (CALS, then CAL_ERR).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from drivers.clock import Clock
from drivers.loadcell import SensorError, read_within

DEFAULT_ADDRESS = 0x2A
"""The NAU7802's fixed 7-bit I2C address."""

REVISION_ID = 0x0F
"""Low nibble of DEVICE_REV on every NAU7802."""

FULL_SCALE = (-(1 << 23), (1 << 23) - 1)
"""The lowest and highest counts a conversion can give; an input beyond the range reads
as one of these (clipped), so a reading there is saturated, not a measurement."""


class I2CBus(Protocol):
    """The part of smbus2.SMBus the driver uses."""

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int: ...

    def write_byte_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None: ...

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]: ...


class Reg(IntEnum):
    """Register addresses used here."""

    PU_CTRL = 0x00
    CTRL1 = 0x01
    CTRL2 = 0x02
    ADCO_B2 = 0x12
    ADCO_B1 = 0x13
    ADCO_B0 = 0x14
    ADC = 0x15
    PGA = 0x1B
    PWR_CTRL = 0x1C
    DEVICE_REV = 0x1F


@dataclass(frozen=True)
class Field:
    """A bit field: ``width`` bits at ``shift`` in register ``reg``."""

    reg: Reg
    shift: int
    width: int = 1
    readonly: bool = False

    @property
    def mask(self) -> int:
        """The field's bits within its register byte."""
        return ((1 << self.width) - 1) << self.shift

    def get(self, byte: int) -> int:
        """The field's value in a register byte."""
        return (byte & self.mask) >> self.shift

    def put(self, byte: int, value: int) -> int:
        """``byte`` with this field set to ``value``."""
        if not 0 <= value < (1 << self.width):
            raise ValueError(f"{value} does not fit in {self.width} bit(s)")
        return (byte & ~self.mask & 0xFF) | (value << self.shift)


# The register map, described once; the fake chip uses the same table.
FIELDS: dict[str, Field] = {
    # PU_CTRL 0x00
    "RR": Field(Reg.PU_CTRL, 0),  # register reset
    "PUD": Field(Reg.PU_CTRL, 1),  # power up digital
    "PUA": Field(Reg.PU_CTRL, 2),  # power up analog
    "PUR": Field(Reg.PU_CTRL, 3, readonly=True),  # power up ready
    "CS": Field(Reg.PU_CTRL, 4),  # cycle start
    "CR": Field(Reg.PU_CTRL, 5, readonly=True),  # cycle ready (conversion available)
    "OSCS": Field(Reg.PU_CTRL, 6),  # clock source select
    "AVDDS": Field(Reg.PU_CTRL, 7),  # AVDD from the internal LDO
    # CTRL1 0x01
    "GAINS": Field(Reg.CTRL1, 0, 3),
    "VLDO": Field(Reg.CTRL1, 3, 3),
    # CTRL2 0x02
    "CALMOD": Field(Reg.CTRL2, 0, 2),  # 00 = internal offset calibration
    "CALS": Field(Reg.CTRL2, 2),  # calibration start; self-clearing
    "CAL_ERR": Field(Reg.CTRL2, 3, readonly=True),
    "CRS": Field(Reg.CTRL2, 4, 3),  # conversion rate select
    "CHS": Field(Reg.CTRL2, 7),  # channel select
    # ADC 0x15
    "REG_CHPS": Field(Reg.ADC, 4, 2),  # 0b11 turns the clock chopper off
    # PGA 0x1B
    "RD_OTP_SEL": Field(Reg.PGA, 7),
    # PWR_CTRL 0x1C
    "PGA_CAP_EN": Field(Reg.PWR_CTRL, 7),  # PGA output bypass capacitor
    # DEVICE_REV 0x1F
    "REVISION_ID": Field(Reg.DEVICE_REV, 0, 4, readonly=True),
}

GAIN_CODES: dict[int, int] = {1: 0, 2: 1, 4: 2, 8: 3, 16: 4, 32: 5, 64: 6, 128: 7}
"""PGA gain (x) -> GAINS field."""

LDO_CODES: dict[float, int] = {
    2.4: 0b111,
    2.7: 0b110,
    3.0: 0b101,
    3.3: 0b100,
    3.6: 0b011,
    3.9: 0b010,
    4.2: 0b001,
    4.5: 0b000,
}
"""Internal LDO voltage (V) -> VLDO field."""

SPS_CODES: dict[int, int] = {10: 0b000, 20: 0b001, 40: 0b010, 80: 0b011, 320: 0b111}
"""Samples per second -> CRS field."""


def readonly_mask(reg: Reg) -> int:
    """Bits of ``reg`` that the chip sets (never written back in read-modify-write)."""
    mask = 0
    for field in FIELDS.values():
        if field.reg == reg and field.readonly:
            mask |= field.mask
    return mask


def to_signed24(b2: int, b1: int, b0: int) -> int:
    """Three ADC bytes (MSB first) as a signed 24-bit count (-8388608..8388607)."""
    raw = (b2 << 16) | (b1 << 8) | b0
    return raw - (1 << 24) if raw & 0x800000 else raw


def open_bus(bus_number: int = 1) -> I2CBus:
    """Open ``/dev/i2c-<bus_number>`` with smbus2 (imported only now)."""
    try:
        import smbus2
    except ImportError as exc:
        raise SensorError("smbus2 is not installed; cannot use the strap sensor") from exc
    try:
        return smbus2.SMBus(bus_number)
    except OSError as exc:
        raise SensorError(f"cannot open I2C bus /dev/i2c-{bus_number}: {exc}") from exc


class NAU7802:
    """One NAU7802 on a bus, a ``drivers.loadcell.LoadCell``. Call ``begin()`` first (and
    again after a ``SensorError``).

    ``gain`` is the PGA gain (1..128), ``ldo_volts`` the internal LDO (2.4..4.5 V),
    ``sps`` the conversion rate (10, 20, 40, 80 or 320 samples per second).
    """

    POLL_S = 0.001
    """Status polling interval while waiting, seconds."""

    full_scale: tuple[int, int] = FULL_SCALE
    """The clipped ends of the conversion range (counts)."""

    def __init__(
        self,
        bus: I2CBus,
        clock: Clock,
        address: int = DEFAULT_ADDRESS,
        *,
        gain: int = 128,
        ldo_volts: float = 3.3,
        sps: int = 10,
        pur_timeout_s: float = 0.1,
        ldo_settle_s: float = 0.25,
        cal_timeout_s: float = 1.0,
    ) -> None:
        if gain not in GAIN_CODES:
            raise ValueError(f"gain {gain!r}: allowed {sorted(GAIN_CODES)}")
        if ldo_volts not in LDO_CODES:
            raise ValueError(f"ldo_volts {ldo_volts!r}: allowed {sorted(LDO_CODES)}")
        if sps not in SPS_CODES:
            raise ValueError(f"sps {sps!r}: allowed {sorted(SPS_CODES)}")
        self._bus = bus
        self._clock = clock
        self.address = address
        self.gain = gain
        self.ldo_volts = ldo_volts
        self.sps = sps
        self._pur_timeout_s = pur_timeout_s
        self._ldo_settle_s = ldo_settle_s
        self._cal_timeout_s = cal_timeout_s

    # --- low-level register access; every OSError becomes SensorError -------------

    def _read(self, reg: Reg) -> int:
        try:
            return self._bus.read_byte_data(self.address, reg)
        except OSError as exc:
            raise SensorError(
                f"NAU7802 at 0x{self.address:02X}: reading {reg.name} failed: {exc}"
            ) from exc

    def _write(self, reg: Reg, value: int) -> None:
        try:
            self._bus.write_byte_data(self.address, reg, value)
        except OSError as exc:
            raise SensorError(
                f"NAU7802 at 0x{self.address:02X}: writing {reg.name} failed: {exc}"
            ) from exc

    def _modify(self, reg: Reg, **fields: int) -> None:
        """Read-modify-write ``reg``, setting the named fields (one bus write)."""
        value = self._read(reg) & ~readonly_mask(reg) & 0xFF
        for name, field_value in fields.items():
            field = FIELDS[name]
            if field.reg != reg:
                raise ValueError(f"{name} is not in {reg.name}")
            value = field.put(value, field_value)
        self._write(reg, value)

    def _field(self, name: str) -> int:
        field = FIELDS[name]
        return field.get(self._read(field.reg))

    def _wait_for(self, name: str, want: int, timeout_s: float, what: str) -> None:
        """Poll field ``name`` until it equals ``want``, or raise after ``timeout_s``."""
        deadline = self._clock.now() + timeout_s
        while self._field(name) != want:
            if self._clock.now() >= deadline:
                raise SensorError(
                    f"NAU7802 at 0x{self.address:02X}: {what} timed out after {timeout_s:g} s"
                )
            self._clock.sleep(self.POLL_S)

    # --- set-up ----------------------------------------------------------------------

    def revision(self) -> int:
        """REVISION_ID (0x0F on a NAU7802); raises SensorError if nothing answers."""
        return self._field("REVISION_ID")

    def begin(self) -> None:
        """Reset, power up, configure and calibrate; raise SensorError on any failure."""
        rev = self.revision()
        if rev != REVISION_ID:
            raise SensorError(
                f"device at 0x{self.address:02X} is not a NAU7802 (revision id 0x{rev:X})"
            )
        self._modify(Reg.PU_CTRL, RR=1)
        self._clock.sleep(0.001)
        self._modify(Reg.PU_CTRL, RR=0)
        self._modify(Reg.PU_CTRL, PUD=1, PUA=1)
        self._wait_for("PUR", 1, self._pur_timeout_s, "power-up (PUR)")
        self._modify(Reg.PU_CTRL, CS=1)
        self._modify(Reg.CTRL1, VLDO=LDO_CODES[self.ldo_volts], GAINS=GAIN_CODES[self.gain])
        self._modify(Reg.PU_CTRL, AVDDS=1)
        self._modify(Reg.CTRL2, CRS=SPS_CODES[self.sps])
        self._modify(Reg.ADC, REG_CHPS=0b11)
        self._modify(Reg.PWR_CTRL, PGA_CAP_EN=1)
        self._clock.sleep(self._ldo_settle_s)
        self.calibrate_afe()
        self.read()  # discard a conversion taken before calibration, if one is waiting

    def calibrate_afe(self) -> None:
        """Internal offset calibration (after any gain, rate or channel change)."""
        self._modify(Reg.CTRL2, CALMOD=0b00, CALS=1)
        self._wait_for("CALS", 0, self._cal_timeout_s, "offset calibration (CALS)")
        if self._field("CAL_ERR"):
            raise SensorError(
                f"NAU7802 at 0x{self.address:02X}: offset calibration failed (CAL_ERR set)"
            )

    def power_down(self) -> None:
        """Power the analog and digital sections down (about 200 nA)."""
        self._modify(Reg.PU_CTRL, PUD=0, PUA=0)

    def close(self) -> None:
        """Power down if the chip still answers; never raises (the bus is the caller's)."""
        try:
            self.power_down()
        except SensorError:
            pass

    # --- conversions -----------------------------------------------------------------

    def read(self) -> int | None:
        """The newest conversion as a signed 24-bit count, or None if none is ready."""
        status = self._read(Reg.PU_CTRL)
        if not FIELDS["PUR"].get(status):
            raise SensorError(
                f"NAU7802 at 0x{self.address:02X} is not powered up (lost power?); call begin()"
            )
        if not FIELDS["CR"].get(status):
            return None
        try:
            data = self._bus.read_i2c_block_data(self.address, Reg.ADCO_B2, 3)
        except OSError as exc:
            raise SensorError(
                f"NAU7802 at 0x{self.address:02X}: reading the conversion failed: {exc}"
            ) from exc
        if len(data) != 3:
            raise SensorError(f"NAU7802 at 0x{self.address:02X}: short read ({len(data)} bytes)")
        return to_signed24(data[0], data[1], data[2])

    def read_blocking(self, timeout_s: float | None = None) -> int:
        """Wait for the next conversion (default time-out: 3 conversion periods + 0.1 s)."""
        if timeout_s is None:
            timeout_s = 3.0 / self.sps + 0.1
        return read_within(self.read, self._clock, timeout_s, self.POLL_S * 5,
                           f"NAU7802 at 0x{self.address:02X}")
