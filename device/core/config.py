"""Settings: frozen dataclasses, read from TOML and validated once at start-up.

Each field's ``metadata`` says what is allowed (``range``, ``choices``, ``doc``); the
loader walks the tables, so a typo or a bad value names the key, the value and the
allowed values in one line.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, cast, get_type_hints

from device.core.errors import ConfigError

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
    breath_cue: bool = _f(False, "a soft low tone (passive) or click (active) at the start of "
                          "each in-breath in a hold, to breathe with eyes closed")


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
    setup_pause_seconds: float = _f(1.5, "pause after a set-up line whose routine step names "
                                    "no pause of its own (s)", range=(0, 20))
    reminder_seconds: float = _f(20, "time between mistake reminders in a hold (s); 0 = none",
                                 range=(0, 300), zero_ok=True, min_nonzero=10)
    tick_seconds: float = _f(0, "soft tick every N seconds in a hold; 0 = off",
                             range=(0, 60), zero_ok=True, min_nonzero=1)
    mode: str = _f("full", "full: the whole set-up and your hold lengths; quick: the short "
                   "set-up on both legs and one 60 s hold each (before or after a workout)",
                   choices=("full", "quick"))
    setup_advance: str = _f("pace", "pace: set-up steps follow each other, each with its "
                            "pause; press: wait for a press after each step (first-timers)",
                            choices=("pace", "press"))
    ask_tightness: bool = _f(True, "after each leg ask how tight it was (1, 2 or 3 presses) "
                             "and set that leg's next hold from the answer")
    answer_seconds: float = _f(5, "time to answer the tightness question (s)", range=(2, 20))
    tightness_step_seconds: float = _f(30, "very tight lengthens (easy shortens) a leg's next "
                                       "hold by this much (s), within 60 to 300",
                                       range=(10, 120))


@dataclass(frozen=True)
class BreathSettings:
    """Breath pacing (s); the whole breath must make 2..12 breaths per minute."""

    inhale: float = _f(4, "breathe in (s)", range=(1, 15))
    hold_in: float = _f(0, "pause full (s)", range=(0, 10))
    exhale: float = _f(6, "breathe out (s)", range=(1, 20))
    hold_out: float = _f(0, "pause empty (s)", range=(0, 10))
    voice_breaths: int = _f(0, "the voice says \"in\" and \"out\" for this many breaths "
                            "at each hold's start; 0 = off", range=(0, 10))

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
    """Strap tension sensor: a load cell on a NAU7802 over I2C or an HX711 on two GPIOs
    (optional)."""

    enabled: bool = _f(False, "a strap sensor is fitted")
    chip: str = _f("nau7802", "the load cell's ADC: nau7802 (I2C) or hx711 (two GPIOs)",
                   choices=("nau7802", "hx711"))
    i2c_bus: int = _f(1, "I2C bus number (/dev/i2c-N; NAU7802)", range=(0, 20))
    address: int = _f(0x2A, "I2C address of the NAU7802 (42 = 0x2A)", range=(0x08, 0x77))
    data_pin: int = _f(5, "HX711 DOUT (data) GPIO", range=(0, 27))
    clock_pin: int = _f(6, "HX711 PD_SCK (clock) GPIO", range=(0, 27))
    sps: int = _f(10, "samples per second (NAU7802: 10, 20, 40, 80, 320; HX711: 10 or 80, "
                  "as its RATE pin is wired)", choices=(10, 20, 40, 80, 320))
    gain: int = _f(128, "amplifier gain (NAU7802: 1 to 128; HX711: 128 or 64 on input A, "
                   "32 on input B)", choices=(1, 2, 4, 8, 16, 32, 64, 128))
    sim_relax_right: float = _f(36.0, "simulated strap: percent of the pull the right leg "
                                "relaxes away in a long still hold", range=(0, 80))
    sim_relax_left: float = _f(33.0, "simulated strap: the same for the left leg",
                               range=(0, 80))
    sim_tau_right: float = _f(20.0, "simulated strap: how fast the right leg relaxes (time "
                              "constant, s)", range=(2, 300))
    sim_tau_left: float = _f(18.0, "simulated strap: the same for the left leg (s)",
                             range=(2, 300))
    max_rate_kg_s: float = _f(100.0, "HX711 plausibility: the strap moves at most this fast "
                              "(kg/s); a faster jump must be seen three times running",
                              range=(5, 1000))
    calibration_file: str = _f("", "calibration (tare and scale); empty = state directory")
    retry_seconds: float = _f(5, "after a sensor error, try again this often (s)",
                              range=(1, 60))
    hold_clock: str = _f("time", "time: holds run by the clock; strap: the hold clock counts "
                         "only while the strap is loaded", choices=("time", "strap"))
    paused_limit_seconds: float = _f(30, "hold clock strap: a clock waiting this long for the "
                                     "strap ends the hold early (s)", range=(10, 300))
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
    overpull_max_kg: float = _f(15.0, "over-pulling, always: a calibrated strap above this "
                                "(kg), from a hold's first second", range=(2, 100))
    overpull_max_rel: float = _f(15.0, "the same ceiling before calibration, in relative "
                                 "units (about kg on the reference load cell)",
                                 range=(0.5, 1000))


def _clock_time(value: str) -> str | None:
    """'' or HH:MM (24 h)."""
    if value == "":
        return None
    match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", value)  # ASCII digits only, not "²"
    if match and int(match[1]) <= 23 and int(match[2]) <= 59:
        return None
    return "empty (off) or a time of day HH:MM, e.g. \"19:30\""


def _time_zone(value: str) -> str | None:
    """'' or an IANA zone name."""
    if value == "":
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder
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
    hold_log: str = _f("", "also append each hold as a CSV row to this file; empty = off")


def _mqtt_url(value: str) -> str | None:
    """'' (off) or mqtt://HOST[:PORT] or mqtts://HOST[:PORT]."""
    if value == "":
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (parts is None or parts.scheme not in ("mqtt", "mqtts") or not parts.hostname
            or parts.path not in ("", "/") or parts.query or parts.fragment
            or parts.username or parts.password or (port is not None and not 0 < port < 65536)):
        return ("empty (off) or mqtt://HOST[:PORT] or mqtts://HOST[:PORT], e.g. "
                "\"mqtt://127.0.0.1:1883\" (no user or password in it: use username and "
                "password_file)")
    return None


