"""HX711 driver against the pin-level fake on gpiozero's MockFactory, on virtual time."""

from __future__ import annotations

import pytest

from device.box.clock import VirtualClock
from device.core.tension import CoachThresholds, TensionCoach
from drivers.fake_hx711 import FakeHX711
from drivers.fake_nau7802 import COUNTS_PER_KG, OFFSET_COUNTS, StrapModel
from drivers.hx711 import FULL_SCALE, HX711, Plausibility, to_signed24
from drivers.loadcell import Calibration, Scale, SensorError
from drivers.pins import mock_factory


def make(level: float = 5.0, *, noise: float = 0.0, sps: int = 10, gain: int = 128,
         **kw: object) -> tuple[VirtualClock, FakeHX711, HX711]:
    clock = VirtualClock()
    factory = mock_factory()
    strap = StrapModel(level, noise_kg=noise, creep_kg_per_min=0.0, seed=3)
    fake = FakeHX711(factory, clock, strap, sps=sps)
    return clock, fake, HX711(factory, clock, gain=gain, sps=sps, **kw)  # type: ignore[arg-type]


def test_twos_complement() -> None:
    assert to_signed24(0x7FFFFF) == FULL_SCALE[1]
    assert to_signed24(0x800000) == FULL_SCALE[0]
    assert to_signed24(0xFFFFFF) == -1
    assert to_signed24(0x000001) == 1


def test_reads_positive_and_negative_counts_at_10_sps() -> None:
    clock, fake, adc = make(level=5.0)
    adc.begin()
    assert 0.4 <= clock.now() < 0.6  # reset, then the 400 ms settling at 10 SPS
    value = adc.read_blocking()
    assert value == round(OFFSET_COUNTS + 5.0 * COUNTS_PER_KG)  # positive
    fake.strap.set_level(clock.now(), 0.0)
    clock.advance(0.2)
    assert adc.read_blocking() == OFFSET_COUNTS  # negative: the sign is carried
    assert set(fake.pulse_log) == {25}  # input A, gain 128: 25 pulses every read


def test_one_reading_per_conversion_and_none_in_between() -> None:
    clock, fake, adc = make(sps=80)
    adc.begin()
    adc.read_blocking()
    assert adc.read() is None  # DOUT high until the next conversion
    clock.advance(1 / 80)
    assert adc.read() is not None
    before = fake.conversions
    clock.advance(1.0)
    got = 0
    for _ in range(200):
        clock.advance(0.005)
        got += adc.read() is not None
    assert got == fake.conversions - before - 0 and 75 <= got <= 81


@pytest.mark.parametrize(("gain", "pulses"), [(64, 27), (32, 26)])
def test_gain_and_channel_by_pulse_count(gain: int, pulses: int) -> None:
    clock, fake, adc = make(level=5.0, gain=gain)
    adc.begin()
    assert fake.gain == gain
    assert fake.pulse_log[-1] == pulses
    value = adc.read_blocking()
    if gain == 64:
        assert value == round((OFFSET_COUNTS + 5.0 * COUNTS_PER_KG) / 2)
    else:  # input B: nothing on it, the offset at gain 32
        assert value == round(OFFSET_COUNTS / 4)


def test_switching_gain_discards_the_settling_readings() -> None:
    clock, fake, adc = make(level=2.0)
    adc.begin()
    assert adc.read_blocking() == fake.counts_for(2.0, 128)
    adc.gain = 64
    adc.filter.reset()
    t0 = clock.now()
    value = adc.read_blocking()
    assert value == fake.counts_for(2.0, 64)
    assert clock.now() - t0 >= 0.4  # settled before the first reading at the new gain


def test_invalid_settings_rejected() -> None:
    clock = VirtualClock()
    factory = mock_factory()
    with pytest.raises(ValueError, match="sps"):
        HX711(factory, clock, sps=20)
    with pytest.raises(ValueError, match="gain"):
        HX711(factory, clock, gain=16)
    with pytest.raises(ValueError, match="both"):
        HX711(factory, clock, data_pin=5, clock_pin=5)


def test_close_powers_down_and_begin_wakes_it() -> None:
    clock, fake, adc = make()
    adc.begin()
    resets = fake.resets
    adc.close()
    assert fake.dout() is True and fake._high_too_long(clock.now())  # powered down
    adc.close()  # twice: never raises
    adc.begin()  # the pins again, a reset, settled readings
    assert fake.resets > resets and fake.power_downs >= 2
    assert adc.read_blocking() == fake.counts_for(5.0)


