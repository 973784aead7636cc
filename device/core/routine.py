"""The routine as data: what the voice says in each part of a session.

The built-in hamstring routine lives in ``routines/hamstring.toml``; a user can point
the config at another file with the same keys. The optional tables ([strap], and the
history's [summary], [progress] and [nudge]) default to the built-in wording.
"""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from device.core.config import read_toml_file
from device.core.errors import ConfigError


@dataclass(frozen=True)
class Reminder:
    """One common mistake to remind of during a hold."""

    key: str
    text: str


@dataclass(frozen=True)
class Step:
    """One set-up step and the pause after it (s; None: ``session.setup_pause_seconds``)."""

    text: str
    pause_s: float | None = None


HOLD_LINES = ("halfway", "minute_left", "halfway_minute", "breath_in", "breath_out")
ASK_LINES = ("question", "easy", "tight", "very_tight", "next_hold", "release", "hurt")
SWITCH_READY = ("ready", "ready_auto", "ready_round", "ready_round_auto", "ready_hurt",
                "ready_hurt_end")
IDLE_LINES = ("hold_length",)


@dataclass(frozen=True)
class Routine:
    """Every spoken line of a session; ``{leg}``/``{other}``/``{next}`` are filled in."""

    name: str
    title: str
    intro: str
    steps: tuple[Step, ...]
    ready: str
    hold_start: str  # {duration}: the hold's length in words
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
    safety: str = ""  # the pain-stop line, on every first leg
    press_hint: str = ""  # setup_advance = "press": how to move on
    switch_intro: str = "{Leg} leg."
    quick_intro: str = "{Leg} leg."
    quick_first: str = ""  # a quick session's first leg: hook the strap (first step)
    settle: str = ""  # a later leg's quiet wait before its hold (the legs' set-ups even out)
    round_intro: str = "Round {round}. {Leg} leg."  # the first leg of every later round
    after_ask: dict[str, str] = field(default_factory=dict)  # SWITCH_READY: after the question
    stretch_steps: tuple[Step, ...] = ()  # the rest of a set-up once the leg is in the stretch
    leg_up: int = 0  # the (1-based) step of ``steps`` that raises the leg (0: none)
    switch_leg_up: int = 0  # ... and of ``switch_steps``
    switch_steps: tuple[Step, ...] = ()  # later legs: only what changes
    hold: dict[str, str] = field(default_factory=dict)  # HOLD_LINES
    ask: dict[str, str] = field(default_factory=dict)  # ASK_LINES
    idle: dict[str, str] = field(default_factory=dict)  # IDLE_LINES

    def fixed_lines(self, legs: tuple[str, ...] = ("right", "left")) -> list[str]:
        """Every line this routine can speak for these legs (for caching speech)."""
        lines: list[str] = []
        for leg in legs:
            other = "left" if leg == "right" else "right"
            for text in (self.intro, self.switch_intro, self.quick_intro, self.safety,
                         self.quick_first,
                         *(s.text for s in self.steps), *(s.text for s in self.switch_steps),
                         *(r.text for r in self.reminders)):
                lines.append(fill(text, leg=leg, other=other))
            lines.append(fill(self.ask.get("release", ""), leg=leg))
            lines += [fill(v, next=other) for k, v in self.after_ask.items() if "round" not in k]
            lines.append(fill(self.switch, leg=leg, other=other, next=other))
            lines.append(fill(self.switch_auto, leg=leg, other=other, next=other))
        lines += [self.ready, self.ten_left, self.finish, self.cancel, self.press_hint]
        for seconds in (60, 90, 120, 150, 180, 210, 240, 270, 300):
            lines.append(fill(self.hold_start, duration=spoken_duration(seconds)))
        lines += [v for k, v in self.hold.items() if "{" not in v]
        lines += [v for k, v in self.ask.items() if k not in ("next_hold", "release")]
        lines += list(self.strap.values())
        return [line for line in dict.fromkeys(lines) if line]


_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
            "ten")


def _number(n: int) -> str:
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)


def spoken_number(n: int) -> str:
    """``n`` in words up to ten ("two"), else digits."""
    return _number(n)


