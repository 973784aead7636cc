"""NAU7802 driver against the register-level fake, on virtual time."""

from __future__ import annotations

import errno

import pytest

from device.box.clock import VirtualClock
from drivers.fake_nau7802 import COUNTS_PER_KG, OFFSET_COUNTS, FakeNAU7802, StrapModel
from drivers.loadcell import NOMINAL_COUNTS_PER_UNIT, Scale, SensorError
from drivers.nau7802 import NAU7802, Reg, open_bus, to_signed24


def make(
    *, level: float = 0.0, noise: float = 0.0, sps: int = 80, **fake_kw: object
) -> tuple[VirtualClock, FakeNAU7802, NAU7802]:
    clock = VirtualClock()
    strap = StrapModel(level, noise_kg=noise, creep_kg_per_min=0.0, seed=1)
    fake = FakeNAU7802(clock, strap, **fake_kw)  # type: ignore[arg-type]
    return clock, fake, NAU7802(fake, clock, sps=sps)


# --- power-up -----------------------------------------------------------------------------


def test_power_up_write_sequence_matches_datasheet_order() -> None:
    clock, fake, adc = make(sps=80)
    adc.begin()
    assert fake.writes == [
        (Reg.PU_CTRL, 0x01),  # RR set: reset registers
        (Reg.PU_CTRL, 0x00),  # RR cleared
        (Reg.PU_CTRL, 0x06),  # PUD | PUA
        (Reg.PU_CTRL, 0x16),  # + CS, after PUR was seen
        (Reg.CTRL1, 0x27),  # VLDO 3.3 V (0b100) | gain 128 (0b111)
        (Reg.PU_CTRL, 0x96),  # + AVDDS: internal LDO
        (Reg.CTRL2, 0x30),  # CRS 80 SPS (0b011)
        (Reg.ADC, 0x30),  # REG_CHPS = 0b11: clock chopper off
        (Reg.PWR_CTRL, 0x80),  # PGA output cap on
        (Reg.CTRL2, 0x34),  # CALS with CALMOD 00 (internal offset), CRS kept
    ]
    assert fake.log[0].op == "r" and fake.log[0].reg == Reg.DEVICE_REV
    # PUR was polled before CS was set, and the LDO settled >= 0.25 s before calibration.
    times = {(op.reg, op.value): op.t for op in fake.log if op.op == "w"}
    assert times[(Reg.CTRL2, 0x34)] - times[(Reg.PWR_CTRL, 0x80)] >= 0.25
    assert times[(Reg.PU_CTRL, 0x16)] - times[(Reg.PU_CTRL, 0x06)] >= fake.pur_delay_s
    # End state: powered, converting, calibration finished without error.
    assert fake.regs[Reg.PU_CTRL] & 0b1001_1110 == 0b1001_1110  # AVDDS CS PUR PUA PUD
    assert fake.regs[Reg.CTRL2] & 0b1100 == 0  # CALS cleared, no CAL_ERR
    assert 0.55 <= clock.now() < 0.7  # 1 ms reset + ~2 ms PUR + 250 ms LDO + 300 ms cal


def test_default_rate_is_10_sps() -> None:
    _, fake, adc = make(sps=10)
    adc.begin()
    assert (Reg.CTRL2, 0x00) in fake.writes and (Reg.CTRL2, 0x04) in fake.writes


@pytest.mark.parametrize(
    ("kw", "word"), [({"sps": 50}, "sps"), ({"gain": 3}, "gain"), ({"ldo_volts": 5.0}, "ldo")]
)
def test_invalid_settings_rejected(kw: dict[str, float], word: str) -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match=word):
        NAU7802(FakeNAU7802(clock), clock, **kw)  # type: ignore[arg-type]


def test_calibration_error_raises() -> None:
    _, _, adc = make(cal_error=True)
    with pytest.raises(SensorError, match="CAL_ERR"):
        adc.begin()


def test_calibration_that_never_ends_times_out_on_the_clock() -> None:
    clock, _, adc = make(cal_s=None)
    with pytest.raises(SensorError, match="CALS.*timed out"):
        adc.begin()
    assert 0.25 + 1.0 <= clock.now() < 0.25 + 1.1


def test_pur_time_out() -> None:
    clock, fake, adc = make(pur_delay_s=None)
    with pytest.raises(SensorError, match="PUR"):
        adc.begin()
    assert 0.1 <= clock.now() < 0.12
    assert (Reg.PU_CTRL, 0x16) not in fake.writes  # CS never set


def test_chip_absent_wrong_address() -> None:
    clock = VirtualClock()
    fake = FakeNAU7802(clock, address=0x2B)
    adc = NAU7802(fake, clock)  # looks at 0x2A
    with pytest.raises(SensorError, match="0x2A") as info:
        adc.begin()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EREMOTEIO
    assert fake.writes == []


def test_other_chip_at_the_address_is_rejected() -> None:
    clock, fake, adc = make()
    fake.regs[Reg.DEVICE_REV] = 0x03
    with pytest.raises(SensorError, match="not a NAU7802"):
        adc.begin()


def test_open_missing_bus_is_a_sensor_error() -> None:
    with pytest.raises(SensorError, match="i2c-250"):
        open_bus(250)


