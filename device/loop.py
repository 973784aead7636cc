"""The device loop: wires the parts (button, light, buzzer, voice) to the state machine.

One thread, one run loop. It sleeps on the injected clock until the next thing is due
(a timer of the machine, a light frame, a beep's end, a scripted input) or a button
edge wakes it. Idle, it does not tick at all; it animates the light at ``light.hz``
only while a pattern moves. Every side effect goes through a small named hook.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from device.breath import NUDGE_PERIOD, SWITCH_PERIOD, Pattern, light_value
from device.clock import Clock
from device.config import Config
from device.history import HoldRecord, summary_line
from device.machine import (
    Buzz,
    Effect,
    HoldEnded,
    Hush,
    Light,
    Press,
    Quiet,
    SessionEnded,
    SessionMachine,
    Speak,
    State,
    StateChanged,
)
from device.presses import PressTracker
from device.routine import Routine
from device.voice import Cue, CueQueue
from drivers.parts import Beeper, BreathLight, StrapButton
from drivers.pins import trim_states
from drivers.speech import Speaker

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]
TRIM_EVERY_FRAMES = 50  # mock pins: trim their state lists this often (memory stays flat)
PERIODS: dict[Pattern, Callable[[Any], float]] = {  # repeating patterns: one period (s)
    Pattern.BREATH: lambda breath: breath.period,
    Pattern.SWITCH: lambda breath: SWITCH_PERIOD,
    Pattern.NUDGE: lambda breath: NUDGE_PERIOD,
}


@dataclass
class Parts:
    """The hardware the loop drives; ``factory`` is the gpiozero pin factory used."""

    button: StrapButton | None
    light: BreathLight
    beeper: Beeper
    speaker: Speaker
    factory: Any
    is_mock: bool = False


@dataclass
class Snapshot:
    """What a screen shows of the box right now."""

    state: str
    leg: str | None
    round: int
    rounds: int
    hold_left_s: float | None
    light: float
    buzzing: str | None
    spoken: list[str] = field(default_factory=list)


class DeviceLoop:
    """Runs sessions on ``clock`` with ``parts``; ``listeners`` get every event as a dict."""

    def __init__(
        self,
        config: Config,
        routine: Routine,
        clock: Clock,
        parts: Parts,
        listeners: list[Listener] | None = None,
        on_session_end: Callable[[SessionEnded], str | None] | None = None,
        plan_hold: Callable[[str], float] | None = None,
    ) -> None:
        self.config = config
        self.routine = routine
        self.clock = clock
        self.parts = parts
        self.listeners: list[Listener] = list(listeners or [])
        self.on_session_end = on_session_end
        idle = Pattern.GLOW if config.light.idle == "glow" else Pattern.OFF
        self.idle_pattern = idle
        self.machine = SessionMachine(
            routine, config.session, config.voice.rate, idle_light=idle, plan_hold=plan_hold
        )
        self.cues = CueQueue(config.voice.rate)
        self.origin = clock.now()
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self._inbox: deque[tuple[float, bool]] = deque()
        held = parts.button.is_pressed if parts.button else False
        self.presses = PressTracker(config.session.long_press_seconds, held_at_start=held)
        if held:
            log.info("button held at start-up: ignored until released")
        self._inputs: list[tuple[float, int, Callable[[], None]]] = []
        self._inputs_lock = threading.Lock()
        self._seq = itertools.count()
        self._pattern = Pattern.OFF
        self._animated = False
        self._since = 0.0
        self._next_frame: float | None = None
        self._frames = 0
        self._table_key: tuple[Pattern, float] | None = None
        self._table: list[float | None] = []
        self._last_led: float | None = None
        self._buzz_off_at: float | None = None
        self._voice_warned = False
        self.sessions_ended = 0
        self.holds: deque[HoldEnded] = deque(maxlen=100)  # the latest holds
        self.spoken: deque[str] = deque(maxlen=6)
        self.on_setup: Callable[[str, int], str | None] | None = None
        self.state_hooks: list[Callable[[StateChanged, float], None]] = []
        self.hold_figures: Callable[[HoldEnded], dict[str, float | None] | None] | None = None
        self.tension_kg: float | None = None  # latest strap reading, for screens
        self.tension_units = "kg"  # kg, or rel before the strap is calibrated
        self.sensor_status = "absent"  # absent, ok or lost
        # strap figures per finished hold, (leg, round) -> {"mean", "peak", "steadiness"}
        self.strap_figures: dict[tuple[str, int], dict[str, float | None]] = {}
        self.hooks_per_wake: list[Callable[[float], None]] = []
        self._deadline_hooks: list[Callable[[float], float | None]] = []
        if parts.button is not None:
            parts.button.listen(self.button_edge)

    # ---- inputs -----------------------------------------------------------------------

    def button_edge(self, pressed: bool) -> None:
        """A button edge (from gpiozero's callback thread): stamp it and wake the loop."""
        self._inbox.append((self.clock.now(), pressed))
        self.wake.set()

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        """Run ``action`` in the loop at ``at`` seconds after the loop's origin.

        Safe from any thread (a screen's key handler, a test)."""
        with self._inputs_lock:
            heapq.heappush(self._inputs, (self.origin + at, next(self._seq), action))
        self.wake.set()

    def call_soon(self, action: Callable[[], None]) -> None:
        """Run ``action`` in the loop's thread as soon as it wakes."""
        self.schedule(self.clock.now() - self.origin, action)

    def stop(self) -> None:
        """Ask the loop to finish (safe from any thread or a signal handler)."""
        self.stop_event.set()
        self.wake.set()

    # ---- events out -------------------------------------------------------------------

    def emit(self, kind: str, **details: Any) -> None:
        """Send one event (``t`` in s since the loop's origin) to every listener."""
        if not self.listeners:
            return
        event = {"t": round(self.clock.now() - self.origin, 4), "kind": kind, **details}
        for listener in self.listeners:
            listener(event)

    # ---- the run loop -----------------------------------------------------------------

    def run(self, until: float | None = None, stop_when_done: bool = False) -> None:
        """Run until stopped, until ``until`` s after the origin, or (if asked) until a
        session has ended and nothing is left to do."""
        end = None if until is None else self.origin + until
        if self.machine.state is State.IDLE:
            self._on_light(Light(self.idle_pattern, self.clock.now()))
        try:
            while not self.stop_event.is_set():
                now = self.clock.now()
                if end is not None and now >= end - 1e-9:
                    break
                if self.wake.is_set():  # clear() takes a lock: skip it when not set
                    self.wake.clear()
                self.step(now)
                if stop_when_done and self._finished():
                    break
                deadline = self._deadline(now)
                if end is not None:
                    deadline = end if deadline is None else min(deadline, end)
                if deadline is None and self._is_virtual():
                    break  # nothing will ever happen on virtual time
                if deadline is not None and deadline <= now:
                    continue
                self.clock.wait_until(self.wake, deadline)
        finally:
            if self.stop_event.is_set():
                self.interrupt()
            self.shutdown()

    @property
    def frames(self) -> int:
        """Light frames drawn so far (animated patterns only)."""
        return self._frames

    def _is_virtual(self) -> bool:
        return hasattr(self.clock, "advance_to")

    def step(self, now: float) -> None:
        """Do everything due at ``now``."""
        while True:
            with self._inputs_lock:
                if not self._inputs or self._inputs[0][0] > now + 1e-9:
                    break
                _, _, action = heapq.heappop(self._inputs)
            action()
        while self._inbox:
            at, pressed = self._inbox.popleft()
            press = self.presses.edge(pressed, at)
            if press is not None:
                self._press(press, at)
        press = self.presses.check(now)
        if press is not None:
            self._press(press, now)
        self.apply(self.machine.tick(now))
        if self._buzz_off_at is not None and now >= self._buzz_off_at - 1e-9:
            self._buzz_off_at = None
            self.parts.beeper.off()
        self._speech(now)
        self._frame(now)
        for hook in self.hooks_per_wake:
            hook(now)

    def _press(self, press: Press, at: float) -> None:
        self.emit("button", action=press.value)
        began = self.presses.last_down_at if press is Press.SHORT else None
        self.apply(self.machine.handle(press, at, pressed_at=began))

    def _deadline(self, now: float) -> float | None:
        times = [
            self.machine.next_deadline(),
            self.presses.deadline(),
            self._buzz_off_at,
            self._next_frame,
            self.cues.deadline(now),
            self._inputs[0][0] if self._inputs else None,
        ]
        if self.cues.busy_until > now:
            times.append(self.cues.busy_until)  # the line being said ends
        if self.cues.pending and self.parts.speaker.busy():
            if self._is_virtual():
                self._wait_for_voice()
            times.append(now + 0.05)  # a real voice still talking: look again soon
        for hook in self._deadline_hooks:
            times.append(hook(now))
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def _wait_for_voice(self) -> None:
        """On virtual time a real voice still talking takes real time: block on it (up to
        half a real second, so a stop is still heard) instead of spinning through
        virtual time."""
        wait = getattr(self.parts.speaker, "wait_spoken", None)
        if wait is not None:
            wait(0.5)

    def add_deadline_hook(self, hook: Callable[[float], float | None]) -> None:
        """Let a helper (sensor, watchdog) wake the loop at the time it returns."""
        self._deadline_hooks.append(hook)

    def _finished(self) -> bool:
        return (
            self.sessions_ended > 0
            and self.machine.state is State.IDLE
            and not self._inputs
            and not self._inbox
            and not self.cues.pending
            and self.clock.now() >= self.cues.busy_until
            and self._buzz_off_at is None
        )

    # ---- effects ----------------------------------------------------------------------

    def apply(self, effects: list[Effect]) -> None:
        """Carry out the machine's effects, each through its hook."""
        for effect in effects:
            if isinstance(effect, Speak):
                self.cues.push(Cue(effect.text, effect.key, effect.not_after))
            elif isinstance(effect, Hush):
                self.cues.hush()
            elif isinstance(effect, Quiet):
                if effect.reset:
                    self.cues.clear_quiet()
                if effect.end > effect.start:
                    self.cues.quiet(effect.start, effect.end)
            elif isinstance(effect, Buzz):
                self._on_buzz(effect)
            elif isinstance(effect, Light):
                self._on_light(effect)
            elif isinstance(effect, StateChanged):
                self._on_state(effect)
            elif isinstance(effect, HoldEnded):
                self._on_hold_end(effect)
            elif isinstance(effect, SessionEnded):
                self._on_session_end(effect)
        if effects:
            self._speech(self.clock.now())

    def _on_state(self, change: StateChanged) -> None:
        if change.state is not State.HOLD:
            self.cues.clear_quiet()
        self.emit("state", state=change.state.value, leg=change.leg, round=change.round)
        log.info("state %s %s", change.state.value, change.leg or "")
        for hook in self.state_hooks:
            hook(change, self.clock.now())
        if change.state is State.SETUP and change.leg and self.on_setup is not None:
            try:
                line = self.on_setup(change.leg, change.round)
            except Exception:
                log.exception("set-up hook failed")
                line = None
            if line:
                self.cues.push(Cue(line, "progress"))

    def set_idle_pattern(self, pattern: Pattern) -> None:
        """What the light shows while idle (off, glow, or the nudge); applied at once if idle."""
        if pattern is self.idle_pattern:
            return
        self.idle_pattern = pattern
        self.machine.idle_light = pattern
        if self.machine.state is State.IDLE:
            self._on_light(Light(pattern, self.clock.now()))

    def _on_buzz(self, buzz: Buzz) -> None:
        self.parts.beeper.on(buzz.name)
        self._buzz_off_at = self.clock.now() + buzz.seconds
        self.emit("buzz", name=buzz.name, seconds=buzz.seconds)

    def _on_light(self, light: Light) -> None:
        self._pattern = light.pattern
        self._animated = light.pattern.animated
        self._since = light.since
        self._next_frame = None
        self._frame(self.clock.now(), force=True)

    def _on_hold_end(self, hold: HoldEnded) -> None:
        self.holds.append(hold)
        figures: dict[str, float | None] = {}
        if self.hold_figures is not None:
            try:
                figures = self.hold_figures(hold) or {}
            except Exception:
                log.exception("strap figures failed")
        if figures:
            self.strap_figures[(hold.leg, hold.round)] = {
                k: v for k, v in figures.items() if v is not None}
        self.emit(
            "hold", leg=hold.leg, round=hold.round, planned_s=round(hold.planned_s, 3),
            held_s=round(hold.held_s, 3), ended=hold.ended, **figures,
        )

    def _on_session_end(self, ended: SessionEnded) -> None:
        self.sessions_ended += 1
        self.emit("session", outcome=ended.outcome, holds=len(ended.holds))
        text: str | None = summary_line(self.hold_records(ended.holds), 0, 0)
        if self.on_session_end is not None:
            try:
                said = self.on_session_end(ended)
                text = said if said is not None else text
            except Exception:  # the record keeper must never stop the box
                log.exception("session-end hook failed")
        self.strap_figures.clear()
        if ended.outcome == "complete" and text:
            self.cues.push(Cue(text, "summary"))

    def hold_records(self, holds: tuple[HoldEnded, ...]) -> list[HoldRecord]:
        """The holds as history records, with the strap's figures where there were any."""
        records = []
        for h in holds:
            figures = self.strap_figures.get((h.leg, h.round), {})
            records.append(HoldRecord(
                leg=h.leg, round=h.round, planned_s=h.planned_s, held_s=h.held_s,
                ended=h.ended, mean=figures.get("mean"), peak=figures.get("peak"),
                steadiness=figures.get("steadiness"),
            ))
        return records

    def _speech(self, now: float) -> None:
        if not self.cues.pending:  # nothing to start or drop (called at every wake)
            return
        speaker = self.parts.speaker
        started, dropped = self.cues.next_cue(now, speaker.busy())
        for cue in dropped:
            log.debug("dropped stale cue %s", cue.key)
            self.emit("speak_dropped", key=cue.key, text=cue.text)
        if started is None:
            return
        self.spoken.append(started.cue.text)
        self.emit("speak", text=started.cue.text, key=started.cue.key,
                  duration_s=started.duration_s)
        try:
            speaker.say(started.cue.text)
        except Exception as exc:  # a broken voice never stops a session
            if not self._voice_warned:
                self._voice_warned = True
                log.warning("voice failed (%s); going on with light and buzzer", exc)

    def _frame(self, now: float, force: bool = False) -> None:
        pattern = self._pattern
        if not force and (self._next_frame is None or now < self._next_frame - 1e-9):
            return
        # hz frames per real second: sped-up clocks (the simulator) get no more
        hz = self.config.light.hz / max(1.0, getattr(self.clock, "speed", 1.0))
        light = self.parts.light
        light.value = self._frame_value(pattern, now - self._since, hz)
        shown = round(light.duty, 4)
        if shown != self._last_led:
            self._last_led = shown
            self.emit("led", value=shown)
        if self._animated:
            k = math.floor((now - self._since) * hz + 1e-6) + 1
            self._next_frame = self._since + k / hz
            self._frames += 1
            if self.parts.is_mock and self._frames % TRIM_EVERY_FRAMES == 0:
                trim_states(self.parts.factory)
        else:
            self._next_frame = None

    def _frame_value(self, pattern: Pattern, t: float, hz: float) -> float:
        """The light's duty ``t`` s into ``pattern``; frames on the ``hz`` grid of a
        repeating pattern are computed once per period and then looked up."""
        if self._table_key != (pattern, hz):
            self._table_key = (pattern, hz)
            self._table = []
            period = PERIODS.get(pattern)
            if period is not None:
                per = period(self.config.breath) * hz
                n = round(per)
                if abs(per - n) < 1e-6 and 0 < n <= 100_000:
                    self._table = [None] * n
        table = self._table
        if table:
            x = t * hz
            k = round(x)
            if abs(x - k) < 1e-3:
                i = k % len(table)
                value = table[i]
                if value is None:
                    value = table[i] = light_value(pattern, i / hz, self.config.breath,
                                                   self.config.light)
                return value
        return light_value(pattern, t, self.config.breath, self.config.light)

    # ---- status and shutdown ----------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The box as a screen would show it."""
        ends = self.machine.hold_ends_at
        now = self.clock.now()
        if ends is not None and self.machine.paused_at is not None:
            ends += now - self.machine.paused_at  # the hold clock is waiting
        return Snapshot(
            state=self.machine.state.value,
            leg=self.machine.leg,
            round=self.machine.round,
            rounds=self.config.session.rounds,
            hold_left_s=None if ends is None else max(0.0, ends - now),
            light=self.parts.light.value,
            buzzing=self.parts.beeper.sounding,
            spoken=list(self.spoken),
        )

    def interrupt(self) -> None:
        """End a running session as interrupted (SIGTERM, Ctrl-C, quit)."""
        self.cues.hush()
        self.apply(self.machine.interrupt(self.clock.now()))

    def shutdown(self) -> None:
        """Outputs safe: light and buzzer off, voice stopped."""
        try:
            self.parts.beeper.off()
        finally:
            self._pattern = Pattern.OFF
            self._animated = False
            self._next_frame = None
            self.parts.light.off()
            if self._last_led != 0.0:
                self._last_led = 0.0
                self.emit("led", value=0.0)
