"""History and habit wired into the box: records, summaries, progression and the nudge."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from device.breath import Pattern
from device.config import Config
from device.events import HistoryEvent, NudgeEvent, SessionEvent, StateEvent
from device.loop import DeviceLoop
from device.machine import State
from device.progression import next_hold_seconds
from device.records import HoldRecord, SessionRecord
from device.routine import Routine
from device.store.safe import SafeHistory
from device.streaks import local_zone
from device.summary import growth_line, summary_line

log = logging.getLogger(__name__)

NUDGE_CHECK_S = 600.0  # while idle with a nudge set, look at the time every 10 minutes


def zone_of(config: Config) -> tzinfo:
    """The configured time zone, or the system's."""
    return ZoneInfo(config.history.timezone) if config.history.timezone else local_zone()


class Habit:
    """Keeps every session, plans each leg's hold, and nudges when a day has none."""

    def __init__(
        self,
        loop: DeviceLoop,
        history: SafeHistory,
        config: Config,
        routine: Routine,
        wall: Callable[[], datetime],
        tz: tzinfo | None = None,
    ) -> None:
        self.loop = loop
        self.history = history
        self.config = config
        self.routine = routine
        self.wall = wall
        self.tz = tz or zone_of(config)
        self._plans: dict[str, float] = {}
        self._grew: dict[str, bool] = {}
        self._nudging = False
        self.history.flush()
        loop.set_hold_planner(self.plan_hold)
        loop.bus.subscribe(self._on_state, ["state"], name="habit")
        loop.bus.subscribe(self._on_session, ["session"], name="history")
        loop.set_summary(self._summary)
        if config.history.nudge_at:
            loop.add_ticker(self._nudge_deadline, self._nudge_check)

    def close(self) -> None:
        """Close the history (what could not be written stays in the fallback file)."""
        self.history.close()

    # ---- progression ------------------------------------------------------------------

    def _plan(self, leg: str) -> tuple[float, bool]:
        base = self.config.session.hold_seconds
        settings = self.config.history
        if settings.progression == "off":
            return base, False
        steady = settings.min_steadiness or None
        progress = next_hold_seconds(
            self.history.leg_progress(leg), base, step_s=settings.step_seconds,
            max_s=max(settings.max_seconds, base), sessions_needed=settings.sessions_to_grow,
            require_steady=steady,
        )
        return progress.hold_s, progress.grew

    def _on_state(self, event: StateEvent) -> None:
        if event.state == State.SETUP.value and event.leg:
            line = self.on_setup(event.leg, event.round)
            if line:
                self.loop.say(line, "progress")

    def on_setup(self, leg: str, round_: int) -> str | None:
        """At each leg's first set-up: plan its hold; say so when it grows."""
        if round_ == 1 and leg == self.loop.first_leg:
            self._plans.clear()
            self._grew.clear()
        if leg not in self._plans:
            self._plans[leg], self._grew[leg] = self._plan(leg)
            if self._grew[leg]:
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

    def _on_session(self, ended: SessionEvent) -> None:
        """Write the session (every outcome)."""
        record = SessionRecord(
            started=self._wall_at(ended.started_at), ended=self._wall_at(ended.ended_at),
            outcome=ended.outcome, routine=self.routine.name,
            holds=tuple(records_of(ended)),
        )
        saved = self.history.record(record)
        self.loop.publish(HistoryEvent(self.loop.stamp(), ended.outcome, saved))
        self._plans.clear()

    def _summary(self, ended: SessionEvent) -> str | None:
        """The spoken summary of a complete session, with the week and the streak."""
        now = self.wall()
        return summary_line(self.routine, records_of(ended),
                            self.history.sessions_this_week(now, self.tz),
                            self.history.streak_days(now, self.tz))

    # ---- the nudge --------------------------------------------------------------------

    def _nudge_due(self, now: datetime) -> bool:
        hh, mm = (int(x) for x in self.config.history.nudge_at.split(":"))
        local = now.astimezone(self.tz)
        after = (local.hour, local.minute) >= (hh, mm)
        return after and not self.history.done_today(now, self.tz)

    def _nudge_check(self, now_clock: float) -> None:
        idle = self.loop.state is State.IDLE
        due = idle and self._nudge_due(self.wall())
        if due and not self._nudging:
            self._nudging = True
            self.loop.set_idle_pattern(Pattern.NUDGE)
            self.loop.publish(NudgeEvent(self.loop.stamp(), True))
            if self.config.history.nudge_voice:
                self.loop.say(self.routine.nudge, "nudge")
        elif self._nudging and not due:
            # nudged and then a session began (or the day's stretch is done): back to normal
            self._nudging = False
            self.loop.set_idle_pattern(None)
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
    from device.store.paths import default_history_path

    if override:
        return Path(override)
    if config.history.file:
        return Path(config.history.file)
    path = default_history_path(service=False)
    return path.with_name("sim-history.db") if simulator else path


def records_of(ended: SessionEvent) -> list[HoldRecord]:
    """A session's holds as history records."""
    return [HoldRecord(leg=h.leg, round=h.round, planned_s=h.planned_s, held_s=h.held_s,
                       ended=h.ended, mean=h.mean, peak=h.peak, steadiness=h.steadiness)
            for h in ended.results]


class PlainSummary:
    """Without a history: the spoken summary of the holds alone."""

    def __init__(self, loop: DeviceLoop) -> None:
        loop.set_summary(lambda ended: summary_line(loop.routine, records_of(ended), 0, 0))

    def close(self) -> None:
        """Nothing to release."""


def attach(
    loop: DeviceLoop, config: Config, routine: Routine, path: Path,
    wall: Callable[[], datetime], outbox: bool = False,
) -> Habit:
    """Wire a (fault-proof) history at ``path`` into ``loop``; ``outbox``: each session
    is also queued for MQTT, in the same transaction."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("history folder %s: %s (sessions kept in memory)", path.parent, exc)
    return Habit(loop, SafeHistory(path, outbox=outbox), config, routine, wall)


attach_history = attach
