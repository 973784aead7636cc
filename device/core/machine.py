"""The session as one explicit state machine.

Pure: it is fed button events and the time from an injected clock, and answers with
effects (speak, buzz, light, state changes, hold and session records). It never
sleeps, reads a clock or touches hardware; the device loop does that.

idle -> setup(leg) -> hold(leg) -> ask -> switch -> setup(other leg) -> hold -> ask
     -> done -> idle
any state but idle --long press--> cancelled -> idle (in the question itself a long press
means "that hurt"); idle --long press--> the next session's hold length cycles (1, 2, 3,
5 minutes), for that session only.

Set-up is a list of lines, each with its own pause; a short press moves on one line (the
line being said is cut off), two presses in quick succession go straight to the hold.
After each leg the box says to release it, leaves time to lower it, then asks how
tight it felt (1, 2 or 3 presses, counted only once the question has been heard for
``ANSWER_OPEN_S``; a long press: it hurt).

Quiet by design: each hold carries one or two reminders, in turn across holds (the ones the
strap noticed first), every line of a hold fits a talk budget (a quarter of the hold) and a
hold of a minute or more keeps a silent stretch free of everything but safety. Plans are
made in integer milliseconds, so no floating-point tie moves a line.
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
from device.core.routine import spoken_number as _spoken_number


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds (plans are made in these: no float ties)."""
    return int(round(seconds * 1000))


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
    allow_from: Priority | None = None  # lines of this priority or above may still speak


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
    hurt: bool = False  # a long press during the question: that hold hurt
    raised_s: float | None = None  # s from the set-up step raising the leg to the hold clock


@dataclass(frozen=True)
class Answered:
    """How tight ``leg`` felt after its hold: easy, tight, very_tight, hurt (a long press
    during the question), or None (no answer); ``next_s`` is that leg's next hold (s)."""

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


@dataclass(frozen=True)
class Budget:
    """A hold's talk budget: from ``start`` (clock s) at most ``limit_s`` of speech in all;
    ``reserved`` are the (clock s, seconds) of the timing lines still to come, kept out of
    what the strap's coaching and the reminders may use. ``None`` limit: no budget."""

    start: float
    limit_s: float | None
    reserved: tuple[tuple[float, float], ...] = ()
    keep_spent: bool = False  # the same hold's budget moved (clock paused): spent stays


def _moved(budget: Budget, after: float, shift: float) -> Budget:
    """``budget`` with its timing lines after ``after`` (clock s) ``shift`` s later (inf:
    waiting for a paused hold clock), the speech spent so far kept."""
    return replace(budget, keep_spent=True, reserved=tuple(
        (at + shift if at > after else at, secs) for at, secs in budget.reserved))