def _box_id(value: str) -> str | None:
    """'' (from the hostname) or 1..64 of a-z 0-9 _ -."""
    import re

    if value == "" or re.fullmatch(r"[a-z0-9_-]{1,64}", value):
        return None
    return "empty (from the hostname) or 1 to 64 of a-z, 0-9, '_' and '-'"


def _topic(value: str, *, empty_ok: bool = True, box_id_ok: bool = False) -> str | None:
    levels = value.replace("{box_id}", "x").split("/") if box_id_ok else value.split("/")
    ok = (value == "" and empty_ok) or (
        value != "" and not value.startswith("$") and len(value) <= 200
        and all(level and level not in (".", "..") for level in levels)
        and not any(c in value for c in "+#\x00") and value.isprintable())
    if ok and box_id_ok and "{" in value.replace("{box_id}", ""):
        ok = False
    return None if ok else "bad"


def _base_topic(value: str) -> str | None:
    """'' (stretch-companion/{box_id}) or a topic without wildcards, '$', empty levels."""
    if _topic(value, box_id_ok=True) is None:
        return None
    return ("empty (stretch-companion/{box_id}) or a topic such as "
            "\"home/stretch/{box_id}\": no '+', '#', leading '$' or '/', empty levels")


def _discovery_prefix(value: str) -> str | None:
    """a topic without wildcards, e.g. "homeassistant"."""
    if _topic(value, empty_ok=False) is None:
        return None
    return "a topic such as \"homeassistant\": no '+', '#', leading '$' or '/', empty levels"


@dataclass(frozen=True)
class MqttSettings:
    """MQTT: publish to a broker (Home Assistant, a studio); off while url is empty."""

    url: str = _f("", "broker, e.g. mqtt://127.0.0.1:1883 or mqtts://broker.lan:8883; "
                  "empty = off", check=_mqtt_url)
    username: str = _f("", "user name at the broker; empty = anonymous")
    password_file: str = _f("", "file holding the password (one line, not world-readable); "
                            "never the password itself")
    ca_file: str = _f("", "CA certificate (PEM) the broker's certificate is checked against; "
                      "empty = the system's store (mqtts:// only)")
    cert_file: str = _f("", "client certificate (PEM), with key_file (mqtts:// only)")
    key_file: str = _f("", "client key (PEM), with cert_file (mqtts:// only)")
    box_id: str = _f("", "this box's name in topics; empty = from the hostname", check=_box_id)
    base_topic: str = _f("", "topic everything is published under; empty = "
                         "stretch-companion/{box_id}", check=_base_topic)
    discovery: bool = _f(True, "publish Home Assistant MQTT discovery")
    discovery_prefix: str = _f("homeassistant", "Home Assistant's discovery prefix",
                               check=_discovery_prefix)
    commands: bool = _f(False, "accept start/cancel/press and next_hold_seconds on "
                        "{base_topic}/command")
    allow_insecure: bool = _f(False, "allow a user name and password over plain mqtt:// to a "
                              "host that is not this machine")


