"""The catalogue of outward events: one small frozen dataclass per kind.

The loop publishes these on the bus (``device/box/bus.py``); every add-on, screen and
network output reads them. ``t`` is seconds since the loop's origin (the injected
clock). ``to_json()`` is the whole event (``Event.from_json`` makes it again);
``transcript()`` is the transcript's line: ``{"t", "kind", ...fields}`` in field order,
exactly the schema in the README. A new event is one dataclass here and one
``publish`` call where it happens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from device.core.records import HoldRecord
from device.core.tightness import session_tightness

# Kinds a slow subscriber may lose when it falls behind (the newest value replaces them).
LOSSY_KINDS = frozenset({"led", "tension"})
# Kinds only delivered to subscribers that name them (50 Hz light frames).
NOISY_KINDS = frozenset({"led"})


@dataclass(frozen=True)
class Event:
    """Base of every event: ``t`` in s since the loop's origin."""

    t: float
    kind: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        """The whole event as a JSON-able dict: t, kind, then the fields in order
        (``from_json`` makes it again)."""
        names = _NAMES.get(type(self))
        if names is None:
            names = _NAMES[type(self)] = tuple(f.name for f in fields(self) if f.name != "t")
        out: dict[str, Any] = {"t": self.t, "kind": self.kind}
        for name in names:
            out[name] = getattr(self, name)
        return out

    def transcript(self) -> dict[str, Any]:
        """The transcript's line (the README's schema): ``to_json`` unless a kind keeps its
        line shorter."""
        return self.to_json()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        """The event ``data`` describes (its ``kind`` picks the class); ``ValueError`` when
        the kind is unknown or a field is missing."""
        kind = CATALOGUE.get(str(data.get("kind")))
        if kind is None:
            raise ValueError(f"unknown event kind {data.get('kind')!r}")
        if cls is not Event and kind is not cls:
            raise ValueError(f"a {data.get('kind')!r} event is not a {cls.kind!r} event")
        try:
            return kind._from_fields(data)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{kind.kind} event: {exc}") from None

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> Event:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.init and f.name in data})


_NAMES: dict[type, tuple[str, ...]] = {}


@dataclass(frozen=True)
class StateEvent(Event):
    """The session entered ``state`` (``leg`` and ``round`` where they apply)."""

    state: str
    leg: str | None
    round: int
    kind: ClassVar[str] = "state"


@dataclass(frozen=True)
class ButtonEvent(Event):
    """A press told apart on the clock: ``action`` is press or long."""

    action: str
    kind: ClassVar[str] = "button"


@dataclass(frozen=True)
class SpeakEvent(Event):
    """A line starts now; ``duration_s`` is its expected length (s)."""

    text: str
    key: str
    duration_s: float
    kind: ClassVar[str] = "speak"


@dataclass(frozen=True)
class SpeakDropped(Event):
    """A line whose moment passed before it could be said."""

    key: str
    text: str
    kind: ClassVar[str] = "speak_dropped"


@dataclass(frozen=True)
class SpeakCut(Event):
    """The line being said was cut off: a press moved on (``why`` = hush), or a more
    urgent line interrupted it (``why`` = interrupted; it is said again later if its
    moment has not passed)."""

    key: str
    why: str
    kind: ClassVar[str] = "speak_cut"


@dataclass(frozen=True)
class TightnessEvent(Event):
    """The answer to "how tight was that?" after ``leg``'s hold: easy, tight, very_tight
    or none; ``next_s`` is that leg's next hold (s)."""

    leg: str
    round: int
    answer: str
    next_s: float
    kind: ClassVar[str] = "tightness"


@dataclass(frozen=True)
class BuzzEvent(Event):
    """The buzzer sounds ``name`` (start, tick, count, end, cancel) for ``seconds``."""

    name: str
    seconds: float
    kind: ClassVar[str] = "buzz"


@dataclass(frozen=True)
class LedEvent(Event):
    """The light's duty changed to ``value`` (0..1, 4 decimals)."""

    value: float
    kind: ClassVar[str] = "led"

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "kind": "led", "value": self.value}


