"""The strap sensor in the box: tare at set-up, one reading of the strap from the leg going
up to the release, surviving unplugs.

Reads the NAU7802 from the device loop's own thread on the loop's clock (polling in every
state of a session, so a sensor replugged during the question is noticed there; idle
stays idle). Any ``SensorError`` means "go on without it": the box says so once per
session and tries again every few seconds.

One coach per leg: made once the set-up's tare is done (the strap slack), it watches the
leg go up and the whole hold, so over-pull, yanks and bouncing are cued in the set-up too.
Lowering the leg in a hold is answered with "lift it back up" once; the second time the
box asks whether to stop (and ends the hold gently without an answer).

Every timer of the strap's hold clock (pause, give up) is a deadline on the loop's clock,
not something checked when a sample arrives; a waiting clock is said at once and ends the
hold after ``sensor.paused_limit_seconds``; a sensor that is lost (or stuck on one
reading) hands the hold back to the time clock. The sensor's own lines (lost, back,
saturated, stuck) are each said at most once a session, "back" only once the sensor has
answered for a few seconds, and never inside the question's answer window.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from device.box.events import CoachEvent, HoldClockEvent, SensorEvent, StateEvent, TensionEvent
from device.box.port import BoxPort
from device.core.config import SensorSettings
from device.core.cues import Priority
from device.core.machine import HoldEnded, State
from device.core.relaxation import relaxation_figures
from device.core.tension import CoachThresholds, TensionCoach, strap_loaded
from device.store.paths import default_history_path
from drivers.loadcell import Calibration, LoadCell, SensorError, load_calibration

log = logging.getLogger(__name__)

TARE_S = 2.0  # at the start of each set-up, the slack strap is averaged this long (s)
TRANSCRIPT_HZ = 10.0  # tension events in the transcript
PAUSE_AFTER_S = 1.0  # hold clock "strap": slack this long pauses the clock (s)
CUE_GRACE_S = 2.0  # a strap cue that cannot start this soon is dropped
STATUS_GRACE_S = 8.0  # "the clock waits" may wait this long behind another line
COUNTDOWN_QUIET_S = 11.0  # no strap cue in a hold's last seconds ("ten seconds to go" on)
PROMPT_CLEAR_S = 12.0  # "clock running again" only with this much hold left (the countdown)
IN_STRETCH_S = 3.0  # loaded this long in the set-up: the leg is in the stretch
RETARE_LIMIT = 1.0  # a re-tare further than this (kg or rel) from the last zero is refused
RESTORED_STABLE_S = 5.0  # "sensor back" only once it has answered this long (s)
STUCK_S = 3.0  # the same raw count this long (and STUCK_SAMPLES times) is a stuck reading
STUCK_SAMPLES = 10


def thresholds_of(settings: SensorSettings, units: str = "kg") -> CoachThresholds:
    """Coaching thresholds from the config; the over-pull ceiling in ``units`` (kg once
    calibrated, else rel)."""
    ceiling = settings.overpull_max_kg if units == "kg" else settings.overpull_max_rel
    return CoachThresholds(
        loaded_kg=settings.loaded_kg, cue_gap_s=settings.cue_gap_seconds,
        bounce_min_kg=settings.bounce_min_kg, slack_s=settings.slack_seconds,
        overpull_ratio=settings.overpull_ratio, overpull_margin_kg=settings.overpull_margin_kg,
        overpull_max=ceiling,
    )


# What each strap cue is: its priority and the reminder topic it covers.
CUE_KINDS: dict[str, tuple[Priority, str]] = {
    "overpull": (Priority.SAFETY, "overpull"),
    "yank": (Priority.SAFETY, "overpull"),
    "bounce": (Priority.COACH, "bounce"),
    "slack": (Priority.COACH, "knee"),
    "eased": (Priority.COACH, ""),
}
SETUP_CUES = ("overpull", "yank", "bounce", "eased")  # the leg is going up: no slack yet


class StrapSensor:
    """Connects the strap's ADC to the loop: samples, tare, coaching, figures, retries."""

    def __init__(
        self,
        loop: BoxPort,
        settings: SensorSettings,
        make_adc: Callable[[], LoadCell],
        calibration: Calibration | None = None,
        background_connect: bool | None = None,
    ) -> None:
        self.loop = loop
        self.settings = settings
        self.make_adc = make_adc
        self.calibration = calibration or Calibration(offset=0.0)
        self.thresholds = thresholds_of(settings, self.calibration.units)
        self.adc: LoadCell | None = None
        self.status = "absent"
        self._next_retry: float | None = None
        self._next_poll: float | None = None
        self._connecting = False
        self._lock = threading.Lock()
        self._background = (
            not loop.clock.virtual if background_connect is None
            else background_connect)
        self._tare: list[int] | None = None
        self._tared = calibration is not None
        self._tare_until = 0.0
        self.coach: TensionCoach | None = None
        self._last_emit = float("-inf")
        self._last_t = float("-inf")
        self._slack_since: float | None = None
        self._lowered = 0  # times the leg went down in this hold
        self._loaded_since: float | None = None  # set-up: loaded since (the leg going up)
        self._in_stretch_told = False
        self._restored_due: float | None = None  # say "sensor back" then, if still up
        self._said: set[str] = set()  # the sensor's lines said this session
        self._last_counts: int | None = None
        self._same_since = 0.0
        self._same_samples = 0
        self.stuck = False  # the reading has not moved for STUCK_S: not trusted
        self.saturated = False  # the latest reading is at the ADC's full scale
        loop.update_view(strap_fitted=True)
        loop.on(StateEvent, self._on_state, name="strap")
        loop.add_ticker(self._deadline, self._on_wake)
        loop.set_hold_figures(self._figures)
        self._show_limits()
        loop.set_strap_fitted(True)

    @property
    def units(self) -> str:
        """kg once calibrated, else relative units."""
        return self.calibration.units

    # ---- connection -------------------------------------------------------------------

    def connect(self) -> bool:
        """Find and set up the sensor now (blocking on the clock); True if it answers."""
        try:
            adc = self.make_adc()
            adc.begin()
        except (SensorError, OSError, ValueError) as exc:
            self._failed(exc)
            return False
        with self._lock:
            self.adc = adc
        self._up()
        return True

    def _connect_soon(self) -> None:
        if self._connecting:
            return
        if not self._background:
            self.connect()
            return
        self._connecting = True

        def work() -> None:
            try:
                self.connect()
            finally:
                self._connecting = False
                self.loop.wake_now()

        threading.Thread(target=work, name="strap-connect", daemon=True).start()

    def _up(self) -> None:
        was = self.status
        self.status = "ok"
        self._show(None)
        self._next_retry = None
        self._last_counts = None
        self.stuck = False
        if was == "lost":
            self._publish_status("restored")
            log.info("strap sensor back")
            if "lost" in self._said and "restored" not in self._said:
                # said from the loop once it has stayed up (a flapping plug says nothing)
                self._restored_due = self.loop.clock.now() + RESTORED_STABLE_S

    def close(self) -> None:
        """Release the chip (its bus or pins) when the box shuts down; safe to call twice."""
        with self._lock:
            adc, self.adc = self.adc, None
        if adc is not None:
            try:
                adc.close()
            except Exception as exc:  # closing is best effort: the box is going away
                log.debug("closing the strap's chip failed: %s", exc)

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.adc = None
        now = self.loop.clock.now()
        self._next_retry = now + self.settings.retry_seconds
        self._restored_due = None
        if self.status == "ok":
            self.status = "lost"
            self._show(None)
            self._publish_status("lost")
            log.warning("strap sensor lost (%s); going on without it", exc)
            if self.loop.state is not State.IDLE:
                # never stale: if the countdown holds it back, it is said just after
                self._say_once("lost")
        else:
            self._show(None)
            if self.status == "absent":
                log.info("no strap sensor (%s)", exc)

    def _show(self, tension: float | None) -> None:
        """Tell the read model the latest reading and status, and the band and ceiling."""
        self.loop.update_view(tension=tension, tension_units=self.units,
                              sensor_status=self.status)
        self._show_limits()

    def _show_limits(self) -> None:
        low, high, ceiling = self.limits()
        self.loop.update_view(tension_low=low, tension_high=high, tension_ceiling=ceiling)

    def limits(self) -> tuple[float, float | None, float | None]:
        """The band to aim for and the ceiling (strap units): from ``loaded_kg`` up to the
        over-pull line drawn from this hold's own level (the coach's rule; None until the
        level is known, and never above the ceiling), and the over-pull ceiling."""
        th = self.thresholds
        high = None
        coach = self.coach
        level = None
        if coach is not None:
            level = coach.reference if coach.reference is not None else coach.level
        if level is not None and strap_loaded(level, th):
            high = max(th.overpull_ratio * level, level + th.overpull_margin_kg)
            if th.overpull_max is not None:
                high = min(high, th.overpull_max)
            high = round(high, 2)
        return th.loaded_kg, high, th.overpull_max

    def reload(self, settings: SensorSettings) -> None:
        """New settings (the ceiling, the coaching thresholds) from the next hold on; the
        hold in progress keeps its coach (call it between sessions)."""
        self.settings = settings
        self.thresholds = thresholds_of(settings, self.units)
        self._show_limits()

    def _publish_status(self, status: str) -> None:
        self.loop.publish(SensorEvent(self.loop.stamp(), status))

    def _say_once(self, line: str, not_after: float | None = None) -> bool:
        """Say the sensor's ``line`` unless it was said this session; True if queued."""
        if line in self._said:
            return False
        self._said.add(line)
        # past the sensor's range is a very hard pull: said as safety; the rest is news
        priority = Priority.SAFETY if line == "saturated" else Priority.COACH
        # news of this session only: never after its last word (the answer window, the
        # summary and "all done" go first)
        self.loop.say(self.loop.routine.strap[line], f"sensor.{line}", not_after,
                      priority=priority, still=self._active)
        return True

    # ---- the loop's hooks -------------------------------------------------------------

    def _active(self) -> bool:
        """A session is on: the sensor is read (and looked for) in every state of it."""
        return self.loop.state in (State.SETUP, State.HOLD, State.ASK, State.SWITCH)

    def _coaching(self) -> bool:
        return self.loop.state in (State.SETUP, State.HOLD)

    def _on_state(self, event: StateEvent) -> None:
        change = event
        state = State(event.state)
        now = self.loop.clock.now()
        if state is State.SETUP:
            if change.round == 1 and change.leg == self.loop.first_leg:
                self._said.clear()  # a new session: each line may be said once again
                self._restored_due = None
            self._tare = []
            self._tare_until = now + TARE_S
            self.coach = None
            self._loaded_since = None
            self._in_stretch_told = False
            if self.adc is None and not self._connecting:
                self._connect_soon()
        elif state is State.HOLD:
            self._finish_tare()  # set-up skipped early: use what was gathered
            if self.coach is None:
                self.coach = TensionCoach(self.thresholds)
            self.coach.start_hold(now)  # the same coach: the set-up's reading goes on
            self._slack_since = None
            self._lowered = 0
        else:
            self._tare = None
            self.coach = None
            self._show(None)
        if self._active():
            self._next_poll = now
        else:
            self._next_poll = None

    def _deadline(self, now: float) -> float | None:
        if not self._active():
            return None
        due = self._next_retry if self.adc is None else self._next_poll
        for t in (self._restored_due, *self._clock_deadlines()):
            if t is not None and (due is None or t < due):
                due = t
        return due

    def _on_wake(self, now: float) -> None:
        if not self._active():
            return
        if self.adc is None:
            if self._next_retry is not None and now >= self._next_retry - 1e-9:
                self._next_retry = now + self.settings.retry_seconds
                self._connect_soon()
        elif self._next_poll is not None and now >= self._next_poll - 1e-9:
            self._poll(now)
        if (self._restored_due is not None and now >= self._restored_due - 1e-9
                and self.status == "ok"):
            self._restored_due = None
            self._say_once("restored")
        self._hold_clock(now)

    def _poll(self, now: float) -> None:
        self._next_poll = now + min(0.05, 0.5 / self.settings.sps)
        with self._lock:
            adc = self.adc
        if adc is None:
            return
        try:
            counts = adc.read()
        except SensorError as exc:
            self._failed(exc)
            return
        if counts is not None:
            self._sample(now, counts, adc)

    # ---- samples ----------------------------------------------------------------------

    def to_units(self, counts: float) -> float:
        """Counts as tension (kg, or relative units when uncalibrated)."""
        return self.calibration.to_units(counts)

    def _check_reading(self, now: float, counts: int, adc: LoadCell) -> None:
        """Notice a reading at the ADC's full scale, or stuck on one raw value; each is
        logged, published and said once a session."""
        low, high = full_scale_of(adc)
        saturated = counts <= low or counts >= high
        if saturated and not self.saturated:
            self._publish_status("saturated")
            if "saturated" not in self._said:
                log.warning("strap reading at the ADC's full scale (%d counts): the pull is "
                            "beyond what the sensor can measure", counts)
            self._say_once("saturated", now + STATUS_GRACE_S)
        self.saturated = saturated
        if counts != self._last_counts or saturated:
            self._last_counts = counts
            self._same_since = now
            self._same_samples = 1
            if self.stuck:
                self.stuck = False
                self._publish_status("unstuck")
                log.info("strap reading moves again")
            return
        self._same_samples += 1
        if (not self.stuck and self._same_samples >= STUCK_SAMPLES
                and now - self._same_since >= STUCK_S - 1e-9):
            self.stuck = True
            self._slack_since = None
            self._publish_status("stuck")
            if "stuck" not in self._said:
                log.warning("strap reading stuck at %d counts for %.0f s; not trusted until "
                            "it moves", counts, now - self._same_since)
            self._say_once("stuck", now + STATUS_GRACE_S)

    def _sample(self, now: float, counts: int, adc: LoadCell | None = None) -> None:
        if adc is not None:
            self._check_reading(now, counts, adc)
            if self.stuck:
                return  # a frozen value is no reading: no tension, coaching or hold clock
        state = self.loop.state
        if state is State.SETUP and self._tare is not None:
            if now <= self._tare_until:
                self._tare.append(counts)
            else:
                self._finish_tare()
        if state is State.SETUP and self._tare is None and self.coach is None:
            self.coach = TensionCoach(self.thresholds)  # tared: watch the leg go up
        kg = self.to_units(counts)
        self._show(kg)
        if now - self._last_emit >= 1.0 / TRANSCRIPT_HZ - 1e-6:
            self._last_emit = now
            self.loop.publish(TensionEvent(self.loop.stamp(), round(kg, 3), self.units))
        if self._coaching() and self.coach is not None and now > self._last_t:
            self._last_t = now
            self._coach(now, kg)

    def _hold_left(self) -> float:
        """Seconds of hold still to go (while the clock waits: as it stopped)."""
        return self.loop.hold_status().left(self.loop.clock.now())

    def _finish_tare(self) -> None:
        """Zero on the slack samples of this set-up (however few a quick press left)."""
        samples, self._tare = self._tare, None
        if not samples:
            return
        tared = self.calibration.tared(samples)
        if self._tared and abs(self.to_units(tared.offset)) > RETARE_LIMIT:
            # the strap is not slack (still pulled from the last leg): keep the zero
            self._publish_status("tare_kept")
        else:
            self._tared = True
            self.calibration = tared
            self._publish_status("tared")

    def _coach(self, now: float, kg: float) -> None:
        coach = self.coach
        assert coach is not None
        loop = self.loop
        if loop.state is State.SETUP:
            # the leg going up is watched too: over-pull, yanks and bouncing, not slack
            for cue in coach.add(now, kg):
                if cue in SETUP_CUES:
                    loop.publish(CoachEvent(loop.stamp(), cue))
                    self._say_cue(coach, cue, now)
            self._setup_stretch(now, coach)
            return
        hold = loop.hold_status()
        paused = hold.paused_at is not None
        countdown = hold.ends_at is not None and now >= hold.ends_at - COUNTDOWN_QUIET_S
        strap_clock = self.settings.hold_clock == "strap"
        # over-pull is safety: cued from the first second, in the last seconds too, and
        # again while it lasts; bounce and slack keep clear of "ten seconds to go"
        for cue in coach.add(now, kg, allow_cues=not paused and not countdown):
            loop.publish(CoachEvent(loop.stamp(), cue))
            if cue == "slack":
                if not strap_clock:  # (with the strap clock, the pause answers it)
                    self._leg_down(coach, now)
                continue
            if cue == "bounce":
                loop.note_mistake("bounce")
            self._say_cue(coach, cue, now)
        if coach.loaded and "slack" not in coach.active and loop.stop_asked \
                and not paused:
            loop.leg_back(now)  # the leg is back up: that answers "do you want to stop?"
        if not strap_clock:
            return
        if coach.loaded:
            self._slack_since = None
            if paused:
                line = loop.routine.strap["resumed"] if self._hold_left() > PROMPT_CLEAR_S \
                    else None
                loop.publish(HoldClockEvent(loop.stamp(), True))
                loop.resume_hold(now, line)
        elif self._slack_since is None:
            self._slack_since = now
        self._hold_clock(now)

    def _setup_stretch(self, now: float, coach: TensionCoach) -> None:
        """The strap shows the leg in the stretch (loaded ``IN_STRETCH_S``): the rest of
        the set-up goes at once to the hold, so each leg's time in the stretch before its
        hold clock is about the same."""
        if not coach.loaded:
            self._loaded_since = None
            return
        if self._loaded_since is None:
            self._loaded_since = now
        if not self._in_stretch_told and now - self._loaded_since >= IN_STRETCH_S - 1e-9:
            self._in_stretch_told = True
            self.loop.in_stretch(now)

    def _leg_down(self, coach: TensionCoach, now: float) -> None:
        """The leg went down in a hold: "lift it back up" the first time only; the second
        time, ask whether to stop."""
        self._lowered += 1
        if self._lowered == 1:
            self.loop.note_mistake("knee")
            self._say_cue(coach, "slack", now)
        else:
            self.loop.ask_stop(now)

    def _strap_clock(self) -> bool:
        """True while the hold clock follows the strap: asked for, in a hold, and the
        sensor answering with a reading that moves."""
        return (self.settings.hold_clock == "strap" and self.loop.state is State.HOLD
                and self.adc is not None and self.status == "ok" and not self.stuck
                and self.coach is not None)

    def _clock_deadlines(self) -> list[float]:
        """When the strap's hold clock next has something to do (clock s)."""
        if self.settings.hold_clock != "strap" or self.loop.state is not State.HOLD:
            return []
        paused_at = self.loop.hold_status().paused_at
        if not self._strap_clock():  # a waiting clock goes back to time at once
            return [] if paused_at is None else [self.loop.clock.now()]
        if paused_at is None:
            return [] if self._slack_since is None else [self._slack_since + PAUSE_AFTER_S]
        return [paused_at + self.settings.paused_limit_seconds]

    def _hold_clock(self, now: float) -> None:
        """The strap's hold clock, on the loop's clock: pause after the strap has been slack
        PAUSE_AFTER_S and say so at once (the second time in a hold: ask whether to stop),
        end the hold after ``paused_limit_seconds``; a sensor that is lost or stuck hands
        the hold back to the time clock."""
        if self.settings.hold_clock != "strap" or self.loop.state is not State.HOLD:
            return
        loop = self.loop
        hold = loop.hold_status()
        paused = hold.paused_at is not None
        if not self._strap_clock():
            self._slack_since = None
            if paused:  # no trustworthy reading: back to the time clock
                log.info("strap hold clock: no reading, the time clock runs the hold")
                loop.publish(HoldClockEvent(loop.stamp(), True))
                loop.resume_hold(now)
            return
        if not paused and self._slack_since is not None \
                and now - self._slack_since >= PAUSE_AFTER_S - 1e-9:
            # the clock stops from when the strap went slack: that time is not held
            since = max(self._slack_since, hold.started_at or self._slack_since)
            loop.publish(HoldClockEvent(loop.stamp(), False))
            loop.pause_hold(since)
            paused = True
            self._lowered += 1
            if self._lowered == 1:  # said at once, in the countdown too: never silent
                self.loop.note_mistake("knee")
                loop.say(loop.routine.strap["paused"], "hold.paused", now + STATUS_GRACE_S)
            else:
                loop.ask_stop(now)
        paused_at = loop.hold_status().paused_at
        if paused and paused_at is not None \
                and now - paused_at >= self.settings.paused_limit_seconds - 1e-9:
            # nobody took the strap up again: end the hold rather than wait for ever
            loop.publish(HoldClockEvent(loop.stamp(), False, gave_up=True))
            loop.end_hold_early(now, loop.routine.strap["paused_end"])

    def _say_cue(self, coach: TensionCoach, cue: str, now: float) -> None:
        """Say a strap cue at its priority, only while its mistake goes on."""

        # a yank is the start of an over-pull; praise holds while the pull stays eased
        condition = {"yank": "overpull"}.get(cue, cue)

        def still() -> bool:
            if self.coach is not coach:
                return False
            if cue == "eased":
                return "overpull" not in coach.active
            return condition in coach.active

        say_strap_cue(self.loop, cue, now, still, again=coach.overpull_cues > 1)

    def _figures(self, hold: HoldEnded) -> dict[str, float | None] | None:
        coach, self.coach = self.coach, None
        if coach is None:
            return None
        summary = coach.summary()
        if summary.samples == 0:
            return None
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 2)
        return {"mean": r(summary.mean_kg), "peak": r(summary.peak_kg),
                "steadiness": r(summary.steadiness), "overpull_s": r(coach.overpull_s),
                "pre_s": r(coach.loaded_before_hold()),
                **relaxation_figures(summary.relaxation, summary.loaded_s)}


