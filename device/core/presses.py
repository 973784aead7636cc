"""Telling short and long presses apart on the injected clock (not gpiozero's ``when_held``)."""

from __future__ import annotations

from device.core.machine import Press


class PressTracker:
    """Turns button edges (pressed/released at clock times) into short and long presses.

    A long press fires as soon as the button has been down ``long_s`` seconds; its
    release is then ignored. A button already down at start-up is ignored until it is
    released, so a stuck or held button at boot neither starts nor cancels anything.
    """

    def __init__(self, long_s: float, held_at_start: bool = False) -> None:
        self.long_s = long_s
        self._down_at: float | None = None
        self._long_fired = False
        self._ignoring = held_at_start
        self.last_down_at: float | None = None  # when the last completed press began

    def edge(self, pressed: bool, at: float) -> Press | None:
        """A button edge at clock time ``at``; returns the press it completes, if any."""
        if self._ignoring:
            if not pressed:
                self._ignoring = False
            return None
        if pressed:
            if self._down_at is None:
                self._down_at = at
                self._long_fired = False
            return None
        down_at, self._down_at = self._down_at, None
        if down_at is None or self._long_fired:
            return None
        self.last_down_at = down_at
        return Press.LONG if at - down_at >= self.long_s else Press.SHORT

    def check(self, now: float) -> Press | None:
        """A long press if the button has been down ``long_s`` by ``now``."""
        if self._down_at is not None and not self._long_fired:
            if now - self._down_at >= self.long_s - 1e-9:
                self._long_fired = True
                return Press.LONG
        return None

    def deadline(self) -> float | None:
        """Clock time a long press would fire, or None."""
        if self._down_at is None or self._long_fired:
            return None
        return self._down_at + self.long_s