def _socket_path(value: str) -> str | None:
    """'' or an absolute path of at most 107 bytes."""
    if value == "" or (value.startswith("/") and len(value.encode("utf-8", "replace")) < 108
                       and "\0" not in value):
        return None
    return "empty ($RUNTIME_DIRECTORY/control.sock) or an absolute path of at most 107 bytes"


@dataclass(frozen=True)
class ControlSettings:
    """The control socket of `run` (stretch-companion press|long|status)."""

    enabled: bool = _f(True, "listen for press, long and status on a Unix socket")
    socket: str = _f("", "socket path; empty = $RUNTIME_DIRECTORY/control.sock (systemd), "
                     "else no socket", check=_socket_path)


def _listen(value: str) -> str | None:
    """HOST:PORT, e.g. "0.0.0.0:8321"."""
    host, sep, port = value.rpartition(":")
    if sep and host and port.isdigit() and 1 <= int(port) <= 65535:
        return None
    return "HOST:PORT with a port from 1 to 65535, e.g. \"0.0.0.0:8321\""


@dataclass(frozen=True)
class WebSettings:
    """The phone page on the local network (needs the web extra)."""

    enabled: bool = _f(False, "serve the phone page (pair a phone with the code the box says)")
    listen: str = _f("0.0.0.0:8321", "address and port the page is served on",
                     check=_listen)


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
    control: ControlSettings = field(default_factory=ControlSettings)
    web: WebSettings = field(default_factory=WebSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)


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


def _shown(value: Any, limit: int = 60) -> str:
    """``value`` as written in a message: its repr, cut short (a huge or deeply nested
    value still makes one readable line)."""
    try:
        text = repr(value)
    except RecursionError:
        text = "[...]"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_value(key: str, value: Any, kind: type, meta: dict[str, Any]) -> Any:
    original = value

    def bad() -> ConfigError:
        return ConfigError(f"{key} = {_shown(original)}: must be {_allowed(meta, kind)}")

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
            raise ConfigError(f"{key} = {_shown(original)}: must be {problem}")
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
            values[key] = _build(cast(type, kind), value, f"{full}.")
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
    sensor = config.sensor
    hx711 = sensor.chip == "hx711"
    if hx711 and sensor.sps not in (10, 80):
        raise ConfigError(f"sensor.sps = {sensor.sps}: the HX711 runs at 10 or 80 samples per "
                          "second, as its RATE pin is wired")
    if hx711 and sensor.gain not in (32, 64, 128):
        raise ConfigError(f"sensor.gain = {sensor.gain}: the HX711 allows 128 or 64 (input A) "
                          "or 32 (input B)")
    if sensor.enabled and not hx711 and sensor.i2c_bus == 1:
        for key, pin in (("pins.button", pins.button), ("pins.led", pins.led),
                         ("pins.buzzer", pins.buzzer)):
            if pin in (2, 3):
                raise ConfigError(
                    f"{key} = {pin}: GPIO2 and GPIO3 are the I2C bus the strap sensor uses; "
                    "pick another pin"
                )
    _mqtt_checks(config.mqtt)
    used = {"pins.button": pins.button, "pins.led": pins.led, "pins.buzzer": pins.buzzer}
    if hx711 and sensor.enabled:
        used |= {"sensor.data_pin": sensor.data_pin, "sensor.clock_pin": sensor.clock_pin}
    seen: dict[int, str] = {}
    for key, pin in used.items():
        if pin in seen:
            raise ConfigError(
                f"{key} = {pin}: already used by {seen[pin]}; each part needs its own pin"
            )
        seen[pin] = key


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    import ipaddress

    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _mqtt_checks(m: MqttSettings) -> None:
    """Keys of [mqtt] that only make sense together (the file checks are in device.addons.mqtt)."""
    if not m.url:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(m.url)
    tls = parts.scheme == "mqtts"
    if m.password_file and not m.username:
        raise ConfigError(f"mqtt.password_file = {m.password_file!r}: needs mqtt.username")
    if bool(m.cert_file) != bool(m.key_file):
        key, value = ("mqtt.cert_file", m.cert_file) if m.cert_file else ("mqtt.key_file",
                                                                           m.key_file)
        raise ConfigError(f"{key} = {value!r}: give both mqtt.cert_file and mqtt.key_file")
    if not tls:
        for key in ("ca_file", "cert_file", "key_file"):
            if getattr(m, key):
                raise ConfigError(f"mqtt.{key} = {getattr(m, key)!r}: certificates need an "
                                  f"mqtts:// url (mqtt.url = {m.url!r})")
        if m.username and not m.allow_insecure and not is_loopback(parts.hostname or ""):
            raise ConfigError(
                f"mqtt.url = {m.url!r}: a user name and password would cross the network "
                "unencrypted; use mqtts:// (or set mqtt.allow_insecure = true)")


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


