"""``stretch-companion selftest [--mock]``: try every part once, say what to fix.

Blinks and fades the light, beeps, reads the button, speaks a line and looks for the
strap sensor (reading it for a second). One line per part, ``NAME: ok (...)``,
``NAME: FAIL (...)`` plus a ``fix:`` line, or ``NAME: skipped (...)``. The exit code is 0
when every required part passed (the sensor is optional unless the config says it is
fitted), 1 otherwise.

``--mock`` runs the same checks on gpiozero's mock pins, virtual time, the recording
voice and the fake sensor, so it passes on any PC in milliseconds. What the checks
look at on the machine (device nodes, groups, the espeak library, sound cards) is one
``Host`` value, probed once; tests hand in their own.
"""

from __future__ import annotations

import ctypes.util
import glob
import grp
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TextIO

from device.box.clock import Clock, RealClock, VirtualClock
from device.core.config import Config

SPOKEN_LINE = "Stretch Companion self test. You should hear this."
VOICE_WAIT_S = 45.0  # a cold engine start plus a render on a Pi Zero 2 W
BLINKS = 3

FIX_GPIO_GROUP = "sudo usermod -aG gpio $USER, then log out and back in (or reboot)"
FIX_NO_GPIOCHIP = ("no /dev/gpiochip*: this is not a Raspberry Pi, or its GPIO driver is not "
                   "loaded; on a PC try `stretch-companion selftest --mock`")
FIX_PIN_BUSY = ("another program holds the pin: stop the service first "
                "(sudo systemctl stop stretch-companion), or move the part with pins.*")
FIX_ESPEAK = "sudo apt install espeak-ng libespeak-ng1"
FIX_APLAY = "sudo apt install alsa-utils"
FIX_AUDIO_GROUP = "sudo usermod -aG audio $USER, then log out and back in"
FIX_NO_CARD = ("no sound card: plug in a USB speaker, or turn on the headphone jack "
               "(dtparam=audio=on in /boot/firmware/config.txt) or your I2S DAC's overlay; "
               "then list the devices with `aplay -L` and pick one in the config, e.g. "
               '[voice] audio_device = "plughw:CARD=Headphones"')
FIX_I2C = ("sudo raspi-config nonint do_i2c 0 (turns I2C on), then run the self-test again; "
           "reboot if the /dev/i2c-* device still does not appear")
FIX_I2C_GROUP = "sudo usermod -aG i2c $USER, then log out and back in"
FIX_SENSOR_WIRING = ("check the NAU7802's wiring: SDA to GPIO2 (pin 3), SCL to GPIO3 (pin 5), "
                     "VIN to 3V3, GND to GND; `i2cdetect -y 1` should show 2a")
FIX_LOAD_CELL = "check the load cell's four wires on E+, E-, A+ and A- of the NAU7802 board"


