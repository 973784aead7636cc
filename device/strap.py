"""The strap sensor in the box: tare at set-up, coaching in a hold, surviving unplugs.

Reads the NAU7802 from the device loop's own thread on the loop's clock (polling
only in set-up and holds, so idle stays idle). Any ``SensorError`` means "go on
without it": the box says so once per session and tries again every few seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from device.config import SensorSettings
from device.events import CoachEvent, HoldClockEvent, SensorEvent, StateEvent, TensionEvent
from device.loop import DeviceLoop
from device.machine import HoldEnded, State
from device.tension import CoachThresholds, TensionCoach
from drivers.loadcell import Calibration, LoadCell, SensorError

log = logging.getLogger(__name__)

TARE_S = 2.0  # at the start of each set-up, the slack strap is averaged this long (s)
TRANSCRIPT_HZ = 10.0  # tension events in the transcript
PAUSE_AFTER_S = 1.0  # hold clock "strap": slack this long pauses the clock (s)
CUE_GRACE_S = 2.0  # a strap cue that cannot start this soon is dropped
STATUS_GRACE_S = 8.0  # "the clock waits" may wait this long behind another line
COUNTDOWN_QUIET_S = 11.0  # no strap cue in a hold's last seconds ("ten seconds to go" on)
PROMPT_CLEAR_S = 12.0  # "clock running again" only with this much hold left (the countdown)
REPROMPT_S = 20.0  # while the hold clock waits, say why again this often (s)
GIVE_UP_PAUSED_S = 120.0  # a hold whose clock has waited this long ends early
RETARE_LIMIT = 1.0  # a re-tare further than this (kg or rel) from the last zero is refused


def thresholds_of(settings: SensorSettings) -> CoachThresholds:
    """Coaching thresholds from the config."""
    return CoachThresholds(
        loaded_kg=settings.loaded_kg, cue_gap_s=settings.cue_gap_seconds,
        bounce_min_kg=settings.bounce_min_kg, slack_s=settings.slack_seconds,
        overpull_ratio=settings.overpull_ratio, overpull_margin_kg=settings.overpull_margin_kg,
    )


class StrapSensor:
    """Connects the strap's ADC to the loop: samples, tare, coaching, figures, retries."""

    def __init__(
        self,
        loop: DeviceLoop,
        settings: SensorSettings,
        make_adc: Callable[[], LoadCell],
        calibration: Calibration | None = None,
        background_connect: bool | None = None,
    ) -> None:
        self.loop = loop
        self.settings = settings
        self.make_adc = make_adc
        self.calibration = calibration or Calibration(offset=0.0)
        self.thresholds = thresholds_of(settings)
        self.adc: LoadCell | None = None
        self.status = "absent"
        self._said_lost = False
        self._next_retry: float | None = None
        self._next_poll: float | None = None
        self._connecting = False
        self._lock = threading.Lock()
        self._background = (
            not hasattr(loop.clock, "advance_to") if background_connect is None
            else background_connect)
        self._tare: list[int] | None = None
        self._tared = calibration is not None
        self._tare_until = 0.0
        self.coach: TensionCoach | None = None
        self._last_emit = float("-inf")
        self._last_t = float("-inf")
        self._slack_since: float | None = None
        self._prompted_at: float | None = None
        loop.bus.subscribe(self._on_state, ["state"], name="strap")
        loop.add_ticker(self._deadline, self._on_wake)
        loop.set_hold_figures(self._figures)

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
        if was == "lost":
            self._publish_status("restored")
            log.info("strap sensor back")
            if self.loop.state in (State.SETUP, State.HOLD):
                self.loop.say(self.loop.routine.strap["restored"], "sensor.restored")

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.adc = None
        now = self.loop.clock.now()
        self._next_retry = now + self.settings.retry_seconds
        if self.status == "ok":
            self.status = "lost"
            self._show(None)
            self._publish_status("lost")
            log.warning("strap sensor lost (%s); going on without it", exc)
            if not self._said_lost and self.loop.state is not State.IDLE:
                self._said_lost = True
                # never stale: if the countdown holds it back, it is said just after
                self.loop.say(self.loop.routine.strap["lost"], "sensor.lost")
        else:
            self._show(None)
            if self.status == "absent":
                log.info("no strap sensor (%s)", exc)

    def _show(self, tension: float | None) -> None:
        """Tell the read model the latest reading and status."""
        self.loop.set_strap(tension, self.units, self.status)

    def _publish_status(self, status: str) -> None:
        self.loop.publish(SensorEvent(self.loop.stamp(), status))

    # ---- the loop's hooks -------------------------------------------------------------

    def _active(self) -> bool:
        return self.loop.state in (State.SETUP, State.HOLD)

    def _on_state(self, event: StateEvent) -> None:  # type: ignore[override]
        change = event
        state = State(event.state)
        now = self.loop.clock.now()
        if state is State.SETUP:
            if change.round == 1 and change.leg == self.loop.first_leg:
                self._said_lost = False
            self._tare = []
            self._tare_until = now + TARE_S
            self.coach = None
            if self.adc is None and not self._connecting:
                self._connect_soon()
        elif state is State.HOLD:
            self._finish_tare()  # set-up skipped early: use what was gathered
            self.coach = TensionCoach(self.thresholds)
            self._slack_since = None
            self._prompted_at = None
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
        if self.adc is None:
            return self._next_retry
        return self._next_poll

    def _on_wake(self, now: float) -> None:
        if not self._active():
            return
        if self.adc is None:
            if self._next_retry is not None and now >= self._next_retry - 1e-9:
                self._next_retry = now + self.settings.retry_seconds
                self._connect_soon()
            return
        if self._next_poll is None or now < self._next_poll - 1e-9:
            return
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
            self._sample(now, counts)

    # ---- samples ----------------------------------------------------------------------

    def to_units(self, counts: float) -> float:
        """Counts as tension (kg, or relative units when uncalibrated)."""
        return self.calibration.to_units(counts)

    def _sample(self, now: float, counts: int) -> None:
        state = self.loop.state
        if state is State.SETUP and self._tare is not None:
            if now <= self._tare_until:
                self._tare.append(counts)
            else:
                self._finish_tare()
        kg = self.to_units(counts)
        self._show(kg)
        if now - self._last_emit >= 1.0 / TRANSCRIPT_HZ - 1e-6:
            self._last_emit = now
            self.loop.publish(TensionEvent(self.loop.stamp(), round(kg, 3), self.units))
        if state is State.HOLD and self.coach is not None and now > self._last_t:
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
        hold = loop.hold_status()
        paused = hold.paused_at is not None
        countdown = hold.ends_at is not None and now >= hold.ends_at - COUNTDOWN_QUIET_S
        for cue in coach.add(now, kg, allow_cues=not paused and not countdown):
            loop.publish(CoachEvent(loop.stamp(), cue))
            loop.say(loop.routine.strap[cue], f"coach.{cue}", now + CUE_GRACE_S)
        if self.settings.hold_clock != "strap":
            return
        strap = loop.routine.strap
        if coach.loaded:
            self._slack_since = None
            if paused:
                line = strap["resumed"] if self._hold_left() > PROMPT_CLEAR_S else None
                loop.publish(HoldClockEvent(loop.stamp(), True))
                loop.resume_hold(now, line)
            return
        if self._slack_since is None:
            self._slack_since = now
        if not paused and now - self._slack_since >= PAUSE_AFTER_S:
            # the clock stops from when the strap went slack: that time is not held
            since = max(self._slack_since, hold.started_at or self._slack_since)
            loop.publish(HoldClockEvent(loop.stamp(), False))
            loop.pause_hold(since)
            self._prompted_at = None
            paused = True
        paused_at = loop.hold_status().paused_at
        if paused and paused_at is not None:
            if now - paused_at >= GIVE_UP_PAUSED_S:
                # nobody took the strap up again: end the hold rather than wait for ever
                loop.publish(HoldClockEvent(loop.stamp(), False, gave_up=True))
                loop.end_hold_early(now)
            elif self._prompted_at is None or now - self._prompted_at >= REPROMPT_S:
                self._prompted_at = now
                if self._hold_left() > PROMPT_CLEAR_S + 8.0:  # never into the countdown
                    loop.say(strap["paused"], "hold.paused", now + STATUS_GRACE_S)

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
                "steadiness": r(summary.steadiness)}


