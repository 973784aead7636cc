"""HX711 24-bit load-cell ADC on two GPIOs (gpiozero): a ``LoadCell`` giving raw counts.

The chip has no bus: DOUT (data out) goes low when a conversion is ready, and the host
clocks it out on PD_SCK, MSB first, 24 bits of two's complement; 1 to 3 more pulses
(25, 26 or 27 in all) choose the input and gain of the *next* conversion (A at 128, B at
32, A at 64). Its rate is fixed by a pin on the board (RATE low: 10 samples/s, high: 80).
PD_SCK held high for more than 60 us powers the chip down; taking it low again resets it
to channel A, gain 128. After a reset or a change of input or gain the output needs
400 ms (10 SPS) or 50 ms (80 SPS) to settle; readings in that time are discarded.

The pins are gpiozero devices (``DigitalInputDevice`` for DOUT with the pull-up on, so a
missing chip reads "never ready"; ``DigitalOutputDevice`` for PD_SCK) made on the pin
factory passed in; every wait goes through the injected clock. Nothing here knows what
the readings are for.

Bit-banged from Linux, a read can be interrupted while PD_SCK is high: the chip powers
down mid-read and the rest of the bits read as ones. So every reading passes a
plausibility filter before it is returned (``Plausibility``): the rule is in its
docstring and in the README, and each rejected reading is counted by reason in
``HX711.rejected``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from drivers.clock import Clock
from drivers.loadcell import SensorError, read_within

FULL_SCALE = (-(1 << 23), (1 << 23) - 1)
"""The lowest and highest counts a conversion can give (an input beyond reads as these)."""

PULSES: dict[int, int] = {128: 25, 32: 26, 64: 27}
"""Gain -> PD_SCK pulses per read (128 and 64 are input A, 32 is input B)."""

CHANNEL_OF_GAIN: dict[int, str] = {128: "A", 32: "B", 64: "A"}
"""Gain -> the input it belongs to."""

RATES: tuple[int, ...] = (10, 80)
"""Samples per second the RATE pin allows (low: 10, high: 80)."""

POWER_DOWN_S = 60e-6
"""PD_SCK high longer than this powers the chip down (datasheet: 60 us)."""

SETTLE_S: dict[int, float] = {10: 0.4, 80: 0.05}
"""Output settling time after power-up, reset or a change of input or gain (s)."""

HALF_READ_ONES = 12
"""A reading whose lowest this many bits are all ones is taken for a half read."""


def to_signed24(raw: int) -> int:
    """A 24-bit two's complement word (0..0xFFFFFF) as a signed count."""
    raw &= 0xFFFFFF
    return raw - (1 << 24) if raw & 0x800000 else raw


@dataclass
class Plausibility:
    """The HX711's plausibility filter. A reading is rejected if:

    1. ``all_ones``: it is 0xFFFFFF (-1): the chip powered down before the first bit, or
       DOUT is held high;
    2. ``half_read``: its lowest ``HALF_READ_ONES`` (12) bits are all ones: the chip
       powered down part-way and the rest read as ones (such a read that loses fewer bits
       is off by less than 2**12 counts, far below any coaching line; a genuine reading
       ends in twelve ones once in 4096 and is simply skipped); the top of the range,
       0x7FFFFF, is left to rule 3, so a real pull past the range still shows;
    3. ``jump``: it is further from the last accepted reading than the strap can move
       in the time between them (``max_rate`` counts per second, over at least one
       conversion period ``period_s``), and the next ``confirm`` readings do not agree
       with it within that bound: a real step persists, a glitch is one reading. A
       confirmed step is accepted (late by ``confirm`` conversions); a pull past the
       sensor's range is a step like any other.

    The first reading after ``reset()`` has nothing to jump from and is taken as it is
    (after rules 1 and 2).
    """

    max_rate: float
    period_s: float
    confirm: int = 2

    def __post_init__(self) -> None:
        if not self.max_rate > 0:
            raise ValueError(f"max_rate {self.max_rate}: must be > 0 counts/s")
        if self.confirm < 1:
            raise ValueError(f"confirm {self.confirm}: must be >= 1")
        self.rejected: Counter[str] = Counter()
        self._last: tuple[float, int] | None = None
        self._pending: list[tuple[float, int]] = []

    def reset(self) -> None:
        """Forget the last reading (after begin: the next one is taken as it is)."""
        self._last = None
        self._pending = []

    def _near(self, a: tuple[float, int], b: tuple[float, int]) -> bool:
        dt = max(abs(b[0] - a[0]), self.period_s)
        return abs(b[1] - a[1]) <= self.max_rate * dt

    def check(self, counts: int, t: float) -> int | None:
        """The reading ``counts`` taken at ``t`` (s) if plausible (or the newest of a
        confirmed step), else None."""
        if counts == -1:
            self.rejected["all_ones"] += 1
            return None
        ones = (1 << HALF_READ_ONES) - 1
        if counts & ones == ones and counts != FULL_SCALE[1]:
            self.rejected["half_read"] += 1
            return None
        reading = (t, counts)
        if self._last is None or self._near(self._last, reading):
            if self._pending:
                self.rejected["jump"] += len(self._pending)
                self._pending = []
            self._last = reading
            return counts
        if self._pending and not self._near(self._pending[-1], reading):
            self.rejected["jump"] += len(self._pending)
            self._pending = []
        self._pending.append(reading)
        if len(self._pending) > self.confirm:
            self._pending = []
            self._last = reading
            return counts
        return None


