"""The device loop: wires the parts (button, light, buzzer, voice) to the state machine.

One thread, one run loop. It sleeps on the injected clock until the next thing is due
(a timer of the machine, a light frame, a beep's end, a scripted input) or a button
edge wakes it. Idle, it does not tick at all; while a pattern moves it redraws the light
only when the eye would see a change (``light.step``), at most ``light.hz`` times a
second. Every side effect goes through a small named hook.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from device.box.bus import EventBus
from device.box.clock import Clock
from device.box.events import (
    ButtonEvent,
    BuzzEvent,
    Event,
    HoldEvent,
    LedEvent,
    SessionEvent,
    SpeakCut,
    SpeakDropped,
    SpeakEvent,
    StateEvent,
    TightnessEvent,
)
from device.core.breath import (
    Pattern,
    Piece,
    breath_phase,
    duty,
    level_and_next,
    light_value,
    pieces,
)
from device.core.config import Config
from device.core.cues import Cue, CueQueue, Priority
from device.core.machine import (
    Answered,
    Budget,
    Buzz,
    Effect,
    HoldEnded,
    Hush,
    Light,
    Press,
    Quiet,
    SessionEnded,
    SessionMachine,
    State,
    StateChanged,
)
from device.core.presses import PressTracker
from device.core.records import HoldRecord
from device.core.relaxation import FIGURES as RELAXATION_FIGURES
from device.core.routine import Routine
from device.core.voice_status import voice_status
from drivers.parts import Beeper, BreathLight, StrapButton
from drivers.pins import trim_states
from drivers.speech import Speaker

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]  # a transcript reader: one dict per event
CATCH_UP_S = 0.25  # real s: a light frame up to this late catches up in steps; a longer
# stall (or a clock that jumps) shows the curve where it is at once
LATE_SLACK = 1.1  # a frame a few ms late may show up to 10 % more than a step
TRIM_EVERY_FRAMES = 50  # mock pins: trim their state lists this often (memory stays flat)


@dataclass
class Parts:
    """The hardware the loop drives; ``factory`` is the gpiozero pin factory used."""

    button: StrapButton | None
    light: BreathLight
    beeper: Beeper
    speaker: Speaker
    factory: Any
    is_mock: bool = False


@dataclass(frozen=True)
class BoxView:
    """The read model: the box as a screen, page or socket shows it, taken under the
    loop's lock. Times in s; ``light`` is the duty 0..1; ``tension`` in ``tension_units``."""

    state: str
    leg: str | None
    round: int
    rounds: int
    hold_left_s: float | None
    hold_planned_s: float | None
    light: float
    breath_phase: str | None  # in, full, out or empty (during a hold)
    buzzing: str | None
    spoken: tuple[str, ...] = ()
    tension: float | None = None
    tension_units: str = "kg"
    sensor_status: str = "absent"
    hold_clock_running: bool | None = None
    voice_status: str = "on"
    voice_off_reason: str = ""
    breath_s: float | None = None  # s into the current breath (during a hold)
    # the strap's band to aim for (in tension_units): from sensor.loaded_kg up to the
    # over-pull line drawn from this hold's own level (None until the level is known) ...
    tension_low: float | None = None
    tension_high: float | None = None
    tension_ceiling: float | None = None  # ... and the over-pull ceiling, always (None: no strap)
    next_hold_s: float | None = None  # idle: the next session's first hold (s)
    strap_fitted: bool = False  # a strap sensor add-on is attached (found or not)
    box_clash: str = ""  # MQTT: another live box uses this box_id (what to do about it)

    def to_json(self) -> dict[str, Any]:
        """A plain dict (lists for tuples) for JSON."""
        out = asdict(self)
        out["spoken"] = list(self.spoken)
        return out


_VIEW_FIELDS = frozenset({"strap_fitted", "tension", "tension_units", "sensor_status",
                          "tension_low", "tension_high", "tension_ceiling"})


