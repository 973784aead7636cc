"""The settings the page may change, checked by the config file's own validator.

A change is applied to the TOML *text* (comments and other keys stay as they were), the
result is validated with ``device.core.config.parse_config`` exactly as at start-up, and only a
valid file is written: temp file + fsync + rename, the previous file kept as ``.bak``.
Plain Python (no web library).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

from device.core.config import (
    Config,
    config_paths,
    config_source,
    parse_config,
    toml_value,
)
from device.core.errors import ConfigError
from device.store.files import write_atomic

MAX_CONFIG_BYTES = 256 * 1024  # a config file larger than this is not edited from the page


@dataclass(frozen=True)
class Field:
    """One setting on the page: ``key`` is "section.name" as in the config file."""

    key: str
    label: str
    unit: str = ""
    group: str = ""  # the page's group (a fieldset) it is shown in
    control: str = ""  # stepper, slider, toggle, time or choice
    step: float = 1  # a stepper's or slider's step (in ``unit``)
    help: str = ""  # one plain line for a person (the config's doc when empty)

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]


GROUPS = ("Hold and rounds", "Breath", "Voice", "Strap", "Reminders")
FIELDS: tuple[Field, ...] = (
    Field("session.hold_seconds", "Hold length", "s", GROUPS[0], "stepper", 15,
          "How long each leg holds the stretch."),
    Field("session.rounds", "Rounds", "", GROUPS[0], "stepper", 1,
          "Times through both legs."),
    Field("session.legs", "Leg order", "", GROUPS[0], "choice", 1, "Which leg goes first."),
    Field("breath.inhale", "Breathe in", "s", GROUPS[1], "slider", 0.5,
          "As the light grows."),
    Field("breath.hold_in", "Pause full", "s", GROUPS[1], "slider", 0.5,
          "A pause with the lungs full (0 = none)."),
    Field("breath.exhale", "Breathe out", "s", GROUPS[1], "slider", 0.5,
          "As the light fades."),
    Field("breath.hold_out", "Pause empty", "s", GROUPS[1], "slider", 0.5,
          "A pause with the lungs empty (0 = none)."),
    Field("voice.enabled", "Voice", "", GROUPS[2], "toggle", 1,
          "The box speaks each step and reminder."),
    Field("voice.rate", "Speaking rate", "words/min", GROUPS[2], "slider", 10),
    Field("voice.volume", "Volume", "", GROUPS[2], "slider", 0.05,
          "How loud the box speaks."),
    Field("sensor.overpull_max_kg", "Strap ceiling", "kg", GROUPS[3], "stepper", 0.5,
          "The box warns above this pull, always."),
    Field("sensor.overpull_max_rel", "Strap ceiling before calibration", "rel", GROUPS[3],
          "stepper", 0.5, "The same, before the strap is calibrated (relative units)."),
    Field("history.nudge_at", "Nudge after", "", GROUPS[4], "time", 1,
          "With no session yet that day, the light nudges you from this time. "
          "Empty: no nudge."),
)
BY_KEY = {f.key: f for f in FIELDS}
LEG_ORDERS = (["right", "left"], ["left", "right"], ["right"], ["left"])


def settings_path(explicit: str | Path | None, service: bool = False) -> Path:
    """The config file the page edits: ``--config``, else the first that exists, else the
    user's (or, for the service, /etc's) default location, created on the first save."""
    found = config_source(explicit or None)  # a location it may not look into is skipped
    if found is not None:
        return found
    paths = config_paths()
    return paths[-1] if service else paths[0]


SIM_CONFIG = "sim-config.toml"  # the simulator's own settings, beside the user's config


def sim_settings_path(explicit: str | Path | None) -> Path:
    """The file the simulator's page edits: ``--config``, else the simulator's own
    (``~/.config/stretch-companion/sim-config.toml``), so trying never changes the box's."""
    return Path(explicit) if explicit else config_paths()[0].with_name(SIM_CONFIG)