Effect = (Cue | Hush | Quiet | Buzz | Light | StateChanged | HoldEnded | Answered | SessionEnded
          | Budget)

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
ANSWER_OPEN_S = 1.5  # presses in the question's first 1.5 s (or before it) are no answer
RELEASE_PAUSE_S = 4.0  # after the release line, time to lower the leg before the question
STOP_WAIT_S = 10.0  # "do you want to stop?" unanswered this long: the hold ends gently
TALK_SHARE = 0.25  # at most this share of a hold is speech
SILENCE_S = 20.0  # every hold of SILENCE_FROM_S or more keeps this long a silence
SILENCE_FROM_S = 60.0
REMINDERS_PER_HOLD = 2  # a hold carries one or two reminders (two from LONG_HOLD_S)
LONG_HOLD_S = 120.0
STRAP_RESERVE_S = 6.0  # with a strap, a reminder of its own choosing leaves this much
# talk budget for the strap's word on what is happening now
IN_STRETCH_PAUSE_S = 0.5  # the leg is in the stretch: set-up lines follow this closely
SETTLE_MIN_QUIET_MS = 5000  # a later leg waits this long or more: "settle" opens the wait
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
        self._question_at = math.inf  # when the question starts (clock s)
        self._hurt = False  # the question was answered with a long press
        self.leg_hold: dict[str, float] = {}  # a leg's next hold set by answers in this run
        self.next_session_hold: float | None = None  # an idle long press: next session only
        # reminders in turn: across holds and sessions; the strap's findings first
        self.strap_fitted = False  # with a strap, "bounce" only once bouncing was seen
        self._rotation = 0
        self._noticed: list[str] = []  # topics the strap noticed this session, newest last
        self._seen: set[str] = set()  # topics the strap noticed this session
        self._hold_topics: list[str] = []  # reminders said (or due) in this hold
        self._stop_asked = False  # "do you want to stop?" is waiting for an answer
        self._in_stretch = False  # the strap shows the leg in the stretch (set-up)
        self._leg_up_i = -1  # the set-up line that raises the leg (index in _lines)
        self._raised_at: float | None = None  # when that line was said (clock s)
        self._raised_s: float | None = None  # the hold's: s from that line to its clock
        self._budget: Budget | None = None  # the hold's talk budget as the queue has it

    # ---- public interface -------------------------------------------------------------

    def use_settings(self, session: SessionSettings, rate_wpm: float) -> None:
        """New session settings from the next session on (only while idle)."""
        if self.state is not State.IDLE:
            raise RuntimeError("settings change only between sessions")
        if session.hold_seconds != self.settings.hold_seconds:
            # what the person set wins: the new length is every leg's base from now on
            self.leg_hold.clear()
            self.next_session_hold = None
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
        if self.next_session_hold is not None:
            return self.next_session_hold
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
            elif self.state is State.ASK and now >= self._question_at:
                out += self._take_hurt(now)
            else:
                out += self._cancel(now)
            return out + self.tick(now)
        if self.state is State.IDLE:
            out += self._start(now)
        elif self.state is State.SETUP:
            out += self._setup_press(now)
        elif self.state is State.HOLD and self._stop_asked:
            out += self._go_on(now)  # "do you want to stop?" answered: carry on
        elif self.state is State.HOLD:
            ends = self.hold_ends_at
            if ends is not None and now >= ends and self.paused_at is None:
                out += self._end_hold(ends, "complete")  # it ran out as the button went up
            else:
                out += self._end_hold(now, "early")
        elif self.state is State.ASK:
            out += self._answer_press(now)
        elif self.state is State.SWITCH and self._index >= len(self.plan):
            out += self._finish(now, beep=False)  # after "that hurt" on the last hold
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
        if self._budget is not None:  # the timing lines to come wait with the clock
            out.append(_moved(self._budget, now, math.inf))
        if line:
            out.append(Cue(line, "hold.paused", now + REMINDER_GRACE_S, Priority.TIMING))
        return out

    def resume_hold(self, now: float, line: str | None = None) -> list[Effect]:
        """Start the hold clock again where it stopped."""
        if self.state is not State.HOLD or self.paused_at is None:
            return []
        shift = now - self.paused_at
        self.paused_at = None
        out_go: list[Effect] = []
        if self._stop_asked:  # the leg is back up: that answers "do you want to stop?"
            self._stop_asked = False
            self._drop_timers("stop_wait")
        assert self.hold_started_at is not None
        self.hold_started_at += shift
        self._reminder_until += shift
        for timer in self._paused_timers:
            self._at(timer.at + shift, timer.kind, timer.arg)
        self._paused_timers = []
        end = self.hold_started_at + self.hold_planned_s
        out: list[Effect] = [Quiet(end - COUNTDOWN_S - 0.2, end + END_BEEP_S + 0.2, reset=True)]
        if self._budget is not None:  # ... and come as much later as the clock stood still
            self._budget = _moved(self._budget, now - shift, shift)
            out.append(self._budget)
        if any(t.kind == "ten_left" for t in self._timers):
            out.append(self._ten_left_slot(end))
        if line:
            out.append(Cue(line, "hold.resumed", now + REMINDER_GRACE_S, Priority.TIMING))
        return out_go + out

    def ask_stop(self, now: float) -> list[Effect]:
        """The leg went down a second time in this hold: ask whether to stop (a long press
        stops, a press goes on); unanswered for ``STOP_WAIT_S`` after the question, the hold
        ends gently."""
        if self.state is not State.HOLD or self._stop_asked:
            return []
        self._stop_asked = True
        text = self._words(self.routine.strap["stop_ask"])
        wait_until = now + self._secs(text) + STOP_WAIT_S
        ends = self.hold_ends_at
        if self.paused_at is not None or ends is None or wait_until < ends - TEN_LEFT_S:
            self._at(wait_until, "stop_wait")  # (else the hold ends by itself first)
        return [Quiet(now, now, reset=True),
                Cue(text, "hold.stop_ask", None, Priority.SAFETY)]

    def _go_on(self, now: float) -> list[Effect]:
        self._stop_asked = False
        self._drop_timers("stop_wait")
        return [Hush(), Cue(self._words(self.routine.strap["stop_go_on"]), "hold.stop_go_on",
                            None, Priority.TIMING)]

    def leg_back(self, now: float) -> list[Effect]:
        """The strap shows the leg back in the stretch: that answers "do you want to
        stop?" (the hold goes on)."""
        if self.state is not State.HOLD or not self._stop_asked:
            return []
        self._stop_asked = False
        self._drop_timers("stop_wait")
        return []

    def note(self, topic: str) -> None:
        """The strap noticed mistake ``topic`` (bounce, knee): its reminder comes first in
        this session's next reminder slot."""
        self._seen.add(topic)
        if topic in self._noticed:
            self._noticed.remove(topic)
        self._noticed.append(topic)

    def in_stretch(self, now: float) -> list[Effect]:
        """The strap shows the leg in the stretch during the set-up. At (or just after) the
        step that raises the leg, what is left of the set-up is said in the routine's few
        ``stretch_steps`` instead, and the hold follows them; later on, the rest follows
        without its pauses. Either way the hold clock starts soon, each leg about as long
        in the stretch before its clock."""
        if self.state is not State.SETUP or self._in_stretch:
            return []
        self._in_stretch = True
        self._to_stretch_steps()
        for timer in self._timers:
            if timer.kind in ("line", "hold") and 0 <= self._line_i < len(self._lines):
                pause = self._lines[self._line_i].pause_s
                timer.at = max(now, timer.at - max(0.0, pause - IN_STRETCH_PAUSE_S))
        heapq.heapify(self._timers)
        return []

    def _to_stretch_steps(self) -> None:
        """In the stretch, at or just after the step raising the leg: the rest of the
        set-up becomes the routine's ``stretch_steps`` (once)."""
        r, up, i = self.routine, self._leg_up_i, self._line_i
        if (not self._in_stretch or not r.stretch_steps or up < 0 or not up <= i <= up + 1
                or self.settings.setup_advance == "press"
                or self._lines[-1].key.startswith("setup.stretch.")):
            return
        self._lines = self._lines[:i + 1] + [
            _Line(self._words(step.text), f"setup.stretch.{k + 1}", IN_STRETCH_PAUSE_S)
            for k, step in enumerate(r.stretch_steps)]
        for timer in self._timers:
            if timer.kind in ("line", "hold"):
                timer.kind, timer.arg = "line", i + 1

    @property
    def stop_asked(self) -> bool:
        """Whether "do you want to stop?" waits for an answer."""
        return self._stop_asked

    def end_hold_early(self, now: float, line: str | None = None) -> list[Effect]:
        """End the current hold now, as a press would (saying ``line`` first)."""
        if self.state is not State.HOLD:
            return []
        out = self._end_hold(now, "early")
        if line:  # said first, after the hush that ends the hold's lines
            out.insert(1, Cue(line, "hold.ended_early", None, Priority.TIMING))
        return out

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
        if kind == "question":
            return self._question(now)
        if kind == "stop_wait":
            line = self._words(self.routine.strap["stop_ended"])
            return self.end_hold_early(now, line)
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
        # the next session only, both legs (said so); the legs' own holds come back after
        self.next_session_hold = nxt
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
        elif self.round > 1 and self.plan[self._index - 1][1] != self.round:
            intro = r.round_intro  # a later round's first leg: "Round two. Right leg."
        else:
            intro = r.switch_intro
        lines.append(_Line(self._words(intro, round=_spoken_number(self.round)),
                           "setup.intro", default_pause))
        if first_leg:
            lines.append(_Line(self._words(r.safety), "setup.safety", default_pause,
                               Priority.SAFETY))
            if wait:
                lines.append(_Line(self._words(r.press_hint), "setup.press_hint", 0.5))
        full = first_leg and not self.quick
        steps = r.steps if full else r.switch_steps
        prefix = "setup" if full else "setup.switch"
        up = r.leg_up if full else r.switch_leg_up
        self._leg_up_i = len(lines) + up - 1 if up > 0 else -1
        for i, step in enumerate(steps):
            pause = default_pause if step.pause_s is None else step.pause_s
            text = step.text
            if i == 0 and self.quick and first_leg and r.quick_first:
                text = r.quick_first  # no strap on any foot yet: hook it, do not move it
            lines.append(_Line(self._words(text), f"{prefix}.{i + 1}", pause, wait=wait))
        lines.append(_Line(self._words(r.ready), "setup.ready", 0.3))
        if not wait and not full and not self.quick:
            self._even_out(lines)
        return lines

    def _stretch_plan_s(self, lines: list[_Line], up_i: int) -> float:
        """Planned seconds from line ``up_i`` (the leg goes up) to the hold clock."""
        return sum(self._secs(line.text) + line.pause_s for line in lines[up_i:])

    def _even_out(self, lines: list[_Line]) -> None:
        """Every leg as long in the stretch before its hold clock: a later leg's set-up
        (fewer words) waits quietly after its last step until it has taken as long from
        the step raising the leg as the first leg's full set-up plans (whole ms)."""
        r = self.routine
        if r.leg_up <= 0 or self._leg_up_i < 0 or len(lines) < 2:
            return
        default_pause = self.settings.setup_pause_seconds
        first = [_Line(self._words(step.text), "", default_pause if step.pause_s is None
                       else step.pause_s) for step in r.steps[r.leg_up - 1:]]
        first.append(lines[-1])  # "ready"
        pad_ms = round(1000 * (self._stretch_plan_s(first, 0)
                               - self._stretch_plan_s(lines, self._leg_up_i)))
        settle_ms = round(1000 * self._secs(self._words(r.settle))) if r.settle else 0
        if settle_ms and pad_ms >= settle_ms + SETTLE_MIN_QUIET_MS:
            pause_s = (pad_ms - settle_ms) / 1000  # the line, then quiet until "ready"
            lines.insert(len(lines) - 1, _Line(self._words(r.settle), "setup.settle", pause_s))
        elif pad_ms > 0:
            last = lines[-2]
            lines[-2] = replace(last, pause_s=(round(1000 * last.pause_s) + pad_ms) / 1000)

    def _setup(self, now: float) -> list[Effect]:
        self._timers.clear()
        self.leg, self.round = self.plan[self._index]
        self._lines = self._setup_lines()
        self._line_i = -1
        self._last_setup_press = None
        self._in_stretch = False
        self._raised_at = None
        out: list[Effect] = [self._enter(State.SETUP), Light(Pattern.GLOW, now)]
        return out + self._say_line(0, now)

    def _say_line(self, i: int, now: float) -> list[Effect]:
        """Say set-up line ``i`` now and plan what follows it."""
        self._drop_timers("line", "hold")
        self._line_i = i
        line = self._lines[i]
        if i == self._leg_up_i:
            self._raised_at = now
        if self._in_stretch and i == self._leg_up_i:
            self._to_stretch_steps()  # in the stretch before the leg was asked up
        secs = self._secs(line.text)
        if line.key == "setup.safety":
            self._safety_heard_at = now + secs
        pause = min(line.pause_s, IN_STRETCH_PAUSE_S) if self._in_stretch else line.pause_s
        if i == len(self._lines) - 1:  # "ready": the hold follows
            self._at(now + secs + pause, "hold")
        elif not line.wait:
            self._at(now + secs + pause, "line", i + 1)
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
        self._raised_s = None if self._raised_at is None else round(now - self._raised_at, 3)
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
        # "breathe deeply and relax" opens every hold: never dropped (a safety line may cut
        # it off; it is then said again)
        out.append(Cue(start_text, "hold.start", None, Priority.TIMING))
        busy = [(now, now + opening + self._secs(start_text))]  # times the timing lines take
        busy += self._plan_breath(now, end, busy[0][1])
        busy += self._plan_markers(now, planned)
        ten = self._secs(self._words(self.routine.ten_left))
        if planned > TEN_LEFT_S + 2:
            self._at(end - TEN_LEFT_S, "ten_left")
            busy.append((end - TEN_LEFT_S, end - TEN_LEFT_S + ten))
            out.append(self._ten_left_slot(end))
        out += self._plan_quiet(now, end, planned, busy, safety_s=opening)
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

    def _plan_quiet(self, now: float, end: float, planned: float,
                    busy: list[tuple[float, float]], safety_s: float = 0.0) -> list[Effect]:
        """Plan the hold's reminders (one, or two from ``LONG_HOLD_S``, at least
        ``reminder_seconds`` apart, clear of the timing lines), its silent stretch and its
        talk budget (``safety_s`` of safety opening the hold is outside it). Worked in
        integer milliseconds from the hold's start, so no floating-point tie can move or
        drop a line."""
        self._reminders = []
        self._hold_topics = []
        limit_ms = _ms(planned * TALK_SHARE)
        lines = sorted((_ms(a - now), _ms(b - now)) for a, b in busy)
        timing_ms = sum(b - a for a, b in lines) - _ms(safety_s)
        end_ms = _ms(end - now)
        every_ms = _ms(self.settings.reminder_seconds)
        topics = self.routine.reminders
        quiet_ms = _ms(REMINDER_QUIET_S)
        slots: list[int] = []
        longest = 0
        if every_ms > 0 and topics:
            longest = max(_ms(self._secs(self._words(r.text))) for r in topics)
            first = lines[0][1] + quiet_ms + 1000
            last = end_ms - _ms(TEN_LEFT_S) - longest - quiet_ms - 100
            self._reminder_until = now + last / 1000
            count = REMINDERS_PER_HOLD if planned >= LONG_HOLD_S else 1
            # within the budget (the strap's coaching shares what is left: first come)
            count = min(count, max(0, (limit_ms - timing_ms) // max(1, longest)))
            if last >= first and count > 0:
                step = max(every_ms, (last - first) // count)
                at = first
                for i in range(count):
                    slot = max(first + i * step, at)
                    for a, b in lines:  # keep clear of the timing lines
                        if slot < b + quiet_ms and slot + longest + quiet_ms > a:
                            slot = b + quiet_ms
                    if slot > last:
                        break
                    slots.append(slot)
                    at = slot + max(every_ms, longest + quiet_ms)
        silence: tuple[int, int] | None = None
        while planned >= SILENCE_FROM_S:
            speech = sorted(lines + [(t, t + longest) for t in slots])
            gap_from, gap = 0, -1
            edge = 0
            for a, b in speech:
                if a - edge > gap:
                    gap_from, gap = edge, a - edge
                edge = max(edge, b)
            if end_ms - edge > gap:
                gap_from, gap = edge, end_ms - edge
            if gap >= _ms(SILENCE_S) or not slots:
                if gap >= _ms(SILENCE_S):
                    lead = min(1000, (gap - _ms(SILENCE_S)) // 2)
                    silence = (gap_from + lead, gap_from + lead + _ms(SILENCE_S))
                break
            slots.pop()  # a reminder less: the silence comes first
        for i, slot in enumerate(slots):
            self._at(now + slot / 1000, "reminder", i)
        out: list[Effect] = []
        if silence is not None:
            # no reminder in the silent stretch (a delayed one waits for after it); only
            # the strap's word on something happening now may break it
            out.append(Quiet(now + silence[0] / 1000, now + silence[1] / 1000,
                             allow_from=Priority.COACH))
        reserved = tuple((now + a / 1000, (b - a) / 1000) for a, b in lines if a > 0)
        self._budget = Budget(now, limit_ms / 1000, reserved)
        out.append(self._budget)
        return out

    def _pick_topic(self) -> tuple[str | None, bool]:
        """This slot's reminder and whether the strap chose it: what the strap noticed
        (newest first), else the next in turn (with a strap, bouncing only once it was
        seen); none twice in a hold."""
        keys = [r.key for r in self.routine.reminders]
        for topic in reversed(self._noticed):
            if topic in keys and topic not in self._hold_topics:
                self._noticed.remove(topic)
                return topic, True
        n = len(keys)
        for k in range(n):
            key = keys[(self._rotation + k) % n]
            if key in self._hold_topics:
                continue
            if self.strap_fitted and key == "bounce" and "bounce" not in self._seen:
                continue
            self._rotation = (self._rotation + k + 1) % n
            return key, False
        return None, False

    def _remind(self, i: int) -> list[Effect]:
        topic, noticed = self._pick_topic()
        if topic is None:
            return []
        # with a strap, a reminder of the box's own choosing gives way to the strap's word
        reserve = STRAP_RESERVE_S if self.strap_fitted and not noticed else 0.0
        self._hold_topics.append(topic)
        text = self._words(next(r.text for r in self.routine.reminders if r.key == topic))
        key = f"reminder.{topic}"
        self._reminders.append((key, text))
        # a reminder that cannot start now waits for a later gap in this hold
        return [Cue(text, key, self._reminder_until, Priority.REMINDER, topic=topic,
                    reserve_s=reserve)]

    def _end_hold(self, now: float, ended: str) -> list[Effect]:
        self._timers.clear()
        self._budget = None
        self._stop_asked = False
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
            raised_s=self._raised_s,
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
        """Release first: the release line, time to lower the leg, then the question."""
        self._presses = 0
        self._hurt = False
        release = self._words(self.routine.ask["release"])
        self._question_at = now + END_BEEP_S + 0.2 + self._secs(release) + RELEASE_PAUSE_S
        self._ask_until = math.inf
        self._at(self._question_at, "question")
        return [self._enter(State.ASK), Light(Pattern.SWITCH, now), self._beep_quiet(now),
                Cue(release, "ask.release", None, Priority.TIMING)]

    def _question(self, now: float) -> list[Effect]:
        """How tight was that? Presses count from ``ANSWER_OPEN_S`` into it; nothing else
        (the strap sensor's news) is said until the answer window has closed."""
        text = self._words(self.routine.ask["question"])
        self._question_at = now
        self._ask_until = now + self._secs(text) + self.settings.answer_seconds
        self._at(self._ask_until, "answer")
        return [Quiet(now, self._ask_until, allow=Priority.TIMING),
                Cue(text, "ask.question", None, Priority.TIMING)]

    def _answer_press(self, now: float) -> list[Effect]:
        if now < self._question_at + ANSWER_OPEN_S - 1e-9:
            return []  # before the question, or in its first moment: the hold's gesture
        self._presses += 1
        self._drop_timers("answer")
        if self._presses >= 3:
            return self._take_answer(now)
        self._at(max(self._ask_until, now + ANSWER_SETTLE_S), "answer")
        return []

    def _take_hurt(self, now: float) -> list[Effect]:
        """A long press during the question: that hold hurt. Recorded with the hold; the
        next hold of the leg is not lengthened; the voice says what pain means."""
        self._hurt = True
        self._presses = 0
        return self._take_answer(now)

    def _take_answer(self, now: float) -> list[Effect]:
        self._drop_timers("answer", "question")
        hurt = self._hurt
        answer = "hurt" if hurt else ANSWERS.get(min(self._presses, 3))
        last = self._holds[-1]
        leg = last.leg
        out: list[Effect] = []
        words = self.routine.ask
        before = self.next_hold_s(leg) if self.next_session_hold is None else last.planned_s
        if hurt:
            self._holds[-1] = replace(last, hurt=True)
            nxt = min(before, last.planned_s)  # never longer after pain
            self.leg_hold[leg] = nxt
            out += [Hush(), Cue(self._words(words["hurt"]), "ask.hurt", None, Priority.SAFETY)]
        elif answer is not None:
            self._holds[-1] = replace(last, tightness=answer)
            nxt = adjust_for_tightness(last.planned_s, answer,
                                       self.settings.tightness_step_seconds)
            if last.held_s < last.planned_s / 2:
                nxt = min(nxt, last.planned_s)  # given up before half: never lengthened
            self.leg_hold[leg] = nxt
            text = words[answer]
            if abs(nxt - last.planned_s) > 0.5:
                text += " " + fill(words["next_hold"], leg=leg,
                                   duration=spoken_duration(nxt))
            out.append(Hush())
            out.append(Cue(self._words(text), f"ask.{answer}", None, Priority.TIMING))
        else:
            nxt = self.next_hold_s(leg)
        out.insert(0, Answered(leg, last.round, answer, nxt))
        return out + self._after_leg(now, beep=False, released=True, hurt=hurt)

    # ---- between legs and the end ------------------------------------------------------

    def _after_leg(self, now: float, beep: bool, released: bool = False,
                   hurt: bool = False) -> list[Effect]:
        """On to the next leg, or the end; ``beep``: the end beep is sounding now;
        ``released``: the release line was said already; ``hurt``: the last hold hurt, so
        the box waits for a press (or a long press to stop), never going on by itself."""
        if self._index >= len(self.plan) and not hurt:
            return self._finish(now, beep)
        out: list[Effect] = [self._enter(State.SWITCH), Light(Pattern.SWITCH, now)]
        if beep:
            out.append(self._beep_quiet(now))
        after = self.routine.after_ask
        if self._index >= len(self.plan):  # the last hold hurt: a press finishes
            out.append(Cue(self._words(after["ready_hurt_end"]), "switch", None,
                           Priority.TIMING))
            return out
        next_leg, next_round = self.plan[self._index]
        auto = self.settings.switch == "auto" and not hurt
        if hurt:
            text = after["ready_hurt"]
        elif released:
            if next_round != self.round:
                text = after["ready_round_auto" if auto else "ready_round"]
            else:
                text = after["ready_auto" if auto else "ready"]
        elif next_round != self.round:
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
            ended=ended, started_at=started, raised_s=self._raised_s,
        )
        self._holds.append(record)
        return [record]

    def _stop_session(self, now: float, outcome: str) -> list[Effect]:
        started = self.session_started_at if self.session_started_at is not None else now
        self.hold_started_at = None
        self.next_session_hold = None  # an idle choice was for this session only
        self._noticed.clear()
        self._seen.clear()
        self._stop_asked = False
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