@dataclass(frozen=True)
class HoldStatus:
    """The hold in progress (clock s): when it started, how long it is planned, when it
    ends and, if its clock waits, since when."""

    started_at: float | None
    planned_s: float
    ends_at: float | None
    paused_at: float | None

    def left(self, now: float) -> float:
        """Seconds still to go (while the clock waits: as it stopped)."""
        if self.started_at is None:
            return 0.0
        at = self.paused_at if self.paused_at is not None else now
        return self.planned_s - (at - self.started_at)


Ticker = tuple[Callable[[float], float | None], Callable[[float], object]]


class DeviceLoop:
    """Runs sessions on ``clock`` with ``parts`` and publishes every event on ``bus``.

    Add-ons use only the public API below: ``say``, ``publish``, ``add_ticker``,
    ``set_hold_planner``, ``set_hold_figures``, ``set_summary``, ``set_idle_pattern``,
    ``pause_hold``/``resume_hold``/``end_hold_early``, ``update_view``,
    ``ask_stop``/``stop_asked``/``leg_back``/``in_stretch``/``note_mistake``/
    ``set_strap_fitted`` (the strap's reading of the person), ``state``,
    ``hold_status()``, ``first_leg``, ``view()``, ``schedule``/``call_soon``, ``stop``.
    """

    def __init__(
        self,
        config: Config,
        routine: Routine,
        clock: Clock,
        parts: Parts,
        bus: EventBus | None = None,
    ) -> None:
        self.config = config
        self.routine = routine
        self.clock = clock
        self.parts = parts
        self.bus = bus if bus is not None else EventBus()
        idle = Pattern.GLOW if config.light.idle == "glow" else Pattern.OFF
        self.idle_pattern = idle
        self.machine = SessionMachine(routine, config.session, config.voice.rate, idle_light=idle,
                                      breath=config.breath,
                                      breath_buzz=config.buzzer.breath_cue)
        self.cues = CueQueue(config.voice.rate)
        self.origin = clock.now()
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self.lock = threading.RLock()  # held while the loop works; the read model takes it
        self._inbox: deque[tuple[float, bool]] = deque()
        held = parts.button.is_pressed if parts.button else False
        self.presses = PressTracker(config.session.long_press_seconds, held_at_start=held)
        if held:
            log.info("button held at start-up: ignored until released")
        self._inputs: list[tuple[float, int, Callable[[], None], bool]] = []
        self._inputs_lock = threading.Lock()
        self._acting: tuple[int, float] | None = None  # (thread, due) of the input running
        self._seq = itertools.count()
        self._pattern = Pattern.OFF
        self._animated = False
        self._since = 0.0
        self._next_frame: float | None = None
        self._frames = 0
        self._chain_key: Pattern | None = None
        self._frame_due: float | None = None  # when (s into the pattern) the next frame is due
        self._last_level: float | None = None  # the perceived level last shown
        self._last_t: float | None = None  # and when (s into the pattern)
        self._chain: tuple[float, list[Piece]] = (0.0, [])
        self._last_led: float | None = None
        self._buzz_off_at: float | None = None
        self._voice_warned = False
        self._applying = 0
        self._dirty = False  # an add-on changed something since the last full step
        self.voice_off_reason = ""
        self.sessions_ended = 0
        self.holds: deque[HoldEnded] = deque(maxlen=100)  # the latest holds
        self.spoken: deque[str] = deque(maxlen=20)
        self._tickers: list[Ticker] = []
        # add-ons that may take an idle short press (the page's pairing: the press says
        # the code instead of starting a session); called in the loop's thread
        self.idle_press_hooks: list[Callable[[], bool]] = []
        self._hold_figures: Callable[[HoldEnded], dict[str, float | None] | None] | None = None
        self._summary: Callable[[SessionEvent], str | None] | None = None
        self._contributed: dict[str, Any] = {}  # read-model fields set by add-ons
        self._hold_clock_running: bool | None = None
        # strap figures per finished hold, (leg, round) -> {"mean", "peak", "steadiness"}
        self.strap_figures: dict[tuple[str, int], dict[str, float | None]] = {}
        if parts.button is not None:
            parts.button.listen(self.button_edge)
        on_idle = getattr(parts.speaker, "on_idle", None)
        if on_idle is not None:
            on_idle(self.wake_now)  # a line that ran past its estimate ends: look again

    # ---- the add-on API ----------------------------------------------------------------

    @property
    def state(self) -> State:
        """Where the session is."""
        return self.machine.state

    @property
    def first_leg(self) -> str:
        """The leg a session starts with."""
        return self.machine.plan[0][0]

    def now(self) -> float:
        """The loop's clock (s)."""
        return self.clock.now()

    def hold_status(self) -> HoldStatus:
        """The hold in progress (all None/0 outside a hold)."""
        m = self.machine
        return HoldStatus(m.hold_started_at, m.hold_planned_s, m.hold_ends_at, m.paused_at)

    def say(self, text: str, key: str, not_after: float | None = None,
            priority: Priority = Priority.TIMING, still: Callable[[], bool] | None = None,
            topic: str = "") -> None:
        """Queue a line (the voice queue's one way in); it starts as soon as the voice is
        free of anything as urgent (``priority``; a more urgent line interrupts a less
        urgent one), and is dropped if it cannot start by ``not_after`` (clock s) or once
        ``still()`` is False (its reason has passed). ``topic``: the mistake it is about."""
        self.say_cue(Cue(text, key, not_after, priority, still, topic))

    def say_cue(self, cue: Cue) -> None:
        """Queue ``cue`` (see ``say``)."""
        self.cues.push(cue)
        self._dirty = True
        if not self._applying:
            self._speech(self.clock.now())

    def wake_now(self) -> None:
        """Wake the loop (from any thread) to look again at what is due."""
        self.wake.set()

    def publish(self, event: Event) -> None:
        """Put ``event`` on the bus."""
        self.bus.publish(event)

    def stamp(self) -> float:
        """``t`` for an event now: s since the loop's origin, 4 decimals."""
        return round(self.clock.now() - self.origin, 4)

    def add_ticker(self, due: Callable[[float], float | None],
                   run: Callable[[float], object]) -> None:
        """Wake the loop at ``due(now)`` (clock s, or None) and call ``run(now)`` at every
        wake (a sensor poll, the watchdog, the nudge)."""
        self._tickers.append((due, run))

    def hold_choice(self, leg: str) -> float | None:
        """``leg``'s next hold (s) as set in this run by a tightness answer or the idle
        hold-length cycle, or None (then the planner decides)."""
        return self.machine.leg_hold.get(leg)

    def outputs(self) -> tuple[float, bool]:
        """The light's duty (0..1) and whether the buzzer is on, read back from the pins."""
        return self.parts.light.value, bool(self.parts.beeper.device.value)

    def next_hold(self, leg: str) -> float:
        """``leg``'s next hold (s) as the box will plan it (safe from any thread)."""
        with self.lock:
            return self.machine.next_hold_s(leg)

    def set_hold_planner(self, plan: Callable[[str], float]) -> Callable[[str], float]:
        """``plan(leg)`` gives each hold's length (s) from now on; returns the planner it
        replaces (an add-on that only overrides some sessions asks it the rest)."""
        before = self.machine.plan_hold
        self.machine.plan_hold = plan
        return before

    def set_hold_figures(self, figures: Callable[[HoldEnded], dict[str, float | None] | None]
                         ) -> None:
        """``figures(hold)`` gives the strap's figures of a hold that just ended."""
        self._hold_figures = figures

    def set_summary(self, summary: Callable[[SessionEvent], str | None]) -> None:
        """``summary(session)`` gives the line said at a complete session's end."""
        self._summary = summary

    def update_view(self, **fields: Any) -> None:
        """Read-model fields an add-on owns (the strap's reading, band and ceiling)."""
        unknown = set(fields) - _VIEW_FIELDS
        if unknown:
            raise TypeError(f"not read-model fields: {sorted(unknown)}")
        with self.lock:
            self._contributed.update(fields)

    def nudge_light(self, on: bool) -> None:
        """The idle nudge light on or off (off: the configured idle light)."""
        self.set_idle_pattern(Pattern.NUDGE if on else None)

    def reload(self, config: Config) -> None:
        """Use ``config`` from the next session on (in the loop's thread, while idle: a
        session in progress is never disturbed). The voice itself is not rebuilt."""
        with self.lock:
            self.machine.use_settings(config.session, config.voice.rate)
            self.machine.breath = config.breath
            self.machine.breath_buzz = config.buzzer.breath_cue
            self.config = config
            self.cues.rate_wpm = config.voice.rate
            self.presses.long_s = config.session.long_press_seconds
            self._chain_key = None  # the breath may have changed: light frames anew
            self._dirty = True
        self.set_idle_pattern()

    def pause_hold(self, since: float) -> None:
        """Stop the hold clock from ``since`` (clock s)."""
        self._hold_clock_running = False
        self.apply(self.machine.pause_hold(since))

    def resume_hold(self, now: float, line: str | None = None) -> None:
        """Run the hold clock again (saying ``line``)."""
        self._hold_clock_running = True
        self.apply(self.machine.resume_hold(now, line))

    def end_hold_early(self, now: float, line: str | None = None) -> None:
        """End the hold now, as a press would (saying ``line``)."""
        self.apply(self.machine.end_hold_early(now, line))

    def ask_stop(self, now: float) -> None:
        """The leg went down again: ask whether to stop (see ``SessionMachine.ask_stop``)."""
        self.apply(self.machine.ask_stop(now))

    @property
    def stop_asked(self) -> bool:
        """Whether "do you want to stop?" waits for an answer in the hold."""
        return self.machine.stop_asked

    def leg_back(self, now: float) -> None:
        """The strap shows the leg back up (see ``SessionMachine.leg_back``)."""
        self.apply(self.machine.leg_back(now))

    def in_stretch(self, now: float) -> None:
        """The strap shows the leg in the stretch in the set-up (see
        ``SessionMachine.in_stretch``)."""
        self.apply(self.machine.in_stretch(now))

    def note_mistake(self, topic: str) -> None:
        """The strap noticed ``topic`` (bounce, knee): its reminder comes next."""
        self.machine.note(topic)

    def set_strap_fitted(self, fitted: bool = True) -> None:
        """A strap sensor is fitted: reminders follow what it notices."""
        self.machine.strap_fitted = fitted

    # ---- inputs -----------------------------------------------------------------------

    def button_edge(self, pressed: bool) -> None:
        """A button edge (from gpiozero's callback thread): stamp it and wake the loop. An
        edge made by a scheduled input in the loop's thread takes that input's time."""
        acting = self._acting
        at = acting[1] if acting is not None and acting[0] == threading.get_ident() \
            else self.clock.now()
        self._inbox.append((at, pressed))
        self.wake.set()

    def schedule(self, at: float, action: Callable[[], None], *, timed: bool = False) -> None:
        """Run ``action`` in the loop at ``at`` seconds after the loop's origin. ``timed``:
        it is an input that happens at ``at`` (the release of a press that lasts so long),
        so a button edge it makes is stamped ``at`` even if the loop runs late.

        Safe from any thread (a screen's key handler, a test)."""
        with self._inputs_lock:
            heapq.heappush(self._inputs, (self.origin + at, next(self._seq), action, timed))
        self.wake.set()

    def input_time(self) -> float:
        """When an input made now happens (s after the origin): inside a ``timed`` action,
        its own time; else the clock's."""
        acting = self._acting
        if acting is not None and acting[0] == threading.get_ident():
            return acting[1] - self.origin
        return self.clock.now() - self.origin

    def call_soon(self, action: Callable[[], None]) -> None:
        """Run ``action`` in the loop's thread as soon as it wakes."""
        self.schedule(self.clock.now() - self.origin, action)

    def stop(self) -> None:
        """Ask the loop to finish (safe from any thread or a signal handler)."""
        self.stop_event.set()
        self.wake.set()

    # ---- the run loop -----------------------------------------------------------------

    def run(self, until: float | None = None, stop_when_done: bool = False) -> None:
        """Run until stopped, until ``until`` s after the origin, or (if asked) until a
        session has ended and nothing is left to do."""
        end = None if until is None else self.origin + until
        if self.machine.state is State.IDLE:
            self._on_light(Light(self.idle_pattern, self.clock.now()))
        # Between two full steps, a wake for a light frame alone (nothing else due before
        # ``others``, nothing woke the loop, no add-on changed anything) only draws the
        # frame: the cheapest wake the loop has, and most wakes in a hold are these.
        others: float | None = None
        deadline: float | None
        virtual = self._is_virtual()
        try:
            while not self.stop_event.is_set():
                now = self.clock.now()
                if end is not None and now >= end - 1e-9:
                    break
                woken = self.wake.is_set()
                if woken:  # clear() takes a lock: skip it when not set
                    self.wake.clear()
                if not woken and not self._dirty and others is not None \
                        and now < others - 1e-9:
                    with self.lock:
                        self._frame(now)
                        for _, run in self._tickers:
                            run(now)
                        frame = self._next_frame
                        if virtual:  # the frames up to the next other thing, in one go
                            frame, now = self._frames_until(frame, others, end, now)
                    deadline = others if frame is None else min(others, frame)
                else:
                    with self.lock:
                        self._dirty = False
                        self.step(now)
                        if stop_when_done and self._finished():
                            break
                        others = self._deadline(now, frames=False)
                        frame = self._next_frame
                    if frame is not None:
                        deadline = frame if others is None else min(others, frame)
                    else:
                        deadline = others
                    if others is None:
                        others = math.inf
                if deadline == math.inf:
                    deadline = None
                if end is not None:
                    deadline = end if deadline is None else min(deadline, end)
                if deadline is None and self._is_virtual():
                    break  # nothing will ever happen on virtual time
                if deadline is not None and deadline <= now:
                    continue
                self.clock.wait_until(self.wake, deadline)
        finally:
            with self.lock:
                if self.stop_event.is_set():
                    self.interrupt()
                self.shutdown()

    def _frames_until(self, frame: float | None, others: float, end: float | None,
                      now: float) -> tuple[float | None, float]:
        """On virtual time: draw the light frames due before ``others`` (and ``end``) one
        after another, exactly as the run loop would wake for each (same times, same
        order), without going round it; stop at anything else (a wake, an add-on's
        change, a stop). Returns the next frame's time and the clock's time now."""
        limit = others if end is None else min(others, end)
        clock = self.clock
        while frame is not None and now < frame < limit - 1e-9 \
                and not self._dirty and not self.wake.is_set() \
                and not self.stop_event.is_set():
            if clock.wait_until(self.wake, frame):  # jumps straight there (virtual time)
                break
            now = clock.now()
            if now >= limit - 1e-9:  # a late wake: the run loop takes what is due first
                break
            self._frame(now)
            for _, run in self._tickers:
                run(now)
            frame = self._next_frame
        return frame, now

    @property
    def light_moving(self) -> bool:
        """True while the light animates (a screen then redraws it; else it is still)."""
        return self._animated

    @property
    def frames(self) -> int:
        """Light frames drawn so far (animated patterns only)."""
        return self._frames

    def _is_virtual(self) -> bool:
        return self.clock.virtual

    def step(self, now: float) -> None:
        """Do everything due at ``now``."""
        while True:
            with self._inputs_lock:
                if not self._inputs or self._inputs[0][0] > now + 1e-9:
                    break
                due, _, action, timed = heapq.heappop(self._inputs)
            if not timed:
                action()
                continue
            # a timed input happens at its own time: a button edge it makes (a mock pin
            # driven from here) is stamped with it, even when the loop runs late
            self._acting = (threading.get_ident(), due)
            try:
                action()
            finally:
                self._acting = None
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
        for _, run in self._tickers:
            run(now)

    def _press(self, press: Press, at: float, injected: bool = False) -> None:
        self.bus.publish(ButtonEvent(self.stamp(), press.value))
        began = None
        if press is Press.SHORT:
            began = at if injected else self.presses.last_down_at
            if self.machine.state is State.IDLE and any(
                    hook() for hook in list(self.idle_press_hooks)):
                return  # taken by an add-on
        self.apply(self.machine.handle(press, at, pressed_at=began))

    def command(self, press: Press) -> None:
        """A press from the command port (safe from any thread): handled in the loop
        exactly as one told apart on the button."""
        self.call_soon(lambda: self._press(press, self.clock.now(), injected=True))

    def _deadline(self, now: float, frames: bool = True) -> float | None:
        speaker = self.parts.speaker
        talking = bool(self.cues.pending) and speaker.busy()
        if talking and self._is_virtual():
            self._wait_for_voice()
            talking = speaker.busy()
        times = [
            self.machine.next_deadline(),
            self.presses.deadline(),
            self._buzz_off_at,
            self._next_frame if frames else None,
            self.cues.deadline(now, speaker_busy=talking),
            self._inputs[0][0] if self._inputs else None,
        ]
        if self.cues.busy_until > now:
            times.append(self.cues.busy_until)  # the line being said ends
        if talking and (self._is_virtual() or not getattr(speaker, "tells_idle", False)):
            # a real voice still talking that cannot say when it stops: look again in
            # 50 ms of real time (on virtual time: 50 ms of it, after a real wait above)
            speed = 1.0 if self._is_virtual() else self.clock.speed
            times.append(now + 0.05 * max(1.0, speed))
        for ticker_due, _ in self._tickers:
            times.append(ticker_due(now))
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def _wait_for_voice(self) -> None:
        """On virtual time a real voice still talking takes real time: block on it (up to
        half a real second, so a stop is still heard) instead of spinning through
        virtual time."""
        wait = getattr(self.parts.speaker, "wait_spoken", None)
        if wait is not None:
            wait(0.5)

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
        if effects:
            self._dirty = True
        self._applying += 1
        try:
            self._apply(effects)
        finally:
            self._applying -= 1
        if effects:
            self._speech(self.clock.now())

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Cue):
                self.cues.push(effect)
            elif isinstance(effect, Hush):
                self.cues.hush()
                if effect.cut:
                    self._cut_speech("hush")
            elif isinstance(effect, Answered):
                self.bus.publish(TightnessEvent(self.stamp(), effect.leg, effect.round,
                                                effect.answer or "none", effect.next_s))
            elif isinstance(effect, Quiet):
                if effect.reset:
                    self.cues.clear_quiet()
                if effect.end > effect.start:
                    self.cues.quiet(effect.start, effect.end, effect.allow, effect.allow_from)
            elif isinstance(effect, Budget):
                self.cues.budget(effect.start, effect.limit_s, effect.reserved,
                                 effect.keep_spent)
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

    def _on_state(self, change: StateChanged) -> None:
        if change.state is not State.HOLD:
            self.cues.clear_quiet()
            self.cues.clear_budget()
            self._hold_clock_running = None
        else:
            self._hold_clock_running = True
        self.bus.publish(StateEvent(self.stamp(), change.state.value, change.leg, change.round))
        log.info("state %s %s", change.state.value, change.leg or "")

    def set_idle_pattern(self, pattern: Pattern | None = None) -> None:
        """What the light shows while idle (off, glow, or the nudge; None: the configured
        one); applied at once if idle."""
        if pattern is None:
            pattern = Pattern.GLOW if self.config.light.idle == "glow" else Pattern.OFF
        if pattern is self.idle_pattern:
            return
        self.idle_pattern = pattern
        self.machine.idle_light = pattern
        if self.machine.state is State.IDLE:
            self._on_light(Light(pattern, self.clock.now()))

    def _on_buzz(self, buzz: Buzz) -> None:
        self.parts.beeper.on(buzz.name)
        self._buzz_off_at = self.clock.now() + buzz.seconds
        self.bus.publish(BuzzEvent(self.stamp(), buzz.name, buzz.seconds))

    def _on_light(self, light: Light) -> None:
        self._dirty = True
        self._pattern = light.pattern
        self._animated = light.pattern.animated
        self._since = light.since
        self._next_frame = self._frame_due = None
        self._frame(self.clock.now(), force=True)

    def _on_hold_end(self, hold: HoldEnded) -> None:
        self.holds.append(hold)
        figures: dict[str, float | None] = {}
        if self._hold_figures is not None:
            try:
                figures = self._hold_figures(hold) or {}
            except Exception:
                log.exception("strap figures failed")
        if figures:
            self.strap_figures[(hold.leg, hold.round)] = {
                k: v for k, v in figures.items() if v is not None}
        # no strap: the time in the stretch the set-up gave (as the history keeps it)
        shown = {**figures, "pre_s": _first(figures.get("pre_s"), hold.raised_s)}
        if shown["pre_s"] is None:
            del shown["pre_s"]
        self.bus.publish(HoldEvent(
            self.stamp(), hold.leg, hold.round, round(hold.planned_s, 3), round(hold.held_s, 3),
            hold.ended, tuple(shown.items())))

    def _on_session_end(self, ended: SessionEnded) -> None:
        self.sessions_ended += 1
        results = self.hold_results(ended.holds)
        event = SessionEvent(self.stamp(), ended.outcome, len(ended.holds),
                             results=results, started_at=ended.started_at,
                             ended_at=ended.ended_at)
        self.bus.publish(event)
        text: str | None = None
        if self._summary is not None:
            try:
                text = self._summary(event)
            except Exception:  # the record keeper must never stop the box
                log.exception("session summary failed")
        self.strap_figures.clear()
        if ended.outcome == "complete" and text:
            self.say(text, "summary")

    def hold_results(self, holds: tuple[HoldEnded, ...]) -> tuple[HoldRecord, ...]:
        """The holds with the strap's figures where there were any."""
        results = []
        for h in holds:
            figures = self.strap_figures.get((h.leg, h.round), {})
            results.append(HoldRecord(
                leg=h.leg, round=h.round, planned_s=h.planned_s, held_s=h.held_s,
                ended=h.ended, mean=figures.get("mean"), peak=figures.get("peak"),
                steadiness=figures.get("steadiness"), tightness=h.tightness,
                overpull_s=figures.get("overpull_s"),
                **{k: figures.get(k) for k in RELAXATION_FIGURES}, hurt=h.hurt,
                pre_s=_first(figures.get("pre_s"), h.raised_s),
                base_s=self.config.session.hold_seconds,
            ))
        return tuple(results)

    def _speech(self, now: float) -> None:
        if not self.cues.pending:  # nothing to start or drop (called at every wake)
            return
        speaker = self.parts.speaker
        busy = speaker.busy()
        if self.cues.interrupting(now, busy) is not None:
            self._cut_speech("interrupted")  # a more urgent line goes first
            busy = False
        started, dropped = self.cues.next_cue(now, busy)
        for cue in dropped:
            log.debug("dropped stale cue %s", cue.key)
            self.bus.publish(SpeakDropped(self.stamp(), cue.key, cue.text))
        if started is None:
            return
        if not self.spoken or self.spoken[-1] != started.cue.text:
            self.spoken.append(started.cue.text)  # a line cut and said again: listed once
        self.bus.publish(SpeakEvent(self.stamp(), started.cue.text, started.cue.key,
                                    started.duration_s))
        try:
            speaker.say(started.cue.text)
        except Exception as exc:  # a broken voice never stops a session
            if not self._voice_warned:
                self._voice_warned = True
                self.voice_off_reason = str(exc) or type(exc).__name__
                log.warning("voice failed (%s); going on with light and buzzer", exc)

    def _cut_speech(self, why: str) -> None:
        """Stop the line being said (``why``: hush, the rest is dropped; interrupted, it
        goes back in the queue)."""
        now = self.clock.now()
        speaking = self.cues.current if now < self.cues.busy_until - 1e-9 else None
        if why == "interrupted":
            self.cues.cut(now)
        else:
            self.cues.stop(now)
        if speaking is None and not self.parts.speaker.busy():
            return
        try:
            self.parts.speaker.stop()
        except Exception:  # a broken voice never stops a session
            log.exception("stopping the voice failed")
        if speaking is not None:
            self.bus.publish(SpeakCut(self.stamp(), speaking.cue.key, why))

    def _frame(self, now: float, force: bool = False) -> None:
        """Draw the light if a frame is due, and work out when the next one is: the moment
        the perceived level will have moved by ``light.step`` (solved on the pattern's
        curve), no sooner than 1/``light.hz`` s of real time after this one."""
        if not force and (self._next_frame is None or now < self._next_frame - 1e-9):
            return
        pattern = self._pattern
        t = now - self._since
        light = self.parts.light
        at: float | None = None
        speed = max(1.0, self.clock.speed)
        if self._animated:
            if self._chain_key is not pattern:
                self._chain_key = pattern
                self._chain = pieces(pattern, self.config.breath, self.config.light)
            period, chain = self._chain
            step = self.config.light.step
            level, at = level_and_next(t, step, period, chain)
            last, last_t = self._last_level, self._last_t
            if not force and last is not None and last_t is not None \
                    and abs(level - last) > step * LATE_SLACK \
                    and t - (self._frame_due or t) <= CATCH_UP_S * speed:
                # Further than one step from what is shown: woken late (a busy machine),
                # or the light.hz cap. Move no further than the curve moves between the
                # last frame and this one as scheduled (one step, or more under the cap),
                # and catch up at the light.hz rate: a late wake shows no jump.
                due = t if self._frame_due is None else min(t, self._frame_due)
                limit = max(step, abs(level_and_next(due, step, period, chain)[0]
                                      - level_and_next(last_t, step, period, chain)[0]))
                if abs(level - last) > limit * LATE_SLACK:
                    level = last + math.copysign(limit, level - last)
                    at = t
            self._last_level, self._last_t = level, t
            light.value = duty(level)
        else:
            self._last_level = self._last_t = None
            light.value = light_value(pattern, t, self.config.breath, self.config.light)
        shown = round(light.duty, 4)
        if shown != self._last_led:
            self._last_led = shown
            if self.bus.wants("led"):
                self.bus.publish(LedEvent(round(now - self.origin, 4), shown))
        if at is None:
            self._next_frame = self._frame_due = None
            return
        # light.hz frames per real second at most: sped-up clocks (the simulator) get no more
        gap = speed / self.config.light.hz
        self._frame_due = max(at, t + gap)
        self._next_frame = self._since + self._frame_due
        self._frames += 1
        if self.parts.is_mock and self._frames % TRIM_EVERY_FRAMES == 0:
            trim_states(self.parts.factory)

    # ---- status and shutdown ----------------------------------------------------------

    @property
    def _led_wanted(self) -> bool:
        return self.bus.wants("led")

    def view(self) -> BoxView:
        """The read model, safe from any thread (taken under the loop's lock)."""
        with self.lock:
            m = self.machine
            now = self.clock.now()
            ends = m.hold_ends_at
            if ends is not None and m.paused_at is not None:
                ends += now - m.paused_at  # the hold clock is waiting
            phase, breath_s = None, None
            if m.state is State.HOLD and m.hold_started_at is not None:
                breath_s = (now - m.hold_started_at) % self.config.breath.period
                phase, _ = breath_phase(breath_s, self.config.breath)
            next_hold = None
            if m.state is State.IDLE:
                try:
                    next_hold = m.next_hold_s(self.first_leg)
                except Exception:  # a planner that fails now fails again at set-up
                    log.debug("next hold not known", exc_info=True)
            speaker = self.parts.speaker
            voice, reason = voice_status(
                self.config.voice.enabled, speaker.available,
                getattr(speaker, "last_line_ok", None),
                str(getattr(speaker, "last_error", "") or ""), self.voice_off_reason)
            return BoxView(
                state=m.state.value, leg=m.leg, round=m.round,
                rounds=self.config.session.rounds,
                hold_left_s=None if ends is None else max(0.0, ends - now),
                hold_planned_s=m.hold_planned_s if m.state is State.HOLD else None,
                light=self.parts.light.value, breath_phase=phase, breath_s=breath_s,
                buzzing=self.parts.beeper.sounding, spoken=tuple(self.spoken),
                hold_clock_running=self._hold_clock_running,
                voice_status=voice, voice_off_reason=reason,
                next_hold_s=next_hold, **self._contributed,
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
                self.bus.publish(LedEvent(self.stamp(), 0.0))


def _first(*values: float | None) -> float | None:
    """The first value that is there (the strap's measure before the set-up's plan)."""
    return next((v for v in values if v is not None), None)