def attach(loop: DeviceLoop, settings: SensorSettings, make_adc: Callable[[], LoadCell],
           calibration: Calibration | None = None) -> StrapSensor:
    """The strap add-on: connect the load cell now (a missing one is retried later)."""
    sensor = StrapSensor(loop, settings, make_adc, calibration)
    if not sensor.connect():
        log.warning("strap sensor not found; the box goes on without it")
    return sensor


def pi_adc_factory(settings: SensorSettings, clock: object) -> Callable[[], LoadCell]:
    """Make the real sensor on its I2C bus (the bus is opened once it is there)."""
    from drivers.nau7802 import NAU7802, open_bus

    bus: list[object] = []

    def make() -> LoadCell:
        if not bus:
            bus.append(open_bus(settings.i2c_bus))
        return NAU7802(bus[0], clock, settings.address, gain=settings.gain,  # type: ignore[arg-type]
                       sps=settings.sps)

    return make


def load_strap_calibration(settings: SensorSettings, simulated: bool = False
                           ) -> Calibration | None:
    """The saved calibration, or None (logged) when there is none or it is unreadable."""
    from drivers.loadcell import load_calibration

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
    from device.store.paths import default_history_path

    name = "sim-strap-calibration.json" if simulated else "strap-calibration.json"
    return default_history_path(service=False).with_name(name)
