"""A pin-level fake HX711 on gpiozero's ``MockFactory``, plus the same strap model as the
NAU7802's fake.

``FakeHX711`` takes the two pins on the factory before the driver does (DOUT as an input
whose level the chip drives, PD_SCK as an output whose edges the chip sees) and answers
the clock pulses as the chip would, on the injected clock: DOUT goes low when a
conversion is ready (every 1/sps s once settled), each rising edge of PD_SCK shifts out
the next bit (MSB first, 24 bits of two's complement), the 25th pulse sends DOUT high and
the count of pulses (25, 26, 27) chooses the next input and gain. PD_SCK high for more
than 60 us powers it down (DOUT high); low again, it resets to input A, gain 128. After
a reset or a change of input or gain its DOUT stays high for the settling time (400 ms
at 10 SPS, 50 ms at 80 SPS; a simplification: the real chip converts meanwhile, but
those readings are not valid).

Test controls: ``glitch(rate)`` makes reads go wrong as a bit-banged read on Linux does
(the host stalls with PD_SCK high, the chip powers down part-way and the rest reads as
ones; or one bit is read wrong); ``stall()`` stops conversions; ``vanish()`` takes the
chip off the wires (DOUT floats to the pin's pull, clock edges ignored) and
``reappear()`` brings it back powered up afresh.
"""

from __future__ import annotations

import math
import random
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin

from drivers.clock import Clock
from drivers.fake_nau7802 import COUNTS_PER_KG, OFFSET_COUNTS, StrapModel
from drivers.hx711 import CHANNEL_OF_GAIN, POWER_DOWN_S, RATES, SETTLE_S

_GAIN_OF_PULSES = {25: 128, 26: 32, 27: 64}


class _ChipPin(MockPWMPin):
    """A mock pin wired to the fake chip (a PWM-capable class, as the box's factory
    makes: gpiozero refuses a plain MockPin where MockPWMPin pins are made)."""

    chip: FakeHX711 | None = None
    role = ""

    def _get_state(self) -> Any:
        if self.role == "dout" and self.chip is not None and self._function == "input":
            level = self.chip.dout()
            if level is not None:
                return level
        return super()._get_state()

    def _set_state(self, value: Any) -> None:
        super()._set_state(value)
        if self.role == "sck" and self.chip is not None:
            self.chip.on_clock(bool(value))


