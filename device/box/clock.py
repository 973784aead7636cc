"""Clocks: every timing decision in the box reads one of these.

All times are seconds on a monotonic scale (``now()``). ``RealClock`` follows the
wall at an optional speed factor; ``VirtualClock`` only moves when asked, so whole
sessions run in milliseconds in tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What session logic and drivers need from time."""

    virtual: bool  # True: time moves only when waited on (tests, headless runs)

    @property
    def speed(self) -> float:
        """Clock seconds per real second (virtual time: 0, it does not follow the wall)."""
        ...

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass (drivers' short waits, e.g. chip power-up)."""
        ...

    def wait(self, wake: threading.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` or until ``wake`` is set; True if woken."""
        ...

    def wait_until(self, wake: threading.Event, when: float | None) -> bool:
        """Wait until clock time ``when`` (None: until woken); True if woken."""
        ...


class RealClock:
    """Monotonic time, optionally sped up by ``speed`` (2.0 = twice as fast)."""

    virtual = False

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        # (real origin, clock origin, speed) swapped as one tuple: safe to read from any thread
        self._base = (time.monotonic(), 0.0, speed)

    @property
    def _speed(self) -> float:
        return self._base[2]

    @property
    def speed(self) -> float:
        """Virtual seconds per real second."""
        return self._base[2]

    @speed.setter
    def speed(self, value: float) -> None:
        if value <= 0:
            raise ValueError("speed must be > 0")
        self._base = (time.monotonic(), self.now(), value)

    def now(self) -> float:
        real, origin, speed = self._base
        return origin + (time.monotonic() - real) * speed

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self._speed)

    def wait(self, wake: threading.Event, seconds: float) -> bool:
        if seconds <= 0:
            return wake.is_set()
        # the platform's longest wait; an absurd time must not overflow time_t
        return wake.wait(min(seconds / self._speed, threading.TIMEOUT_MAX))

    def wait_until(self, wake: threading.Event, when: float | None) -> bool:
        """Wait until clock time ``when`` (None: until woken); True if woken."""
        if when is None:
            return wake.wait()
        return self.wait(wake, when - self.now())


class VirtualClock:
    """Time that moves only when slept or waited on: a session runs in milliseconds."""

    virtual = True
    speed = 0.0  # it does not follow the wall

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError("virtual time cannot go backwards")
        with self._lock:
            self._now += seconds

    def advance_to(self, when: float) -> None:
        """Move time forward to ``when`` (no-op if already past)."""
        with self._lock:
            if when > self._now:
                self._now = when

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    def wait(self, wake: threading.Event, seconds: float) -> bool:
        if wake.is_set():
            return True
        if seconds > 0:
            self.advance(seconds)
        return wake.is_set()

    def wait_until(self, wake: threading.Event, when: float | None) -> bool:
        """Jump to clock time ``when`` exactly (None: stay); True if ``wake`` is set."""
        if wake.is_set():
            return True
        if when is not None:
            self.advance_to(when)
        return wake.is_set()


def wall_clock(clock: Clock, start: datetime | None = None) -> Callable[[], datetime]:
    """Aware local date-times for ``clock``.

    With ``start`` the wall moves with the (virtual or sped-up) clock from ``start``, so
    tests and ``sim --headless --start`` can cross days and weeks in milliseconds. Without
    one it is the system time whatever the clock's speed: a session run on virtual time
    is then stored as if it had just been done, ending now (its start is its length
    before that), never with times in the future.
    """
    if start is None:
        return lambda: datetime.now().astimezone()
    origin = clock.now()
    return lambda: start + timedelta(seconds=clock.now() - origin)
