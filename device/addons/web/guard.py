"""Connections to the page are a bounded resource (issue 22).

uvicorn times out an idle keep-alive connection only *after* a response; a connection that
never sends a byte, or sends its headers a byte a minute, is kept for ever, and so are a
thousand of them, until the process runs out of file descriptors. ``guarded_protocol``
wraps uvicorn's h11 protocol so that

* at most ``max_connections`` are open at once and at most ``per_address`` from one
  address; one over the address cap is closed at once (no answer: it costs nothing to
  refuse); at the total cap the oldest connection still waiting for its headers makes
  room (so silent connections from many addresses can never lock a phone out), and only
  when every connection is busy with a request is the new one closed;
* a request's headers must be complete within ``header_timeout_s`` of the connection
  (or of the previous response); a silent or slow client is closed then;
* each refusal is counted and said in a rate-limited log line, never a traceback;

and ``quiet_accept_errors`` turns asyncio's "accept failed" traceback per attempt (out of
file descriptors) into the same kind of rate-limited line.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64  # open at once: three phones with a few tabs each use about ten
PER_ADDRESS = 16  # from one address
HEADER_TIMEOUT_S = 10.0  # for a request's headers to arrive
LOG_EVERY_S = 60.0  # at most one line a minute per kind of refusal


class RateLimitedLog:
    """One warning per ``every_s`` per key; the lines in between are counted and the
    count goes into the next line said."""

    def __init__(self, logger: logging.Logger, every_s: float = LOG_EVERY_S,
                 clock: Any = time.monotonic) -> None:
        self.logger = logger
        self.every_s = every_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def warning(self, key: str, message: str) -> bool:
        """Log ``message`` unless one with ``key`` went out less than ``every_s`` ago;
        whether it was logged."""
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.every_s:
                self._held[key] += 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        more = f" ({held} more like it since the last line)" if held else ""
        self.logger.warning("%s%s", message, more)
        return True


@dataclass
class Guard:
    """The limits and the live counts, shared by every connection of one server."""

    max_connections: int = MAX_CONNECTIONS
    per_address: int = PER_ADDRESS
    header_timeout_s: float = HEADER_TIMEOUT_S
    open: int = 0
    by_address: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # reason -> count
    waiting: dict[Any, None] = field(default_factory=dict)  # no headers yet, oldest first
    said: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log))

    def refuse(self, reason: str, address: str) -> None:
        self.refused[reason] += 1
        self.said.warning(reason, f"web: {reason} (from {address}); closed")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the limits of ``guard`` (set on a subclass)."""

    guard: Guard = Guard()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        g = self.guard
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        if g.by_address[self._address] >= g.per_address:
            g.refuse(f"over {g.per_address} connections from one address", self._address)
            transport.abort()
            return
        if g.open >= g.max_connections:
            if not g.waiting:  # every connection is busy with a request: no room
                g.refuse(f"over {g.max_connections} connections", self._address)
                transport.abort()
                return
            oldest = next(iter(g.waiting))  # a silent one makes room
            g.refuse(f"{g.max_connections} connections open: the oldest silent one makes room",
                     oldest._address)
            oldest._drop_waiting()
            oldest.transport.abort()
            oldest.connection_lost(None)  # counted out now (abort reports it later)
        g.open += 1
        g.by_address[self._address] += 1
        self._counted = True
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._timed_cycle = self.cycle
        self._timer = self.loop.call_later(self.guard.header_timeout_s, self._too_slow)
        self.guard.waiting[self] = None

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._drop_waiting()

    def _drop_waiting(self) -> None:
        self.guard.waiting.pop(self, None)

    def _too_slow(self) -> None:
        self._timer = None
        self._drop_waiting()
        if self.cycle is self._timed_cycle:  # no new request began: silent or too slow
            self.guard.refuse(f"no request headers within {self.guard.header_timeout_s:g} s",
                              self._address)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._timer is not None and self.cycle is not self._timed_cycle:
            self._disarm()  # the headers are in: the request runs its own course

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._counted and not self.transport.is_closing():
            self._arm()  # the next request's headers get the same time

    def connection_lost(self, exc: Exception | None) -> None:
        if not getattr(self, "_counted", False):
            return  # refused in connection_made: uvicorn never knew it
        self._counted = False
        self._disarm()
        g = self.guard
        g.open -= 1
        g.by_address[self._address] -= 1
        if g.by_address[self._address] <= 0:
            del g.by_address[self._address]
        super().connection_lost(exc)


def guarded_protocol(guard: Guard) -> type[GuardedH11Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` bound to ``guard``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


class _AcceptErrors(logging.Filter):
    """asyncio's "accept failed" (with a traceback) becomes a rate-limited line."""

    def __init__(self) -> None:
        super().__init__()
        self.said = RateLimitedLog(log)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "accept" not in text.lower():
            return True
        reason = record.exc_info[1] if record.exc_info and record.exc_info[1] else text
        self.said.warning("accept", f"web: cannot accept a connection ({reason})")
        return False


_FILTER = _AcceptErrors()


def quiet_accept_errors() -> None:
    """Install the filter on asyncio's logger (once per process)."""
    logger = logging.getLogger("asyncio")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
