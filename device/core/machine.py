"""The session as one explicit state machine.

Pure: it is fed button events and the time from an injected clock, and answers with
effects (speak, buzz, light, state changes, hold and session records). It never
sleeps, reads a clock or touches hardware; the device loop does that.

idle -> setup(leg) -> hold(leg) -> ask -> switch -> setup(other leg) -> hold -> ask
     -> done -> idle
any state but idle --long press--> cancelled -> idle; idle --long press--> next session's
hold length cycles (1, 2, 3, 5 minutes).

Set-up is a list of lines, each with its own pause; a short press moves on one line (the
line being said is cut off), two presses in quick succession go straight to the hold.
After each leg the box asks how tight it felt (1, 2 or 3 presses).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum

from device.core.breath import Pattern
from device.core.config import BreathSettings, SessionSettings
from device.core.cues import Cue, Priority, speech_seconds
from device.core.progression import HOLD_CHOICES_S, MIN_HOLD_S, adjust_for_tightness
from device.core.routine import Routine, fill, spoken_duration


class State(Enum):
    """Where the session is."""

    IDLE = "idle"
    SETUP = "setup"
    HOLD = "hold"
    ASK = "ask"  # after a leg: how tight was it? (answered with 1, 2 or 3 presses)
    SWITCH = "switch"
    DONE = "done"
    CANCELLED = "cancelled"


class Press(Enum):
    """Button events, already told apart on the injected clock."""

    SHORT = "press"
    LONG = "long"


# ---- effects -------------------------------------------------------------------------

Speak = Cue  # the machine's "say this" is the voice queue's cue: one type, with its priority


@dataclass(frozen=True)
class Hush:
    """Drop every queued line and cut off the one being said (a press moved on, or the
    session stopped)."""

    cut: bool = True


@dataclass(frozen=True)
class Quiet:
    """No speech from ``start`` to ``end`` (clock s): the countdown. ``reset`` first
    forgets earlier windows (the hold clock moved)."""

    start: float
    end: float
    reset: bool = False
    allow: Priority | None = None  # lines of this priority may still speak (a kept slot)


@dataclass(frozen=True)
class Buzz:
    """Sound the buzzer: ``name`` is start, tick, breath, count, end or cancel; ``seconds``
    long."""

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
    session stopped during it) cancelled or interrupted; ``tightness`` the answer given
    after it (easy, tight, very_tight or None)."""

    leg: str
    round: int
    planned_s: float
    held_s: float
    ended: str
    started_at: float
    tightness: str | None = None


@dataclass(frozen=True)
class Answered:
    """How tight ``leg`` felt after its hold: easy, tight, very_tight, or None (no answer);
    ``next_s`` is that leg's next hold (s)."""

    leg: str
    round: int
    answer: str | None
    next_s: float


@dataclass(frozen=True)
class SessionEnded:
    """The session is over: ``outcome`` is complete, cancelled or interrupted."""

    outcome: str
    holds: tuple[HoldEnded, ...]
    started_at: float
    ended_at: float


Effect = Cue | Hush | Quiet | Buzz | Light | StateChanged | HoldEnded | Answered | SessionEnded

# ---- timings (s) ----------------------------------------------------------------------

START_BEEP_S = 0.4
TICK_S = 0.05
BREATH_CUE_S = 0.06  # the soft tone / click at each in-breath
COUNT_BEEP_S = 0.15
END_BEEP_S = 1.0
CANCEL_BEEP_S = 0.3
TEN_LEFT_S = 10.0
COUNTDOWN_S = 3.0
REMINDER_GRACE_S = 2.0  # a strap status line that cannot start within this is dropped
DONE_LINGER_S = 12.0  # done / cancelled show this long, then idle
DOUBLE_PRESS_S = 0.8  # two short presses this close in set-up: straight to the hold
MARKERS_FROM_S = 90.0  # holds longer than this get "halfway" and "one minute left"
MARKER_MERGE_S = 3.0  # halfway and one minute left this close: one line
REMINDER_QUIET_S = 2.0  # silence before and after a reminder (s)
ANSWER_SETTLE_S = 1.5  # after the last press, the answer is taken this much later
QUICK_HOLD_S = 60.0
ANSWERS = {1: "easy", 2: "tight", 3: "very_tight"}