@dataclass(frozen=True)
class HoldEvent(Event):
    """A hold is over: planned and held (s), how it ended, and the strap's figures
    (mean and peak in kg or rel, steadiness 0..100) when a strap was read; ``pre_s`` (s in
    the stretch before the hold clock) from the strap, else from the set-up's plan."""

    leg: str
    round: int
    planned_s: float
    held_s: float
    ended: str
    strap: tuple[tuple[str, float | None], ...] = ()
    kind: ClassVar[str] = "hold"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "t": self.t, "kind": self.kind, "leg": self.leg, "round": self.round,
            "planned_s": self.planned_s, "held_s": self.held_s, "ended": self.ended,
        }
        out.update(self.strap)
        return out

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> Event:
        known = {"t", "kind", "leg", "round", "planned_s", "held_s", "ended"}
        strap = tuple((k, v) for k, v in data.items() if k not in known)
        return cls(data["t"], data["leg"], data["round"], data["planned_s"], data["held_s"],
                   data["ended"], strap)

    @property
    def figures(self) -> dict[str, float | None]:
        """The strap's figures as a dict (empty without a strap)."""
        return dict(self.strap)


@dataclass(frozen=True)
class SessionEvent(Event):
    """The session is over: ``outcome`` is complete, cancelled or interrupted; ``holds``
    is how many. Beyond the transcript's fields it carries each hold (``results``) and
    its start and end on the loop's clock (s), for the history and the network."""

    outcome: str
    holds: int
    results: tuple[HoldRecord, ...] = ()
    started_at: float = 0.0
    ended_at: float = 0.0
    kind: ClassVar[str] = "session"

    def to_json(self) -> dict[str, Any]:
        out = self.transcript()
        out.update(results=[asdict(r) for r in self.results], started_at=self.started_at,
                   ended_at=self.ended_at)
        return out

    def transcript(self) -> dict[str, Any]:
        out = {"t": self.t, "kind": self.kind, "outcome": self.outcome, "holds": self.holds}

        legs = session_tightness(self.results)  # with a strap fit: each leg and R-L
        if legs is not None:
            out["legs"] = legs
        return out

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> Event:
        results = tuple(HoldRecord(**r) for r in data.get("results", ()))
        return cls(data["t"], data["outcome"], data["holds"], results,
                   data.get("started_at", 0.0), data.get("ended_at", 0.0))


@dataclass(frozen=True)
class TensionEvent(Event):
    """A strap reading (10 per s at most): ``value`` in ``units`` (kg or rel)."""

    value: float
    units: str
    kind: ClassVar[str] = "tension"


@dataclass(frozen=True)
class CoachEvent(Event):
    """The strap coach noticed ``cue``: bounce, slack or overpull."""

    cue: str
    kind: ClassVar[str] = "coach"


@dataclass(frozen=True)
class SensorEvent(Event):
    """The strap sensor's ``status``: lost, restored, tared, tare_kept (and later ones)."""

    status: str
    kind: ClassVar[str] = "sensor"


@dataclass(frozen=True)
class HoldClockEvent(Event):
    """The strap hold clock stopped or ran again; ``gave_up`` when a waiting hold ended."""

    running: bool
    gave_up: bool = False
    kind: ClassVar[str] = "hold_clock"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.t, "kind": self.kind, "running": self.running}
        if self.gave_up:
            out["gave_up"] = True
        return out


@dataclass(frozen=True)
class HistoryEvent(Event):
    """The session record was written (``saved``) or kept for later."""

    outcome: str
    saved: bool
    kind: ClassVar[str] = "history"


@dataclass(frozen=True)
class NudgeEvent(Event):
    """The idle nudge light went on or off."""

    on: bool
    kind: ClassVar[str] = "nudge"


CATALOGUE: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (StateEvent, ButtonEvent, SpeakEvent, SpeakDropped, SpeakCut, BuzzEvent,
                LedEvent, HoldEvent, SessionEvent, TensionEvent, CoachEvent, SensorEvent,
                HoldClockEvent, HistoryEvent, NudgeEvent, TightnessEvent)
}
