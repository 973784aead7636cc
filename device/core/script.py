"""Headless scripts: ``ACTION@SECONDS`` items that stand in for a person at the box."""

from __future__ import annotations

import math
from dataclasses import dataclass

from device.core.errors import ConfigError

PRESS_S = 0.1  # a short press is held this long (s)
MAX_AT_S = 7 * 24 * 3600.0  # the latest a scripted action can be (s), as for --until


class ScriptError(ConfigError):
    """A script item that cannot be understood."""

    exit_code = 2


@dataclass(frozen=True)
class Action:
    """One scripted input: ``name`` at ``at`` seconds, with an optional ``arg``."""

    name: str
    at: float
    arg: str = ""


ACTIONS: dict[str, str] = {
    "press": "a short press (0.1 s)",
    "long": "a long press (long-press time + 0.1 s)",
}


SENSOR_ACTIONS: dict[str, str] = {
    **ACTIONS,
    "tension": "tension@SECONDS:KG, a steady pull from then on",
    "bounce": "bounce@SECONDS:DURATION, bouncing for DURATION seconds",
    "unplug": "unplug@SECONDS, the sensor's cable pulled",
    "replug": "replug@SECONDS, plugged back in",
}


ARG_LIMITS = {
    "tension": (0.0, 200.0, "the pull (kg)"),
    "bounce": (0.1, 600.0, "the bouncing time (s)"),
}


def parse_script(text: str, known: dict[str, str] | None = None) -> list[Action]:
    """Parse ``press@1,long@200,...`` into actions sorted by time."""
    known = known or ACTIONS
    actions: list[Action] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, when = item.partition("@")
        arg = ""
        if ":" in when:
            when, arg = when.split(":", 1)
        if not sep or name not in known:
            allowed = ", ".join(f"{k}@SECONDS" for k in known)
            if name in SENSOR_ACTIONS:
                allowed += f" ({name} needs --sensor)"
            raise ScriptError(f"script item {item!r}: must be one of {allowed}")
        try:
            at = float(when)
        except ValueError:
            raise ScriptError(
                f"script item {item!r}: {when!r} is not a number of seconds"
            ) from None
        if not (math.isfinite(at) and 0 <= at <= MAX_AT_S):
            raise ScriptError(f"script item {item!r}: time must be a number of seconds "
                              f"from 0 to {MAX_AT_S:g} (a week)")
        if name in ("tension", "bounce") and arg:
            try:
                value = float(arg)
            except ValueError:
                raise ScriptError(f"script item {item!r}: {arg!r} is not a number") from None
            lo, hi, what = ARG_LIMITS[name]
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ScriptError(f"script item {item!r}: {what} must be from {lo:g} to {hi:g}")
        if name == "tension" and not arg:
            raise ScriptError(f"script item {item!r}: must be tension@SECONDS:KG")
        actions.append(Action(name, at, arg))
    return sorted(actions, key=lambda a: a.at)
