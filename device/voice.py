"""Speech scheduling on the injected clock: one cue at a time, stale cues dropped.

Pure logic: it never talks to an engine. The loop asks ``next_cue(now, busy)`` for
the cue to start now (if any) and hands it to the speaker driver.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

_WORD = re.compile(r"[\w']+")
_PAUSE = re.compile(r"[.,;:!?]")


def speech_seconds(text: str, rate_wpm: float) -> float:
    """Estimated time (s) to say ``text`` at ``rate_wpm`` words per minute."""
    words = len(_WORD.findall(text))
    pauses = len(_PAUSE.findall(text))
    return round(0.3 + words * 60.0 / rate_wpm + 0.15 * pauses, 3)


@dataclass(frozen=True)
class Cue:
    """A line to speak; dropped if it cannot start by ``not_after`` (clock s)."""

    text: str
    key: str
    not_after: float | None = None


@dataclass(frozen=True)
class Started:
    """A cue that starts now and how long it is expected to last (s)."""

    cue: Cue
    at: float
    duration_s: float


class CueQueue:
    """FIFO of cues: never overlapping, never inside a quiet window, never late."""

    def __init__(self, rate_wpm: float) -> None:
        self.rate_wpm = rate_wpm
        self._pending: deque[Cue] = deque()
        self._quiet: list[tuple[float, float]] = []
        self.busy_until = float("-inf")
        self.dropped: deque[Cue] = deque(maxlen=100)  # the latest dropped, for tests and logs

    def push(self, cue: Cue) -> None:
        """Queue ``cue`` behind any others."""
        self._pending.append(cue)

    def hush(self) -> list[Cue]:
        """Drop every queued cue (the one speaking goes on); returns what was dropped."""
        gone = list(self._pending)
        self._pending.clear()
        return gone

    def quiet(self, start: float, end: float) -> None:
        """Keep ``start``..``end`` (clock s) free of speech (e.g. the countdown)."""
        self._quiet.append((start, end))

    def clear_quiet(self) -> None:
        """Forget all quiet windows (the hold they guarded has ended)."""
        self._quiet.clear()

    def stop(self, now: float) -> None:
        """The speaker was stopped: it is free from ``now``."""
        self.busy_until = min(self.busy_until, now)

    @property
    def pending(self) -> int:
        """Cues waiting."""
        return len(self._pending)

    def _blocked_until(self, now: float, length: float) -> float | None:
        for start, end in self._quiet:
            if now < end and now + length > start:
                return end
        return None

    def next_cue(self, now: float, speaker_busy: bool = False) -> tuple[Started | None, list[Cue]]:
        """The cue to start at ``now`` (or None) and the stale cues dropped on the way."""
        dropped: list[Cue] = []
        self._quiet = [(s, e) for s, e in self._quiet if e > now]
        if speaker_busy or now < self.busy_until:
            return None, dropped
        while self._pending:
            cue = self._pending[0]
            if cue.not_after is not None and now > cue.not_after + 1e-9:
                dropped.append(self._pending.popleft())
                continue
            length = speech_seconds(cue.text, self.rate_wpm)
            if self._blocked_until(now, length) is not None:
                return None, dropped
            self._pending.popleft()
            self.busy_until = now + length
            self.dropped += dropped
            return Started(cue, now, length), dropped
        self.dropped += dropped
        return None, dropped

    def deadline(self, now: float) -> float | None:
        """When the queue next needs a look (clock s), or None if nothing is waiting."""
        if not self._pending:
            return None
        start = max(self.busy_until, now)
        length = speech_seconds(self._pending[0].text, self.rate_wpm)
        blocked = self._blocked_until(start, length)
        return start if blocked is None else max(start, blocked)
