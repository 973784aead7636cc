"""A small stand-in box for the web page tests: the seams' names, none of the hardware."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from device.core.config import Config


@dataclass
class FakeView:
    state: str = "idle"
    leg: str | None = None
    round: int = 0
    rounds: int = 1
    hold_left_s: float | None = None
    hold_planned_s: float | None = None
    light: float = 0.0
    breath_phase: str | None = None
    buzzing: str | None = None
    spoken: list[str] = field(default_factory=list)
    tension: float | None = None
    tension_units: str = "kg"
    sensor_status: str = "absent"
    hold_clock_running: bool = False
    voice_status: str = "ok"
    voice_off_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class FakeEvent:
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)


class FakeSubscription:
    def __init__(self, bus: FakeBus, handler: Any) -> None:
        self.bus = bus
        self.handler = handler
        self.queue: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (event := self.queue.get()) is not None:
            self.handler(event)

    def close(self) -> None:
        self.bus.subs.discard(self)
        self.queue.put(None)
        self.thread.join(2)


class FakeBus:
    """Queued subscribers only, like the page uses."""

    def __init__(self) -> None:
        self.subs: set[FakeSubscription] = set()
        self.queued: list[bool] = []

    def subscribe(self, handler: Any, kinds: Any = None, *, queued: bool = False,
                  name: str = "", maxsize: int = 1000) -> FakeSubscription:
        self.queued.append(queued)
        sub = FakeSubscription(self, handler)
        self.subs.add(sub)
        return sub

    def unsubscribe(self, sub: FakeSubscription) -> None:
        sub.close()

    def publish(self, event: Any) -> None:
        for sub in list(self.subs):
            sub.queue.put(event)


class FakeLoop:
    def __init__(self) -> None:
        self.said: list[tuple[str, str]] = []

    def say(self, text: str, key: str, not_after: float | None = None) -> None:
        self.said.append((text, key))

    def call_soon(self, fn: Any) -> None:
        fn()


class FakeCommands:
    """A press starts a session (idle -> setup), a long press cancels it."""

    def __init__(self, box: FakeBox) -> None:
        self.box = box
        self.presses: list[str] = []
        self.reloaded: list[Config] = []

    def press(self) -> None:
        self.presses.append("short")
        if self.box._view.state in ("idle", "done", "cancelled"):
            self.box.set_state("setup", leg="right", round=1)

    def long_press(self) -> None:
        self.presses.append("long")
        if self.box._view.state not in ("idle", "done", "cancelled"):
            self.box.set_state("cancelled")


class FakeBox:
    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self._view = FakeView(rounds=self.config.session.rounds)
        self.bus = FakeBus()
        self.idle_press_hooks: list[Any] = []
        self.loop = FakeLoop()
        self.commands = FakeCommands(self)
        self.provided: list[Any] = []

    # the add-on port's surface the page uses
    def subscribe(self, handler: Any, kinds: Any = None, *, queued: bool = False,
                  name: str = "", maxsize: int = 1000) -> FakeSubscription:
        return self.bus.subscribe(handler, kinds, queued=queued, name=name)

    def unsubscribe(self, sub: FakeSubscription) -> None:
        self.bus.unsubscribe(sub)

    def say(self, text: str, key: str, not_after: float | None = None) -> None:
        self.loop.say(text, key, not_after)

    def call_soon(self, fn: Any) -> None:
        self.loop.call_soon(fn)

    def provide(self, service: Any) -> None:
        self.provided.append(service)

    def take_idle_press(self, hook: Any) -> Any:
        """As the port: the page may take an idle press (to say the pairing code)."""
        self.idle_press_hooks.append(hook)
        return lambda: self.idle_press_hooks.remove(hook)

    def find(self, kind: type) -> Any:
        return next((s for s in self.provided if isinstance(s, kind)), None)

    def reload(self, config: Config) -> None:
        self.commands.reloaded.append(config)
        self.config = config

    def view(self) -> FakeView:
        return FakeView(**{**self._view.__dict__, "spoken": list(self._view.spoken)})

    def set_state(self, state: str, leg: str | None = None, round: int = 0, **more: Any) -> None:
        self._view.state, self._view.leg, self._view.round = state, leg, round
        for k, v in more.items():
            setattr(self._view, k, v)
        self.bus.publish(FakeEvent({"t": 0.0, "kind": "state", "state": state, "leg": leg,
                                    "round": round}))
