"""History and habit wired into the box: records, summaries, progression and the nudge.

No database call runs on the loop: sessions are written by a queued bus subscriber (its
own thread), and what the loop needs from the history (the week's sessions, the streak,
whether today is done, each leg's latest sessions) comes from a small in-memory ``Tally``
loaded once before the loop runs and updated as sessions end. The ``history`` event is
published in the loop once the write is done; on virtual time the loop waits for the
write when the box goes idle (no virtual time passes), so transcripts are reproducible.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

from device.box.events import Event, HistoryEvent, NudgeEvent, SessionEvent, StateEvent
from device.box.port import BoxPort
from device.core.config import Config
from device.core.machine import State
from device.core.progression import next_hold
from device.core.records import HoldRecord, LegSession, SessionRecord, instant_us
from device.core.routine import Routine
from device.core.streaks import (
    done_today,
    sessions_this_week,
    streak_days,
    streak_days_bounded,
    zone_of,
)
from device.core.summary import growth_line, summary_line
from device.core.tightness import BASELINE_HOLDS, baseline, tightness_index
from device.core.timetrust import PHONE, UNTRUSTED, TimeTrust
from device.store.paths import default_history_path
from device.store.safe import IN_MEMORY, SafeHistory

log = logging.getLogger(__name__)

NUDGE_CHECK_S = 600.0  # while idle with a nudge set, look at the time every 10 minutes
CLOCK_CHECK_S = 30.0  # with sessions waiting for a trusted date: look at the clock this often
RECENT = 30  # sessions kept in memory for progression
KEEP_STARTS = 200  # the tally forgets starts the streak and week no longer need past this
WRITE_WAIT_S = 30.0  # virtual time / closing: wait this long (real s) for the writer


class Tally:
    """What the loop asks of the history, in memory (thread-safe): the start times of
    the complete sessions that the week, today and the streak can still need, and the
    latest ``RECENT`` sessions.

    Never the whole history: at start-up it reads back only as far as the streak goes
    (``streaks.streak_days_bounded``: 40 days, then four times more while the streak
    reaches the edge), then counts each session as it ends and forgets starts older
    than both the week and the day before the streak began. Its size and every answer's
    cost follow the streak, not the years."""

    def __init__(self, tz: tzinfo | None = None) -> None:
        self._starts: dict[int, datetime] = {}
        self._recent: dict[int, SessionRecord] = {}
        self._lock = threading.Lock()
        self.tz = tz
        self.loaded = False  # the store answered once
        self.rows_read = 0  # complete starts read from the store (for tests and the bench)

    def load(self, history: SafeHistory, now: datetime | None = None) -> bool:
        """Merge what the store (and its pending sessions) holds back to the start of the
        streak as of ``now`` (default: the system's time); True if it answered.
        Blocking: call before the loop runs, or from the writer's thread."""
        now = now or datetime.now().astimezone()
        read: list[datetime] = []

        def since(at: datetime) -> list[datetime]:
            read[:] = history.complete_starts(at)
            return read

        streak_days_bounded(since, now, self.tz)
        recent = history.recent(RECENT)
        ok = history.ok
        with self._lock:
            self.rows_read += len(read)
            for t in read:
                self._starts.setdefault(instant_us(t), t)
            for r in recent:
                self._recent.setdefault(instant_us(r.started), r)
            self._trim(now)
            self.loaded = self.loaded or ok
        return ok

    def add(self, session: SessionRecord) -> None:
        """Count a session that just ended (before it is written)."""
        key = instant_us(session.started)
        with self._lock:
            if session.outcome == "complete" and session.trusted:
                self._starts[key] = session.started
            self._recent[key] = session
            self._trim(session.ended)

    def _trim(self, now: datetime) -> None:
        if len(self._recent) > RECENT:
            keep = sorted(self._recent.items(), key=lambda kv: kv[1].started)[-RECENT:]
            self._recent = dict(keep)
        if len(self._starts) < KEEP_STARTS:
            return
        # forget what neither the week (9 days back covers any zone) nor the streak needs
        starts = list(self._starts.values())
        n = streak_days(starts, now, self.tz)
        horizon = now - timedelta(days=max(9, n + 2))
        self._starts = {k: t for k, t in self._starts.items() if t >= horizon}

    def starts(self) -> list[datetime]:
        """Start times of the complete sessions the week, today and the streak need."""
        with self._lock:
            return list(self._starts.values())

    def leg_progress(self, leg: str) -> list[LegSession]:
        """The latest sessions seen from ``leg``, newest first."""
        with self._lock:
            recent = sorted(self._recent.values(), key=lambda s: s.started, reverse=True)
        return [LegSession.of(s, leg) for s in recent]


class Habit:
    """Keeps every session, plans each leg's hold, and nudges when a day has none."""

    def __init__(
        self,
        loop: BoxPort,
        history: SafeHistory,
        config: Config,
        routine: Routine,
        wall: Callable[[], datetime],
        tz: tzinfo | None = None,
        trust: TimeTrust | None = None,
    ) -> None:
        self.loop = loop
        # Without ``trust`` (the simulator, tests) ``wall`` is believed; with it each
        # session is stamped and the untrusted ones corrected once time can be trusted.
        self.trust = trust
        self._uncorrected = trust is not None  # a restart may find this boot's untrusted
        self._clock_due = 0.0  # loop clock s of the next look at the clock
        self.history = history
        self.config = config
        self.routine = routine
        self.wall = wall
        self.tz = tz or zone_of(config.history.timezone)
        self._plans: dict[str, float] = {}
        self._grew: dict[str, bool] = {}
        self._nudging = False
        self._virtual = loop.clock.virtual
        self._records: dict[int, SessionRecord] = {}  # id(session event) -> its record
        self._written: list[tuple[str, str]] = []  # (outcome, how saved), to be published
        self._outstanding = 0  # sessions handed to the writer, not yet published
        self._lock = threading.Lock()
        self.history.flush()  # once, before the loop runs
        self.tally = Tally(self.tz)
        self.tally.load(history, self.now() or self.wall())
        loop.set_hold_planner(self.plan_hold)
        loop.on(StateEvent, self._on_state, name="habit")
        loop.on(SessionEvent, self._on_session, name="habit")
        self._writer = loop.subscribe(self._write, [SessionEvent, StateEvent], queued=True,
                                      name="history")
        loop.set_summary(self._summary)
        if config.history.nudge_at:
            loop.add_ticker(self._nudge_deadline, self._nudge_check)
        if trust is not None:
            loop.add_ticker(self._clock_deadline, self._clock_check)
            trust.when_lent(lambda ref: self.correct_dates())  # a phone's time, at once

    def reload(self, config: Config) -> None:
        """New settings (nudge time, progression, base hold) from the next session on (call
        it between sessions: holds planned while idle are planned again)."""
        self.config = config
        self._plans.clear()
        self._grew.clear()

    def close(self) -> None:
        """Let the writer finish, publish what it wrote, and close the history (what
        could not be written stays in the fallback file, or is lost if not even that)."""
        self.wait_for_writes()
        self.loop.unsubscribe(self._writer)
        self.history.close()
        if self.history.memory_only:
            log.error("%d session(s) could not be saved anywhere and are lost",
                      self.history.memory_only)

    def wait_for_writes(self, timeout_s: float = WRITE_WAIT_S) -> None:
        """Wait (real s) for the writer, then publish its results in this thread."""
        queue = self._writer.queue
        if queue is not None and not queue.drain(timeout_s):
            log.warning("the history writer is still busy after %g s", timeout_s)
        self._deliver()

    # ---- progression ------------------------------------------------------------------

    def _plan(self, leg: str) -> tuple[float, bool]:
        return next_hold(self.config, lambda: self.tally.leg_progress(leg))

    def _on_state(self, event: StateEvent) -> None:
        if event.state == State.SETUP.value and event.leg:
            line = self.on_setup(event.leg, event.round)
            if line:
                self.loop.say(line, "progress")
        elif event.state == State.IDLE.value and self._virtual and self._outstanding:
            self.wait_for_writes()  # virtual time stands still while the write finishes

    def on_setup(self, leg: str, round_: int) -> str | None:
        """At each leg's first set-up: plan its hold; say so when it grows."""
        if round_ == 1 and leg == self.loop.first_leg:
            self._plans.clear()
            self._grew.clear()
        if leg not in self._plans:
            self._plans[leg], self._grew[leg] = self._plan(leg)
            chosen = self.loop.hold_choice(leg)  # set by an answer or the cycle
            if self._grew[leg] and chosen is None:
                return growth_line(self.routine, leg, self._plans[leg])
        return None

    def plan_hold(self, leg: str) -> float:
        """This session's hold for ``leg`` (s)."""
        if leg not in self._plans:
            self._plans[leg], self._grew[leg] = self._plan(leg)
        return self._plans[leg]

    # ---- records ----------------------------------------------------------------------

    def _wall_at(self, clock_t: float) -> datetime:
        return self.wall() - timedelta(seconds=self.loop.clock.now() - clock_t)

    def now(self) -> datetime | None:
        """The time days and weeks are counted in: the wall clock, or with a ``trust`` the
        trusted time (None while there is none: no streak, week or nudge is judged)."""
        if self.trust is None:
            return self.wall()
        return self.trust.now()

    def _on_session(self, ended: SessionEvent) -> None:
        """In the loop: the session's record, counted at once and handed to the writer."""
        started, stopped = self._wall_at(ended.started_at), self._wall_at(ended.ended_at)
        clock, boot_id, mono = "synced", None, None
        if self.trust is not None:
            mono_now = self.trust.source.monotonic()
            stamp = self.trust.stamp(mono_now - (self.loop.clock.now() - ended.started_at))
            clock, boot_id, mono = stamp.clock, stamp.boot_id, stamp.mono_s
            if clock == PHONE:  # dated by the phone's time, not the (wrong) wall clock
                moved = self.trust.date(started, stamp)
                started, stopped = moved, moved + (stopped - started)
            if clock == UNTRUSTED:
                self._uncorrected = True
                log.warning("the clock is not synchronized and no phone lent its time: the "
                            "session is kept, marked untrusted, until its date can be "
                            "corrected (this boot only)")
        record = SessionRecord(
            started=started, ended=stopped,
            outcome=ended.outcome, routine=self.routine.name,
            holds=tuple(records_of(ended)), uid=uuid.uuid4().hex,
            clock=clock, boot_id=boot_id, mono_s=mono,
        )
        self.tally.add(record)
        with self._lock:
            self._records[id(ended)] = record
            self._outstanding += 1
        self._plans.clear()

    def _write(self, event: Event) -> None:
        """The writer's thread: write a session (every outcome); at a change of state,
        retry sessions that could not be written before."""
        if not isinstance(event, SessionEvent):  # a change of state
            if self.history.pending:
                self.history.flush()
            return
        with self._lock:
            record = self._records.pop(id(event), None)
        if record is None:
            return
        record = self._with_index(record)
        how = self.history.save(record)
        if how == IN_MEMORY:
            log.error("the session started %s could not be saved: neither the history "
                      "file %s nor the fallback file %s can be written; it is kept in "
                      "memory and retried while the box runs", record.started.isoformat(),
                      self.history.path, self.history.fallback_path)
        if not self.tally.loaded:
            self.tally.load(self.history, self.now() or self.wall())  # the store was down at start
        self.correct_dates()
        with self._lock:
            self._written.append((record.outcome, how))
        if not self._virtual:
            self.loop.call_soon(self._deliver)

    def _with_index(self, record: SessionRecord) -> SessionRecord:
        """The session with each fitted hold's tightness index against its leg's first
        weeks (the writer's thread: it reads the store)."""
        if not any(h.settled is not None for h in record.holds):
            return record
        bases: dict[str, float | None] = {}
        for leg in {h.leg for h in record.holds}:
            prior = self.history.first_fitted(leg, BASELINE_HOLDS)
            if len(prior) < BASELINE_HOLDS:  # the first weeks are still being filled
                prior += [h for h in record.holds if h.leg == leg and h.settled is not None]
            bases[leg] = baseline(prior)
        holds = tuple(replace(h, index=tightness_index(h, bases[h.leg])) for h in record.holds)
        return replace(record, holds=holds)

    def correct_dates(self) -> int:
        """Blocking (the writer's thread): once time can be trusted, date again this boot's
        untrusted sessions and count them from then on. Returns how many were moved."""
        if self.trust is None or not self._uncorrected or not self.trust.check():
            return 0
        ref = self.trust.reference
        if ref is None:
            return 0
        moved = self.history.correct_dates(ref.boot_id, ref.offset_s)
        if moved is None:
            return 0  # the store is down: tried again at the next session or check
        self._uncorrected = False
        if moved:
            log.warning("the clock can be trusted now (%s): %d session(s) of this boot dated "
                        "again", ref.kind, moved)
            tally = Tally(self.tz)
            tally.load(self.history, self.now() or self.wall())
            self.tally = tally
        return moved

    def _clock_deadline(self, now_clock: float) -> float | None:
        return max(self._clock_due, now_clock) if self._uncorrected else None

    def _clock_check(self, now_clock: float) -> None:
        """In the loop, every ``CLOCK_CHECK_S``: when time has become trusted, correct off
        the loop (a thread)."""
        if not self._uncorrected or now_clock < self._clock_due:
            return
        self._clock_due = now_clock + CLOCK_CHECK_S
        if self.trust is not None and self.trust.check():
            threading.Thread(target=self.correct_dates, name="clock-correct",
                             daemon=True).start()

    def _deliver(self) -> None:
        """Publish what the writer wrote (in the loop, or the closing thread)."""
        with self._lock:
            written, self._written = self._written, []
            self._outstanding -= len(written)
        for outcome, how in written:
            self.loop.publish(HistoryEvent(self.loop.stamp(), outcome, how == "saved"))
            if how == IN_MEMORY:
                self.loop.say(self.routine.summary["not_saved"], "history.not_saved")

    def _summary(self, ended: SessionEvent) -> str | None:
        """The spoken summary of a complete session, with the week and the streak (from
        the tally: no database call on the loop)."""
        now = self.now()
        starts = self.tally.starts()
        if now is None:  # no trusted date: the holds alone, no week or streak
            return summary_line(self.routine, records_of(ended), 0, 0)
        return summary_line(self.routine, records_of(ended),
                            sessions_this_week(starts, now, self.tz),
                            streak_days(starts, now, self.tz))

    # ---- the nudge --------------------------------------------------------------------

    def _nudge_due(self, now: datetime) -> bool:
        hh, mm = (int(x) for x in self.config.history.nudge_at.split(":"))
        local = now.astimezone(self.tz)
        after = (local.hour, local.minute) >= (hh, mm)
        return after and not done_today(self.tally.starts(), now, self.tz)

    def _nudge_check(self, now_clock: float) -> None:
        idle = self.loop.state is State.IDLE
        now = self.now() if idle else None  # no trusted date: no nudge (the day is unknown)
        due = now is not None and self._nudge_due(now)
        if due and not self._nudging:
            self._nudging = True
            self.loop.nudge_light(True)
            self.loop.publish(NudgeEvent(self.loop.stamp(), True))
            if self.config.history.nudge_voice:
                self.loop.say(self.routine.nudge, "nudge")
        elif self._nudging and not due:
            # nudged and then a session began (or the day's stretch is done): back to normal
            self._nudging = False
            self.loop.nudge_light(False)
            self.loop.publish(NudgeEvent(self.loop.stamp(), False))

    def _nudge_deadline(self, now_clock: float) -> float | None:
        if self.loop.state is not State.IDLE:
            return None
        hh, mm = (int(x) for x in self.config.history.nudge_at.split(":"))
        local = self.wall().astimezone(self.tz)
        target = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if target <= local:
            target += timedelta(days=1)
        until = (target - local).total_seconds()
        return now_clock + min(NUDGE_CHECK_S, until)


def history_path(config: Config, override: str | None, simulator: bool) -> Path:
    """Where the history lives: --history, the config, or the default (the simulator
    keeps its own file so trying it out never mixes with real sessions)."""

    if override:
        return Path(override)
    if config.history.file:
        return Path(config.history.file)
    path = default_history_path(service=False)
    return path.with_name("sim-history.db") if simulator else path


def records_of(ended: SessionEvent) -> list[HoldRecord]:
    """A session's holds as history records (the event carries them as the store keeps
    them: one hold record from the machine to the store)."""
    return list(ended.results)


class PlainSummary:
    """Without a history: the spoken summary of the holds alone."""

    def __init__(self, loop: BoxPort) -> None:
        loop.set_summary(lambda ended: summary_line(loop.routine, records_of(ended), 0, 0))

    def close(self) -> None:
        """Nothing to release."""


def attach(
    loop: BoxPort, path: Path, wall: Callable[[], datetime], outbox: bool = False,
) -> Habit:
    """Wire a (fault-proof) history at ``path`` into ``loop``; ``outbox``: each session
    is also queued for MQTT, in the same transaction. With a ``TimeTrust`` provided on the
    port (``run``), sessions are stamped with how their dates were known
    (device.core.timetrust)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("history folder %s: %s (sessions kept in memory)", path.parent, exc)
    habit = Habit(loop, SafeHistory(path, outbox=outbox), loop.config, loop.routine, wall,
                  trust=loop.find(TimeTrust))
    loop.provide(habit)
    loop.on_reload(habit.reload)
    return habit

