"""``stretch-companion selftest``: one line per part, the fix for each failure, exit code.

Failures are made by handing in a failing pin factory, a machine without a device
(a ``Host`` value) or a failing voice: nothing global is patched.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin

from device.apps.selftest import (
    FIX_ESPEAK,
    FIX_GPIO_GROUP,
    FIX_I2C,
    FIX_NO_GPIOCHIP,
    Host,
    PartResult,
    check_sensor,
    selftest_main,
)
from device.box.clock import VirtualClock
from device.core.config import Config, with_overrides
from drivers.fake_nau7802 import FakeNAU7802
from drivers.pins import PinFactoryError
from drivers.speech import Pyttsx3Speaker, RecordingSpeaker
from tests.test_speech import NO_CARD, FakeEngine, FakePlayer

PARTS = ["gpio", "light", "buzzer", "button", "voice", "sensor"]


def run(config: Config | None = None, mock: bool = True, **kw: Any) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = selftest_main(config or Config(), mock, out, **kw)
    return code, out.getvalue().splitlines()


def line_of(lines: list[str], part: str) -> str:
    found = [line for line in lines if line.startswith(f"{part}: ")]
    assert len(found) == 1, lines
    return found[0]


def fix_after(lines: list[str], part: str) -> str:
    i = lines.index(line_of(lines, part))
    assert lines[i + 1].startswith("  fix: "), lines
    return lines[i + 1]


def test_mock_passes_with_one_line_per_part() -> None:
    code, lines = run()
    assert code == 0
    for part in PARTS:
        status = line_of(lines, part).split()[1]
        assert status == "ok" or (part == "sensor" and status == "skipped"), lines
    assert not any("fix:" in line for line in lines)
    assert lines[-1] == "selftest: all required parts ok"


def test_mock_with_a_passive_buzzer_and_a_glowing_config() -> None:
    config = with_overrides(Config(), buzzer={"kind": "passive"}, pins={"buzzer": 13})
    code, lines = run(config)
    assert code == 0 and "GPIO13, passive buzzer" in line_of(lines, "buzzer")


class KeptPins(MockFactory):
    """Mock pins that keep each pin's history when the self-test closes them."""

    def __init__(self) -> None:
        super().__init__(pin_class=MockPWMPin)
        self.kept: dict[int, list[float]] = {}

    def close(self) -> None:
        self.kept = {n: [s.state for s in self.pin(n).states] for n in (18, 27)}
        super().close()


def test_the_light_and_buzzer_really_switch_on_the_mock_pins() -> None:
    factory = KeptPins()
    code, _ = run(make_factory=lambda: factory)
    assert code == 0
    led = factory.kept[18]
    assert led.count(1.0) >= 3 and any(0.4 < v < 0.6 for v in led)  # blinked and faded
    assert 1 in factory.kept[27]


class LockedPins(MockFactory):
    """Mock pins where one GPIO cannot be opened, as without the gpio group."""

    def __init__(self, locked: int) -> None:
        super().__init__(pin_class=MockPWMPin)
        self.locked = locked

    def pin(self, spec: Any, **kwargs: Any) -> Any:
        if spec == self.locked or getattr(spec, "number", None) == self.locked:
            raise PermissionError(13, "Permission denied", "/dev/gpiochip0")
        return super().pin(spec, **kwargs)


def test_a_pin_that_cannot_be_opened_prints_the_gpio_group_fix() -> None:
    no_group = replace(Host.virtual(), gpio_usable=False, groups=frozenset({"audio", "i2c"}))
    code, lines = run(host=no_group, make_factory=lambda: LockedPins(18))
    assert code == 1
    assert line_of(lines, "light").startswith("light: FAIL (GPIO18")
    assert fix_after(lines, "light") == f"  fix: {FIX_GPIO_GROUP}"
    assert "sudo usermod -aG gpio $USER" in FIX_GPIO_GROUP
    assert line_of(lines, "buzzer").startswith("buzzer: ok")  # the others still checked
    assert lines[-1] == "selftest: FAILED: light"


def test_no_gpio_backend_on_a_pc_says_so() -> None:
    def no_backend() -> Any:
        raise PinFactoryError("no GPIO backend works here (Unable to load any pin factory)")

    pc = replace(Host.virtual(), gpiochips=(), gpio_usable=False)
    code, lines = run(mock=False, host=pc, make_factory=no_backend, clock=VirtualClock(),
                      speaker=RecordingSpeaker(), sensor_check=lambda c, m, **kw: check_sensor(
                          c, True, **kw))
    assert code == 1
    assert line_of(lines, "gpio").startswith("gpio: FAIL")
    assert fix_after(lines, "gpio") == f"  fix: {FIX_NO_GPIOCHIP}"
    assert line_of(lines, "light") == "light: skipped (no GPIO)"