class FakeHX711:
    """An HX711 on two mock pins of ``factory``, converting the ``strap`` (kg at time t)
    through ``offset_counts`` and ``counts_per_kg`` (at gain 128) on ``clock``.

    Input B reads ``channel_b_kg`` through the same scale (nothing is wired there on a
    strap: 0 kg). ``sps`` is what the board's RATE pin fixes (10 or 80). ``power_down_s``
    is how long PD_SCK must stay high to power it down (the chip's 60 us; longer for a
    simulator on a scaled real clock, which cannot time 60 us).
    """

    def __init__(
        self,
        factory: MockFactory,
        clock: Clock,
        strap: StrapModel | None = None,
        *,
        data_pin: int | str = 5,
        clock_pin: int | str = 6,
        sps: int = 10,
        offset_counts: float = OFFSET_COUNTS,
        counts_per_kg: float = COUNTS_PER_KG,
        channel_b_kg: float = 0.0,
        power_down_s: float = POWER_DOWN_S,
        seed: int = 0,
    ) -> None:
        if sps not in RATES:
            raise ValueError(f"sps {sps!r}: the HX711 runs at {list(RATES)}")
        self.clock = clock
        self.strap = strap or StrapModel()
        self.sps = sps
        self.offset_counts = offset_counts
        self.counts_per_kg = counts_per_kg
        self.channel_b_kg = channel_b_kg
        self.power_down_s = power_down_s
        self._rng = random.Random(seed)
        self._dout_pin = factory.pin(data_pin, pin_class=_ChipPin)
        self._sck_pin = factory.pin(clock_pin, pin_class=_ChipPin)
        for pin, role in ((self._dout_pin, "dout"), (self._sck_pin, "sck")):
            if not isinstance(pin, _ChipPin):
                raise ValueError(f"pin {pin!r} is already taken by something else")
            pin.chip, pin.role = self, role
        self.present = True
        self.stalled = False
        self.glitch_rate = 0.0
        self.glitch_kinds: tuple[str, ...] = ("powerdown", "bitflip")
        self.gain = 128
        """The input and gain of the next conversion (128, 64: A; 32: B)."""
        self.conversions = 0
        self.power_downs = 0
        self.resets = 0
        self.glitches = 0
        """Reads this fake spoiled on purpose."""
        self.pulse_log: list[int] = []
        """Pulses in each completed read, oldest first."""
        self._reset(clock.now())

    # --- test controls ----------------------------------------------------------------

    def glitch(self, rate: float, kinds: tuple[str, ...] = ("powerdown", "bitflip")) -> None:
        """From now on each read goes wrong with probability ``rate``: "powerdown" (the
        host stalls with PD_SCK high at a random bit: the chip powers down, the rest reads
        as ones, and it comes back reset), "bitflip" (one bit read wrong)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate {rate}: must be 0..1")
        self.glitch_rate = rate
        self.glitch_kinds = kinds

    def stall(self, stalled: bool = True) -> None:
        """Stop (or restart) converting: DOUT stays high."""
        self.stalled = stalled
        if not stalled:
            self._epoch = self.clock.now()
            self._read_index = -1

    def vanish(self) -> None:
        """Take the chip off the wires: DOUT floats to the pin's pull, edges are ignored."""
        self.present = False

    def reappear(self) -> None:
        """Put the chip back, powered up afresh (input A, gain 128, settling)."""
        self.present = True
        self._reset(self.clock.now())

    def unplug(self) -> None:
        """Pull the cable: as ``vanish`` (the NAU7802's fake says it so)."""
        self.vanish()

    def replug(self) -> None:
        """Plug it back: as ``reappear``."""
        self.reappear()

    def counts_for(self, kg: float, gain: int | None = None) -> int:
        """The count the chip reports for ``kg`` at ``gain`` (default: the current one),
        clipped to the full scale."""
        g = self.gain if gain is None else gain
        counts = round((self.offset_counts + kg * self.counts_per_kg) * g / 128)
        return max(-(1 << 23), min((1 << 23) - 1, counts))

    # --- the chip ---------------------------------------------------------------------

    def _reset(self, now: float) -> None:
        self.resets += 1
        self.gain = 128
        self._powered = True
        self._sck = False
        self._sck_rose = now
        self._shifting: int | None = None  # the word being shifted out
        self._bit = 0  # pulses in the current read
        self._spoil_at: int | None = None
        self._flip_bit: int | None = None
        self._epoch = now + SETTLE_S[self.sps]  # first conversion once settled
        self._read_index = -1

    def _period(self) -> float:
        return 1.0 / self.sps

    def _latest(self, now: float) -> int:
        """Index of the newest finished conversion (-1: none yet)."""
        if self.stalled or now < self._epoch:
            return -1
        return math.floor((now - self._epoch) / self._period() + 1e-9)

    def _high_too_long(self, now: float) -> bool:
        return self._sck and now - self._sck_rose > self.power_down_s

    def dout(self) -> bool | None:
        """DOUT's level now (None: nothing drives it, the pin's pull decides)."""
        if not self.present:
            return None
        now = self.clock.now()
        if not self._powered or self._high_too_long(now):
            return True
        if self._shifting is not None:
            if 1 <= self._bit <= 24:
                if self._spoil_at is not None and self._bit > self._spoil_at:
                    return True  # powered down part-way: the rest reads as ones
                bit = (self._shifting >> (24 - self._bit)) & 1
                if self._flip_bit == self._bit:
                    bit ^= 1
                return bool(bit)
            if self._bit < 25:
                return False  # the read has not started its first bit
            self._end_read(now)  # pulses 25..27 came back to back; this query ends them
            return self.dout()
        return not self._latest(now) > self._read_index

    def on_clock(self, high: bool) -> None:
        """An edge on PD_SCK."""
        if not self.present:
            return
        if high == self._sck:
            return
        now = self.clock.now()
        self._sck = high
        if high:
            self._sck_rose = now
            self._rising(now)
        elif now - self._sck_rose > self.power_down_s:
            self.power_downs += 1
            self._reset(now)

    def _rising(self, now: float) -> None:
        if self._shifting is None:
            latest = self._latest(now)
            if latest <= self._read_index:
                return  # not ready: a stray pulse (the chip ignores it)
            self._read_index = latest
            self._start_read(self._epoch + latest * self._period())
        self._bit += 1

    def _start_read(self, at: float) -> None:
        kg = self.strap.kg(at) if CHANNEL_OF_GAIN[self.gain] == "A" else self.channel_b_kg
        self._shifting = self.counts_for(kg) & 0xFFFFFF
        self.conversions += 1
        self._bit = 0
        self._spoil_at = self._flip_bit = None
        if self.glitch_rate and self._rng.random() < self.glitch_rate:
            self.glitches += 1
            kind = self._rng.choice(self.glitch_kinds)
            if kind == "powerdown":
                self._spoil_at = self._rng.randrange(0, 24)
            else:
                self._flip_bit = self._rng.randrange(1, 25)

    def _end_read(self, now: float) -> None:
        """After the 25th to 27th pulse: the count chooses the next input and gain."""
        pulses, self._shifting = self._bit, None
        self.pulse_log.append(pulses)
        if self._spoil_at is not None:
            self.power_downs += 1  # the host stalled with PD_SCK high in this read
            self._reset(now)
            return
        gain = _GAIN_OF_PULSES.get(min(pulses, 27), self.gain)
        if gain != self.gain:
            self.gain = gain
            self._epoch = now + SETTLE_S[self.sps]
            self._read_index = -1
