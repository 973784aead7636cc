"""The session as one explicit state machine.

Pure: it is fed button events and the time from an injected clock, and answers with
effects (speak, buzz, light, state changes, hold and session records). It never
sleeps, reads a clock or touches hardware; the device loop does that.

idle -> setup(leg) -> hold(leg) -> switch -> setup(other leg) -> hold -> ... -> done -> idle
any state but idle --long press--> cancelled -> idle
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from device.breath import Pattern
from device.config import SessionSettings
from device.routine import Routine, fill
from device.voice import speech_seconds


class State(Enum):
    """Where the session is."""

    IDLE = "idle"
    SETUP = "setup"
    HOLD = "hold"
    SWITCH = "switch"
    DONE = "done"
    CANCELLED = "cancelled"


class Press(Enum):
    """Button events, already told apart on the injected clock."""

    SHORT = "press"
    LONG = "long"


# ---- effects -------------------------------------------------------------------------


@dataclass(frozen=True)
class Speak:
    """Say ``text``; drop it if it cannot start by ``not_after`` (clock s)."""

    text: str
    key: str
    not_after: float | None = None


@dataclass(frozen=True)
class Hush:
    """Drop every queued line (a press skipped ahead, or the session stopped)."""


@dataclass(frozen=True)
class Quiet:
    """No speech from ``start`` to ``end`` (clock s): the countdown. ``reset`` first
    forgets earlier windows (the hold clock moved)."""

    start: float
    end: float
    reset: bool = False


@dataclass(frozen=True)
class Buzz:
    """Sound the buzzer: ``name`` is start, tick, count, end or cancel; ``seconds`` long."""

    name: str
    seconds: float


@dataclass(frozen=True)
class Light:
    """Show ``pattern`` from ``since`` (clock s)."""

    pattern: Pattern
    since: float


@dataclass(frozen=True)
class StateChanged:
    """The machine entered ``state`` (``leg`` and ``round`` when they apply)."""

    state: State
    leg: str | None
    round: int


@dataclass(frozen=True)
class HoldEnded:
    """A hold is over: planned and held seconds; ``ended`` is complete, early, or (the
    session stopped during it) cancelled or interrupted."""

    leg: str
    round: int
    planned_s: float
    held_s: float
    ended: str
    started_at: float


@dataclass(frozen=True)
class SessionEnded:
    """The session is over: ``outcome`` is complete, cancelled or interrupted."""

    outcome: str
    holds: tuple[HoldEnded, ...]
    started_at: float
    ended_at: float


Effect = Speak | Hush | Quiet | Buzz | Light | StateChanged | HoldEnded | SessionEnded

# ---- timings (s) ----------------------------------------------------------------------

START_BEEP_S = 0.4
TICK_S = 0.05
COUNT_BEEP_S = 0.15
END_BEEP_S = 1.0
CANCEL_BEEP_S = 0.3
TEN_LEFT_S = 10.0
COUNTDOWN_S = 3.0
REMINDER_GRACE_S = 2.0  # a reminder that cannot start within this is dropped
DONE_LINGER_S = 12.0  # done / cancelled show this long, then idle
LATER_ROUND_SETUP_S = 5.0  # later rounds: time to place the strap before "ready"


@dataclass(order=True)
class _Timer:
    at: float
    seq: int
    kind: str = field(compare=False)
    arg: int = field(compare=False, default=0)


class SessionMachine:
    """A hamstring session, step by step, on whatever clock feeds it."""

    def __init__(
        self,
        routine: Routine,
        session: SessionSettings,
        rate_wpm: float = 160,
        idle_light: Pattern = Pattern.OFF,
        plan_hold: Callable[[str], float] | None = None,
    ) -> None:
        self.routine = routine
        self.settings = session
        self.rate_wpm = rate_wpm
        self.idle_light = idle_light
        self.plan_hold = plan_hold or (lambda leg: self.settings.hold_seconds)
        self.state = State.IDLE
        self.leg: str | None = None
        self.round = 0
        self.plan = [(leg, r) for r in range(1, session.rounds + 1) for leg in session.legs]
        self._index = 0
        self._holds: list[HoldEnded] = []
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._reminder = 0
        self._last_reminder: str | None = None
        self.session_started_at: float | None = None
        self.hold_started_at: float | None = None
        self.hold_planned_s = 0.0
        self.paused_at: float | None = None
        self._paused_timers: list[_Timer] = []

    # ---- public interface -------------------------------------------------------------

    def use_settings(self, session: SessionSettings, rate_wpm: float) -> None:
        """New session settings from the next session on (only while idle)."""
        if self.state is not State.IDLE:
            raise RuntimeError("settings change only between sessions")
        self.settings = session
        self.rate_wpm = rate_wpm
        self.plan = [(leg, r) for r in range(1, session.rounds + 1) for leg in session.legs]

    @property
    def hold_ends_at(self) -> float | None:
        """Clock time the current hold ends, or None outside a hold."""
        started = self.hold_started_at  # read once: screens call this from another thread
        if self.state is not State.HOLD or started is None:
            return None
        return started + self.hold_planned_s

    def next_deadline(self) -> float | None:
        """Clock time of the next thing the machine will do by itself, or None."""
        return self._timers[0].at if self._timers else None

    def handle(self, event: Press, now: float, pressed_at: float | None = None) -> list[Effect]:
        """React to a button event at ``now`` (clock s).

        A short press counts on release but acts on the state it was pressed in
        (``pressed_at``): a press that began in a hold ends that hold, even if the hold
        ran out while the button was down, and does not also switch legs."""
        out = self.tick(now if pressed_at is None else min(pressed_at, now))
        if event is Press.LONG:
            out += self._cancel(now)
            return out + self.tick(now)
        if self.state is State.IDLE:
            out += self._start(now)
        elif self.state is State.SETUP:
            out.append(Hush())
            out += self._begin_hold(now)
        elif self.state is State.HOLD:
            ends = self.hold_ends_at
            if ends is not None and now >= ends and self.paused_at is None:
                out += self._end_hold(ends, "complete")  # it ran out as the button went up
            else:
                out += self._end_hold(now, "early")
        elif self.state is State.SWITCH:
            out += self._next_setup(now)
        else:  # done, cancelled: straight back to idle
            out += self._to_idle(now)
        return out + self.tick(now)

    def tick(self, now: float) -> list[Effect]:
        """Do everything due at or before ``now`` (clock s), in time order."""
        out: list[Effect] = []
        while self._timers and self._timers[0].at <= now:
            timer = heapq.heappop(self._timers)
            out += self._fire(timer)
        return out

    def pause_hold(self, now: float, line: str | None = None) -> list[Effect]:
        """Stop the hold clock (the strap went slack); ``line`` is said as a prompt."""
        if self.state is not State.HOLD or self.paused_at is not None:
            return []
        self.paused_at = now
        self._paused_timers, self._timers = self._timers, []
        out: list[Effect] = [Quiet(now, now, reset=True)]
        if line:
            out.append(Speak(line, "hold.paused", now + REMINDER_GRACE_S))
        return out

    def resume_hold(self, now: float, line: str | None = None) -> list[Effect]:
        """Start the hold clock again where it stopped."""
        if self.state is not State.HOLD or self.paused_at is None:
            return []
        shift = now - self.paused_at
        self.paused_at = None
        assert self.hold_started_at is not None
        self.hold_started_at += shift
        for timer in self._paused_timers:
            self._at(timer.at + shift, timer.kind, timer.arg)
        self._paused_timers = []
        end = self.hold_started_at + self.hold_planned_s
        out: list[Effect] = [Quiet(end - COUNTDOWN_S - 0.2, end + END_BEEP_S + 0.2, reset=True)]
        if line:
            out.append(Speak(line, "hold.resumed", now + REMINDER_GRACE_S))
        return out

    def end_hold_early(self, now: float) -> list[Effect]:
        """End the current hold now, as a press would."""
        if self.state is not State.HOLD:
            return []
        return self._end_hold(now, "early")

    def interrupt(self, now: float) -> list[Effect]:
        """The program is stopping (SIGTERM, Ctrl-C): end any session as interrupted (the
        hold in progress is recorded, ended ``interrupted``)."""
        if self.state in (State.IDLE, State.DONE, State.CANCELLED):
            return []
        out: list[Effect] = self._cut_hold(now, "interrupted")
        out += self._stop_session(now, "interrupted")
        self._timers.clear()
        self.state = State.IDLE
        out.append(StateChanged(State.IDLE, None, 0))
        out.append(Light(Pattern.OFF, now))
        return out

    # ---- helpers ----------------------------------------------------------------------

    def _at(self, at: float, kind: str, arg: int = 0) -> None:
        heapq.heappush(self._timers, _Timer(at, next(self._seq), kind, arg))

    def _secs(self, text: str) -> float:
        return speech_seconds(text, self.rate_wpm)

    def _words(self, text: str, **extra: object) -> str:
        leg = self.leg or "right"
        other = "left" if leg == "right" else "right"
        return fill(text, leg=leg, other=other, **extra)

    def _enter(self, state: State) -> StateChanged:
        self.state = state
        return StateChanged(state, self.leg, self.round)

    def _fire(self, timer: _Timer) -> list[Effect]:
        now = timer.at
        kind = timer.kind
        if kind == "step":
            text = self._words(self.routine.steps[timer.arg])
            return [Speak(text, f"setup.{timer.arg + 1}")]
        if kind == "ready":
            return [Speak(self._words(self.routine.ready), "setup.ready")]
        if kind == "hold":
            return self._begin_hold(now)
        if kind == "reminder":
            return self._remind(now)
        if kind == "tick":
            return [Buzz("tick", TICK_S)]
        if kind == "ten_left":
            text = self._words(self.routine.ten_left)
            return [Speak(text, "hold.ten_left", now + REMINDER_GRACE_S)]
        if kind == "count":
            return [Buzz("count", COUNT_BEEP_S)]
        if kind == "end":
            return self._end_hold(now, "complete")
        if kind == "switch":
            return self._next_setup(now)
        if kind == "idle":
            return self._to_idle(now)
        raise AssertionError(f"unknown timer {kind}")

    # ---- transitions ------------------------------------------------------------------

    def _start(self, now: float) -> list[Effect]:
        self._index = 0
        self._holds = []
        self.session_started_at = now
        return self._setup(now)

    def _setup(self, now: float) -> list[Effect]:
        self._timers.clear()
        self.leg, self.round = self.plan[self._index]
        out: list[Effect] = [self._enter(State.SETUP), Light(Pattern.GLOW, now)]
        intro = self._words(self.routine.intro)
        out.append(Speak(intro, "setup.intro"))
        at = now + self._secs(intro) + self.settings.setup_pause_seconds
        if self.round == 1:
            for i, step in enumerate(self.routine.steps):
                self._at(at, "step", i)
                at += self._secs(self._words(step)) + self.settings.setup_pause_seconds
        else:
            at += LATER_ROUND_SETUP_S
        self._at(at, "ready")
        self._at(at + self._secs(self._words(self.routine.ready)) + 0.3, "hold")
        return out

    def _begin_hold(self, now: float) -> list[Effect]:
        self._timers.clear()
        self.paused_at = None
        self._paused_timers = []
        assert self.leg is not None
        planned = float(self.plan_hold(self.leg))
        self.hold_planned_s = planned
        self.hold_started_at = now
        end = now + planned
        out: list[Effect] = [
            self._enter(State.HOLD),
            Buzz("start", START_BEEP_S),
            Light(Pattern.BREATH, now),
            Quiet(end - COUNTDOWN_S - 0.2, end + END_BEEP_S + 0.2),
            Speak(self._words(self.routine.hold_start), "hold.start", now + REMINDER_GRACE_S),
        ]
        every = self.settings.reminder_seconds
        if every > 0 and self.routine.reminders:
            longest = max(self._secs(self._words(r.text)) for r in self.routine.reminders)
            k = 1
            while now + k * every + longest + 1.0 <= end - TEN_LEFT_S:
                self._at(now + k * every, "reminder")
                k += 1
        tick = self.settings.tick_seconds
        if tick > 0:
            k = 1
            while now + k * tick < end - COUNTDOWN_S - 0.25:
                self._at(now + k * tick, "tick")
                k += 1
        if planned > TEN_LEFT_S + 2:
            self._at(end - TEN_LEFT_S, "ten_left")
        for n in (3, 2, 1):
            self._at(end - n, "count", n)
        self._at(end, "end")
        return out

    def _remind(self, now: float) -> list[Effect]:
        reminders = self.routine.reminders
        pick = reminders[self._reminder % len(reminders)]
        self._reminder += 1
        if pick.key == self._last_reminder and len(reminders) > 1:
            pick = reminders[self._reminder % len(reminders)]
            self._reminder += 1
        self._last_reminder = pick.key
        return [Speak(self._words(pick.text), f"reminder.{pick.key}", now + REMINDER_GRACE_S)]

    def _end_hold(self, now: float, ended: str) -> list[Effect]:
        self._timers.clear()
        assert self.leg is not None and self.hold_started_at is not None
        if self.paused_at is not None:  # ended while paused: the paused time is not held
            self.hold_started_at += now - self.paused_at
            self.paused_at = None
            self._paused_timers = []
        record = HoldEnded(
            leg=self.leg,
            round=self.round,
            planned_s=self.hold_planned_s,
            held_s=now - self.hold_started_at,
            ended=ended,
            started_at=self.hold_started_at,
        )
        self._holds.append(record)
        out: list[Effect] = [Hush()] if ended == "early" else []
        out += [Buzz("end", END_BEEP_S if ended == "complete" else START_BEEP_S), record]
        self._index += 1
        if self._index >= len(self.plan):
            return out + self._finish(now)
        next_leg, next_round = self.plan[self._index]
        out += [self._enter(State.SWITCH), Light(Pattern.SWITCH, now), self._beep_quiet(now)]
        auto = self.settings.switch == "auto"
        if next_round != self.round:
            text = self.routine.next_round_auto if auto else self.routine.next_round
        else:
            text = self.routine.switch_auto if auto else self.routine.switch
        words = self._words(text, next=next_leg, round=next_round)
        out.append(Speak(words, "switch", None))
        if auto:
            pause = max(self.settings.switch_pause_seconds, END_BEEP_S + self._secs(words) + 1.0)
            self._at(now + pause, "switch")
        return out

    def _beep_quiet(self, now: float) -> Quiet:
        """Keep the voice off the end beep."""
        return Quiet(now, now + END_BEEP_S + 0.2)

    def _next_setup(self, now: float) -> list[Effect]:
        return [Hush(), *self._setup(now)]

    def _finish(self, now: float) -> list[Effect]:
        out: list[Effect] = [
            self._enter(State.DONE),
            Light(Pattern.OFF, now),
            self._beep_quiet(now),
        ]
        out += self._stop_session(now, "complete")  # the summary is spoken first
        out.append(Speak(self._words(self.routine.finish), "finish"))
        self._at(now + DONE_LINGER_S, "idle")
        return out

    def _cancel(self, now: float) -> list[Effect]:
        if self.state in (State.IDLE, State.CANCELLED):
            return []
        if self.state is State.DONE:
            return self._to_idle(now)
        out: list[Effect] = [Hush(), *self._cut_hold(now, "cancelled")]
        self._timers.clear()
        out += [self._enter(State.CANCELLED), Light(Pattern.OFF, now)]
        out.append(Buzz("cancel", CANCEL_BEEP_S))
        out.append(Speak(self._words(self.routine.cancel), "cancel"))
        out += self._stop_session(now, "cancelled")
        self._at(now + DONE_LINGER_S / 2, "idle")
        return out

    def _cut_hold(self, now: float, ended: str) -> list[Effect]:
        """The hold in progress, if any, recorded as held so far and ended ``ended``
        (cancelled or interrupted); a waiting hold clock counts up to where it stopped."""
        self._timers.clear()
        started, paused = self.hold_started_at, self.paused_at
        self.paused_at = None
        self._paused_timers = []
        if self.state is not State.HOLD or started is None or self.leg is None:
            return []
        record = HoldEnded(
            leg=self.leg, round=self.round, planned_s=self.hold_planned_s,
            held_s=max(0.0, (paused if paused is not None else now) - started),
            ended=ended, started_at=started,
        )
        self._holds.append(record)
        return [record]

    def _stop_session(self, now: float, outcome: str) -> list[Effect]:
        started = self.session_started_at if self.session_started_at is not None else now
        self.hold_started_at = None
        return [SessionEnded(outcome, tuple(self._holds), started, now)]

    def _to_idle(self, now: float) -> list[Effect]:
        self._timers.clear()
        self.leg = None
        self.round = 0
        return [self._enter(State.IDLE), Light(self.idle_light, now)]