class HX711:
    """One HX711 on two GPIOs, a ``drivers.loadcell.LoadCell``. Call ``begin()`` first
    (and again after a ``SensorError``).

    ``factory`` is the gpiozero pin factory (the box's own), ``data_pin`` DOUT and
    ``clock_pin`` PD_SCK (BCM numbers or gpiozero pin names), ``gain`` 128 or 64 (input
    A) or 32 (input B), ``sps`` the rate the board's RATE pin fixes (10 or 80; the chip
    cannot be told, so it must match the board). ``max_rate`` (counts per second at
    gain 128, scaled to the gain in use; default about 100 kg/s on a 2 mV/V, 50 kg cell)
    and ``confirm`` set the plausibility filter;
    ``stall_s`` is how long without a conversion counts as the chip gone (default:
    settling time plus five conversion periods, at least 0.5 s).
    """

    full_scale: tuple[int, int] = FULL_SCALE
    """The clipped ends of the conversion range (counts)."""

    POLL_S = 0.002
    """Waiting interval while DOUT is high, seconds."""

    def __init__(
        self,
        factory: Any,
        clock: Clock,
        *,
        data_pin: int | str = 5,
        clock_pin: int | str = 6,
        gain: int = 128,
        sps: int = 10,
        max_rate: float = 8_500_000.0,
        confirm: int = 2,
        stall_s: float | None = None,
    ) -> None:
        if gain not in PULSES:
            raise ValueError(f"gain {gain!r}: the HX711 allows {sorted(PULSES)}")
        if sps not in RATES:
            raise ValueError(f"sps {sps!r}: the HX711 runs at {list(RATES)} (its RATE pin)")
        if data_pin == clock_pin:
            raise ValueError(f"data_pin and clock_pin are both {data_pin!r}")
        self._factory = factory
        self._clock = clock
        self.data_pin = data_pin
        self.clock_pin = clock_pin
        self.gain = gain
        self.channel = CHANNEL_OF_GAIN[gain]
        self.sps = sps
        self.settle_s = SETTLE_S[sps]
        self.stall_s = stall_s if stall_s is not None else max(0.5, self.settle_s + 5.0 / sps)
        self.filter = Plausibility(max_rate * gain / 128, 1.0 / sps, confirm)
        self._dout: Any = None
        self._sck: Any = None
        self._chip_gain = 128  # what the chip uses now (after power-up: A, 128)
        self._settled_at = 0.0  # readings before this are discarded
        self._last_data = 0.0  # when DOUT last showed a conversion (for stall)
        self.reads = 0
        """Conversions clocked out (accepted or not)."""

    @property
    def rejected(self) -> Counter[str]:
        """Readings the plausibility filter refused so far, by reason."""
        return self.filter.rejected

    def _where(self) -> str:
        return f"HX711 (DOUT {self.data_pin}, PD_SCK {self.clock_pin})"

    # --- set-up ----------------------------------------------------------------------

    def _open(self) -> None:
        if self._sck is not None:
            return
        from gpiozero import DigitalInputDevice, DigitalOutputDevice
        from gpiozero.exc import GPIOZeroError

        try:
            self._sck = DigitalOutputDevice(self.clock_pin, initial_value=False,
                                            pin_factory=self._factory)
            self._dout = DigitalInputDevice(self.data_pin, pull_up=True,
                                            pin_factory=self._factory)
        except (GPIOZeroError, OSError, ValueError) as exc:
            self._release()
            raise SensorError(f"{self._where()}: cannot use the pins: {exc}") from exc

    def _release(self) -> None:
        for device in (self._dout, self._sck):
            if device is not None:
                try:
                    device.close()
                except Exception:  # noqa: BLE001 - closing never raises to the caller
                    pass
        self._dout = self._sck = None

    def power_down(self) -> None:
        """Hold PD_SCK high past 60 us: the chip powers down (reset when it goes low)."""
        if self._sck is None:
            return
        self._sck.on()
        self._clock.sleep(2 * POWER_DOWN_S)

    def begin(self) -> None:
        """Reset the chip (power down, up), choose the gain and wait for a settled first
        reading; SensorError if no conversion comes."""
        self._open()
        self.power_down()
        self._sck.off()  # reset: input A, gain 128, settling
        now = self._clock.now()
        self._chip_gain = 128
        self._settled_at = now + self.settle_s
        self._last_data = now
        self.filter.reset()
        self.read_blocking(self.stall_s)

    def close(self) -> None:
        """Power the chip down and let the pins go; never raises (``begin`` reopens)."""
        try:
            self.power_down()
        except Exception:  # noqa: BLE001 - close never raises
            pass
        self._release()

    # --- conversions -----------------------------------------------------------------

    def _ready(self) -> bool:
        # pulled up, the device is active when DOUT is low: a conversion is waiting
        return bool(self._dout.is_active)

    def _shift_in(self) -> int:
        """Clock out the 24 bits and the gain pulses; the raw 24-bit word."""
        sck, dout = self._sck, self._dout
        raw = 0
        for _ in range(24):
            sck.on()  # the bit appears on DOUT within 0.1 us of the rising edge
            low = dout.is_active  # active low (pulled up)
            sck.off()
            raw = (raw << 1) | (0 if low else 1)
        for _ in range(PULSES[self.gain] - 24):
            sck.on()
            sck.off()
        return raw

    def read(self) -> int | None:
        """The newest plausible conversion as a signed count, or None if none is ready
        (or the one that was is discarded: settling, or refused by the filter)."""
        if self._sck is None:
            raise SensorError(f"{self._where()} is not set up; call begin()")
        try:
            ready = self._ready()
            now = self._clock.now()
            if not ready:
                if now - self._last_data > self.stall_s:
                    raise SensorError(f"{self._where()}: no conversion for "
                                      f"{now - self._last_data:.1f} s (unplugged or unpowered?)")
                return None
            self._last_data = now
            raw = self._shift_in()
        except SensorError:
            raise
        except Exception as exc:  # noqa: BLE001 - a pin failing mid-read is the sensor failing
            raise SensorError(f"{self._where()}: reading failed: {exc}") from exc
        self.reads += 1
        if self._chip_gain != self.gain:
            # this read's pulses switched the input or gain: the next ones must settle
            self._chip_gain = self.gain
            self._settled_at = now + self.settle_s
            return None
        if now < self._settled_at:
            return None
        before = self.filter.rejected["all_ones"] + self.filter.rejected["half_read"]
        counts = self.filter.check(to_signed24(raw), now)
        if counts is None and (self.filter.rejected["all_ones"]
                               + self.filter.rejected["half_read"]) > before:
            # ones in the tail: the chip powered down mid-read and came back at input A,
            # gain 128; the next read's pulses choose the gain again and are not trusted
            self._chip_gain = 128
        return counts

    def read_blocking(self, timeout_s: float | None = None) -> int:
        """Wait for the next plausible conversion (default time-out: ``stall_s`` plus a
        settling time and three conversions, room for a glitch that reset the chip)."""
        if timeout_s is None:
            timeout_s = self.stall_s + self.settle_s + 3.0 / self.sps
        return read_within(self.read, self._clock, timeout_s, self.POLL_S * 5, self._where())
