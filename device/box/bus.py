"""The event bus: the loop publishes, add-ons and outputs subscribe.

Two kinds of subscriber:

- **in-loop**: called synchronously in the loop's thread; must be cheap (the transcript
  writer, the strap coach, habit).
- **queued**: its own thread and bounded queue, so a slow one (a network publisher, a
  web page) can never stall the light, the buzzer or a cue. When its queue is full the
  oldest light/tension events go first; state, hold and session events are never
  dropped (the queue grows past its bound for them rather than lose one). It logs once
  that it fell behind.

``led`` events (50 Hz) go only to subscribers that name the kind.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from device.box.events import LOSSY_KINDS, NOISY_KINDS, Event

log = logging.getLogger(__name__)

Handler = Callable[[Event], None]
E = TypeVar("E", bound=Event)


@dataclass
class Subscription:
    """One subscriber: its handler, the kinds it wants (None: all but the noisy ones)."""

    handler: Handler
    kinds: frozenset[str] | None
    name: str
    queue: _Queue | None = None

    def wants(self, kind: str) -> bool:
        if self.kinds is None:
            return kind not in NOISY_KINDS
        return kind in self.kinds


@dataclass
class _Queue:
    """A bounded queue in front of one slow subscriber, drained by its own thread."""

    sub_name: str
    handler: Handler
    maxsize: int
    items: deque[Event] = field(default_factory=deque)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False
    dropped: int = 0
    warned: bool = False
    busy: bool = False
    thread: threading.Thread | None = None

    def put(self, event: Event) -> None:
        with self.cond:
            if self.closed:
                return
            if len(self.items) >= self.maxsize and not self._make_room(event):
                return
            self.items.append(event)
            self.cond.notify()

    def _make_room(self, event: Event) -> bool:
        """Drop the oldest lossy event; False if ``event`` itself should be dropped."""
        for i, old in enumerate(self.items):
            if old.kind in LOSSY_KINDS:
                del self.items[i]
                self._lost()
                return True
        if event.kind in LOSSY_KINDS:
            self._lost()
            return False
        self._behind()  # never drop a state, hold or session event: grow past the bound
        return True

    def _lost(self) -> None:
        self.dropped += 1
        self._behind()

    def _behind(self) -> None:
        if not self.warned:
            self.warned = True
            log.warning("%s fell behind; dropping its oldest light/tension events",
                        self.sub_name)

    def run(self) -> None:
        while True:
            with self.cond:
                while not self.items and not self.closed:
                    self.cond.wait()
                if not self.items and self.closed:
                    return
                event = self.items.popleft()
                self.busy = True
            try:
                self.handler(event)
            except Exception:
                log.exception("subscriber %s failed on a %s event", self.sub_name, event.kind)
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def drain(self, timeout: float | None) -> bool:
        """Wait until everything queued was handled (real seconds); True if it was."""
        with self.cond:
            return self.cond.wait_for(lambda: not self.items and not self.busy, timeout)

    def close(self, timeout: float) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)


class EventBus:
    """Delivers each published event to the subscribers that want its kind."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._by_kind: dict[str, tuple[Subscription, ...]] = {}
        self._lock = threading.Lock()

    def subscribe(
        self,
        handler: Handler,
        kinds: Iterable[str] | None = None,
        *,
        queued: bool = False,
        name: str = "",
        maxsize: int = 1000,
    ) -> Subscription:
        """Call ``handler`` for each event of ``kinds`` (None: all but ``led``); a
        ``queued`` handler runs in its own thread behind a queue of ``maxsize``."""
        name = name or getattr(handler, "__qualname__", repr(handler))
        sub = Subscription(handler, None if kinds is None else frozenset(kinds), name)
        if queued:
            q = _Queue(name, handler, max(1, maxsize))
            q.thread = threading.Thread(target=q.run, name=f"bus-{name}", daemon=True)
            q.thread.start()
            sub.queue = q
        with self._lock:
            self._subs.append(sub)
            self._by_kind = {}
        return sub

    def on(self, kind: type[E], handler: Callable[[E], None], *, queued: bool = False,
           name: str = "") -> Subscription:
        """Call ``handler`` with each event of type ``kind`` (typed: the handler's argument
        is checked against ``kind``)."""
        deliver: Handler = handler  # type: ignore[assignment]  # the bus filters by kind
        return self.subscribe(deliver, [kind.kind], queued=queued,
                              name=name or getattr(handler, "__qualname__", kind.kind))

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub`` (its queue is drained and its thread ends)."""
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
            self._by_kind = {}
        if sub.queue is not None:
            sub.queue.close(timeout=1.0)

    def wants(self, kind: str) -> bool:
        """True if anyone listens for ``kind`` (so the publisher can skip building it)."""
        return bool(self._targets(kind))

    def _targets(self, kind: str) -> tuple[Subscription, ...]:
        targets = self._by_kind.get(kind)
        if targets is None:
            with self._lock:
                targets = tuple(s for s in self._subs if s.wants(kind))
                self._by_kind[kind] = targets
        return targets

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber of its kind. An in-loop subscriber that
        raises is logged and the others still get the event."""
        for sub in self._targets(event.kind):
            if sub.queue is not None:
                sub.queue.put(event)
                continue
            try:
                sub.handler(event)
            except (BrokenPipeError, KeyboardInterrupt, SystemExit):
                raise
            except Exception:
                log.exception("subscriber %s failed on a %s event", sub.name, event.kind)

    def drain(self, timeout: float | None = 2.0) -> bool:
        """Wait (real seconds) for every queued subscriber to catch up."""
        ok = True
        for sub in list(self._subs):
            if sub.queue is not None:
                ok = sub.queue.drain(timeout) and ok
        return ok

    def close(self, timeout: float = 2.0) -> None:
        """Let queued subscribers finish what they have (``timeout`` real s), then stop."""
        for sub in list(self._subs):
            if sub.queue is not None:
                sub.queue.drain(timeout)
                sub.queue.close(timeout)
