"""The event transcript: one JSON object per line, and a readable form for people."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Protocol

from device.box.events import CATALOGUE, Event, LedEvent
from device.box.port import BoxPort

_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode  # one encoder


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode(event: dict[str, Any]) -> str:
    """One event as one line of JSON; a figure that is not finite is written as null."""
    try:
        return _ENCODE(event)
    except ValueError:
        return _ENCODE(_finite(event))


class Writable(Protocol):
    """Where a transcript goes: a text stream (a file, stdout, a guarded stream)."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


_NUMBER = (float, int)


def _plain(x: Any) -> bool:
    """True for a number ``json`` writes as its ``repr`` (finite int or float)."""
    return type(x) in _NUMBER and x - x == 0  # x - x is nan for inf and nan


class JsonLines:
    """Writes each event as one JSON line to ``stream``.

    Light frames (most lines of a hold) are formatted directly: the same text as the
    JSON encoder's (``repr`` of a finite number is what ``json`` writes), at a fraction
    of its cost."""

    def __init__(self, stream: Writable) -> None:
        self.stream = stream
        self._write = stream.write

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "led" and len(event) == 3:
            self.led(event.get("t"), event.get("value"))
            return
        self._write(encode(event) + "\n")

    def led(self, t: Any, value: Any) -> None:
        """A light frame's line, without building its dict (``attach`` calls this)."""
        if _plain(t) and _plain(value):
            self._write(f'{{"t":{t!r},"kind":"led","value":{value!r}}}\n')
        else:
            self._write(encode({"t": t, "kind": "led", "value": value}) + "\n")


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

    def __init__(self, stream: Writable) -> None:
        self.stream = stream

    def __call__(self, event: dict[str, Any]) -> None:
        line = describe(event)
        if line is not None:
            self.stream.write(line + "\n")
            self.stream.flush()


class Transcript:
    """A reader of every event (light frames too), as the transcript's dicts; a light
    frame goes straight to a listener with a ``led(t, value)`` method (``JsonLines``:
    most lines of a hold, written without building their dict)."""

    def __init__(self, port: BoxPort, listener: Callable[[dict[str, Any]], None]) -> None:
        self.port = port
        led = getattr(listener, "led", None)
        if callable(led):
            def handler(event: Event) -> None:
                if type(event) is LedEvent:
                    led(event.t, event.value)
                else:
                    listener(event.transcript())
        else:
            def handler(event: Event) -> None:
                listener(event.transcript())
        self.sub = port.subscribe(handler, CATALOGUE.values(),
                                  name=f"transcript:{type(listener).__name__}")

    def close(self) -> None:
        """Nothing to release: the reader keeps hearing the box to its last light frame."""


def attach(port: BoxPort, listener: Callable[[dict[str, Any]], None]) -> Transcript:
    """The transcript add-on: ``listener`` gets every event as its transcript dict, in the
    box's thread (in-loop: it must be quick)."""
    return Transcript(port, listener)