# --- conversions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "value"),
    [
        ((0x00, 0x00, 0x01), 1),
        ((0x7F, 0xFF, 0xFF), 8_388_607),
        ((0xFF, 0xFF, 0xFF), -1),
        ((0x80, 0x00, 0x00), -8_388_608),
        ((0xFD, 0xB6, 0x10), -150_000),
    ],
)
def test_sign_extension(data: tuple[int, int, int], value: int) -> None:
    assert to_signed24(*data) == value


def test_negative_and_positive_readings_through_the_bus() -> None:
    clock, fake, adc = make(level=0.0)
    adc.begin()
    assert adc.read_blocking() == OFFSET_COUNTS == -150_000
    fake.strap.set_level(clock.now(), 2.0)
    assert adc.read_blocking() == -150_000 + 2 * 85_000


def test_one_block_read_per_sample_and_none_until_next_conversion() -> None:
    clock, fake, adc = make(sps=80)
    adc.begin()
    assert adc.read() is None  # begin() left no stale pre-calibration conversion
    mark = len(fake.log)
    values = [adc.read_blocking() for _ in range(10)]
    assert len(values) == 10
    blocks = [op for op in fake.log[mark:] if op.op == "rb"]
    assert blocks and all((op.reg, op.value) == (Reg.ADCO_B2, 3) for op in blocks)
    assert len(blocks) == 10
    assert adc.read() is None  # CR cleared by the block read; no new conversion yet
    clock.advance(1 / 80)
    assert adc.read() is not None


def test_conversion_rate_follows_crs() -> None:
    clock, fake, adc = make(sps=80)
    adc.begin()
    start, got = clock.now(), 0
    while clock.now() < start + 1.0:
        if adc.read() is not None:
            got += 1
        clock.advance(0.002)
    assert 79 <= got <= 81


def test_unplug_mid_read_raises_sensor_error() -> None:
    clock, fake, adc = make()
    adc.begin()
    adc.read_blocking()
    clock.advance(1 / 80)  # a conversion is ready
    fake.unplug(errno.EIO, after_ops=1)  # the status read works, the data read fails
    with pytest.raises(SensorError, match="reading the conversion failed") as info:
        adc.read()
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.EIO
    with pytest.raises(SensorError):  # and stays failed
        adc.read()


def test_replug_needs_begin_again() -> None:
    _, fake, adc = make()
    adc.begin()
    fake.unplug()
    with pytest.raises(SensorError, match="121|Remote I/O"):
        adc.read()
    fake.replug(power_cycled=True)
    with pytest.raises(SensorError, match="not powered up"):
        adc.read()
    adc.begin()
    assert adc.read_blocking() == OFFSET_COUNTS


def test_read_blocking_times_out_when_conversions_stop() -> None:
    clock, fake, adc = make(sps=10)
    adc.begin()
    fake.regs[Reg.PU_CTRL] &= ~0x10  # CS cleared behind the driver's back
    with pytest.raises(SensorError, match="no conversion within 0.4 s"):
        adc.read_blocking(0.4)


# --- as a load cell: close, and tare and calibration through drivers.loadcell.Scale --------


def test_close_powers_down_and_never_raises() -> None:
    clock, fake, adc = make()
    adc.begin()
    adc.close()
    pu = fake.regs[Reg.PU_CTRL]
    assert not pu & 0b110  # PUD and PUA cleared: the chip sleeps
    with pytest.raises(SensorError, match="not powered up"):
        adc.read()
    fake.unplug()
    adc.close()  # an absent chip: nothing to do, nothing raised


def test_tare_and_known_weight_recover_the_fakes_scale() -> None:
    clock, fake, adc = make(level=0.0, noise=0.05, sps=80)
    adc.begin()
    strap = Scale(adc)
    assert strap.units == "rel"
    offset = strap.tare(n=20)
    assert abs(offset - OFFSET_COUNTS) < 0.02 * COUNTS_PER_KG  # within 20 g
    fake.strap.set_level(clock.now(), 10.0)
    scale = strap.calibrate(10.0, n=20)
    assert scale == pytest.approx(COUNTS_PER_KG, rel=0.01)
    assert strap.units == "kg"
    fake.strap.set_level(clock.now(), 4.0)
    readings = [strap.read_blocking() for _ in range(20)]
    assert sum(readings) / len(readings) == pytest.approx(4.0, abs=0.05)


def test_reversed_load_cell_gives_negative_scale_and_positive_kg() -> None:
    clock, fake, adc = make(level=0.0, counts_per_kg=-COUNTS_PER_KG)
    adc.begin()
    strap = Scale(adc)
    strap.tare(5)
    fake.strap.set_level(clock.now(), 5.0)
    assert strap.calibrate(5.0, 5) == pytest.approx(-COUNTS_PER_KG)
    fake.strap.set_level(clock.now(), 3.0)
    assert strap.read_blocking() == pytest.approx(3.0)


def test_uncalibrated_strap_reads_relative_units() -> None:
    clock, fake, adc = make(level=0.0)
    adc.begin()
    strap = Scale(adc)
    strap.tare(3)
    fake.strap.set_level(clock.now(), 2.0)
    expected = 2.0 * COUNTS_PER_KG / NOMINAL_COUNTS_PER_UNIT
    assert strap.read_blocking() == pytest.approx(expected)