def config_source(path: str | Path | None = None) -> Path | None:
    """The file ``load_config(path)`` reads: ``path``, else the first default location
    that exists, else None (built-in defaults)."""
    if path is not None:
        return Path(path)
    for candidate in config_paths():
        try:
            found = candidate.is_file()
        except OSError:  # e.g. a home hidden by systemd's ProtectHome=: look further
            continue
        if found:
            return candidate
    return None


def load_config(path: str | Path | None = None) -> Config:
    """Read ``path`` (or the first default location that exists, or built-in defaults)."""
    p = config_source(path)
    if p is None:
        return Config()
    data = read_toml_file(p, f"--config {str(p)!r}")
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


MAX_TOML_BYTES = 1 << 20  # a config or routine file is a few kB; 1 MiB is plenty


def read_toml_file(path: Path, what: str) -> dict[str, Any]:
    """Parse the TOML file at ``path``; any problem is one ``ConfigError`` line starting
    with ``what``. Only a regular file of at most ``MAX_TOML_BYTES`` is read: its type is
    checked on the open descriptor before reading, so a FIFO, /dev/zero or a folder
    cannot hang or exhaust the box."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read it ({exc.strerror})") from None
    except ValueError:  # a NUL byte in the name
        raise ConfigError(f"{what}: a file name cannot hold a NUL byte") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a folder" if stat.S_ISDIR(info.st_mode) else
                    "a FIFO" if stat.S_ISFIFO(info.st_mode) else
                    "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                    else "not a regular file")
            raise ConfigError(f"{what}: is {kind}; must be a TOML file")
        if info.st_size > MAX_TOML_BYTES:
            raise ConfigError(f"{what}: {info.st_size} bytes; must be a TOML file of at "
                              f"most {MAX_TOML_BYTES} bytes")
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(MAX_TOML_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read it ({exc.strerror})") from None
    finally:
        os.close(fd)
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text: {exc.reason} at byte "
                          f"{exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)") from None
    except ValueError as exc:  # TOMLDecodeError, or a number with thousands of digits
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


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


_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n",
                 "\f": "\\f", "\r": "\\r"}


def _toml_char(c: str) -> str:
    """One character inside a TOML basic string (control characters escaped)."""
    if c in _TOML_ESCAPES:
        return _TOML_ESCAPES[c]
    return f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c


def toml_value(value: Any) -> str:
    """``value`` (bool, int, float, str, or a list or tuple of them) as a TOML value: the
    one writer for the config file, used by ``default_config_text`` and the page's settings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def default_config_text() -> str:
    """A commented config file holding every key at its default."""
    return config_text(Config(), [
        "# Stretch Companion configuration.",
        "# Put it at ~/.config/stretch-companion/config.toml or",
        "# /etc/stretch-companion/config.toml, or pass --config FILE.",
        "# Every key is optional; these are the defaults.",
    ])


def effective_config_text(config: Config, source: Path | None) -> str:
    """``config`` (the one in effect) as a commented file; keys that differ from the
    defaults are marked."""
    where = f"read from {source}" if source else "built-in defaults (no config file found)"
    return config_text(config, [
        "# The Stretch Companion configuration in effect:",
        f"# {where}.",
        "# Keys set to something other than the default are marked '(changed)'.",
    ], mark_changes=True)


def config_text(config: Config, header: list[str], mark_changes: bool = False) -> str:
    """``config`` as a TOML file with every key, its meaning and what it allows."""
    lines = list(header)
    default = Config()
    hints = get_type_hints(Config)
    for section in fields(Config):
        cls = hints[section.name]
        lines += ["", f"[{section.name}]"]
        if cls.__doc__:
            lines.append(f"# {cls.__doc__.strip().splitlines()[0]}")
        value = getattr(config, section.name)
        base = getattr(default, section.name)
        sub_hints = get_type_hints(cls)
        for f in fields(cls):
            meta = f.metadata
            allowed = _allowed(dict(meta), sub_hints[f.name])
            lines.append(f"# {meta.get('doc', '')} ({allowed})")
            changed = mark_changes and getattr(value, f.name) != getattr(base, f.name)
            mark = "  # (changed)" if changed else ""
            lines.append(f"{f.name} = {toml_value(getattr(value, f.name))}{mark}")
    return "\n".join(lines) + "\n"
