"""The event transcript: one JSON object per line, and a readable form for people."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

from device.box.bus import EventBus
from device.box.events import CATALOGUE

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per line


class JsonLines:
    """Writes each event as one JSON line to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._write = stream.write

    def __call__(self, event: dict[str, Any]) -> None:
        self._write(_ENCODE(event) + "\n")


def describe(event: dict[str, Any]) -> str | None:
    """One readable line for an event, or None for the noisy ones (light levels)."""
    kind = event["kind"]
    t = event["t"]
    stamp = f"{int(t // 60):02d}:{t % 60:06.3f}"
    if kind == "state":
        leg = f" ({event['leg']} leg, round {event['round']})" if event.get("leg") else ""
        return f"{stamp}  [{event['state']}]{leg}"
    if kind == "speak":
        return f"{stamp}  voice: {event['text']}"
    if kind == "buzz":
        return f"{stamp}  buzzer: {event['name']} ({event['seconds']:g} s)"
    if kind == "button":
        return f"{stamp}  button: {event['action']}"
    if kind == "hold":
        return (f"{stamp}  hold {event['ended']}: {event['leg']} leg, "
                f"{event['held_s']:.3f} s of {event['planned_s']:g} s")
    if kind in ("led", "tension"):
        return None
    rest = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("t", "kind"))
    return f"{stamp}  {kind}: {rest}"


class Readable:
    """Prints the readable form of each event to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: dict[str, Any]) -> None:
        line = describe(event)
        if line is not None:
            self.stream.write(line + "\n")
            self.stream.flush()


def attach(bus: EventBus, listener: Callable[[dict[str, Any]], None]) -> None:
    """The transcript add-on: ``listener`` gets every event (light frames too) as its
    JSON dict, in the loop's thread (in-loop: it must be quick)."""
    bus.subscribe(lambda event: listener(event.to_json()), CATALOGUE.keys(),
                  name=f"transcript:{type(listener).__name__}")