def say_strap_cue(loop: BoxPort, cue: str, now: float, still: Callable[[], bool],
                  again: bool = False) -> None:
    """Queue strap cue ``cue`` (overpull, bounce, slack) as the box says it: over-pull is
    safety and waits as long as ``still()`` holds (``again``: it goes on, the shorter
    line); bounce and slack are coaching, said soon or not at all, and never once their
    mistake has stopped."""
    priority, topic = CUE_KINDS[cue]
    key = "overpull_again" if cue == "overpull" and again else cue
    not_after = None if priority is Priority.SAFETY else now + CUE_GRACE_S
    loop.say(loop.routine.strap[key], f"coach.{cue}", not_after, priority, still, topic)


def attach(loop: BoxPort, settings: SensorSettings, make_adc: Callable[[], LoadCell],
           calibration: Calibration | None = None) -> StrapSensor:
    """The strap add-on: connect the load cell now (a missing one is retried later)."""
    sensor = StrapSensor(loop, settings, make_adc, calibration)
    loop.provide(sensor)
    loop.on_reload(lambda config: sensor.reload(config.sensor))
    if not sensor.connect():
        log.warning("strap sensor not found; the box goes on without it")
    return sensor


def full_scale_of(adc: LoadCell) -> tuple[int, int]:
    """The lowest and highest raw counts ``adc`` can report (a reading there is clipped)."""
    limits = getattr(adc, "full_scale", None)
    return limits if limits is not None else (-(1 << 23), (1 << 23) - 1)


def load_strap_calibration(settings: SensorSettings, simulated: bool = False
                           ) -> Calibration | None:
    """The saved calibration, or None (logged) when there is none or it is unreadable."""

    path = calibration_path(settings, simulated)
    try:
        return load_calibration(path)
    except ValueError as exc:
        log.warning("%s; using relative units until `stretch-companion calibrate`", exc)
        return None


def calibration_path(settings: SensorSettings, simulated: bool = False) -> Path:
    """Where the strap calibration is kept (the simulated strap has a file of its own)."""
    if settings.calibration_file and not simulated:
        return Path(settings.calibration_file)

    name = "sim-strap-calibration.json" if simulated else "strap-calibration.json"
    return default_history_path(service=False).with_name(name)
