"""A date the box can trust without a real-time clock.

A Pi has no battery-backed clock: without a network it boots with the time it last saved
(or 1970), and dates, streaks, "this week" and the nudge move with it. This module decides,
from an injected ``TimeSource``, whether the wall clock can be trusted, and what to do
about the sessions recorded while it could not:

- the clock is *synced* when the system says so (systemd-timesyncd's
  ``/run/systemd/timesync/synchronized``, or the kernel's ``adjtimex`` status);
- while it is not, a paired phone opening the page lends its time (``phone``): the phone
  knows the date;
- either way the box keeps a *reference* for this boot: true time = monotonic seconds +
  offset. A session recorded before there was one is stamped ``untrusted`` with its boot id
  and monotonic start; once a reference arrives in the same boot its dates are
  ``corrected`` (the monotonic clock did not jump, only the wall clock did). A session from
  a boot that never got a reference stays ``untrusted``: kept, marked, never counted in a
  streak or a week.

Pure: the system is read by ``device.box.timesource.SystemTimeSource``, injected.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

SYNCED = "synced"  # the system clock was synchronized when the session started
PHONE = "phone"  # not synchronized; dated from a paired phone's time this boot
CORRECTED = "corrected"  # recorded untrusted, dates moved once a reference came this boot
UNTRUSTED = "untrusted"  # no reference in its boot: the date may be wrong (kept, marked)
CLOCKS = (SYNCED, PHONE, CORRECTED, UNTRUSTED)
TRUSTED = (SYNCED, PHONE, CORRECTED)

# A phone's time before this is not believed (a phone with its own clock wrong).
EARLIEST = datetime(2025, 1, 1, tzinfo=UTC)
# Nor one further than this from a synchronized clock's (for the page's message).
PHONE_SKEW_NOTED_S = 120.0


class TimeSource(Protocol):
    """What the box reads about time (a fake one in tests)."""

    def wall(self) -> datetime:
        """The system's wall clock (aware)."""
        ...

    def monotonic(self) -> float:
        """Seconds of a clock that never jumps, from this boot's start."""
        ...

    def boot_id(self) -> str:
        """This boot's id (a new one each boot)."""
        ...

    def synchronized(self) -> bool | None:
        """True when the system clock is synchronized, False when not, None if unknown."""
        ...


@dataclass(frozen=True)
class Stamp:
    """How a session's dates were known: one of ``CLOCKS``, the boot it was recorded in and
    the monotonic seconds at its start (to correct it later in the same boot)."""

    clock: str
    boot_id: str
    mono_s: float


@dataclass(frozen=True)
class Reference:
    """True time in this boot = monotonic seconds + ``offset_s`` (from ``kind``: synced or
    phone); ``at`` is when it was taken (true time)."""

    kind: str
    boot_id: str
    offset_s: float
    at: datetime


def _epoch_s(dt: datetime) -> float:
    return dt.timestamp()


class TimeTrust:
    """Whether the wall clock can be trusted now, the stamp for a session, the correction of
    the sessions recorded before it could (thread-safe; pure over its ``TimeSource``)."""

    def __init__(self, source: TimeSource, recheck_s: float = 1.0) -> None:
        self.source = source
        self.recheck_s = recheck_s  # ask the source at most this often (monotonic s)
        self._lock = threading.Lock()
        self._ref: Reference | None = None
        self._boot = source.boot_id()
        self._asked: float | None = None
        self._lent: list[Callable[[Reference], object]] = []

    def when_lent(self, call: Callable[[Reference], object]) -> None:
        """Call ``call(reference)`` each time a phone's time is taken (in the thread that
        handed it in, never the box's loop): the history dates this boot's sessions."""
        self._lent.append(call)

    @property
    def reference(self) -> Reference | None:
        """The reference of this boot, if any."""
        with self._lock:
            return self._ref

    def check(self) -> bool:
        """Look at the system clock; True when time can be trusted now (a reference exists).
        A synchronized clock replaces a phone's reference (it is the better one)."""
        mono = self.source.monotonic()
        with self._lock:
            if self._asked is not None and 0 <= mono - self._asked < self.recheck_s:
                return self._ref is not None
            self._asked = mono
        synced = self.source.synchronized() is True
        with self._lock:
            if synced:
                wall, mono = self.source.wall(), self.source.monotonic()
                self._ref = Reference(SYNCED, self._boot, _epoch_s(wall) - mono, wall)
            return self._ref is not None

    def phone_time(self, phone: datetime) -> Reference | None:
        """A paired phone's time (aware), read as it arrived. Used when the clock is not
        synchronized and the phone's time is plausible; returns the reference in effect."""
        if phone.tzinfo is None:
            raise ValueError("the phone's time must be aware")
        if self.check() and self.reference is not None and self.reference.kind == SYNCED:
            return self.reference
        if phone < EARLIEST:
            return self.reference
        with self._lock:
            mono = self.source.monotonic()
            self._ref = ref = Reference(PHONE, self._boot, _epoch_s(phone) - mono, phone)
        for call in list(self._lent):
            call(ref)
        return ref

    def now(self) -> datetime | None:
        """The time to date things with: the system's when synced, else from the
        reference; None when nothing can be trusted (the caller keeps the wall clock's and
        marks it)."""
        self.check()
        with self._lock:
            ref = self._ref
        if ref is None:
            return None
        if ref.kind == SYNCED:
            return self.source.wall()
        return datetime.fromtimestamp(self.source.monotonic() + ref.offset_s, UTC)

    def stamp(self, mono_s: float | None = None) -> Stamp:
        """The stamp of a session starting at monotonic ``mono_s`` (default: now)."""
        trusted = self.check()
        with self._lock:
            kind = self._ref.kind if trusted and self._ref else UNTRUSTED
            mono = self.source.monotonic() if mono_s is None else mono_s
            return Stamp(kind, self._boot, mono)

    def date(self, wall: datetime, stamp: Stamp) -> datetime:
        """``wall`` (a time read from the system clock at monotonic ``stamp.mono_s``) as the
        trusted time: itself when synced, moved by the phone's offset when the reference
        is the phone's."""
        with self._lock:
            ref = self._ref
        if stamp.clock != PHONE or ref is None or ref.boot_id != stamp.boot_id:
            return wall
        return datetime.fromtimestamp(stamp.mono_s + ref.offset_s, UTC).astimezone(wall.tzinfo)

    def correction(self, started: datetime, stamp: Stamp) -> timedelta | None:
        """How far to move an ``untrusted`` session started at ``started`` (as the wall clock
        read then): None when it cannot be corrected (another boot, no reference yet)."""
        with self._lock:
            ref = self._ref
        if stamp.clock != UNTRUSTED or ref is None or stamp.boot_id != ref.boot_id:
            return None
        true_start = stamp.mono_s + ref.offset_s
        return timedelta(seconds=true_start - _epoch_s(started))
