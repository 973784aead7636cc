"""Messages from outside are data: a bounded, depth-safe JSON parse and schema checks.

One helper for every listener that takes JSON from the network (the box's MQTT commands,
the studio's session and stats messages, the page's bodies): a size limit, a nesting
limit checked *before* the parser runs (so 100,000 brackets cost one linear scan, never a
``RecursionError``), strict UTF-8, no ``NaN``/``Infinity``; then small checks of each
field's type and range. Everything that fails raises ``BadPayload`` with one line saying
why; nothing here logs or retries. Pure: imports nothing impure.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from device.core.records import RELAX_FIELDS

MAX_BYTES = 64 * 1024  # a session message of 40 holds is about 8 KiB
MAX_DEPTH = 8  # the deepest message we send is 3 levels (session -> holds -> hold)
SKEW_S = 86400.0  # a date more than this far in the future is refused (no RTC on a Pi)
MAX_HOLD_S = 86400.0  # no hold is longer than a day
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class BadPayload(ValueError):
    """A message that is not what the listener accepts (one line: what and why)."""


def depth(data: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text, outside strings (a linear scan)."""
    deepest = level = 0
    for m in _BRACKET.finditer(_STRING.sub(b'""', data)):
        if m.group() in (b"[", b"{"):
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise BadPayload(f"{name} is not a number JSON allows")


def parse_json(data: bytes | str, *, max_bytes: int = MAX_BYTES,
               max_depth: int = MAX_DEPTH) -> Any:
    """``data`` as JSON, or ``BadPayload``: over ``max_bytes`` bytes, not UTF-8, nested
    deeper than ``max_depth``, ``NaN``/``Infinity``, or not JSON at all."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise BadPayload(f"{len(raw)} bytes (at most {max_bytes})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload("not UTF-8 text") from None
    found = depth(raw)
    if found > max_depth:
        raise BadPayload(f"nested {found} deep (at most {max_depth})")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:  # cannot happen after the scan; never let it out
        raise BadPayload("nested too deep") from None
    except BadPayload:
        raise
    except ValueError as exc:
        raise BadPayload(f"not JSON ({str(exc).splitlines()[0][:80]})") from None


# ---- field checks ------------------------------------------------------------------------


def number(value: Any, name: str, lo: float, hi: float) -> float:
    """A finite number (not a bool) in ``lo..hi``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadPayload(f"{name} {_shown(value)}: must be a number")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise BadPayload(f"{name} {_shown(value)}: must be from {lo:g} to {hi:g}")
    return float(value)