def spoken_duration(seconds: float) -> str:
    """A hold's length as said: "one minute", "ninety seconds", "two and a half minutes",
    "three minutes and twenty seconds"."""
    s = max(0, int(round(seconds)))
    m, r = divmod(s, 60)
    if m == 0:
        return f"{s} seconds"
    if s == 90:
        return "ninety seconds"
    minutes = "one minute" if m == 1 else f"{_number(m)} minutes"
    if r == 0:
        return minutes
    if r == 30:
        return f"{_number(m)} and a half minutes"
    return f"{minutes} and {r} seconds"


FIELDS = ("leg", "other", "next", "duration", "round", "days", "holds", "score", "sessions",
          "streak", "week")
"""The placeholders a routine line may use (each also capitalised: ``{Leg}``). Nothing
else: no format spec (``{leg:>9}``), no conversion (``{leg!r}``), no attribute or index
(``{leg.__class__}``), so a line costs what its words cost and says only words."""
_ALLOWED = frozenset(FIELDS) | frozenset(f.capitalize() for f in FIELDS)


def check_line(text: str) -> str | None:
    """Why ``text`` is not a line a routine may hold, or None when it is fine."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError:
        return "a lone { or }; write {{ or }} for a brace"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + \
            (f":{spec}" if spec else "") + "}"
        if name not in _ALLOWED:
            return (f"unknown placeholder {shown[:40]}; allowed: "
                    + ", ".join("{" + f + "}" for f in FIELDS))
        if spec or conversion:
            return f"{shown[:40]}: no format spec or conversion; write {{{name}}}"
    return None


def fill(text: str, **values: object) -> str:
    """Fill ``{leg}``-style placeholders; ``{Leg}`` gives the capitalised word. Only
    plain known placeholders are filled; anything else stays as written (a line is
    checked when its routine is loaded, see ``check_line``)."""
    full: dict[str, object] = dict(values)
    for key, value in values.items():
        if isinstance(value, str):
            full[key.capitalize()] = value.capitalize()
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError:
        return text
    out: list[str] = []
    for literal, name, spec, conversion in parts:
        out.append(literal)
        if name is None:
            continue
        if name in full and not spec and not conversion:
            out.append(str(full[name]))
        else:  # never evaluated: no spec, no attribute, no index
            out.append("{" + name + (f"!{conversion}" if conversion else "")
                       + (f":{spec}" if spec else "") + "}")
    return "".join(out)


STRAP_LINES: dict[str, str] = {
    "bounce": "Ease off the bouncing. Find a place you can stay, and stay there.",
    "slack": "The strap has gone loose. Lift the leg back up gently, knee long.",
    "overpull": "Too much pull. Ease off; a stretch never hurts.",
    "overpull_again": "Still pulling too hard. Ease off a little.",
    "lost": "I've lost touch with the strap sensor. Carrying on without it.",
    "restored": "Strap sensor back.",
    "paused": "The hold clock waits while the strap is loose. Take up the strap again.",
    "resumed": "Good, the clock is running again.",
    "yank": "Gently. No sudden pulls on the strap; ease into it slowly.",
    "eased": "Good, that is the pull to stay with.",
    "stop_ask": "The leg is down again. Do you want to stop? Hold the button to stop, or "
                "press it to carry on.",
    "stop_go_on": "Carrying on. Lift the leg gently, knee long.",
    "stop_ended": "Let's end this hold here. Lower the leg and rest.",
    "paused_end": "The strap has stayed loose, so this hold ends here. Rest the leg.",
    "saturated": "That pull is more than the strap sensor can measure. Ease right off; "
                 "a stretch never needs that much.",
    "stuck": "The strap sensor's reading has frozen. Check its cable; carrying on without "
             "it for now.",
}

SUMMARY_KEYS = (
    "complete", "early", "empty", "leg", "leg_holds", "ended_early", "steady",
    "fairly_steady", "shaky", "overpulled", "first_this_week", "this_week", "streak",
    "week_and_streak", "streak_alone", "not_saved",
)
"""The pieces of the spoken summary a routine file words ([summary]; see hamstring.toml)."""

_KNOWN = {
    "name": str,
    "title": str,
    "setup": ("intro", "steps", "ready", "safety", "press_hint", "switch_intro",
              "quick_intro", "switch_steps", "quick_first", "round_intro",
              "stretch_steps", "leg_up", "switch_leg_up", "settle"),
    "hold": ("start", "ten_left", "reminders", *HOLD_LINES),
    "ask": ASK_LINES,
    "idle": IDLE_LINES,
    "switch": ("text", "auto", "next_round", "next_round_auto", *SWITCH_READY),
    "finish": ("text",),
    "cancel": ("text",),
    "strap": tuple(STRAP_LINES),
    "summary": SUMMARY_KEYS,
    "progress": ("grows",),
    "nudge": ("text",),
}
_OPTIONAL = {"strap", "summary", "progress", "nudge", "ask", "idle"}


def _builtin_bytes() -> bytes:
    return resources.files("device.core.routines").joinpath("hamstring.toml").read_bytes()


@cache
def _builtin_data() -> dict[str, Any]:
    """The built-in routine file, parsed (the wording of tables a user file leaves out)."""
    return tomllib.loads(_builtin_bytes().decode("utf-8"))


def _need_str(where: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"routine {where} = {value!r}: must be non-empty text")
    why = check_line(value)
    if why is not None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise ConfigError(f"routine {where} = {shown!r}: {why}")
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

    def steps_of(key: str) -> tuple[Step, ...]:
        raw = sections["setup"].get(key)
        if raw is None and key != "steps":
            raw = _builtin_data()["setup"][key]
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{source}: setup.{key} must be a non-empty list of text or "
                              "{text, pause} tables")
        out = []
        for i, item in enumerate(raw):
            where = f"setup.{key}[{i}]"
            if isinstance(item, dict):
                if not set(item) <= {"text", "pause"} or "text" not in item:
                    raise ConfigError(f"{source}: {where} must have text and an optional pause")
                pause = item.get("pause")
                if pause is not None and (isinstance(pause, bool)
                                          or not isinstance(pause, (int, float))
                                          or not 0 <= pause <= 60):
                    raise ConfigError(f"{source}: {where}.pause = {pause!r}: must be a number "
                                      "of seconds from 0 to 60")
                out.append(Step(_need_str(f"{where}.text", item["text"]),
                                None if pause is None else float(pause)))
            else:
                out.append(Step(_need_str(where, item)))
        return tuple(out)

    def step_number(key: str, of: str) -> int:
        """A 1-based step number of setup.``of`` (0: none); the built-in routine's when
        this file has no such key and uses the built-in steps' count."""
        value = sections["setup"].get(key)
        if value is None:
            value = _builtin_data()["setup"][key] if of == "switch_steps" or \
                "steps" not in sections["setup"] else 0
        count = len(steps_of(of))
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= count:
            raise ConfigError(f"{source}: setup.{key} = {value!r}: must be a step number of "
                              f"setup.{of}, 1 to {count} (0: none)")
        return value

    def optional(section: str, key: str) -> str:
        """A line newer than the routine format: this file's, else the built-in one."""
        value = sections[section].get(key)
        if value is not None:
            return text(section, key)
        data = _builtin_data().get(section, {})
        return data[key]
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
        steps=steps_of("steps"),
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
        safety=optional("setup", "safety"),
        press_hint=optional("setup", "press_hint"),
        switch_intro=optional("setup", "switch_intro"),
        quick_intro=optional("setup", "quick_intro"),
        quick_first=optional("setup", "quick_first"),
        settle=optional("setup", "settle"),
        round_intro=optional("setup", "round_intro"),
        after_ask={key: optional("switch", key) for key in SWITCH_READY},
        stretch_steps=steps_of("stretch_steps"),
        leg_up=step_number("leg_up", "steps"),
        switch_leg_up=step_number("switch_leg_up", "switch_steps"),
        switch_steps=steps_of("switch_steps"),
        hold={key: optional("hold", key) for key in HOLD_LINES},
        ask={key: optional("ask", key) for key in ASK_LINES},
        idle={key: optional("idle", key) for key in IDLE_LINES},
    )


def load_routine(path: str | Path | None = None) -> Routine:
    """The routine at ``path``, or the built-in hamstring routine."""
    if path:

        p = Path(path)
        return parse_routine(read_toml_file(p, f"routine.file = {str(p)!r}"), str(p))
    return parse_routine(tomllib.loads(_builtin_bytes().decode("utf-8")), "built-in routine")
