"""A register-level fake NAU7802 that *is* the I2C bus, plus a model of the strap.

``FakeNAU7802`` has the smbus2.SMBus methods the driver uses and behaves like the chip
on the injected clock: RR resets the registers, PUR rises ``pur_delay_s`` after PUD and
PUA are set, CALS clears itself ``cal_s`` after it is set (optionally leaving CAL_ERR),
CR sets at the rate chosen by CRS and clears when ADCO is read. Conversions come from a
``StrapModel`` (kg at time t) through a known offset and counts-per-kg, so calibration
tests have exact answers. A wrong address, or ``unplug()``, raises OSError like an
absent device. Every bus operation is logged (``log``; ``writes`` for the writes only).
"""

from __future__ import annotations

import errno
import math
import os
import random
from dataclasses import dataclass
from typing import NamedTuple

from drivers.clock import Clock
from drivers.nau7802 import DEFAULT_ADDRESS, FIELDS, GAIN_CODES, SPS_CODES, Reg, readonly_mask

OFFSET_COUNTS = -150_000
"""Counts the fake reads with the strap slack at gain 128 (negative: exercises sign)."""

COUNTS_PER_KG = 85_000.0
"""Counts per kg at gain 128 (a 2 mV/V, 50 kg cell at 3.3 V)."""

_RATE_OF_CODE = {code: sps for sps, code in SPS_CODES.items()}
_GAIN_OF_CODE = {code: gain for gain, code in GAIN_CODES.items()}


@dataclass(frozen=True)
class _Level:
    t: float
    kg: float
    ramp_s: float


@dataclass(frozen=True)
class _Bounce:
    start: float
    duration: float
    amplitude_kg: float
    freq_hz: float


