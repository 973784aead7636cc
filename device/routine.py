"""The routine as data: what the voice says in each part of a session.

The built-in hamstring routine lives in ``routines/hamstring.toml``; a user can point
the config at another file with the same keys. The optional tables ([strap], and the
history's [summary], [progress] and [nudge]) default to the built-in wording.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from device.errors import ConfigError


@dataclass(frozen=True)
class Reminder:
    """One common mistake to remind of during a hold."""

    key: str
    text: str


@dataclass(frozen=True)
class Routine:
    """Every spoken line of a session; ``{leg}``/``{other}``/``{next}`` are filled in."""

    name: str
    title: str
    intro: str
    steps: tuple[str, ...]
    ready: str
    hold_start: str
    ten_left: str
    reminders: tuple[Reminder, ...]
    switch: str
    switch_auto: str
    next_round: str
    next_round_auto: str
    finish: str
    cancel: str
    summary: dict[str, str]  # pieces of the after-session summary (SUMMARY_KEYS)
    growth: str  # a leg's hold grows: {leg}, {duration}
    nudge: str  # the evening nudge, spoken when history.nudge_voice is on
    strap: dict[str, str] = field(default_factory=lambda: dict(STRAP_LINES))

    def fixed_lines(self, legs: tuple[str, ...] = ("right", "left")) -> list[str]:
        """Every line this routine can speak for these legs (for caching speech)."""
        lines: list[str] = []
        for leg in legs:
            other = "left" if leg == "right" else "right"
            for text in (self.intro, *self.steps, *(r.text for r in self.reminders)):
                lines.append(fill(text, leg=leg, other=other))
            lines.append(fill(self.switch, leg=leg, other=other, next=other))
            lines.append(fill(self.switch_auto, leg=leg, other=other, next=other))
        lines += [self.ready, self.hold_start, self.ten_left, self.finish, self.cancel]
        lines += list(self.strap.values())
        return list(dict.fromkeys(lines))


def fill(text: str, **values: object) -> str:
    """Fill ``{leg}``-style placeholders; ``{Leg}`` gives the capitalised word."""
    full: dict[str, object] = dict(values)
    for key, value in values.items():
        if isinstance(value, str):
            full[key.capitalize()] = value.capitalize()
    try:
        return text.format(**full)
    except (KeyError, IndexError, ValueError):
        return text


STRAP_LINES: dict[str, str] = {
    "bounce": "Ease off the bouncing. Find a place you can stay, and stay there.",
    "slack": "The strap has gone loose. Lift the leg back up gently, knee long.",
    "overpull": "That's a big pull. Back off a little; a stretch should never hurt.",
    "lost": "I've lost touch with the strap sensor. Carrying on without it.",
    "restored": "Strap sensor back.",
    "paused": "The hold clock waits while the strap is loose. Take up the strap again.",
    "resumed": "Good, the clock is running again.",
    "saturated": "That pull is more than the strap sensor can measure. Ease right off; "
                 "a stretch never needs that much.",
    "stuck": "The strap sensor's reading has frozen. Check its cable; carrying on without "
             "it for now.",
}

SUMMARY_KEYS = (
    "complete", "early", "empty", "leg", "leg_holds", "ended_early", "steady",
    "fairly_steady", "shaky", "first_this_week", "this_week", "streak", "week_and_streak",
    "streak_alone", "not_saved",
)
"""The pieces of the spoken summary a routine file words ([summary]; see hamstring.toml)."""

_KNOWN = {
    "name": str,
    "title": str,
    "setup": ("intro", "steps", "ready"),
    "hold": ("start", "ten_left", "reminders"),
    "switch": ("text", "auto", "next_round", "next_round_auto"),
    "finish": ("text",),
    "cancel": ("text",),
    "strap": tuple(STRAP_LINES),
    "summary": SUMMARY_KEYS,
    "progress": ("grows",),
    "nudge": ("text",),
}
_OPTIONAL = {"strap", "summary", "progress", "nudge"}


def _builtin_bytes() -> bytes:
    return resources.files("device.routines").joinpath("hamstring.toml").read_bytes()


@cache
def _builtin_data() -> dict[str, Any]:
    """The built-in routine file, parsed (the wording of tables a user file leaves out)."""
    return tomllib.loads(_builtin_bytes().decode("utf-8"))


def _need_str(where: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"routine {where} = {value!r}: must be non-empty text")
    return value


def parse_routine(data: dict, source: str = "routine") -> Routine:
    """Build a routine from parsed TOML, naming the bad key on error."""
    for key in data:
        if key not in _KNOWN:
            raise ConfigError(
                f"{source}: unknown key {key!r}; allowed: {', '.join(_KNOWN)}"
            )
    sections: dict[str, dict] = {}
    for section, keys in _KNOWN.items():
        if isinstance(keys, tuple):
            table = data.get(section, {} if section in _OPTIONAL else None)
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: missing table [{section}]")
            for key in table:
                if key not in keys:
                    raise ConfigError(
                        f"{source}: unknown key {section}.{key}; allowed: {', '.join(keys)}"
                    )
            sections[section] = table

    def text(section: str, key: str) -> str:
        return _need_str(f"{section}.{key}", sections[section].get(key))

    def worded(section: str, key: str) -> str:
        """An optional table's line: this file's, else the built-in routine's."""
        value = sections[section].get(key)
        return text(section, key) if value is not None else _builtin_data()[section][key]

    steps = sections["setup"].get("steps")
    if not isinstance(steps, list) or not steps:
        raise ConfigError(f"{source}: setup.steps must be a non-empty list of text")
    reminders_raw = sections["hold"].get("reminders", [])
    if not isinstance(reminders_raw, list):
        raise ConfigError(f"{source}: hold.reminders must be a list of {{key, text}} tables")
    reminders = []
    for i, item in enumerate(reminders_raw):
        if not isinstance(item, dict) or set(item) != {"key", "text"}:
            raise ConfigError(f"{source}: hold.reminders[{i}] must have exactly key and text")
        reminders.append(Reminder(_need_str(f"hold.reminders[{i}].key", item["key"]),
                                  _need_str(f"hold.reminders[{i}].text", item["text"])))
    return Routine(
        name=_need_str("name", data.get("name")),
        title=_need_str("title", data.get("title", data.get("name"))),
        intro=text("setup", "intro"),
        steps=tuple(_need_str(f"setup.steps[{i}]", s) for i, s in enumerate(steps)),
        ready=text("setup", "ready"),
        hold_start=text("hold", "start"),
        ten_left=text("hold", "ten_left"),
        reminders=tuple(reminders),
        switch=text("switch", "text"),
        switch_auto=text("switch", "auto"),
        next_round=text("switch", "next_round"),
        next_round_auto=text("switch", "next_round_auto"),
        finish=text("finish", "text"),
        cancel=text("cancel", "text"),
        summary={key: worded("summary", key) for key in SUMMARY_KEYS},
        growth=worded("progress", "grows"),
        nudge=worded("nudge", "text"),
        strap={key: _need_str(f"strap.{key}", sections["strap"].get(key, default))
               for key, default in STRAP_LINES.items()},
    )


def load_routine(path: str | Path | None = None) -> Routine:
    """The routine at ``path``, or the built-in hamstring routine."""
    if path:
        from device.config import read_toml_file

        p = Path(path)
        return parse_routine(read_toml_file(p, f"routine.file = {str(p)!r}"), str(p))
    return parse_routine(tomllib.loads(_builtin_bytes().decode("utf-8")), "built-in routine")
