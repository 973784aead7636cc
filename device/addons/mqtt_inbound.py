"""What the box's MQTT client does with what comes in, apart from commands themselves:
Home Assistant's birth messages debounced, paho's own error lines kept out of the log
(the publisher says one line per outage itself). Issue 22."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

BIRTH_DELAY_S = 1.0  # a birth is answered this long after it comes (a storm is one answer)
BIRTH_GAP_S = 10.0  # and discovery goes out at most this often however many come


class Debounce:
    """Call ``action`` once, ``delay_s`` after the first of a burst of ``birth()`` calls,
    and never twice within ``gap_s``; calls in between are folded into the next one."""

    def __init__(self, action: Callable[[], None], delay_s: float = BIRTH_DELAY_S,
                 gap_s: float = BIRTH_GAP_S, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.action = action
        self.delay_s = delay_s
        self.gap_s = gap_s
        self.clock = clock
        self.folded = 0  # births answered by an answer already on its way
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._last: float | None = None
        self._closed = False

    def birth(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._timer is not None:
                self.folded += 1
                return
            now = self.clock()
            wait = self.delay_s
            if self._last is not None:
                wait = max(wait, self._last + self.gap_s - now)
            self._timer = threading.Timer(wait, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed:
                return
            self._last = self.clock()
        try:
            self.action()
        except Exception as exc:  # noqa: BLE001 - never kills the timer thread loudly
            logging.getLogger(__name__).warning("MQTT: discovery failed (%s)", exc)

    def cancel(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


_NETWORK_WORDS = ("socket", "connect", "network", "timed out", "timeout", "refused",
                  "reset", "unreachable", "broken pipe", "eof")


class _NoNetworkLines(logging.Filter):
    """paho's lines about the connection (one per reconnect attempt) are dropped: the
    publisher logs one line when an outage starts and one when it ends."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage().lower()
        return not any(word in text for word in _NETWORK_WORDS)


_FILTER = _NoNetworkLines()


def quiet_paho(logger: logging.Logger) -> None:
    """Install the filter on paho's logger (once)."""
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