class StrapModel:
    """Tension in the strap (kg) at time t (s): a level, how the leg relaxes at it, bounces,
    extra pulls, breath sway, creep, noise.

    ``noise_kg`` is the Gaussian noise's standard deviation (seeded), ``creep_kg_per_min``
    a slow drift while loaded (the person's own), ``sway_kg`` the amplitude of a slow
    sinusoidal sway with period ``sway_period_s`` (breathing). ``relax`` (0..1) and
    ``tau_s`` make each level relax as a held leg does: from the moment a level is
    reached, ``level * (1 - relax * (1 - exp(-t / tau_s)))`` (0: a flat level).
    """

    def __init__(
        self,
        level_kg: float = 0.0,
        *,
        noise_kg: float = 0.05,
        creep_kg_per_min: float = -0.2,
        sway_kg: float = 0.0,
        sway_period_s: float = 10.0,
        relax: float = 0.0,
        tau_s: float = 20.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= relax < 1.0:
            raise ValueError(f"relax {relax}: must be 0 to below 1")
        if not tau_s > 0:
            raise ValueError(f"tau_s {tau_s}: must be > 0")
        self._levels: list[_Level] = [_Level(0.0, level_kg, 0.0)]
        self._bounces: list[_Bounce] = []
        self._pulls: list[tuple[float, float, float, float]] = []
        self.noise_kg = noise_kg
        self.creep_kg_per_min = creep_kg_per_min
        self.sway_kg = sway_kg
        self.sway_period_s = sway_period_s
        self.relax = relax
        self.tau_s = tau_s
        self._rng = random.Random(seed)

    def set_level(self, t: float, kg: float, ramp_s: float = 0.0) -> None:
        """From time ``t``, move to a steady ``kg`` (linearly over ``ramp_s`` seconds)."""
        if t < self._levels[-1].t:
            raise ValueError("levels must be set in time order")
        self._levels.append(_Level(t, kg, ramp_s))

    def bounce(
        self, start: float, duration: float, amplitude_kg: float = 3.0, freq_hz: float = 1.5
    ) -> None:
        """Repeated rise and fall of ``amplitude_kg`` at ``freq_hz`` from ``start`` (s)."""
        self._bounces.append(_Bounce(start, duration, amplitude_kg, freq_hz))

    def pull(self, start: float, duration: float, extra_kg: float, ramp_s: float = 0.3) -> None:
        """An extra pull of ``extra_kg`` on top from ``start`` for ``duration`` s (reached
        and let go over ``ramp_s``): an over-pull that does not move the leg's position."""
        self._pulls.append((start, duration, extra_kg, ramp_s))

    def relaxed(self, level: float, held_s: float, relax: float | None = None,
                tau_s: float | None = None) -> float:
        """A ``level`` reached ``held_s`` ago, relaxed as this leg relaxes (kg)."""
        r = self.relax if relax is None else relax
        tau = self.tau_s if tau_s is None else tau_s
        if r <= 0 or held_s <= 0:
            return level
        return level * (1.0 - r * (1.0 - math.exp(-held_s / tau)))

    def true_kg(self, t: float) -> float:
        """Noise-free tension at ``t``, kg."""
        level = self._levels[0].kg
        since = 0.0
        reached = 0.0
        for seg in self._levels[1:]:
            if t < seg.t:
                break
            # a new level starts from where the relaxed strap is when it is asked for
            start = self.relaxed(level, seg.t - reached) if level > 0 else level
            frac = 1.0 if seg.ramp_s <= 0 else min(1.0, (t - seg.t) / seg.ramp_s)
            level = start + (seg.kg - start) * frac
            since = seg.t
            reached = seg.t + max(0.0, seg.ramp_s)
            if frac < 1.0:
                reached = t
        kg = level
        if level > 0:
            kg = self.relaxed(level, t - reached)
            kg = max(0.0, kg + self.creep_kg_per_min * (t - since) / 60.0)
        for start, duration, extra, ramp in self._pulls:
            if start <= t < start + duration + ramp:
                rise = 1.0 if ramp <= 0 else min(1.0, (t - start) / ramp)
                fall = 1.0 if ramp <= 0 else min(1.0, (start + duration + ramp - t) / ramp)
                kg += extra * min(rise, fall)
        if level > 0 and self.sway_kg:
            kg += self.sway_kg * math.sin(2 * math.pi * t / self.sway_period_s)
        for b in self._bounces:
            if b.start <= t < b.start + b.duration:
                phase = 2 * math.pi * b.freq_hz * (t - b.start)
                kg += b.amplitude_kg * (1 - math.cos(phase)) / 2
        return kg

    def kg(self, t: float) -> float:
        """Measured tension at ``t``: ``true_kg`` plus Gaussian noise, kg."""
        return self.true_kg(t) + self._rng.gauss(0.0, self.noise_kg)


class I2COp(NamedTuple):
    """One logged bus operation: ``op`` is "r" (byte), "rb" (block) or "w"."""

    t: float
    op: str
    reg: int
    value: int


_REG_COUNT = 32
_DEFAULTS = [0] * _REG_COUNT
_DEFAULTS[0x07] = 0x80  # GCAL1 = 0x00800000 (gain 1.0)
_DEFAULTS[Reg.DEVICE_REV] = 0x0F
_KNOWN_REGS = frozenset(int(r) for r in Reg)


def _bit(name: str) -> int:
    return FIELDS[name].mask


class FakeNAU7802:
    """A NAU7802 on its own I2C bus, driven by ``clock``; pass it where an SMBus goes.

    ``pur_delay_s`` / ``cal_s``: None means PUR never rises / CALS never clears.
    ``cal_error``: calibration ends with CAL_ERR set.
    """

    def __init__(
        self,
        clock: Clock,
        strap: StrapModel | None = None,
        *,
        address: int = DEFAULT_ADDRESS,
        offset_counts: float = OFFSET_COUNTS,
        counts_per_kg: float = COUNTS_PER_KG,
        pur_delay_s: float | None = 0.002,
        cal_s: float | None = 0.3,
        cal_error: bool = False,
        log_limit: int | None = None,
    ) -> None:
        self.clock = clock
        self.log_limit = log_limit  # keep only about this many logged operations (None: all)
        self.strap = strap or StrapModel()
        self.address = address
        self.offset_counts = offset_counts
        self.counts_per_kg = counts_per_kg
        self.pur_delay_s = pur_delay_s
        self.cal_s = cal_s
        self.cal_error = cal_error
        self.regs: list[int] = list(_DEFAULTS)
        self.log: list[I2COp] = []
        self.conversions = 0
        self._powered_at: float | None = None
        self._cal_until: float | None = None
        self._next_conv: float | None = None
        self._unplugged_errno: int | None = None
        self._ops_until_unplug: int | None = None
        self._pending_errno = errno.EREMOTEIO
        self._stuck_counts: int | None = None

    # --- test controls ----------------------------------------------------------------

    @property
    def writes(self) -> list[tuple[int, int]]:
        """Every register write so far as (register, value)."""
        return [(op.reg, op.value) for op in self.log if op.op == "w"]

    def unplug(self, err: int = errno.EREMOTEIO, after_ops: int = 0) -> None:
        """After ``after_ops`` more bus operations, every operation raises OSError(err)."""
        if after_ops <= 0:
            self._unplugged_errno = err
            self._ops_until_unplug = None
        else:
            self._ops_until_unplug = after_ops
            self._pending_errno = err

    def stick(self, counts: int | None) -> None:
        """From now on every conversion reports the raw ``counts`` (a frozen front end or
        a broken wire); None: back to the strap model."""
        self._stuck_counts = counts

    def replug(self, power_cycled: bool = True) -> None:
        """Reconnect; if ``power_cycled`` the chip comes back in its power-on state."""
        self._unplugged_errno = None
        self._ops_until_unplug = None
        if power_cycled:
            self._reset()

    def _log(self, op: I2COp) -> None:
        self.log.append(op)
        if self.log_limit is not None and len(self.log) > 2 * self.log_limit:
            del self.log[: len(self.log) - self.log_limit]

    def counts_for(self, kg: float) -> int:
        """The raw count the chip would report for ``kg`` at the current gain, clipped to
        the ADC's full scale as the chip clips it (a pull past about 100 kg at gain 128)."""
        gain = _GAIN_OF_CODE[FIELDS["GAINS"].get(self.regs[Reg.CTRL1])]
        counts = round((self.offset_counts + kg * self.counts_per_kg) * gain / 128)
        return max(-(1 << 23), min((1 << 23) - 1, counts))

    # --- the SMBus surface ------------------------------------------------------------

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        """Read one register."""
        self._bus_op(i2c_addr, register)
        value = self.regs[register]
        self._log(I2COp(self.clock.now(), "r", register, value))
        if register == Reg.ADCO_B0:
            self.regs[Reg.PU_CTRL] &= ~_bit("CR")
        return value

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]:
        """Read ``length`` registers from ``register`` on (auto-increment)."""
        self._bus_op(i2c_addr, register)
        data = [self.regs[(register + i) % _REG_COUNT] for i in range(length)]
        self._log(I2COp(self.clock.now(), "rb", register, length))
        if register <= Reg.ADCO_B0 < register + length:
            self.regs[Reg.PU_CTRL] &= ~_bit("CR")
        return data

    def write_byte_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None:
        """Write one register (read-only bits keep the chip's value)."""
        self._bus_op(i2c_addr, register)
        if not 0 <= value <= 0xFF:
            raise ValueError(f"byte out of range: {value}")
        now = self.clock.now()
        self._log(I2COp(now, "w", register, value))
        if register == Reg.DEVICE_REV:
            return
        ro = readonly_mask(Reg(register)) if register in _KNOWN_REGS else 0
        old = self.regs[register]
        self.regs[register] = (value & ~ro) | (old & ro)
        if register == Reg.PU_CTRL:
            self._pu_ctrl_written(old, now)
        elif register == Reg.CTRL2:
            self._ctrl2_written(old, now)

    # --- chip behaviour ---------------------------------------------------------------

    def _bus_op(self, i2c_addr: int, register: int) -> None:
        if self._ops_until_unplug is not None:
            self._ops_until_unplug -= 1
            if self._ops_until_unplug < 0:
                self._unplugged_errno = self._pending_errno
                self._ops_until_unplug = None
        if self._unplugged_errno is not None:
            raise OSError(self._unplugged_errno, os.strerror(self._unplugged_errno))
        if i2c_addr != self.address:
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
        if not 0 <= register < _REG_COUNT:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self._tick(self.clock.now())

    def _reset(self) -> None:
        self.regs = list(_DEFAULTS)
        self._powered_at = None
        self._cal_until = None
        self._next_conv = None

    def _pu_ctrl_written(self, old: int, now: float) -> None:
        pu = self.regs[Reg.PU_CTRL]
        if pu & _bit("RR"):
            self._reset()
            self.regs[Reg.PU_CTRL] = _bit("RR")
            return
        powered = bool(pu & _bit("PUD")) and bool(pu & _bit("PUA"))
        if not powered:
            self._powered_at = None
            self.regs[Reg.PU_CTRL] &= ~(_bit("PUR") | _bit("CR"))
        elif self._powered_at is None:
            self._powered_at = now
        if pu & _bit("CS") and not old & _bit("CS"):
            self._restart_conversions(now)

    def _ctrl2_written(self, old: int, now: float) -> None:
        ctrl2 = self.regs[Reg.CTRL2]
        if ctrl2 & _bit("CALS") and not old & _bit("CALS"):
            self.regs[Reg.CTRL2] &= ~_bit("CAL_ERR")
            self._cal_until = math.inf if self.cal_s is None else now + self.cal_s
            self._next_conv = None
        elif FIELDS["CRS"].get(ctrl2) != FIELDS["CRS"].get(old):
            self._restart_conversions(now)

    def _period(self) -> float:
        code = FIELDS["CRS"].get(self.regs[Reg.CTRL2])
        return 1.0 / _RATE_OF_CODE.get(code, 10)

    def _restart_conversions(self, now: float) -> None:
        self._next_conv = now + self._period()

    def _tick(self, now: float) -> None:
        """Bring the status bits and the conversion register up to ``now``."""
        pu = self.regs[Reg.PU_CTRL]
        if (
            self._powered_at is not None
            and self.pur_delay_s is not None
            and now >= self._powered_at + self.pur_delay_s
        ):
            self.regs[Reg.PU_CTRL] = pu = pu | _bit("PUR")
        if self._cal_until is not None and now >= self._cal_until:
            done = self._cal_until
            self._cal_until = None
            self.regs[Reg.CTRL2] &= ~_bit("CALS")
            if self.cal_error:
                self.regs[Reg.CTRL2] |= _bit("CAL_ERR")
            self._next_conv = done + self._period()
        converting = pu & _bit("PUR") and pu & _bit("CS") and self._cal_until is None
        if not converting or self._next_conv is None or now < self._next_conv:
            return
        period = self._period()
        missed = math.floor((now - self._next_conv) / period)
        at = self._next_conv + missed * period
        self._next_conv = at + period
        counts = self.counts_for(self.strap.kg(at))
        if self._stuck_counts is not None:
            counts = self._stuck_counts
        counts &= 0xFFFFFF
        self.regs[Reg.ADCO_B2] = counts >> 16
        self.regs[Reg.ADCO_B1] = (counts >> 8) & 0xFF
        self.regs[Reg.ADCO_B0] = counts & 0xFF
        self.regs[Reg.PU_CTRL] |= _bit("CR")
        self.conversions += 1
