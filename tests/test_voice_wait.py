"""A line that runs past its estimate: the loop sleeps until the voice says it is done (or
a waiting cue's moment passes), at every simulator speed; it never spins (issue 23).

The clock here is a discrete-event stand-in for real time: the loop sees no
``advance_to`` (so it treats it as real time, sped up by ``speed``), and each wait jumps
straight to the deadline asked for, or to the next thing the outside world does (the
voice finishing). Every wake of the loop is counted, so a loop that spins shows up as
thousands of wakes at one instant, whatever the machine's speed."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from device.apps.sim import make_sim
from device.core.config import Config
from device.core.cues import Cue, CueQueue, Priority, speech_seconds

OVERRUN_REAL_S = 10.0  # the player runs this much longer than the line's estimate (real s)
SPIN = 10_000  # wakes at which the test calls it a spin


class EventClock:
    """Real-time-like clock whose waits jump to their deadline or to the next outside
    event (``at(when, action)``), whichever is first."""

    virtual = False  # the loop treats it as real time

    def __init__(self, speed: float) -> None:
        self.t = 0.0
        self.speed = speed
        self._events: list[tuple[float, Callable[[], None]]] = []
        self.waits = 0

    def now(self) -> float:
        return self.t

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._events.append((when, action))
        self._events.sort(key=lambda e: e[0])

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    def wait(self, wake: threading.Event, seconds: float) -> bool:
        return self.wait_until(wake, self.t + seconds)

    def wait_until(self, wake: threading.Event, when: float | None) -> bool:
        self.waits += 1
        if wake.is_set():
            return True
        if self._events and (when is None or self._events[0][0] <= when):
            at, action = self._events.pop(0)
            self.t = max(self.t, at)
            action()
            return wake.is_set()
        if when is None:
            raise AssertionError("the loop waits forever and nothing outside will wake it")
        self.t = max(self.t, when)
        return wake.is_set()


class SlowPlayer:
    """A voice whose player takes ``OVERRUN_REAL_S`` longer than each line's estimate;
    it tells the loop when it goes idle (as ``Pyttsx3Speaker`` does)."""

    tells_idle = True

    def __init__(self, clock: EventClock, rate: float, tells: bool = True) -> None:
        self.clock = clock
        self.rate = rate
        self.available: bool | None = True
        self.spoken: list[tuple[float, str]] = []
        self._busy = False
        self._hooks: list[Callable[[], None]] = []
        self.tells_idle = tells

    def on_idle(self, callback: Callable[[], None]) -> None:
        self._hooks.append(callback)

    def say(self, text: str) -> None:
        self.spoken.append((self.clock.now(), text))
        self._busy = True
        real = speech_seconds(text, self.rate) + OVERRUN_REAL_S  # real seconds of sound
        self.clock.at(self.clock.now() + real * self.clock.speed, self._done)

    def _done(self) -> None:
        self._busy = False
        for hook in self._hooks:
            hook()

    def busy(self) -> bool:
        return self._busy

    def stop(self) -> None:
        self._done()

    def close(self) -> None:
        pass


def overrun(speed: float, tells: bool = True) -> tuple[SlowPlayer, list[float], float]:
    """Two lines queued at idle; the first runs ``OVERRUN_REAL_S`` past its estimate.
    Returns the voice, the clock time of every loop wake, and when the first line ended."""
    clock = EventClock(speed)
    config = Config()
    voice = SlowPlayer(clock, config.voice.rate, tells)
    box = make_sim(config, clock=clock, speaker=voice)  # type: ignore[arg-type]
    wakes: list[float] = []

    def count(now: float) -> None:
        wakes.append(now)
        if len(wakes) > SPIN:
            raise AssertionError(f"the loop spun: {len(wakes)} wakes by t={now:.3f}")

    box.loop.add_ticker(lambda now: None, count)
    first = "Welcome back. This first line is rather long, so the player takes a while."
    box.loop.schedule(1.0, lambda: box.loop.say(first, "one"))
    box.loop.schedule(1.0, lambda: box.loop.say("And the second.", "two"))
    real_len = speech_seconds(first, config.voice.rate) + OVERRUN_REAL_S
    first_end = 1.0 + real_len * speed
    try:
        box.loop.run(until=first_end + 30 * speed)
    finally:
        box.close()
    return voice, wakes, first_end


@pytest.mark.parametrize("speed", [1.0, 10.0])
def test_a_late_line_is_waited_for_not_polled(speed: float) -> None:
    voice, wakes, first_end = overrun(speed)
    assert [text for _, text in voice.spoken] == [
        "Welcome back. This first line is rather long, so the player takes a while.",
        "And the second."]
    # the second line starts the moment the first one really ends, not before
    assert voice.spoken[1][0] == pytest.approx(first_end)
    estimate_end = 1.0 + speech_seconds(voice.spoken[0][1], Config().voice.rate)
    during = [t for t in wakes if estimate_end < t < first_end - 1e-9]
    assert len(during) <= 1, f"{len(during)} wakes while the line ran late"


def test_a_voice_that_cannot_say_when_it_stops_is_polled_at_real_rate() -> None:
    """The fallback (a voice without ``on_idle``): looked at every 50 ms of real time, at
    any speed: some wakes, never a spin."""
    for speed in (1.0, 10.0):
        voice, wakes, first_end = overrun(speed, tells=False)
        assert len(voice.spoken) == 2
        estimate_end = 1.0 + speech_seconds(voice.spoken[0][1], Config().voice.rate)
        during = [t for t in wakes if estimate_end < t < first_end - 1e-9]
        polls = (first_end - estimate_end) / speed / 0.05  # 50 ms of real time apart
        assert polls * 0.9 <= len(during) <= polls + 2


def test_queue_deadline_while_the_voice_overruns_is_only_an_expiry() -> None:
    q = CueQueue(160)
    q.push(Cue("first", "a"))
    started, _ = q.next_cue(0.0)
    assert started is not None
    q.push(Cue("soon gone", "b", not_after=50.0, priority=Priority.COACH))
    later = started.duration_s + 5.0  # past the estimate, the speaker still talking
    assert q.deadline(later) == later  # it could start now, as far as the queue knows
    assert q.deadline(later, speaker_busy=True) == pytest.approx(50.0, abs=1e-5)
    q2 = CueQueue(160)
    q2.push(Cue("first", "a"))
    q2.next_cue(0.0)
    q2.push(Cue("whenever", "b"))
    assert q2.deadline(100.0, speaker_busy=True) is None  # nothing due: wait to be told
