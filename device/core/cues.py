"""Speech scheduling on the injected clock: one cue at a time, by priority, never late.

Pure logic: it never talks to an engine. The loop asks ``interrupting(now)`` whether the
line being said must give way, then ``next_cue(now, busy)`` for the cue to start now (if
any), and hands it to the speaker driver.

The rules (issue 11):

- Every cue carries a ``Priority``: safety > timing > strap coaching > reminders. The
  session's own flow lines (set-up steps, switch, summary) count as timing.
- The highest-priority cue waiting goes first (first come, first served within a
  priority). A cue of a higher priority interrupts a lower one being said; the cut line
  goes back in the queue if its moment has not passed (a reminder waits for a later gap).
- A cue is dropped, never said late, once ``not_after`` (clock s) has passed or its
  ``still`` condition no longer holds (a strap cue whose mistake has stopped).
- Two cues with the same key are never both waiting: the newer replaces the older.
- A reminder is skipped when a strap cue about the same mistake (``topic``) was just said
  or is waiting, and a reminder starts only after ``REMINDER_QUIET_S`` of silence.
- Nothing starts that would run into a quiet window (the 3-2-1 beeps).
- A hold's talk budget: coaching and reminders start only while the speech so far plus
  the timing lines still to come leave room for them (safety and timing always speak).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import IntEnum

_WORD = re.compile(r"[\w']+")
_PAUSE = re.compile(r"[.,;:!?]")

REMINDER_QUIET_S = 2.0  # a reminder starts only after this much silence (s)
LET_FINISH_S = 2.0  # a line this close to its end is let finish, not interrupted (s)
SAME_TOPIC_S = 20.0  # a reminder is skipped this long after a strap cue on its topic (s)


def speech_seconds(text: str, rate_wpm: float) -> float:
    """Estimated time (s) to say ``text`` at ``rate_wpm`` words per minute."""
    words = len(_WORD.findall(text))
    pauses = len(_PAUSE.findall(text))
    return round(0.3 + words * 60.0 / rate_wpm + 0.15 * pauses, 3)


class Priority(IntEnum):
    """How much a line matters; a higher one interrupts a lower one."""

    REMINDER = 0  # the common mistakes, spread through a hold
    COACH = 1  # the strap noticed something (bounce, slack), sensor news
    TIMING = 2  # hold start and length, markers, ten seconds to go; set-up and flow lines
    SAFETY = 3  # pain / over-pull, the pain-stop line


@dataclass(frozen=True)
class Cue:
    """A line to speak (the one type the machine, the add-ons and the queue share).

    ``not_after`` (clock s): dropped if it cannot start by then. ``still``: its reason
    (asked just before it starts; False drops it). ``topic``: the mistake it is about,
    so a reminder is not said right after the strap cued the same thing."""

    text: str
    key: str
    not_after: float | None = None
    priority: Priority = Priority.TIMING
    still: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    topic: str = ""
    cut_before: bool = field(default=False, compare=False)  # cut off once and put back
    reserve_s: float = 0.0  # talk budget it must leave for others (a strap's cue) (s)

    def stale(self, now: float) -> bool:
        """Whether its moment has passed or its reason no longer holds."""
        if self.not_after is not None and now > self.not_after + 1e-9:
            return True
        if self.still is not None:
            try:
                return not self.still()
            except Exception:  # a broken condition never stops the voice
                return True
        return False


@dataclass(frozen=True)
class Started:
    """A cue that starts now and how long it is expected to last (s)."""

    cue: Cue
    at: float
    duration_s: float


class CueQueue:
    """Cues by priority: never overlapping, never inside a quiet window, never late."""

    def __init__(self, rate_wpm: float) -> None:
        self.rate_wpm = rate_wpm
        self._pending: list[Cue] = []
        self._quiet: list[tuple[float, float, Priority | None, Priority | None]] = []
        self.busy_until = float("-inf")
        self.current: Started | None = None  # the line being said (by the estimate)
        self._topics: dict[str, float] = {}  # topic -> when a strap cue on it started
        self._said_at: dict[str, float] = {}  # key -> when it last started
        self.dropped: list[Cue] = []  # the latest dropped, for tests and logs
        self.skipped: list[Cue] = []  # reminders skipped for a strap cue on their topic
        # a hold's talk budget: (from, limit s, reserved (at, s) timing lines to come)
        self._budget: tuple[float, float, tuple[tuple[float, float], ...]] | None = None
        self.spent_s = 0.0  # speech since the budget started (s)

    # ---- in ------------------------------------------------------------------------------

    def push(self, cue: Cue) -> None:
        """Queue ``cue`` (behind others of its priority); one waiting cue per key."""
        self._pending = [c for c in self._pending if c.key != cue.key]
        self._pending.append(cue)
        self._pending.sort(key=lambda c: -c.priority)  # stable: FIFO within a priority

    def hush(self, below: Priority | None = None) -> list[Cue]:
        """Drop every queued cue (or only those below ``below``); returns what was dropped.
        The one speaking goes on (``cut`` stops it)."""
        gone = [c for c in self._pending if below is None or c.priority < below]
        self._pending = [c for c in self._pending if c not in gone]
        return gone

    def drop_keys(self, prefix: str) -> list[Cue]:
        """Drop waiting cues whose key starts with ``prefix`` (e.g. a hold's reminders)."""
        gone = [c for c in self._pending if c.key.startswith(prefix)]
        self._pending = [c for c in self._pending if c not in gone]
        return gone

    def quiet(self, start: float, end: float, allow: Priority | None = None,
              allow_from: Priority | None = None) -> None:
        """Keep ``start``..``end`` (clock s) free of speech (e.g. the countdown); with
        ``allow``, free for lines of that priority only (a slot kept for "ten seconds to
        go"); with ``allow_from``, for lines of that priority or above (a hold's silent
        stretch, free of reminders)."""
        self._quiet.append((start, end, allow, allow_from))

    def budget(self, start: float, limit_s: float | None,
               reserved: tuple[tuple[float, float], ...] = (), keep_spent: bool = False
               ) -> None:
        """From ``start`` (clock s) at most ``limit_s`` of speech, ``reserved`` (clock s,
        seconds) kept for the timing lines to come; None: no budget. ``keep_spent``: the
        same hold's budget moved (its clock paused), the speech so far still counts."""
        self._budget = None if limit_s is None else (start, limit_s, reserved)
        if not keep_spent:
            self.spent_s = 0.0

    def clear_budget(self) -> None:
        """No talk budget (the hold is over)."""
        self._budget = None

    def _over_budget(self, cue: Cue, now: float) -> bool:
        if self._budget is None or cue.priority > Priority.COACH or cue.key.startswith("sensor."):
            return False  # (the sensor's own news is rare, once a session, and always said)
        _, limit, reserved = self._budget
        ahead = sum(secs for at, secs in reserved if at > now + 1e-9)
        length = speech_seconds(cue.text, self.rate_wpm)
        return self.spent_s + ahead + length + cue.reserve_s > limit + 1e-9

    def clear_quiet(self) -> None:
        """Forget all quiet windows (the hold they guarded has ended)."""
        self._quiet.clear()

    def stop(self, now: float) -> None:
        """The speaker was stopped: it is free from ``now``."""
        if self._budget is not None and self.current is not None and now < self.busy_until \
                and self.current.cue.priority < Priority.SAFETY:
            self.spent_s -= self.busy_until - now  # the unsaid rest is not spent
        self.busy_until = min(self.busy_until, now)
        self.current = None

    @property
    def pending(self) -> int:
        """Cues waiting."""
        return len(self._pending)

    def waiting(self) -> list[Cue]:
        """The cues waiting, in the order they would start."""
        return list(self._pending)

    def last_said(self, key: str) -> float | None:
        """When the line ``key`` last started (clock s), or None."""
        return self._said_at.get(key)

    # ---- rules ---------------------------------------------------------------------------

    def _blocked_until(self, now: float, length: float, cue: Cue | None = None
                       ) -> float | None:
        for start, end, allow, allow_from in self._quiet:
            if allow is not None and cue is not None and cue.priority is allow:
                continue
            if allow_from is not None and cue is not None and cue.priority >= allow_from:
                continue
            if now < end and now + length > start:
                return end
        return None

    def _topic_taken(self, cue: Cue, now: float) -> bool:
        if cue.priority is not Priority.REMINDER or not cue.topic:
            return False
        said = self._topics.get(cue.topic)
        if said is not None and now - said < SAME_TOPIC_S:
            return True
        return any(c.topic == cue.topic and c.priority > Priority.REMINDER
                   for c in self._pending)

    def _speaking(self, now: float) -> Started | None:
        if self.current is not None and now < self.busy_until - 1e-9:
            return self.current
        return None

    def _sweep(self, now: float) -> list[Cue]:
        """Drop the stale and skip the reminders whose topic the strap just cued."""
        dropped: list[Cue] = []
        keep: list[Cue] = []
        for cue in self._pending:
            if cue.stale(now) or self._over_budget(cue, now):
                dropped.append(cue)
            elif self._topic_taken(cue, now):
                self.skipped.append(cue)
                dropped.append(cue)
            else:
                keep.append(cue)
        self._pending = keep
        self.dropped = (self.dropped + dropped)[-100:]
        return dropped

    def _startable(self, now: float) -> tuple[Cue | None, float | None]:
        """The first cue that may start at ``now`` and, if none, when one might."""
        soonest: float | None = None
        for cue in self._pending:
            length = speech_seconds(cue.text, self.rate_wpm)
            start = now
            if cue.priority is Priority.REMINDER:
                start = max(start, self.busy_until + REMINDER_QUIET_S)
            while (blocked := self._blocked_until(start, length, cue)) is not None:
                start = blocked
            if start <= now + 1e-9:
                return self._deadline_first(cue, now), None
            soonest = start if soonest is None else min(soonest, start)
            # a higher line waiting for the quiet window: a lower one may go first only if
            # it fits before the window (the check above)
        return None, soonest

    def _would_miss(self, waiting: Cue, now: float, first: Cue) -> bool:
        """Whether saying ``first`` now would make the timing line ``waiting`` miss its
        moment, though it could still make it if started now."""
        if waiting.priority < Priority.TIMING or waiting.not_after is None:
            return False
        if now > waiting.not_after + 1e-9 or waiting.stale(now):
            return False
        end = now + speech_seconds(first.text, self.rate_wpm)
        length = speech_seconds(waiting.text, self.rate_wpm)
        fits = self._blocked_until(now, length, waiting) is None
        # never at the cost of the other line's own moment
        first_keeps = first.not_after is None or now + length <= first.not_after + 1e-9
        return fits and first_keeps and end > waiting.not_after + 1e-9

    def _deadline_first(self, cue: Cue, now: float) -> Cue:
        """``cue``, unless a short timing line ("ten seconds to go") would lose its moment
        behind it: then that line goes first (the more urgent one follows it)."""
        for other in self._pending:
            if other is not cue and self._would_miss(other, now, cue):
                return other
        return cue

    # ---- out -----------------------------------------------------------------------------

    def interrupting(self, now: float, speaker_busy: bool = False) -> Cue | None:
        """The cue being said, if a higher-priority one is waiting and may start now (the
        loop then stops the speaker and calls ``cut``); else None."""
        speaking = self._speaking(now)
        if speaking is None:
            return None
        for cue in self._pending:
            if cue.priority <= speaking.cue.priority:
                break
            if cue.stale(now):
                continue
            if self._would_miss(speaking.cue, now, cue):
                return None  # a timing line is let finish rather than lose its moment
            if self.busy_until - now <= LET_FINISH_S and cue.priority < Priority.SAFETY:
                return None  # nearly done: let it finish, the urgent line follows at once
            length = speech_seconds(cue.text, self.rate_wpm)
            if self._blocked_until(now, length, cue) is None:
                return speaking.cue
        return None

    def cut(self, now: float) -> Cue | None:
        """Stop the line being said at ``now``; it goes back in the queue (unless its
        moment has passed, or it is a reminder cut off once before: a reminder starts at
        most twice). Returns the cut cue."""
        speaking = self._speaking(now)
        self.stop(now)
        if speaking is None:
            return None
        cue = speaking.cue
        if cue.priority <= Priority.REMINDER and cue.cut_before:
            self.dropped = (self.dropped + [cue])[-100:]
            return cue
        if not cue.stale(now) and not any(c.key == cue.key for c in self._pending):
            # first among its priority again: it was started before those queued since
            # (a set-up step is never heard after the one that follows it)
            self._pending.insert(0, replace(cue, cut_before=True))
            self._pending.sort(key=lambda c: -c.priority)
        return cue

    def next_cue(self, now: float, speaker_busy: bool = False) -> tuple[Started | None, list[Cue]]:
        """The cue to start at ``now`` (or None) and the stale cues dropped on the way."""
        self._quiet = [q for q in self._quiet if q[1] > now]
        if self.current is not None and now >= self.busy_until - 1e-9:
            self.current = None
        dropped = self._sweep(now)
        if speaker_busy or now < self.busy_until:
            return None, dropped
        cue, _ = self._startable(now)
        if cue is None:
            return None, dropped
        self._pending.remove(cue)
        length = speech_seconds(cue.text, self.rate_wpm)
        self.busy_until = now + length
        if self._budget is not None and now >= self._budget[0] - 1e-9 \
                and cue.priority < Priority.SAFETY:  # safety is never held back, nor counted
            self.spent_s += length
        started = Started(cue, now, length)
        self.current = started
        self._said_at[cue.key] = now
        if cue.topic and cue.priority > Priority.REMINDER:
            self._topics[cue.topic] = now
        return started, dropped

    def deadline(self, now: float, speaker_busy: bool = False) -> float | None:
        """When the queue next needs a look (clock s), or None if nothing is waiting.

        ``speaker_busy``: the voice is still talking. Past the line's estimate nothing can
        start until it stops (the loop is told then): only a waiting cue's expiry is due."""
        if not self._pending:
            return None
        if self.interrupting(now) is not None:
            return now
        if speaker_busy and now >= self.busy_until - 1e-9:
            return self._next_expiry(now)
        start = max(self.busy_until, now)
        cue, soonest = self._startable(start)
        times = [start if cue is not None else soonest, self._next_expiry(now)]
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def _next_expiry(self, now: float) -> float | None:
        ends = [c.not_after for c in self._pending if c.not_after is not None
                and c.not_after >= now]
        return min(ends) + 1e-6 if ends else None