@dataclass(order=True)
class _Timer:
    at: float
    seq: int
    kind: str = field(compare=False)
    arg: int = field(compare=False, default=0)


@dataclass(frozen=True)
class _Line:
    """One set-up line: what to say, its key, the pause after it (s), its priority, and
    whether (setup_advance = "press") it waits for a press."""

    text: str
    key: str
    pause_s: float
    priority: Priority = Priority.TIMING
    wait: bool = False


class SessionMachine:
    """A hamstring session, step by step, on whatever clock feeds it."""

    def __init__(
        self,
        routine: Routine,
        session: SessionSettings,
        rate_wpm: float = 160,
        idle_light: Pattern = Pattern.OFF,
        plan_hold: Callable[[str], float] | None = None,
        breath: BreathSettings | None = None,
        breath_buzz: bool = False,
    ) -> None:
        self.routine = routine
        self.settings = session
        self.rate_wpm = rate_wpm
        self.idle_light = idle_light
        self.plan_hold = plan_hold or (lambda leg: self.settings.hold_seconds)
        self.breath = breath or BreathSettings()
        self.breath_buzz = breath_buzz
        self.state = State.IDLE
        self.leg: str | None = None
        self.round = 0
        rounds = 1 if self.quick else session.rounds
        self.plan = [(leg, r) for r in range(1, rounds + 1) for leg in session.legs]
        self._index = 0
        self._holds: list[HoldEnded] = []
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self.session_started_at: float | None = None
        self.hold_started_at: float | None = None
        self.hold_planned_s = 0.0
        self.paused_at: float | None = None
        self._paused_timers: list[_Timer] = []
        # set-up
        self._lines: list[_Line] = []
        self._line_i = -1
        self._last_setup_press: float | None = None
        self._safety_heard_at: float | None = None  # when the safety line ends (clock s)
        # the hold
        self._reminders: list[tuple[str, str]] = []  # (key, text) in the order planned
        self._reminder_until = 0.0
        # after a leg
        self._presses = 0
        self._ask_until = 0.0
        self.leg_hold: dict[str, float] = {}  # a leg's next hold set by answers / the cycle

    # ---- public interface -------------------------------------------------------------

    def use_settings(self, session: SessionSettings, rate_wpm: float) -> None:
        """New session settings from the next session on (only while idle)."""
        if self.state is not State.IDLE:
            raise RuntimeError("settings change only between sessions")
        self.settings = session
        self.rate_wpm = rate_wpm
        rounds = 1 if self.quick else session.rounds
        self.plan = [(leg, r) for r in range(1, rounds + 1) for leg in session.legs]

    @property
    def quick(self) -> bool:
        """A quick session: short set-up on both legs, one 60 s hold each."""
        return self.settings.mode == "quick"

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

    def next_hold_s(self, leg: str) -> float:
        """The length (s) ``leg``'s next hold will have."""
        if self.quick:
            return QUICK_HOLD_S
        chosen = self.leg_hold.get(leg)
        return float(chosen) if chosen is not None else float(self.plan_hold(leg))

    def handle(self, event: Press, now: float, pressed_at: float | None = None) -> list[Effect]:
        """React to a button event at ``now`` (clock s).

        A short press counts on release but acts on the state it was pressed in
        (``pressed_at``): a press that began in a hold ends that hold, even if the hold
        ran out while the button was down, and does not also switch legs."""
        out = self.tick(now if pressed_at is None else min(pressed_at, now))
        if event is Press.LONG:
            if self.state is State.IDLE:
                out += self._cycle_hold(now)
            else:
                out += self._cancel(now)
            return out + self.tick(now)
        if self.state is State.IDLE:
            out += self._start(now)
        elif self.state is State.SETUP:
            out += self._setup_press(now)
        elif self.state is State.HOLD:
            ends = self.hold_ends_at
            if ends is not None and now >= ends and self.paused_at is None:
                out += self._end_hold(ends, "complete")  # it ran out as the button went up
            else:
                out += self._end_hold(now, "early")
        elif self.state is State.ASK:
            out += self._answer_press(now)
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
            out.append(Cue(line, "hold.paused", now + REMINDER_GRACE_S, Priority.TIMING))
        return out

    def resume_hold(self, now: float, line: str | None = None) -> list[Effect]:
        """Start the hold clock again where it stopped."""
        if self.state is not State.HOLD or self.paused_at is None:
            return []
        shift = now - self.paused_at
        self.paused_at = None
        assert self.hold_started_at is not None
        self.hold_started_at += shift
        self._reminder_until += shift
        for timer in self._paused_timers:
            self._at(timer.at + shift, timer.kind, timer.arg)
        self._paused_timers = []
        end = self.hold_started_at + self.hold_planned_s
        out: list[Effect] = [Quiet(end - COUNTDOWN_S - 0.2, end + END_BEEP_S + 0.2, reset=True)]
        if any(t.kind == "ten_left" for t in self._timers):
            out.append(self._ten_left_slot(end))
        if line:
            out.append(Cue(line, "hold.resumed", now + REMINDER_GRACE_S, Priority.TIMING))
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

    def _drop_timers(self, *kinds: str) -> None:
        self._timers = [t for t in self._timers if t.kind not in kinds]
        heapq.heapify(self._timers)

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
        if kind == "line":
            return self._say_line(timer.arg, now)
        if kind == "hold":
            return self._begin_hold(now)
        if kind == "reminder":
            return self._remind(timer.arg)
        if kind == "tick":
            return [Buzz("tick", TICK_S)]
        if kind == "breath_buzz":
            return [Buzz("breath", BREATH_CUE_S)]
        if kind in ("breath_in", "breath_out"):
            text = self.routine.hold["breath_in" if kind == "breath_in" else "breath_out"]
            return [Cue(text, f"hold.{kind}", now + 0.4, Priority.TIMING)]
        if kind in ("halfway", "minute_left", "halfway_minute"):
            return [Cue(self._words(self.routine.hold[kind]), f"hold.{kind}", now + 8.0,
                        Priority.TIMING)]
        if kind == "ten_left":
            text = self._words(self.routine.ten_left)
            end = now + TEN_LEFT_S
            # never dropped while it can still end before the 3-2-1 beeps
            latest = end - COUNTDOWN_S - 0.25 - self._secs(text)
            return [Cue(text, "hold.ten_left", latest, Priority.TIMING)]
        if kind == "count":
            return [Buzz("count", COUNT_BEEP_S)]
        if kind == "end":
            return self._end_hold(now, "complete")
        if kind == "answer":
            return self._take_answer(now)
        if kind == "switch":
            return self._next_setup(now)
        if kind == "idle":
            return self._to_idle(now)
        raise AssertionError(f"unknown timer {kind}")

    # ---- idle -------------------------------------------------------------------------

    def _cycle_hold(self, now: float) -> list[Effect]:
        """Idle long press: the next session's hold goes to the next of 1, 2, 3, 5 min."""
        first = self.plan[0][0]
        current = self.next_hold_s(first) if not self.quick else self.settings.hold_seconds
        nxt = next((c for c in HOLD_CHOICES_S if c > current + 0.5), HOLD_CHOICES_S[0])
        for leg in self.settings.legs:
            self.leg_hold[leg] = nxt
        text = fill(self.routine.idle["hold_length"], duration=spoken_duration(nxt))
        return [Cue(text, "idle.hold_length", None, Priority.TIMING)]

    # ---- set-up -----------------------------------------------------------------------

    def _start(self, now: float) -> list[Effect]:
        self._index = 0
        self._holds = []
        self._safety_heard_at = None
        self.session_started_at = now
        return self._setup(now)

    def _setup_lines(self) -> list[_Line]:
        r = self.routine
        default_pause = self.settings.setup_pause_seconds
        wait = self.settings.setup_advance == "press"
        first_leg = self._index == 0
        lines: list[_Line] = []
        if self.quick and first_leg:
            intro = r.quick_intro
        elif first_leg:
            intro = r.intro
        else:
            intro = r.switch_intro if self.round == 1 else r.intro
        lines.append(_Line(self._words(intro), "setup.intro", default_pause))
        if first_leg:
            lines.append(_Line(self._words(r.safety), "setup.safety", default_pause,
                               Priority.SAFETY))
            if wait:
                lines.append(_Line(self._words(r.press_hint), "setup.press_hint", 0.5))
        full = first_leg and not self.quick
        steps = r.steps if full else r.switch_steps
        prefix = "setup" if full else "setup.switch"
        for i, step in enumerate(steps):
            pause = default_pause if step.pause_s is None else step.pause_s
            lines.append(_Line(self._words(step.text), f"{prefix}.{i + 1}", pause, wait=wait))
        lines.append(_Line(self._words(r.ready), "setup.ready", 0.3))
        return lines

    def _setup(self, now: float) -> list[Effect]:
        self._timers.clear()
        self.leg, self.round = self.plan[self._index]
        self._lines = self._setup_lines()
        self._line_i = -1
        self._last_setup_press = None
        out: list[Effect] = [self._enter(State.SETUP), Light(Pattern.GLOW, now)]
        return out + self._say_line(0, now)

    def _say_line(self, i: int, now: float) -> list[Effect]:
        """Say set-up line ``i`` now and plan what follows it."""
        self._drop_timers("line", "hold")
        self._line_i = i
        line = self._lines[i]
        secs = self._secs(line.text)
        if line.key == "setup.safety":
            self._safety_heard_at = now + secs
        if i == len(self._lines) - 1:  # "ready": the hold follows
            self._at(now + secs + line.pause_s, "hold")
        elif not line.wait:
            self._at(now + secs + line.pause_s, "line", i + 1)
        return [Cue(line.text, line.key, None, line.priority)]

    def _setup_press(self, now: float) -> list[Effect]:
        """A short press in set-up: on one line (two quick presses: to the hold)."""
        double = (self._last_setup_press is not None
                  and now - self._last_setup_press <= DOUBLE_PRESS_S)
        self._last_setup_press = now
        out: list[Effect] = [Hush()]
        if double:
            return out + self._skip_to_hold(now)
        if self._line_i + 1 < len(self._lines):
            return out + self._say_line(self._line_i + 1, now)
        return out + self._begin_hold(now)

    def _skip_to_hold(self, now: float) -> list[Effect]:
        """Straight to the hold (the safety line opens it if it has not been heard)."""
        heard = self._safety_heard_at is not None and self._safety_heard_at <= now
        return self._begin_hold(now, safety_first=self._index == 0 and not heard)

    # ---- the hold ---------------------------------------------------------------------

    def _begin_hold(self, now: float, safety_first: bool = False) -> list[Effect]:
        self._timers.clear()
        self.paused_at = None
        self._paused_timers = []
        assert self.leg is not None
        planned = self.next_hold_s(self.leg)
        self.hold_planned_s = planned
        self.hold_started_at = now
        end = now + planned
        start_text = self._words(self.routine.hold_start, duration=spoken_duration(planned))
        out: list[Effect] = [
            self._enter(State.HOLD),
            Buzz("start", START_BEEP_S),
            Light(Pattern.BREATH, now),
            Quiet(end - COUNTDOWN_S - 0.2, end + END_BEEP_S + 0.2),
        ]
        opening = 0.0
        if safety_first:  # set-up skipped before the safety line was heard: it opens the hold
            text = self._words(self.routine.safety)
            opening = self._secs(text)
            self._safety_heard_at = now + opening
            out.append(Cue(text, "setup.safety", None, Priority.SAFETY))
        out.append(Cue(start_text, "hold.start", now + opening + 10.0, Priority.TIMING))
        busy = [(now, now + opening + self._secs(start_text))]  # times the timing lines take
        busy += self._plan_breath(now, end, busy[0][1])
        busy += self._plan_markers(now, planned)
        ten = self._secs(self._words(self.routine.ten_left))
        if planned > TEN_LEFT_S + 2:
            self._at(end - TEN_LEFT_S, "ten_left")
            busy.append((end - TEN_LEFT_S, end - TEN_LEFT_S + ten))
            out.append(self._ten_left_slot(end))
        self._plan_reminders(now, end, busy)
        tick = self.settings.tick_seconds
        if tick > 0:
            k = 1
            while now + k * tick < end - COUNTDOWN_S - 0.25:
                self._at(now + k * tick, "tick")
                k += 1
        for n in (3, 2, 1):
            self._at(end - n, "count", n)
        self._at(end, "end")
        return out

    def _ten_left_slot(self, end: float) -> Quiet:
        """Keep "ten seconds to go"'s slot: nothing else starts that would run into it."""
        ten = self._secs(self._words(self.routine.ten_left))
        return Quiet(end - TEN_LEFT_S - 0.05, end - TEN_LEFT_S + ten + 0.1,
                     allow=Priority.TIMING)

    def _plan_breath(self, now: float, end: float, free_from: float) -> list[tuple[float, float]]:
        """The breath cues: a soft tone at each in-breath (optional) and "in"/"out" for
        the first few breaths after the opening line. Returns the times they speak."""
        b = self.breath
        period = b.period
        busy: list[tuple[float, float]] = []
        if self.breath_buzz:
            k = 1
            while now + k * period < end - COUNTDOWN_S - 0.5:
                self._at(now + k * period, "breath_buzz")
                k += 1
        n = self.breath.voice_breaths
        if n > 0:
            k = max(1, math.ceil((free_from - now + 0.3) / period - 1e-9))
            for _ in range(n):
                at_in = now + k * period
                at_out = at_in + b.inhale + b.hold_in
                if at_out + 1.0 > end - TEN_LEFT_S - 1.0:
                    break
                self._at(at_in, "breath_in")
                self._at(at_out, "breath_out")
                busy.append((at_in, at_in + self._secs(self.routine.hold["breath_in"])))
                busy.append((at_out, at_out + self._secs(self.routine.hold["breath_out"])))
                k += 1
        return busy

    def _plan_markers(self, now: float, planned: float) -> list[tuple[float, float]]:
        """Halfway and one minute left in holds past 90 s (one line if they meet)."""
        if planned <= MARKERS_FROM_S:
            return []
        half, minute = planned / 2, planned - 60.0
        hold = self.routine.hold
        if abs(half - minute) < MARKER_MERGE_S:
            marks = [(minute, "halfway_minute")]
        else:
            marks = [(half, "halfway"), (minute, "minute_left")]
        busy = []
        for at, kind in marks:
            self._at(now + at, kind)
            busy.append((now + at, now + at + self._secs(self._words(hold[kind]))))
        return busy

    def _plan_reminders(self, now: float, end: float, busy: list[tuple[float, float]]) -> None:
        """Spread the reminders through the hold: every topic at least once, none more than
        twice, about ``reminder_seconds`` apart in long holds, clear of the timing lines."""
        every = self.settings.reminder_seconds
        topics = self.routine.reminders
        self._reminders = []
        if every <= 0 or not topics:
            return
        texts = [(f"reminder.{r.key}", self._words(r.text)) for r in topics]
        longest = max(self._secs(t) for _, t in texts)
        first = busy[0][1] + REMINDER_QUIET_S + 1.0
        last = end - TEN_LEFT_S - longest - REMINDER_QUIET_S - 0.1
        self._reminder_until = last
        window = last - first
        if window < 0:
            return
        n = len(texts)
        fit = int(window // (longest + REMINDER_QUIET_S)) + 1
        count = min(max(n, int(window // every) + 1), 2 * n, fit)
        step = window / (count - 1) if count > 1 else 0.0
        at = first
        for i in range(count):
            slot = max(first + i * step, at)
            for start, stop in sorted(busy):  # keep clear of the timing lines
                if slot < stop + REMINDER_QUIET_S and slot + longest + REMINDER_QUIET_S > start:
                    slot = stop + REMINDER_QUIET_S
            if slot > last:
                break
            self._reminders.append(texts[i % n])
            self._at(slot, "reminder", len(self._reminders) - 1)
            at = slot + longest + REMINDER_QUIET_S

    def _remind(self, i: int) -> list[Effect]:
        key, text = self._reminders[i]
        topic = key.split(".", 1)[1]
        # a reminder that cannot start now waits for a later gap in this hold
        return [Cue(text, key, self._reminder_until, Priority.REMINDER, topic=topic)]

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
        if self.settings.ask_tightness and not self.quick:
            return out + self._ask(now)
        return out + self._after_leg(now, beep=True)

    # ---- how tight was it? ------------------------------------------------------------

    def _ask(self, now: float) -> list[Effect]:
        self._presses = 0
        text = self._words(self.routine.ask["question"])
        self._ask_until = now + END_BEEP_S + 0.2 + self._secs(text) + self.settings.answer_seconds
        self._at(self._ask_until, "answer")
        return [self._enter(State.ASK), Light(Pattern.SWITCH, now), self._beep_quiet(now),
                Cue(text, "ask.question", None, Priority.TIMING)]

    def _answer_press(self, now: float) -> list[Effect]:
        self._presses += 1
        self._drop_timers("answer")
        if self._presses >= 3:
            return self._take_answer(now)
        self._at(max(self._ask_until, now + ANSWER_SETTLE_S), "answer")
        return []

    def _take_answer(self, now: float) -> list[Effect]:
        self._drop_timers("answer")
        answer = ANSWERS.get(min(self._presses, 3))
        last = self._holds[-1]
        leg = last.leg
        out: list[Effect] = []
        if answer is not None:
            self._holds[-1] = replace(last, tightness=answer)
            nxt = adjust_for_tightness(last.planned_s, answer,
                                       self.settings.tightness_step_seconds)
            self.leg_hold[leg] = nxt
            words = self.routine.ask
            text = words[answer]
            if abs(nxt - last.planned_s) > 0.5:
                text += " " + fill(words["next_hold"], leg=leg,
                                   duration=spoken_duration(nxt))
            out.append(Hush())
            out.append(Cue(self._words(text), f"ask.{answer}", None, Priority.TIMING))
        else:
            nxt = self.next_hold_s(leg)
        out.insert(0, Answered(leg, last.round, answer, nxt))
        return out + self._after_leg(now, beep=False)

    # ---- between legs and the end ------------------------------------------------------

    def _after_leg(self, now: float, beep: bool) -> list[Effect]:
        """On to the next leg, or the end; ``beep``: the end beep is sounding now."""
        if self._index >= len(self.plan):
            return self._finish(now, beep)
        next_leg, next_round = self.plan[self._index]
        out: list[Effect] = [self._enter(State.SWITCH), Light(Pattern.SWITCH, now)]
        if beep:
            out.append(self._beep_quiet(now))
        auto = self.settings.switch == "auto"
        if next_round != self.round:
            text = self.routine.next_round_auto if auto else self.routine.next_round
        else:
            text = self.routine.switch_auto if auto else self.routine.switch
        words = self._words(text, next=next_leg, round=next_round)
        out.append(Cue(words, "switch", None, Priority.TIMING))
        if auto:
            pause = max(self.settings.switch_pause_seconds, END_BEEP_S + self._secs(words) + 1.0)
            self._at(now + pause, "switch")
        return out

    def _beep_quiet(self, now: float) -> Quiet:
        """Keep the voice off the end beep."""
        return Quiet(now, now + END_BEEP_S + 0.2)

    def _next_setup(self, now: float) -> list[Effect]:
        return [Hush(), *self._setup(now)]

    def _finish(self, now: float, beep: bool = True) -> list[Effect]:
        out: list[Effect] = [self._enter(State.DONE), Light(Pattern.OFF, now)]
        if beep:
            out.append(self._beep_quiet(now))
        out += self._stop_session(now, "complete")  # the summary is spoken first
        out.append(Cue(self._words(self.routine.finish), "finish", None, Priority.TIMING))
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
        out.append(Cue(self._words(self.routine.cancel), "cancel", None, Priority.TIMING))
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


__all__ = [
    "ANSWERS", "Answered", "Buzz", "Cue", "Effect", "HoldEnded", "Hush", "Light", "MIN_HOLD_S",
    "Press", "Quiet", "SessionEnded", "SessionMachine", "Speak", "State", "StateChanged",
]
