"""Settings: frozen dataclasses, read from TOML and validated once at start-up.

Each field's ``metadata`` says what is allowed (``range``, ``choices``, ``doc``); the
loader walks the tables, so a typo or a bad value names the key, the value and the
allowed values in one line.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints

from device.errors import ConfigError

LEGS = ("right", "left")


def _f(default: Any, doc: str, **rules: Any) -> Any:
    """A dataclass field with its validation rules and one line of documentation."""
    if isinstance(default, (list, tuple)):
        value = tuple(default)
        return field(default=value, metadata={"doc": doc, **rules})
    return field(default=default, metadata={"doc": doc, **rules})


@dataclass(frozen=True)
class Pins:
    """BCM GPIO numbers of the parts."""

    button: int = _f(17, "push button to GND (internal pull-up)", range=(0, 27))
    led: int = _f(18, "breathing light LED (PWM)", range=(0, 27))
    buzzer: int = _f(27, "buzzer", range=(0, 27))
    factory: str = _f(
        "", "gpiozero pin factory; empty = gpiozero's choice (GPIOZERO_PIN_FACTORY)",
        choices=("", "lgpio", "rpigpio", "pigpio", "native", "mock"),
    )


@dataclass(frozen=True)
class BuzzerSettings:
    """The buzzer part."""

    kind: str = _f("active", "active (on/off) or passive (driven with tones)",
                   choices=("active", "passive"))


@dataclass(frozen=True)
class SessionSettings:
    """How a session runs, in seconds."""

    hold_seconds: float = _f(60, "length of each hold (s)", range=(60, 300))
    legs: tuple[str, ...] = _f(LEGS, "order of the legs", legs=True)
    rounds: int = _f(1, "times through both legs", range=(1, 10))
    switch: str = _f("button", "button: wait for a press between legs; auto: go on by itself",
                     choices=("button", "auto"))
    switch_pause_seconds: float = _f(10, "pause before an auto switch (s)", range=(2, 120))
    long_press_seconds: float = _f(2.0, "hold the button this long to cancel (s)",
                                   range=(0.5, 10))
    setup_pause_seconds: float = _f(1.5, "pause after each set-up step (s)", range=(0, 20))
    reminder_seconds: float = _f(20, "time between mistake reminders in a hold (s); 0 = none",
                                 range=(0, 300), zero_ok=True, min_nonzero=10)
    tick_seconds: float = _f(0, "soft tick every N seconds in a hold; 0 = off",
                             range=(0, 60), zero_ok=True, min_nonzero=1)


@dataclass(frozen=True)
class BreathSettings:
    """Breath pacing (s); the whole breath must make 2..12 breaths per minute."""

    inhale: float = _f(4, "breathe in (s)", range=(1, 15))
    hold_in: float = _f(0, "pause full (s)", range=(0, 10))
    exhale: float = _f(6, "breathe out (s)", range=(1, 20))
    hold_out: float = _f(0, "pause empty (s)", range=(0, 10))

    @property
    def period(self) -> float:
        """One whole breath (s)."""
        return self.inhale + self.hold_in + self.exhale + self.hold_out


@dataclass(frozen=True)
class LightSettings:
    """The breathing light."""

    idle: str = _f("off", "light while idle: off or a faint glow", choices=("off", "glow"))
    hz: float = _f(50, "most updates per second while animating", range=(20, 200))
    step: float = _f(0.015, "perceived brightness (0..1) the light moves between updates: "
                     "it is redrawn when the eye would see this much change", range=(0.002, 0.05))
    glow: float = _f(0.15, "faint glow level (perceived brightness 0..1)", range=(0.01, 1))
    low: float = _f(0.04, "breath light at empty lungs (perceived 0..1)", range=(0, 0.5))
    high: float = _f(1.0, "breath light at full lungs (perceived 0..1)", range=(0.2, 1))


def _command(value: str) -> str | None:
    """a command line such as "aplay -q"."""
    import shlex

    try:
        return None if shlex.split(value) else "a command such as \"aplay -q\""
    except ValueError:
        return "a command such as \"aplay -q\" (check the quotes)"


@dataclass(frozen=True)
class VoiceSettings:
    """Text-to-speech."""

    enabled: bool = _f(True, "speak the cues")
    rate: int = _f(160, "words per minute", range=(80, 300))
    volume: float = _f(0.9, "0..1", range=(0, 1))
    voice: str = _f("", "pyttsx3 voice id or name; empty = default")
    audio_device: str = _f("", "ALSA device for the voice (aplay -D), e.g. "
                           "'plughw:CARD=Headphones'; empty = default; `aplay -L` lists them")
    player: str = _f("aplay -q", "command that plays a WAV; the file is appended",
                     check=_command)


@dataclass(frozen=True)
class RoutineSettings:
    """Which routine to coach."""

    file: str = _f("", "path to a routine TOML; empty = built-in hamstring stretch")


@dataclass(frozen=True)
class SensorSettings:
    """Strap tension sensor: a load cell on a NAU7802 over I2C (optional)."""

    enabled: bool = _f(False, "a strap sensor is fitted")
    i2c_bus: int = _f(1, "I2C bus number (/dev/i2c-N)", range=(0, 20))
    address: int = _f(0x2A, "I2C address of the NAU7802 (42 = 0x2A)", range=(0x08, 0x77))
    sps: int = _f(10, "samples per second", choices=(10, 20, 40, 80, 320))
    gain: int = _f(128, "amplifier gain", choices=(1, 2, 4, 8, 16, 32, 64, 128))
    calibration_file: str = _f("", "calibration (tare and scale); empty = state directory")
    retry_seconds: float = _f(5, "after a sensor error, try again this often (s)",
                              range=(1, 60))
    hold_clock: str = _f("time", "time: holds run by the clock; strap: the hold clock counts "
                         "only while the strap is loaded", choices=("time", "strap"))
    loaded_kg: float = _f(1.0, "the strap counts as loaded from this tension (kg)",
                          range=(0.1, 20))
    cue_gap_seconds: float = _f(15, "at most one strap cue this often (s)", range=(5, 120))
    bounce_min_kg: float = _f(1.0, "bouncing: smallest swing that counts (kg)",
                              range=(0.2, 20))
    slack_seconds: float = _f(2.0, "slack: tension lost this long (s)", range=(0.5, 10))
    overpull_ratio: float = _f(1.5, "over-pulling: this many times the hold's own level",
                               range=(1.1, 5))
    overpull_margin_kg: float = _f(2.0, "over-pulling: and at least this far above it (kg)",
                                   range=(0.2, 50))


def _clock_time(value: str) -> str | None:
    """'' or HH:MM (24 h)."""
    if value == "":
        return None
    hh, sep, mm = value.partition(":")
    if sep and hh.isdigit() and mm.isdigit() and len(mm) == 2:
        if 0 <= int(hh) <= 23 and 0 <= int(mm) <= 59:
            return None
    return "empty (off) or a time of day HH:MM, e.g. \"19:30\""


def _time_zone(value: str) -> str | None:
    """'' or an IANA zone name."""
    if value == "":
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "empty (the system's zone) or an IANA time zone such as \"Europe/Berlin\""
    return None


@dataclass(frozen=True)
class HistorySettings:
    """Session history, progression and the daily nudge."""

    file: str = _f("", "history database; empty = the default (state directory)")
    progression: str = _f("off", "steady: a leg's hold grows after steady complete sessions",
                          choices=("off", "steady"))
    step_seconds: float = _f(15, "how much a hold grows (s)", range=(5, 60))
    sessions_to_grow: int = _f(3, "complete sessions in a row before a hold grows",
                               range=(1, 20))
    max_seconds: float = _f(300, "longest a hold grows to (s)", range=(60, 300))
    min_steadiness: float = _f(0, "with a strap sensor: steadiness (0..100) needed to grow; "
                               "0 = not checked", range=(0, 100))
    nudge_at: str = _f("", "time of day after which, with no session yet, the idle light "
                       "shows a slow nudge; empty = off", check=_clock_time)
    nudge_voice: bool = _f(False, "also say a line when the nudge starts")
    timezone: str = _f("", "time zone for days and weeks; empty = the system's",
                       check=_time_zone)


@dataclass(frozen=True)
class Config:
    """All settings."""

    pins: Pins = field(default_factory=Pins)
    buzzer: BuzzerSettings = field(default_factory=BuzzerSettings)
    session: SessionSettings = field(default_factory=SessionSettings)
    breath: BreathSettings = field(default_factory=BreathSettings)
    light: LightSettings = field(default_factory=LightSettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    routine: RoutineSettings = field(default_factory=RoutineSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    sensor: SensorSettings = field(default_factory=SensorSettings)


def _allowed(meta: dict[str, Any], kind: type) -> str:
    if "choices" in meta:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    if meta.get("legs"):
        return "a list of distinct legs from 'right', 'left'"
    if "range" in meta:
        lo, hi = meta["range"]
        word = "a whole number" if kind is int else "a number"
        text = f"{word} from {lo} to {hi}"
        if meta.get("zero_ok"):
            text = f"0 (off) or {word} from {meta.get('min_nonzero', lo)} to {hi}"
        return text
    if kind is bool:
        return "true or false"
    if "check" in meta:
        return meta["check"].__doc__ or "text"
    return "text"


def _check_value(key: str, value: Any, kind: type, meta: dict[str, Any]) -> Any:
    original = value

    def bad() -> ConfigError:
        return ConfigError(f"{key} = {original!r}: must be {_allowed(meta, kind)}")

    if meta.get("legs"):
        if (
            not isinstance(value, (list, tuple))
            or not value
            or any(v not in LEGS for v in value)
            or len(set(value)) != len(value)
        ):
            raise bad()
        return tuple(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise bad()
    if "choices" in meta and value not in meta["choices"]:
        raise bad()
    if "check" in meta:
        problem = meta["check"](value)
        if problem:
            raise ConfigError(f"{key} = {original!r}: must be {problem}")
    if "range" in meta:
        lo, hi = meta["range"]
        if meta.get("zero_ok") and value == 0:
            return value
        lo = meta.get("min_nonzero", lo) if meta.get("zero_ok") else lo
        if not lo <= value <= hi:
            raise bad()
    return value


def _unknown(key: str, allowed: list[str]) -> ConfigError:
    near = difflib.get_close_matches(key.rsplit(".", 1)[-1], allowed, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ConfigError(f"unknown key {key}{hint}; allowed: {', '.join(allowed)}")


def _build(cls: type, table: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    values: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise _unknown(full, names)
        kind = hints[key]
        if is_dataclass(kind):
            if not isinstance(value, dict):
                raise ConfigError(f"{full} must be a table [{full}]")
            values[key] = _build(kind, value, f"{full}.")
            continue
        meta = dict(next(f for f in fields(cls) if f.name == key).metadata)
        values[key] = _check_value(full, value, kind, meta)
    return cls(**values)


def _cross_checks(config: Config) -> None:
    breath = config.breath
    per_minute = 60.0 / breath.period
    if not 2 <= per_minute <= 12:
        raise ConfigError(
            f"breath = {breath.inhale:g}/{breath.hold_in:g}/{breath.exhale:g}/{breath.hold_out:g}"
            f" s makes {per_minute:.1f} breaths per minute: must be 2 to 12"
            " (a whole breath of 5 to 30 s)"
        )
    light = config.light
    if light.low >= light.high:
        raise ConfigError(
            f"light.low = {light.low:g}: must be below light.high = {light.high:g} "
            "(the breath light rises from low to high)"
        )
    pins = config.pins
    if config.sensor.enabled and config.sensor.i2c_bus == 1:
        for key, pin in (("pins.button", pins.button), ("pins.led", pins.led),
                         ("pins.buzzer", pins.buzzer)):
            if pin in (2, 3):
                raise ConfigError(
                    f"{key} = {pin}: GPIO2 and GPIO3 are the I2C bus the strap sensor uses; "
                    "pick another pin"
                )
    used = {"pins.button": pins.button, "pins.led": pins.led, "pins.buzzer": pins.buzzer}
    seen: dict[int, str] = {}
    for key, pin in used.items():
        if pin in seen:
            raise ConfigError(
                f"{key} = {pin}: already used by {seen[pin]}; each part needs its own pin"
            )
        seen[pin] = key


def parse_config(data: dict[str, Any]) -> Config:
    """Validate parsed TOML into a ``Config`` (raises ``ConfigError``)."""
    config = _build(Config, data, "")
    _cross_checks(config)
    return config


def config_paths() -> list[Path]:
    """Where the config is looked for, first found wins."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        Path(xdg) / "stretch-companion" / "config.toml",
        Path("/etc/stretch-companion/config.toml"),
    ]