def test_clock_high_under_60_us_is_no_power_down() -> None:
    clock, fake, adc = make()
    adc.begin()
    downs = fake.power_downs
    fake.on_clock(True)
    clock.advance(50e-6)
    fake.on_clock(False)
    assert fake.power_downs == downs
    fake.on_clock(True)
    clock.advance(70e-6)
    fake.on_clock(False)
    assert fake.power_downs == downs + 1 and fake.gain == 128


def test_plausibility_rule() -> None:
    f = Plausibility(max_rate=10_000, period_s=0.1, confirm=2)  # 1000 counts a conversion
    assert f.check(5000, 0.0) == 5000
    assert f.check(-1, 0.1) is None  # all ones
    assert f.check(0x123FFF, 0.2) is None  # twelve ones at the end: a half read
    assert f.check(0x7FFFFF, 0.3) is None  # full scale out of nowhere: held back
    assert f.check(5900, 0.4) == 5900  # the glitch is forgotten (0.4 s: 4000 allowed)
    assert f.check(7100, 0.5) is None  # 1200 counts in one conversion: too fast
    assert f.check(6000, 0.6) == 6000
    assert f.check(900_000, 0.7) is None and f.check(900_100, 0.8) is None
    assert f.check(900_200, 0.9) == 900_200  # a step seen three times is real
    assert dict(f.rejected) == {"all_ones": 1, "half_read": 1, "jump": 2}
    for i in range(3):  # the top of the range, seen three times: a real pull past it
        last = f.check(0x7FFFFF, 1.0 + i / 10)
    assert last == FULL_SCALE[1]


def test_ten_thousand_glitchy_reads_never_reach_a_safety_line() -> None:
    clock, fake, adc = make(level=8.0, noise=0.05, sps=80)
    adc.begin()
    fake.glitch(0.05)
    cal = Calibration(offset=OFFSET_COUNTS, scale=COUNTS_PER_KG)
    coach = TensionCoach(CoachThresholds(overpull_max=12.0))
    cues: list[str] = []
    worst = 0.0
    t = 0.0
    for _ in range(10_000):
        counts = adc.read_blocking()
        t = clock.now()
        assert FULL_SCALE[0] < counts < FULL_SCALE[1]
        kg = cal.to_units(counts)
        cues += coach.add(t, kg)
        assert coach.filtered is not None
        worst = max(worst, abs(coach.filtered - 8.0))
    assert fake.glitches > 300  # about 5 % of some 10,500 reads
    # the rest were flips of low bits or late power-downs: off by less than 2**12 counts
    assert sum(adc.rejected.values()) >= fake.glitches * 0.3
    assert set(adc.rejected) == {"all_ones", "half_read", "jump"}
    assert worst < 0.5  # filtered: the noise (0.05 kg sd), no glitch
    assert "overpull" not in cues


def test_a_real_step_gets_through_the_filter() -> None:
    clock, fake, adc = make(level=2.0, sps=80)
    adc.begin()
    fake.strap.set_level(clock.now(), 60.0)  # a hard yank: far beyond the jump bound
    values = [adc.read_blocking() for _ in range(4)]
    assert values[-1] == fake.counts_for(60.0)
    assert adc.rejected["jump"] == 0 or values[0] == fake.counts_for(60.0)


def test_stall_is_a_sensor_error() -> None:
    clock, fake, adc = make()
    adc.begin()
    fake.stall()
    with pytest.raises(SensorError, match="no conversion"):
        for _ in range(100):
            clock.advance(0.05)
            adc.read()


def test_vanish_and_return() -> None:
    clock, fake, adc = make(level=3.0)
    adc.begin()
    fake.vanish()
    with pytest.raises(SensorError, match="HX711"):
        for _ in range(100):
            clock.advance(0.05)
            adc.read()
    with pytest.raises(SensorError):
        adc.begin()  # nobody answers
    fake.reappear()
    adc.begin()
    assert adc.read_blocking() == fake.counts_for(3.0)


def test_scale_tares_and_calibrates_through_the_hx711() -> None:
    clock, fake, adc = make(level=0.0, noise=0.02)
    adc.begin()
    scale = Scale(adc)
    scale.tare(20)
    fake.strap.set_level(clock.now(), 10.0)
    clock.advance(0.2)
    assert scale.calibrate(10.0, 20) == pytest.approx(COUNTS_PER_KG, rel=0.01)