@dataclass(frozen=True)
class PartResult:
    """The outcome of one part's check; ``ok`` None means skipped."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def failed(self) -> bool:
        """A failure that makes the self-test fail."""
        return self.ok is False and self.required

    def lines(self) -> list[str]:
        """What the self-test prints for this part."""
        if self.ok is None:
            word = "skipped"
        elif self.ok:
            word = "ok"
        else:
            word = "FAIL" if self.required else "FAIL (optional)"
        out = [f"{self.name}: {word} ({self.detail})"]
        if self.ok is False and self.fix:
            out.append(f"  fix: {self.fix}")
        return out


@dataclass(frozen=True)
class Host:
    """What the checks need to know about the machine."""

    gpiochips: tuple[str, ...] = ()
    gpio_usable: bool = False
    groups: frozenset[str] = frozenset()
    i2c_buses: tuple[str, ...] = ()
    espeak: str | None = None
    sound_dev: bool = False
    sound_cards: tuple[str, ...] | None = None  # None: aplay is not installed

    @classmethod
    def virtual(cls) -> Host:
        """A machine with everything present (for --mock)."""
        return cls(gpiochips=("/dev/gpiochip0",), gpio_usable=True,
                   groups=frozenset({"gpio", "i2c", "audio"}), i2c_buses=("/dev/i2c-1",),
                   espeak="libespeak-ng.so.1", sound_dev=True,
                   sound_cards=("card 0: Headphones [bcm2835 Headphones]",))

    @classmethod
    def probe(cls, dev: str = "/dev") -> Host:
        """Look at this machine."""
        chips = tuple(sorted(glob.glob(os.path.join(dev, "gpiochip*"))))
        return cls(
            gpiochips=chips,
            gpio_usable=any(os.access(c, os.R_OK | os.W_OK) for c in chips),
            groups=_my_groups(),
            i2c_buses=tuple(sorted(glob.glob(os.path.join(dev, "i2c-*")))),
            espeak=ctypes.util.find_library("espeak-ng") or ctypes.util.find_library("espeak"),
            sound_dev=os.path.isdir(os.path.join(dev, "snd")),
            sound_cards=_sound_cards(),
        )


def _my_groups() -> frozenset[str]:
    names = set()
    for gid in {*os.getgroups(), os.getegid()}:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            pass
    return frozenset(names)


def _sound_cards() -> tuple[str, ...] | None:
    """The ``card N: ...`` lines of ``aplay -l`` (None if aplay is missing)."""
    try:
        run = subprocess.run(["aplay", "-l"], capture_output=True, text=True, timeout=10,
                             check=False)
    except FileNotFoundError:
        return None
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line for line in run.stdout.splitlines() if line.startswith("card "))


def gpio_fix(host: Host, exc: BaseException | None = None) -> str:
    """How to fix a GPIO part that could not be opened."""
    text = str(exc or "").lower()
    if not host.gpiochips:
        return FIX_NO_GPIOCHIP
    if not host.gpio_usable and "gpio" not in host.groups:
        return FIX_GPIO_GROUP
    if "busy" in text:
        return FIX_PIN_BUSY
    if isinstance(exc, PermissionError) or "permission" in text:
        return FIX_GPIO_GROUP
    return ("install gpiozero's backend: sudo apt install python3-lgpio; check pins.* "
            "and pins.factory in the config")


# ---- the pins -------------------------------------------------------------------------


def check_gpio(config: Config, mock: bool, host: Host,
               make_factory: Callable[[], Any]) -> tuple[PartResult, Any]:
    """The pin factory: (result, factory or None)."""
    try:
        factory = make_factory()
    except Exception as exc:
        return PartResult("gpio", False, str(exc), gpio_fix(host, exc)), None
    name = "mock pins" if mock else type(factory).__name__
    return PartResult("gpio", True, f"gpiozero {name}"), factory


def check_light(config: Config, factory: Any, clock: Clock, host: Host) -> PartResult:
    """Blink the LED three times, then fade it up and down; the PWM duty must read back."""
    # deferred: a part's driver is loaded when that part is tried
    from drivers.parts import BreathLight

    pin = config.pins.led
    try:
        light = BreathLight(pin, factory)
    except Exception as exc:
        return PartResult("light", False, f"GPIO{pin}: {exc}", gpio_fix(host, exc))
    wrong: list[tuple[float, float]] = []

    def show(duty: float) -> None:
        light.value = duty
        if abs(light.value - duty) > 0.01:
            wrong.append((duty, light.value))

    try:
        for _ in range(BLINKS):
            show(1.0)
            clock.sleep(0.25)
            show(0.0)
            clock.sleep(0.25)
        steps = 50
        for k in [*range(steps + 1), *range(steps, -1, -1)]:
            show(k / steps)
            clock.sleep(1.0 / steps)
    except Exception as exc:
        return PartResult("light", False, f"GPIO{pin}: {exc}", gpio_fix(host, exc))
    finally:
        light.close()
    if wrong:
        asked, got = wrong[0]
        return PartResult("light", False, f"GPIO{pin} read back {got:.2f} for {asked:.2f}",
                          "check pins.led and pins.factory (the light needs PWM)")
    return PartResult("light", True, f"blinked {BLINKS} times and faded on GPIO{pin}")


def check_buzzer(config: Config, factory: Any, clock: Clock, host: Host) -> PartResult:
    """One beep (a tone on a passive buzzer)."""
    # deferred: a part's driver is loaded when that part is tried
    from drivers.parts import Beeper

    pin, kind = config.pins.buzzer, config.buzzer.kind
    try:
        beeper = Beeper(pin, kind, factory)
    except Exception as exc:
        return PartResult("buzzer", False, f"GPIO{pin}: {exc}", gpio_fix(host, exc))
    try:
        beeper.on("start")
        sounding = bool(beeper.device.is_active)
        clock.sleep(0.3)
        beeper.off()
        silent = not beeper.device.is_active
    except Exception as exc:
        return PartResult("buzzer", False, f"GPIO{pin}: {exc}", gpio_fix(host, exc))
    finally:
        beeper.close()
    if not (sounding and silent):
        return PartResult("buzzer", False, f"GPIO{pin} did not switch",
                          "check pins.buzzer and buzzer.kind in the config")
    return PartResult("buzzer", True, f"beeped on GPIO{pin}, {kind} buzzer")


def check_button(config: Config, factory: Any, host: Host) -> PartResult:
    """The button must read released (nobody is pressing it)."""
    # deferred: a part's driver is loaded when that part is tried
    from drivers.parts import StrapButton

    pin = config.pins.button
    try:
        button = StrapButton(pin, factory)
    except Exception as exc:
        return PartResult("button", False, f"GPIO{pin}: {exc}", gpio_fix(host, exc))
    try:
        pressed = button.is_pressed
    finally:
        button.close()
    if pressed:
        return PartResult("button", False, f"GPIO{pin} reads pressed",
                          f"wire the button between GPIO{pin} and GND (not 3V3); if you "
                          "were holding it, let go and run the self-test again")
    return PartResult("button", True, f"GPIO{pin} reads released")


# ---- the voice ------------------------------------------------------------------------


def _voice_fix(host: Host, error: str) -> str:
    low = error.lower()
    if "espeak" in low or "libespeak" in low:
        return FIX_ESPEAK
    if "audio open error" in low or "soundcard" in low or "no sound" in low:
        return _no_card_fix(host)
    if "cannot run the player" in low:
        return FIX_APLAY
    return ("check the speaker is plugged in and voice.audio_device; "
            "`speaker-test -c1 -t wav` should be heard")


def _no_card_fix(host: Host) -> str:
    if host.sound_dev and "audio" not in host.groups and os.geteuid() != 0:
        return FIX_AUDIO_GROUP
    return FIX_NO_CARD


def _real_speaker(config: Config) -> Any:
    # deferred: a part's driver is loaded when that part is tried
    from device.apps.builder import make_voice

    return make_voice(config)  # exactly the voice ``run`` makes


def check_voice(config: Config, mock: bool, host: Host, clock: Clock,
                speaker: Any = None) -> PartResult:
    """Speak one line (through the cache and the player, as the box does)."""
    if not config.voice.enabled:
        return PartResult("voice", None, "voice.enabled = false", required=False)
    if host.espeak is None:
        return PartResult("voice", False, "the espeak-ng library is not installed", FIX_ESPEAK)
    if host.sound_cards is None:
        return PartResult("voice", False, "aplay is not installed", FIX_APLAY)
    if not host.sound_cards:
        return PartResult("voice", False, "no sound card: `aplay -l` lists none",
                          _no_card_fix(host))
    if speaker is None:
        # deferred: a part's driver is loaded when that part is tried
        from drivers.speech import RecordingSpeaker

        speaker = RecordingSpeaker() if mock else _real_speaker(config)
    try:
        if speaker.available is False:
            why = getattr(speaker, "last_error", "") or "the speech engine did not start"
            return PartResult("voice", False, why, _voice_fix(host, why))
        try:
            speaker.say(SPOKEN_LINE)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            return PartResult("voice", False, why, _voice_fix(host, why))
        wait_idle = getattr(speaker, "wait_idle", None)
        if wait_idle is not None:
            finished = wait_idle(VOICE_WAIT_S)
        else:
            end = clock.now() + VOICE_WAIT_S
            while speaker.busy() and clock.now() < end:
                clock.sleep(0.05)
            finished = not speaker.busy()
        played = getattr(speaker, "lines_spoken", None)
        spoken = getattr(speaker, "spoken", None)  # the recording fake
        if spoken is not None and SPOKEN_LINE not in spoken:
            played = 0
        if speaker.available is False or played == 0:
            why = getattr(speaker, "last_error", "") or "nothing was played"
            return PartResult("voice", False, why, _voice_fix(host, why))
        if not finished:
            return PartResult("voice", False, f"still speaking after {VOICE_WAIT_S:g} s",
                              _voice_fix(host, ""))
    finally:
        speaker.close()
    if mock:
        return PartResult("voice", True, "a fake: the line was recorded, not played; run "
                          "without --mock to hear the real voice")
    device = getattr(config.voice, "audio_device", "") or "the default sound device"
    return PartResult("voice", True, f"said {SPOKEN_LINE!r} on {device}")


# ---- the strap sensor -----------------------------------------------------------------


def read_for_a_second(chip: Any, clock: Clock) -> list[int]:
    """Start a load-cell chip and read it for one second of ``clock`` (raw counts)."""
    chip.begin()
    samples: list[int] = []
    end = clock.now() + 1.0
    while clock.now() < end:
        samples.append(chip.read_blocking())
    return samples


def check_sensor(config: Config, mock: bool, *, clock: Clock | None = None,
                 host: Host | None = None, bus: Any = None) -> PartResult:
    """Find the NAU7802 and read it for a second; optional unless ``sensor.enabled``
    (``sensor.i2c_bus``, ``address``, ``gain`` and ``sps`` are used when the config has them).

    ``bus`` (anything with smbus2's methods) replaces the real or fake one. With
    ``sensor.chip = "hx711"`` the HX711 on its two GPIOs instead (``check_hx711``)."""
    settings = getattr(config, "sensor", None)
    required = getattr(settings, "enabled", False) is True
    if getattr(settings, "chip", "nau7802") == "hx711":
        return check_hx711(config, mock, clock=clock)
    bus_no = int(getattr(settings, "i2c_bus", getattr(settings, "bus", 1)))
    address = int(getattr(settings, "address", 0x2A))
    chip_options = {k: getattr(settings, k) for k in ("gain", "sps") if hasattr(settings, k)}
    try:
        # deferred: a part's driver is loaded when that part is tried
        from drivers.nau7802 import NAU7802, SensorError, open_bus
    except ImportError:
        return PartResult("sensor", None, "driver not installed", required=False)
    clock = clock or (VirtualClock() if mock else RealClock())
    where = f"0x{address:02X} on /dev/i2c-{bus_no}"
    opened = None
    faked = bus is None and mock
    if faked:
        try:
            # deferred: a part's driver is loaded when that part is tried
            from drivers.fake_nau7802 import FakeNAU7802, StrapModel
        except ImportError:
            return PartResult("sensor", None, "fake sensor not installed", required=False)
        bus = FakeNAU7802(clock, StrapModel(), address=address)
    elif bus is None:
        host = host or Host.probe()
        dev = f"/dev/i2c-{bus_no}"
        if dev not in host.i2c_buses:
            return PartResult("sensor", False, f"I2C is off: no {dev}", FIX_I2C, required)
        try:
            bus = opened = open_bus(bus_no)
        except SensorError as exc:
            text = str(exc)
            fix = ("reinstall: smbus2 is a dependency (pip install smbus2)" if "smbus2" in text
                   else FIX_I2C_GROUP if "ermission" in text else FIX_I2C)
            return PartResult("sensor", False, text, fix, required)
    chip = NAU7802(bus, clock, address, **chip_options)
    samples: list[int] = []
    try:
        samples = read_for_a_second(chip, clock)
    except SensorError as exc:
        return PartResult("sensor", False, f"no NAU7802 answering at {where}: {exc}",
                          FIX_SENSOR_WIRING, required)
    finally:
        close = getattr(opened, "close", None)
        if close is not None:
            close()
    full_scale = (1 << 23) - 1
    if not samples or any(abs(s) >= full_scale for s in samples):
        return PartResult("sensor", False, f"NAU7802 at {where} reads full scale",
                          FIX_LOAD_CELL, required)
    spread = max(samples) - min(samples)
    what = (f"a fake: the simulated NAU7802 at 0x{address:02X}, no I2C used;" if faked
            else f"NAU7802 at {where}:")
    return PartResult("sensor", True, f"{what} {len(samples)} readings in 1 s, "
                      f"spread {spread} counts")


def check_hx711(config: Config, mock: bool, *, clock: Clock | None = None,
                factory: Any = None) -> PartResult:
    """Reset the HX711 on ``sensor.data_pin``/``clock_pin`` and read it for a second; with
    ``mock``, the pin-level fake on mock pins. Says how many readings the plausibility
    filter refused (bit-banging glitches)."""
    # deferred: a part's driver is loaded when that part is tried
    from device.apps.strap_chips import make_hx711
    from drivers.loadcell import SensorError

    settings = config.sensor
    required = settings.enabled
    clock = clock or (VirtualClock() if mock else RealClock())
    where = f"DOUT GPIO{settings.data_pin}, PD_SCK GPIO{settings.clock_pin}"
    fix = (f"check the HX711's wiring: DT to GPIO{settings.data_pin}, SCK to "
           f"GPIO{settings.clock_pin}, VCC to 3.3 V, GND; and its RATE pin for "
           f"{settings.sps} samples/s")
    if factory is None:
        if mock:
            # deferred: a part's driver is loaded when that part is tried
            from drivers.fake_hx711 import FakeHX711
            from drivers.fake_nau7802 import StrapModel
            from drivers.pins import mock_factory

            factory = mock_factory()
            FakeHX711(factory, clock, StrapModel(), data_pin=settings.data_pin,
                      clock_pin=settings.clock_pin, sps=settings.sps)
        else:
            # deferred: a part's driver is loaded when that part is tried
            from device.apps.builder import pin_factory

            try:
                factory = pin_factory(config, mock=False)
            except Exception as exc:  # noqa: BLE001 - no GPIO backend
                return PartResult("sensor", False, f"no GPIO for the HX711: {exc}", fix,
                                  required)
    chip = make_hx711(settings, clock, factory)
    samples: list[int] = []
    try:
        samples = read_for_a_second(chip, clock)
    except SensorError as exc:
        return PartResult("sensor", False, f"no HX711 answering on {where}: {exc}", fix,
                          required)
    finally:
        chip.close()
    full_scale = (1 << 23) - 1
    if not samples or any(s >= full_scale or s <= -full_scale - 1 for s in samples):
        return PartResult("sensor", False, f"HX711 on {where} reads full scale",
                          "check the load cell's four wires on E+, E-, A+ and A- of the "
                          "HX711 board", required)
    spread = max(samples) - min(samples)
    refused = sum(chip.rejected.values())
    what = "a fake: the simulated HX711 on mock pins;" if mock else f"HX711 on {where}:"
    return PartResult("sensor", True, f"{what} {len(samples)} readings in 1 s, "
                      f"spread {spread} counts, {refused} glitches refused")


# ---- the whole self-test --------------------------------------------------------------


def selftest_main(
    config: Config,
    mock: bool,
    out: TextIO | None = None,
    *,
    host: Host | None = None,
    make_factory: Callable[[], Any] | None = None,
    clock: Clock | None = None,
    speaker: Any = None,
    sensor_check: Callable[..., PartResult] = check_sensor,
) -> int:
    """Check every part, print one line each (and the fix for a failure); 0 if every
    required part passed, else 1. ``make_factory`` makes the pin factory (default: mock
    pins with ``mock``, else gpiozero's real backend per ``pins.factory``)."""
    # deferred: a part's driver is loaded when that part is tried
    from device.apps.builder import pin_factory

    out = out or sys.stdout  # looked up now: the stdout of this call, not of the import
    host = host or (Host.virtual() if mock else Host.probe())
    clock = clock or (VirtualClock() if mock else RealClock())
    if make_factory is None:
        make_factory = lambda: pin_factory(config, mock)  # noqa: E731
    what = "mock pins, virtual time, fake voice and sensor" if mock else "real parts"
    out.write(f"Stretch Companion self-test ({what})\n")
    results: list[PartResult] = []

    def report(result: PartResult) -> None:
        results.append(result)
        out.write("\n".join(result.lines()) + "\n")
        out.flush()

    gpio, factory = check_gpio(config, mock, host, make_factory)
    report(gpio)
    try:
        if factory is None:
            for name in ("light", "buzzer", "button"):
                report(replace(PartResult(name, None, "no GPIO"), required=False))
        else:
            report(check_light(config, factory, clock, host))
            report(check_buzzer(config, factory, clock, host))
            report(check_button(config, factory, host))
    finally:
        close = getattr(factory, "close", None)
        if close is not None:
            close()
    report(check_voice(config, mock, host, clock, speaker))
    try:
        report(sensor_check(config, mock, clock=clock, host=host))
    except Exception as exc:  # a half-written sensor driver must not hide the rest
        report(PartResult("sensor", False, f"{type(exc).__name__}: {exc}",
                          FIX_SENSOR_WIRING, required=False))
    failed = [r.name for r in results if r.failed]
    if failed:
        out.write(f"selftest: FAILED: {', '.join(failed)}\n")
        return 1
    out.write("selftest: all required parts ok\n")
    return 0
