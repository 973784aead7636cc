"""The clock a driver waits on: all the time a chip driver needs, and nothing of the product.

Drivers never read the wall or sleep on their own: the caller passes in something with
these two methods (the box's real and virtual clocks fit as they are), so a chip's power-up
and conversion waits run on virtual time in tests.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Monotonic time for drivers: ``now()`` in seconds, ``sleep(seconds)`` to let it pass."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass (short waits such as a chip's power-up)."""
        ...
