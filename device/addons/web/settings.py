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

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]


FIELDS: tuple[Field, ...] = (
    Field("session.hold_seconds", "Hold length", "s"),
    Field("session.rounds", "Rounds"),
    Field("session.legs", "Leg order"),
    Field("breath.inhale", "Breathe in", "s"),
    Field("breath.hold_in", "Pause full", "s"),
    Field("breath.exhale", "Breathe out", "s"),
    Field("breath.hold_out", "Pause empty", "s"),
    Field("voice.enabled", "Voice"),
    Field("voice.rate", "Speaking rate", "words/min"),
    Field("voice.volume", "Volume", "0..1"),
    Field("history.nudge_at", "Nudge after", "HH:MM"),
    Field("sensor.overpull_max_kg", "Strap ceiling", "kg"),
    Field("sensor.overpull_max_rel", "Strap ceiling before calibration", "rel"),
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


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


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
        }
        if "range" in meta:
            item["min"], item["max"] = meta["range"]
        if meta.get("legs"):
            item["choices"] = [list(c) for c in LEG_ORDERS]
        out.append(item)
    return out


class SettingsError(Exception):
    """A change was refused: ``key`` is the page field to show ``message`` beside."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


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


def current(path: Path) -> Config:
    """The config as the file says now (defaults where it says nothing)."""
    text = read_text(path)
    return parse_config(tomllib.loads(text)) if text else Config()


def validate(path: Path, changes: dict[str, Any]) -> tuple[str, Config]:
    """The new file text and its config, or ``SettingsError`` naming the field.

    Only page fields may change; the check is ``parse_config`` on the whole edited file,
    so the message is the one the box would print at start-up."""
    if not changes:
        raise SettingsError("", "nothing to change")
    for key in changes:
        if key not in BY_KEY:
            raise SettingsError(key, f"unknown setting {key}; allowed: {', '.join(BY_KEY)}")
    text = read_text(path)
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


def save(path: Path, changes: dict[str, Any]) -> Config:
    """Validate ``changes`` and write them; the new config (``SettingsError`` if refused)."""
    text, config = validate(path, changes)
    try:
        write_atomic(path, text, backup=True)
    except OSError as exc:
        raise SettingsError(next(iter(changes)),
                            f"{path}: cannot write it ({exc.strerror})") from None
    return config