def sim_config_source(explicit: str | Path | None) -> Path | None:
    """The config the simulator starts from: ``--config``, else its own file once the page
    has saved one, else the user's config as the box would read it (read, never written)."""
    if explicit:
        return Path(explicit)
    own = sim_settings_path(None)
    try:
        if own.is_file():
            return own
    except OSError:
        pass
    return config_source(None)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _sentence(text: str) -> str:
    text = re.sub(r"\s*\([^)]*\)$", "", text.strip())  # "breathe in (s)" -> "breathe in"
    return (text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else ""


def describe(config: Config) -> list[dict[str, Any]]:
    """Every page field: key, label, unit, value, kind, limits and the config's own doc."""
    out = []
    for f in FIELDS:
        section = getattr(config, f.section)
        kind = get_type_hints(type(section))[f.name]
        meta = next(x for x in fields(section) if x.name == f.name).metadata
        item: dict[str, Any] = {
            "key": f.key, "label": f.label, "unit": f.unit, "doc": meta.get("doc", ""),
            "value": _plain(getattr(section, f.name)),
            "kind": {bool: "bool", int: "int", float: "number", str: "text"}.get(kind, "legs"),
            "group": f.group, "control": f.control, "step": f.step,
            "help": f.help or _sentence(meta.get("doc", "")),
        }
        if "range" in meta:
            item["min"], item["max"] = meta["range"]
        if meta.get("legs"):
            item["choices"] = [list(c) for c in LEG_ORDERS]
        out.append(item)
    return out


class SettingsError(Exception):
    """A change was refused: ``key`` is the page field to show ``message`` beside
    (``human``: the same in plain words, with the field's label and unit)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.human = human(key, message)


_RANGE = re.compile(r"must be a (whole )?number from (\S+) to (\S+)$")


def human(key: str, message: str) -> str:
    """A config message ("session.hold_seconds = 30: must be a number from 60 to 300")
    said for a person ("Hold length: choose from 60 to 300 s.")."""
    f = BY_KEY.get(key)
    if f is None:
        return message
    head, sep, rest = message.partition(": must ")
    if not sep or not head.startswith(f"{key} ="):
        return f"{f.label}: {message}"
    rest = "must " + rest
    unit = f" {f.unit}" if f.unit else ""
    if (m := _RANGE.match(rest)) is not None:
        whole = "a whole number " if m.group(1) else ""
        return f"{f.label}: choose {whole}from {m.group(2)} to {m.group(3)}{unit}."
    if f.control == "time":
        return f"{f.label}: enter a time of day such as 19:30, or leave it empty for no nudge."
    return f"{f.label} {rest}."


def _field_of(message: str, changes: dict[str, Any]) -> str:
    """The changed field a config message is about (its key, else its section)."""
    head = message.split(" ", 1)[0]
    if head in changes:
        return head
    for key in changes:
        if head == key.split(".", 1)[0] or head.startswith(key.split(".", 1)[0] + "."):
            return key
    return next(iter(changes))


def read_text(path: Path) -> str:
    """The config file's text ('' when there is none yet)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ""
    except OSError as exc:  # a directory in its place, no permission...
        raise SettingsError("", f"{path}: cannot read it ({exc.strerror or exc}); "
                            "fix it by hand") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise SettingsError("", f"{path}: larger than {MAX_CONFIG_BYTES} bytes; edit it by hand")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError("", f"{path}: not UTF-8 text (byte {exc.start}); "
                            "fix it by hand first") from None


def _text(path: Path, seed: Path | None) -> str:
    """``path``'s text; while it does not exist yet, ``seed``'s (the file the running box
    started from: the simulator's first save starts from the config it runs)."""
    if seed is not None and seed != path and not path.exists():
        return read_text(seed)
    return read_text(path)


def current(path: Path, seed: Path | None = None) -> Config:
    """The config as the file says now (defaults where it says nothing)."""
    text = _text(path, seed)
    return parse_config(tomllib.loads(text)) if text else Config()


def validate(path: Path, changes: dict[str, Any],
             seed: Path | None = None) -> tuple[str, Config]:
    """The new file text and its config, or ``SettingsError`` naming the field.

    Only page fields may change; the check is ``parse_config`` on the whole edited file,
    so the message is the one the box would print at start-up."""
    if not changes:
        raise SettingsError("", "nothing to change")
    for key in changes:
        if key not in BY_KEY:
            raise SettingsError(key, f"unknown setting {key}; allowed: {', '.join(BY_KEY)}")
    text = _text(path, seed)
    try:
        data = tomllib.loads(text) if text else {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(next(iter(changes)), f"{path}: not valid TOML ({exc}); "
                            "fix it by hand first") from None
    for key, value in changes.items():
        section, name = key.split(".", 1)
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise SettingsError(key, f"{section} must be a table [{section}]")
        table[name] = value
    try:
        wanted = parse_config(data)
    except ConfigError as exc:
        message = str(exc)
        raise SettingsError(_field_of(message, changes), message) from None
    new_text = text
    for key, value in changes.items():
        section, name = key.split(".", 1)
        new_text = set_key(new_text, section, name, toml_value(value))
    try:
        written = parse_config(tomllib.loads(new_text))
    except (tomllib.TOMLDecodeError, ConfigError):
        written = None
    if written != wanted:
        raise SettingsError(next(iter(changes)), f"{path}: its layout cannot be edited "
                            "safely from here; change it by hand")
    return new_text, wanted


_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")


def set_key(text: str, section: str, name: str, value: str) -> str:
    """``text`` with ``name = value`` set in ``[section]`` (added when missing)."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start = next((i for i, line in enumerate(lines)
                  if (m := _HEADER.match(line)) and m.group(1) == section), None)
    if start is None:
        sep = "\n" if lines and lines[-1].strip() else ""
        return "".join(lines) + f"{sep}[{section}]\n{name} = {value}\n"
    end = next((i for i in range(start + 1, len(lines)) if _ANY_HEADER.match(lines[i])),
               len(lines))
    key_re = re.compile(rf"^(\s*){re.escape(name)}\s*=\s*(.*)$", re.S)
    for i in range(start + 1, end):
        m = key_re.match(lines[i])
        if not m:
            continue
        last = i
        if m.group(2).lstrip().startswith("[") and "]" not in m.group(2):
            while last + 1 < end and "]" not in lines[last]:
                last += 1
        lines[i:last + 1] = [f"{m.group(1)}{name} = {value}\n"]
        return "".join(lines)
    insert = end
    while insert > start + 1 and not lines[insert - 1].strip():
        insert -= 1
    lines.insert(insert, f"{name} = {value}\n")
    return "".join(lines)


def save(path: Path, changes: dict[str, Any], seed: Path | None = None) -> Config:
    """Validate ``changes`` and write them; the new config (``SettingsError`` if refused).
    A file not there yet starts from ``seed``'s text (see ``current``)."""
    text, config = validate(path, changes, seed)
    try:
        write_atomic(path, text, backup=True)
    except OSError as exc:
        raise SettingsError(next(iter(changes)),
                            f"{path}: cannot write it ({exc.strerror})") from None
    return config