def test_no_sound_card_prints_how_to_pick_one() -> None:
    code, lines = run(host=replace(Host.virtual(), sound_cards=()))
    assert code == 1
    assert line_of(lines, "voice").startswith("voice: FAIL (no sound card")
    fix = fix_after(lines, "voice")
    assert "aplay -L" in fix and "audio_device" in fix


def test_sound_devices_hidden_by_the_audio_group(monkeypatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    host = replace(Host.virtual(), sound_cards=(), groups=frozenset({"gpio"}))
    _, lines = run(host=host)
    assert "sudo usermod -aG audio $USER" in fix_after(lines, "voice")


def test_missing_espeak_prints_the_apt_line() -> None:
    code, lines = run(host=replace(Host.virtual(), espeak=None))
    assert code == 1
    assert fix_after(lines, "voice") == f"  fix: {FIX_ESPEAK}"
    assert FIX_ESPEAK == "sudo apt install espeak-ng libespeak-ng1"


def test_a_voice_that_fails_to_speak_fails_the_test() -> None:
    code, lines = run(speaker=RecordingSpeaker(fail=True))
    assert code == 1 and line_of(lines, "voice").startswith("voice: FAIL (OSError")


def test_a_real_voice_whose_player_finds_no_card(tmp_path) -> None:
    speaker = Pyttsx3Speaker(engine_factory=FakeEngine, cache_dir=tmp_path, max_failures=1,
                             process_factory=FakePlayer(returncode=1, stderr=NO_CARD))
    code, lines = run(speaker=speaker)
    assert code == 1
    assert "audio open error" in line_of(lines, "voice")
    assert "aplay -L" in fix_after(lines, "voice")


def test_a_real_voice_that_plays_passes(tmp_path) -> None:
    player = FakePlayer()
    speaker = Pyttsx3Speaker(engine_factory=FakeEngine, cache_dir=tmp_path,
                             process_factory=player)
    code, lines = run(speaker=speaker)
    assert code == 0 and len(player.argvs) == 1
    assert line_of(lines, "voice").startswith("voice: ok")


def test_voice_switched_off_is_skipped_and_not_a_failure() -> None:
    code, lines = run(with_overrides(Config(), voice={"enabled": False}))
    assert code == 0 and line_of(lines, "voice") == "voice: skipped (voice.enabled = false)"


def test_i2c_off_prints_the_raspi_config_line_but_the_sensor_is_optional() -> None:
    no_i2c = replace(Host.virtual(), i2c_buses=())

    def sensor(config: Config, mock: bool, **kw: Any) -> PartResult:
        return check_sensor(config, False, clock=VirtualClock(), host=no_i2c)

    code, lines = run(sensor_check=sensor)
    assert code == 0  # optional: reported, not failed
    assert line_of(lines, "sensor") == "sensor: FAIL (optional) (I2C is off: no /dev/i2c-1)"
    assert fix_after(lines, "sensor") == f"  fix: {FIX_I2C}"
    assert "sudo raspi-config nonint do_i2c 0" in FIX_I2C


def test_i2c_off_fails_the_test_when_the_config_says_a_sensor_is_fitted() -> None:
    config = with_overrides(Config(), sensor={"enabled": True, "i2c_bus": 3})
    result = check_sensor(config, False, clock=VirtualClock(), host=Host.virtual())
    assert result.failed and result.detail == "I2C is off: no /dev/i2c-3"


def test_a_sensor_that_does_not_answer_prints_the_wiring() -> None:
    clock = VirtualClock()
    bus = FakeNAU7802(clock)
    bus.unplug()
    result = check_sensor(Config(), True, clock=clock, bus=bus)
    assert result.ok is False and not result.required
    assert "no NAU7802 answering at 0x2A" in result.detail and "i2cdetect -y 1" in result.fix


def test_the_sensor_reads_for_a_second_on_virtual_time() -> None:
    clock = VirtualClock()
    result = check_sensor(Config(), True, clock=clock)
    assert result.ok is True and "readings in 1 s" in result.detail
    assert 1.0 <= clock.now() < 3.0


def test_a_missing_sensor_driver_is_skipped(monkeypatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "drivers.nau7802", None)
    result = check_sensor(Config(), True)
    assert result.lines() == ["sensor: skipped (driver not installed)"]
    assert not result.failed


def test_a_crashing_sensor_check_does_not_hide_the_rest() -> None:
    def broken(config: Config, mock: bool, **kw: Any) -> PartResult:
        raise RuntimeError("half-written driver")

    code, lines = run(sensor_check=broken)
    assert code == 0 and line_of(lines, "sensor").startswith("sensor: FAIL (optional)")
