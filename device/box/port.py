"""The add-on port: the one surface of a running box that every add-on is given.

An add-on is a module with ``attach(port, ...) -> handle`` (the handle has ``close()``),
called from the builder alone. Through the port it speaks (``say``), publishes and
subscribes to typed events, schedules work on the box's clock, adds tickers, plans holds,
reads the read model (``view()``), adds its own fields to it (``update_view``), presses
through the command port (``commands``), asks for a new config between sessions
(``reload``) and finds the other add-ons it needs (``provide``/``find``). It never sees the
loop, the machine, the cue queue or the pins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from device.box.bus import Subscription
from device.box.clock import Clock
from device.box.events import Event, SessionEvent, StateEvent
from device.box.loop import BoxView, DeviceLoop, HoldStatus
from device.core.config import Config
from device.core.cues import Priority
from device.core.machine import HoldEnded, State
from device.core.routine import Routine

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
T = TypeVar("T")


class AddonHandle(Protocol):
    """What ``attach`` returns: something the box closes when it shuts down."""

    def close(self) -> None: ...


class Commands(Protocol):
    """The command port: presses as a person would make them (safe from any thread)."""

    def press(self) -> None: ...

    def long_press(self) -> None: ...

    def double_press(self) -> None: ...


class BoxPort:
    """The box as an add-on sees it (one per box; made by the builder)."""

    def __init__(self, loop: DeviceLoop, commands: Commands, *, simulated: bool) -> None:
        self._loop = loop
        self.commands = commands
        self.simulated = simulated  # mock pins: the simulator, the tests, the bench
        self._services: dict[type, object] = {}
        self._reloaders: list[Callable[[Config], None]] = []
        self._pending: Config | None = None
        self._reload_sub = loop.bus.on(StateEvent, self._on_state, name="port-reload")

    # ---- what the box is ------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The config in use (replaced by ``reload`` between sessions)."""
        return self._loop.config

    @property
    def routine(self) -> Routine:
        """The routine: every spoken line."""
        return self._loop.routine

    @property
    def clock(self) -> Clock:
        """The injected clock (s)."""
        return self._loop.clock

    @property
    def state(self) -> State:
        """Where the session is."""
        return self._loop.state

    @property
    def first_leg(self) -> str:
        """The leg a session starts with."""
        return self._loop.first_leg

    def now(self) -> float:
        """The box's clock (s)."""
        return self._loop.now()

    def stamp(self) -> float:
        """``t`` for an event now (s since the box started)."""
        return self._loop.stamp()

    def view(self) -> BoxView:
        """The read model (safe from any thread)."""
        return self._loop.view()

    def update_view(self, **fields: Any) -> None:
        """Set read-model fields this add-on owns (the strap's reading, its band)."""
        self._loop.update_view(**fields)

    def hold_status(self) -> HoldStatus:
        """The hold in progress (None/0 outside a hold)."""
        return self._loop.hold_status()

    def hold_choice(self, leg: str) -> float | None:
        """``leg``'s next hold (s) as chosen in this run (an answer, the idle cycle)."""
        return self._loop.hold_choice(leg)

    def next_hold(self, leg: str) -> float:
        """``leg``'s next hold (s) as the box will plan it (safe from any thread)."""
        return self._loop.next_hold(leg)

    def outputs(self) -> tuple[float, bool]:
        """The light's duty (0..1) and whether the buzzer sounds, read back from the pins."""
        return self._loop.outputs()

    # ---- events ----------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Put ``event`` on the bus."""
        self._loop.publish(event)

    def on(self, kind: type[E], handler: Callable[[E], None], *, queued: bool = False,
           name: str = "") -> Subscription:
        """Call ``handler`` with each event of type ``kind`` (``queued``: its own thread)."""
        return self._loop.bus.on(kind, handler, queued=queued, name=name)

    def subscribe(self, handler: Callable[[Event], None], kinds: Iterable[type[Event]] | None,
                  *, queued: bool = False, name: str = "", maxsize: int = 1000) -> Subscription:
        """Call ``handler`` with each event of ``kinds`` (None: every kind but light frames)."""
        names = None if kinds is None else [k.kind for k in kinds]
        return self._loop.bus.subscribe(handler, names, queued=queued, name=name,
                                        maxsize=maxsize)

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop a subscription (a queued one finishes what it has)."""
        self._loop.bus.unsubscribe(sub)

    # ---- work on the box's clock -------------------------------------------------------

    def say(self, text: str, key: str, not_after: float | None = None,
            priority: Priority = Priority.TIMING, still: Callable[[], bool] | None = None,
            topic: str = "") -> None:
        """Queue a line for the voice (see ``DeviceLoop.say``); loop thread only."""
        self._loop.say(text, key, not_after, priority, still, topic)

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        """Run ``action`` in the box's thread at ``at`` s after its start (any thread)."""
        self._loop.schedule(at, action)

    def call_soon(self, action: Callable[[], None]) -> None:
        """Run ``action`` in the box's thread as soon as it wakes (any thread)."""
        self._loop.call_soon(action)

    def add_ticker(self, due: Callable[[float], float | None],
                   run: Callable[[float], object]) -> None:
        """Wake the box at ``due(now)`` (clock s, or None) and call ``run(now)``."""
        self._loop.add_ticker(due, run)

    def wake_now(self) -> None:
        """Wake the box to look again at what is due (any thread)."""
        self._loop.wake_now()

    def stop(self) -> None:
        """Ask the box to finish (any thread, a signal's thread)."""
        self._loop.stop()

    # ---- the session's plan and its figures ---------------------------------------------

    def set_hold_planner(self, plan: Callable[[str], float]) -> Callable[[str], float]:
        """``plan(leg)`` gives each hold's length (s); returns the planner it replaces."""
        return self._loop.set_hold_planner(plan)

    def set_hold_figures(self, figures: Callable[[HoldEnded], dict[str, float | None] | None]
                         ) -> None:
        """``figures(hold)`` gives the strap's figures of a hold that just ended."""
        self._loop.set_hold_figures(figures)

    def set_summary(self, summary: Callable[[SessionEvent], str | None]) -> None:
        """``summary(session)`` gives the line said at a complete session's end."""
        self._loop.set_summary(summary)

    def set_idle_pattern(self) -> None:
        """Show the idle light anew (after a nudge turned it on or off)."""
        self._loop.set_idle_pattern()

    def nudge_light(self, on: bool) -> None:
        """The idle nudge light on or off."""
        self._loop.nudge_light(on)

    def pause_hold(self, since: float) -> None:
        """Stop the hold clock from ``since`` (clock s)."""
        self._loop.pause_hold(since)

    def resume_hold(self, now: float, line: str | None = None) -> None:
        """Run the hold clock again (saying ``line``)."""
        self._loop.resume_hold(now, line)

    def end_hold_early(self, now: float, line: str | None = None) -> None:
        """End the hold now, as a press would (saying ``line`` first)."""
        self._loop.end_hold_early(now, line)

    # ---- the strap's reading of the person ------------------------------------------------

    def ask_stop(self, now: float) -> None:
        """The leg went down again in the hold: ask whether to stop."""
        self._loop.ask_stop(now)

    @property
    def stop_asked(self) -> bool:
        """Whether "do you want to stop?" waits for an answer."""
        return self._loop.stop_asked

    def leg_back(self, now: float) -> None:
        """The leg is back up: that answers "do you want to stop?" (the hold goes on)."""
        self._loop.leg_back(now)

    def in_stretch(self, now: float) -> None:
        """The strap shows the leg in the stretch in the set-up: the rest goes at once."""
        self._loop.in_stretch(now)

    def note_mistake(self, topic: str) -> None:
        """The strap noticed ``topic`` (bounce, knee): its reminder comes next."""
        self._loop.note_mistake(topic)

    def set_strap_fitted(self, fitted: bool = True) -> None:
        """A strap sensor is fitted: the reminders follow what it notices."""
        self._loop.set_strap_fitted(fitted)

    def take_idle_press(self, hook: Callable[[], bool]) -> Callable[[], None]:
        """Offer ``hook`` each short press while the box is idle (loop thread); when it
        returns True the press is taken and starts no session. Returns the undo."""
        hooks = self._loop.idle_press_hooks
        hooks.append(hook)

        def release() -> None:
            if hook in hooks:
                hooks.remove(hook)
        return release

    # ---- add-ons finding each other -------------------------------------------------------

    def provide(self, service: object) -> None:
        """Offer ``service`` to the other add-ons, found by its type."""
        self._services[type(service)] = service

    def find(self, kind: type[T]) -> T | None:
        """The add-on service of type ``kind`` (or a subclass), if one was provided."""
        for service in self._services.values():
            if isinstance(service, kind):
                return service
        return None

    # ---- a new config, between sessions ---------------------------------------------------

    def on_reload(self, apply: Callable[[Config], None]) -> None:
        """Call ``apply(config)`` (loop thread, box idle) when a new config is used."""
        self._reloaders.append(apply)

    def reload(self, config: Config) -> None:
        """Use ``config`` from the next session on (safe from any thread): at once when the
        box is idle, else when the session ends; a later config replaces a waiting one."""
        self._loop.call_soon(lambda: self._offer(config))

    def _offer(self, config: Config) -> None:
        if self._loop.state is State.IDLE:
            self._apply(config)
        else:
            self._pending = config

    def _on_state(self, event: StateEvent) -> None:
        if self._pending is not None and event.state == State.IDLE.value:
            config, self._pending = self._pending, None
            self._apply(config)

    def _apply(self, config: Config) -> None:
        self._loop.reload(config)
        for apply in self._reloaders:
            try:
                apply(config)
            except Exception:  # one add-on's reload never keeps the others' from theirs
                log.exception("an add-on failed to take the new config")
        log.info("new settings in use from this session on")

    def close(self) -> None:
        """Stop listening for the end of a session."""
        self._loop.bus.unsubscribe(self._reload_sub)
