"""The HX711 in the box: config, selftest --mock, calibrate --mock, the simulated strap."""

from __future__ import annotations

import tomllib

import pytest

from device.apps.calibrate import calibrate_main
from device.apps.selftest import check_hx711, check_sensor
from device.apps.sim import make_sim
from device.box.clock import VirtualClock
from device.core.config import Config, ConfigError, parse_config, with_overrides
from device.core.script import SENSOR_ACTIONS, parse_script
from drivers.fake_hx711 import FakeHX711
from drivers.fake_nau7802 import StrapModel
from drivers.hx711 import HX711
from drivers.loadcell import load_calibration
from drivers.pins import mock_factory
from tests.conftest import Events

HX = {"chip": "hx711", "enabled": True}


def hx_config(**sensor: object) -> Config:
    return with_overrides(Config(), sensor={**HX, **sensor})


@pytest.mark.parametrize(("text", "word"), [
    ("chip = \"hx711\"\nsps = 20", "HX711 runs at 10 or 80"),
    ("chip = \"hx711\"\ngain = 128\nsps = 320", "sensor.sps = 320"),
    ("chip = \"hx711\"\ngain = 16", "HX711 allows 128 or 64"),
    ("chip = \"ads1232\"", "sensor.chip"),
    ("chip = \"hx711\"\nenabled = true\ndata_pin = 17", "already used by pins.button"),
    ("chip = \"hx711\"\nenabled = true\ndata_pin = 6", "already used by sensor.data_pin"),
])
def test_bad_hx711_settings_name_the_key(text: str, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        parse_config(tomllib.loads("[sensor]\n" + text + "\n"))


def test_nau7802_rates_stay_allowed_for_the_nau7802() -> None:
    assert parse_config(tomllib.loads("[sensor]\nsps = 320\n")).sensor.sps == 320
    assert parse_config(tomllib.loads("[sensor]\nchip = \"hx711\"\nsps = 80\n")).sensor.sps == 80


def test_selftest_mock_reads_the_fake_hx711() -> None:
    clock = VirtualClock()
    result = check_sensor(hx_config(), True, clock=clock)
    assert result.ok is True, result.detail
    assert "simulated HX711" in result.detail and "readings in 1 s" in result.detail
    assert "glitches refused" in result.detail


def test_selftest_names_the_hx711_pins_when_it_does_not_answer() -> None:
    clock = VirtualClock()
    factory = mock_factory()
    fake = FakeHX711(factory, clock, StrapModel())
    fake.vanish()
    result = check_hx711(hx_config(), True, clock=clock, factory=factory)
    assert result.ok is False and result.required
    assert "no HX711 answering on DOUT GPIO5, PD_SCK GPIO6" in result.detail
    assert "DT to GPIO5" in result.fix


@pytest.mark.parametrize("chip", ["nau7802", "hx711"])
def test_calibrate_mock_for_both_chips(chip: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = with_overrides(Config(), sensor={"chip": chip})
    assert calibrate_main(config, 10.0, mock=True, ask=lambda prompt: "") == 0
    out = capsys.readouterr().out
    assert "counts per kg" in out
    from device.addons.strap import calibration_path

    saved = load_calibration(calibration_path(config.sensor, simulated=True))
    assert saved is not None and saved.scale == pytest.approx(85_000, rel=0.02)


TWO_HOLDS = ("press@1,press@8,press@8.3,tension@9:6,tension@69:0,press@80,press@88,"
             "press@88.3,tension@89:6")


def run(script: str, **sensor: object) -> Events:
    events = Events()
    config = with_overrides(Config(), session={"ask_tightness": False},
                            sensor={"chip": "hx711", **sensor})
    box = make_sim(config, listeners=[events], sensor=True)
    assert isinstance(box.sensor.adc, HX711)
    box.add_script(parse_script(script, SENSOR_ACTIONS))
    box.loop.run(until=400, stop_when_done=True)
    box.close()
    return events


@pytest.mark.parametrize("sps", [10, 80])
def test_the_simulated_box_coaches_through_the_hx711(sps: int) -> None:
    events = run(TWO_HOLDS + ",bounce@25:6", sps=sps)
    holds = events.kind("hold")
    assert len(holds) == 2 and holds[1]["settled"] == pytest.approx(6.0, abs=0.3)
    assert 20 <= holds[1]["relax_end"] <= 40  # the simulated leg relaxes through the HX711
    assert [c["cue"] for c in events.kind("coach")] == ["bounce"]


def test_hx711_unplugged_mid_hold_is_lost_then_back() -> None:
    events = run(TWO_HOLDS + ",unplug@30,replug@40")
    statuses = [s["status"] for s in events.kind("sensor")]
    assert [s for s in statuses if s in ("lost", "restored")] == ["lost", "restored"]
    lost = next(e["t"] for e in events.kind("sensor") if e["status"] == "lost")
    assert 30 < lost < 31.5  # no conversion for the stall time: gone
    assert [h["ended"] for h in events.kind("hold")] == ["complete", "complete"]