def integer(value: Any, name: str, lo: int, hi: int) -> int:
    """A whole number (not a bool) in ``lo..hi``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadPayload(f"{name} {_shown(value)}: must be a whole number")
    if not lo <= value <= hi:
        raise BadPayload(f"{name} {value}: must be from {lo} to {hi}")
    return value


def text(value: Any, name: str, max_len: int = 200) -> str:
    """A string of at most ``max_len`` characters, no control characters."""
    if not isinstance(value, str):
        raise BadPayload(f"{name} {_shown(value)}: must be text")
    if len(value) > max_len or any(ord(c) < 32 for c in value):
        raise BadPayload(f"{name} {_shown(value)}: must be at most {max_len} plain characters")
    return value


def when(value: Any, name: str, now: datetime, skew_s: float = SKEW_S) -> datetime:
    """An aware ISO 8601 time, not before 2000 and not more than ``skew_s`` after ``now``."""
    text(value, name, 64)
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise BadPayload(f"{name} {_shown(value)}: must be an ISO 8601 time") from None
    if t.tzinfo is None:
        raise BadPayload(f"{name} {_shown(value)}: must carry its UTC offset")
    if t < EARLIEST or t > now + timedelta(seconds=skew_s):
        raise BadPayload(f"{name} {_shown(value)}: in the future or before 2000")
    return t


def mapping(value: Any, name: str, allowed: set[str] | frozenset[str]) -> Mapping[str, Any]:
    """A JSON object whose keys are all in ``allowed``."""
    if not isinstance(value, dict):
        raise BadPayload(f"{name}: must be a JSON object, not {type(value).__name__}")
    extra = set(value) - set(allowed)
    if extra:
        raise BadPayload(f"{name}: unknown field {_shown(sorted(extra)[0])}")
    return value


def _shown(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 40 else s[:37] + "..."


# ---- the messages the studio takes ---------------------------------------------------------

STATS_FIELDS = frozenset({"sessions_this_week", "streak_days", "minutes_today", "last_session",
                          "last_outcome", "next_hold_s", "tightness", "updated"})
HOLD_FIELDS = frozenset({"leg", "round", "planned_s", "held_s", "ended", "mean", "peak",
                         "steadiness", "tightness", "overpull_s", *RELAX_FIELDS,
                         "hurt", "pre_s", "base_s"})
RELAX_RANGE = 1e6  # relaxation figures: finite and of a sane size (kg, %, s, index)
MAX_HOLDS = 64


def stats_message(value: Any, now: datetime) -> dict[str, Any]:
    """A box's retained ``stats``, checked: counts and streaks never negative, minutes
    within a day, dates not in the future. Returns the object unchanged."""
    d = mapping(value, "stats", STATS_FIELDS)
    if d.get("sessions_this_week") is not None:
        integer(d["sessions_this_week"], "sessions_this_week", 0, 7 * 48)
    if d.get("streak_days") is not None:
        integer(d["streak_days"], "streak_days", 0, 100 * 366)
    if d.get("minutes_today") is not None:
        number(d["minutes_today"], "minutes_today", 0, 1440)
    for name in ("last_session", "updated"):
        if d.get(name) is not None:
            when(d[name], name, now)
    if d.get("last_outcome") is not None:
        text(d["last_outcome"], "last_outcome", 20)
    holds = d.get("next_hold_s")
    if holds is not None:
        for leg, s in mapping(holds, "next_hold_s", {"right", "left"}).items():
            number(s, f"next_hold_s.{leg}", 0, MAX_HOLD_S)
    tightness = d.get("tightness")
    if tightness is not None:
        for name, v in mapping(tightness, "tightness", {"right", "left", "asymmetry"}).items():
            if v is not None:
                number(v, f"tightness.{name}", -RELAX_RANGE, RELAX_RANGE)
    return dict(d)


def session_message(value: Any, now: datetime) -> dict[str, Any]:
    """A box's ``session`` message, checked: an id, at most ``MAX_HOLDS`` holds of at most
    a day each, figures finite and not negative, dates from 2000 to now (plus skew), the
    end not more than a day after the start. Returns the object unchanged."""
    if not isinstance(value, dict):
        raise BadPayload(f"session: must be a JSON object, not {type(value).__name__}")
    d = value
    text(d.get("id"), "id", 128)
    if not d["id"]:
        raise BadPayload("id: must not be empty")
    started = when(d.get("started"), "started", now)
    ended = when(d.get("ended"), "ended", now)
    if not timedelta(0) <= ended - started <= timedelta(days=1):
        raise BadPayload("ended: must be after started and within a day of it")
    text(d.get("outcome"), "outcome", 20)
    text(d.get("routine"), "routine", 80)
    holds = d.get("holds")
    if not isinstance(holds, list) or len(holds) > MAX_HOLDS:
        raise BadPayload(f"holds: must be a list of at most {MAX_HOLDS}")
    for i, h in enumerate(holds):
        hold = mapping(h, f"holds[{i}]", HOLD_FIELDS)
        integer(hold.get("round"), f"holds[{i}].round", 1, 1000)
        for name in ("planned_s", "held_s"):
            number(hold.get(name), f"holds[{i}].{name}", 0, MAX_HOLD_S)
        for name in ("mean", "peak"):
            if hold.get(name) is not None:
                number(hold[name], f"holds[{i}].{name}", -1000, 1000)
        if hold.get("overpull_s") is not None:
            number(hold["overpull_s"], f"holds[{i}].overpull_s", 0, MAX_HOLD_S)
        if hold.get("steadiness") is not None:
            number(hold["steadiness"], f"holds[{i}].steadiness", 0, 100)
        for name in RELAX_FIELDS:
            if hold.get(name) is not None:
                number(hold[name], f"holds[{i}].{name}", -RELAX_RANGE, RELAX_RANGE)
        for name in ("pre_s", "base_s"):  # time in the stretch before the clock; set base
            if hold.get(name) is not None:
                number(hold[name], f"holds[{i}].{name}", 0, MAX_HOLD_S)
        if hold.get("hurt") is not None and not isinstance(hold["hurt"], bool):
            raise BadPayload(f"holds[{i}].hurt: must be true or false, not "
                             f"{_shown(hold['hurt'])}")
    return dict(d)