def load_config(path: str | Path | None = None) -> Config:
    """Read ``path`` (or the first default location that exists, or built-in defaults)."""
    if path is None:
        for candidate in config_paths():
            if candidate.is_file():
                path = candidate
                break
        else:
            return Config()
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--config {str(p)!r}: cannot read it ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def with_overrides(config: Config, **sections: dict[str, Any]) -> Config:
    """A copy of ``config`` with some keys changed, validated like the file."""
    changes = {}
    for name, values in sections.items():
        section = getattr(config, name)
        current = {f.name: getattr(section, f.name) for f in fields(section)}
        current.update(values)
        raw = {k: list(v) if isinstance(v, tuple) else v for k, v in current.items()}
        changes[name] = _build(type(section), raw, f"{name}.")
    new = replace(config, **changes)
    _cross_checks(new)
    return new


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def default_config_text() -> str:
    """A commented config file holding every key at its default."""
    lines = [
        "# Stretch Companion configuration.",
        "# Put it at ~/.config/stretch-companion/config.toml or",
        "# /etc/stretch-companion/config.toml, or pass --config FILE.",
        "# Every key is optional; these are the defaults.",
    ]
    config = Config()
    hints = get_type_hints(Config)
    for section in fields(Config):
        cls = hints[section.name]
        lines += ["", f"[{section.name}]"]
        if cls.__doc__:
            lines.append(f"# {cls.__doc__.strip().splitlines()[0]}")
        value = getattr(config, section.name)
        sub_hints = get_type_hints(cls)
        for f in fields(cls):
            meta = f.metadata
            allowed = _allowed(dict(meta), sub_hints[f.name])
            lines.append(f"# {meta.get('doc', '')} ({allowed})")
            lines.append(f"{f.name} = {_toml_value(getattr(value, f.name))}")
    return "\n".join(lines) + "\n"
