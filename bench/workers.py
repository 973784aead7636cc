"""Measurements, each run in a fresh process: ``python -m bench.workers NAME PARAMS OUT``.

``PARAMS`` is a JSON object of keyword arguments; the worker writes its result (a JSON
object) to the file ``OUT``. A fresh process per measurement keeps CPU figures clean
(``time.process_time`` then covers exactly the thing measured and its threads) and keeps
gpiozero's threads and pyttsx3's engine cache from leaking between measurements.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

# ---- shared helpers -------------------------------------------------------------------


def light_stats(times: Sequence[float], duties: Sequence[float],
                duration: float | None = None) -> dict[str, Any]:
    """Updates per second, gaps and the largest perceived step of a light's samples.

    ``times`` are monotonic seconds of each change of the pin, ``duties`` the PWM duty
    after it; the rate is changes / ``duration`` (default: over the first to the last).
    Perceived brightness is ``device.core.breath.perceived`` (CIE 1931 L*).
    """
    from device.core.breath import perceived

    n = len(times)
    if n < 2:
        return {"updates": n, "per_s": 0.0, "max_gap_ms": None, "median_gap_ms": None,
                "max_step": None, "max_duty_step": None}
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    levels = [perceived(d) for d in duties]
    steps = [abs(b - a) for a, b in zip(levels, levels[1:], strict=False)]
    duty_steps = [abs(b - a) for a, b in zip(duties, duties[1:], strict=False)]
    span = times[-1] - times[0]
    per_s = n / duration if duration else ((n - 1) / span if span > 0 else 0.0)
    return {
        "updates": n,
        "per_s": per_s,
        "mean_interval_per_s": (n - 1) / span if span > 0 else 0.0,
        "max_gap_ms": max(gaps) * 1000,
        "median_gap_ms": statistics.median(gaps) * 1000,
        "max_step": max(steps),
        "max_duty_step": max(duty_steps),
    }


def latency_stats(seconds: Sequence[float]) -> dict[str, Any]:
    """Median, p99 and max (ms) of latencies given in seconds."""
    if not seconds:
        return {"n": 0, "median_ms": None, "p99_ms": None, "max_ms": None, "min_ms": None}
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, max(0, round(0.99 * len(ms)) - 1))]
    return {"n": len(ms), "median_ms": statistics.median(ms), "p99_ms": p99,
            "max_ms": ms[-1], "min_ms": ms[0]}


def _mock_factory() -> Any:
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    return MockFactory(pin_class=MockPWMPin)


def _config_one_hold(hold_s: float, hz: float | None = None) -> Any:
    """Default config, one leg, one round, a hold of ``hold_s`` (below 60 s: unvalidated),
    the light animated at ``hz`` (default: the config's)."""
    from device.core.config import Config, with_overrides

    base = Config() if hz is None else with_overrides(Config(), light={"hz": hz})
    if hold_s >= 60:
        return with_overrides(base, session={"legs": ["right"], "hold_seconds": hold_s})
    config = with_overrides(base, session={"legs": ["right"]})
    # Quick mode: a hold shorter than the config allows (60 s), bypassing validation.
    return replace(config, session=replace(config.session, hold_seconds=float(hold_s)))


# ---- the device loop on real time -------------------------------------------------------


class _HoldRecorder:
    """Listener: stamps the hold's start and end beeps on time.monotonic() and stops the
    loop at the hold's end."""

    def __init__(self) -> None:
        self.loop: Any = None
        self.beeps: dict[str, float] = {}
        self.start: tuple[float, float, int] | None = None
        self.end: tuple[float, float, int] | None = None
        self.hold_event: dict[str, Any] | None = None
        self.wakes = 0

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind == "led":
            return
        if kind == "buzz":
            self.beeps.setdefault(event["name"], time.monotonic())
        elif kind == "state" and event["state"] == "hold":
            self.start = (time.monotonic(), time.process_time(), self.wakes)
        elif kind == "hold":
            self.end = (time.monotonic(), time.process_time(), self.wakes)
            self.hold_event = dict(event)
            self.loop.stop()

    def count_wake(self, now: float) -> None:
        self.wakes += 1


def spy_pin(pin: Any) -> tuple[list[float], list[float]]:
    """Record every change of a gpiozero mock pin: (monotonic times, values).

    The loop trims the mock pins' own ``states`` lists, so each change is caught as it
    is made (``MockPin._change_state`` returns True when the value changed)."""
    times: list[float] = []
    values: list[float] = []
    change = pin._change_state

    def spy(value: Any) -> bool:
        changed = change(value)
        if changed:
            times.append(time.monotonic())
            values.append(float(value))
        return changed

    pin._change_state = spy
    return times, values


def device_hold(hold_s: float, hz: float | None = None) -> dict[str, Any]:
    """The real device loop (mock pins, RealClock, recording fake voice) through one hold.

    A press and a double press (idle -> set-up -> hold) start the hold at once; the loop
    stops at the
    hold's end. Error = wall time between the start beep and the end beep (both stamped
    on time.monotonic() as the loop emits them) minus the planned hold. The light's pin
    changes are caught on the mock PWM pin itself.
    """
    from device.apps.sim import make_sim
    from device.box.clock import RealClock
    from device.core.script import Action

    rec = _HoldRecorder()
    box = make_sim(_config_one_hold(hold_s, hz), clock=RealClock(), listeners=[rec])
    rec.loop = box.loop
    box.loop.add_ticker(lambda now: None, rec.count_wake)
    led_t, led_v = spy_pin(box.led_pin)
    box.add_script([Action("press", 0.05), Action("press", 0.3), Action("press", 0.5)])
    try:
        box.loop.run(until=hold_s + 30)
    finally:
        frames = box.loop.frames
        box.close()
    if rec.start is None or rec.end is None or rec.hold_event is None:
        raise RuntimeError("the hold did not start and end")
    t_start, cpu_start, wakes_start = rec.start
    t_end, cpu_end, wakes_end = rec.end
    start_beep = rec.beeps.get("start", t_start)
    end_beep = rec.beeps.get("end", t_end)
    held_wall = end_beep - start_beep
    planned = rec.hold_event["planned_s"]
    # The light's changes inside the hold: the rate counts them all over the planned hold;
    # gaps and steps leave out the first (the jump from the set-up glow into the breath).
    inside = [i for i, t in enumerate(led_t) if start_beep <= t <= end_beep]
    times = [led_t[i] for i in inside[1:]]
    duties = [led_v[i] for i in inside[1:]]
    light = light_stats(times, duties)
    light["updates"] = len(inside)
    light["per_s"] = len(inside) / planned
    wall = t_end - t_start
    return {
        "planned_s": planned,
        "held_s_event": rec.hold_event["held_s"],
        "ended": rec.hold_event["ended"],
        "held_wall_s": held_wall,
        "error_ms": (held_wall - planned) * 1000,
        "wall_s": wall,
        "cpu_s": cpu_end - cpu_start,
        "cpu_pct": 100 * (cpu_end - cpu_start) / wall,
        "loop_wakes_per_s": (wakes_end - wakes_start) / wall,
        "frames_total": frames,
        "light": light,
    }


def device_idle(idle_s: float, settle_s: float = 0.5) -> dict[str, Any]:
    """The device loop on real time with nothing to do: CPU over wall for ``idle_s``."""
    from device.apps.sim import make_sim
    from device.box.clock import RealClock
    from device.core.config import Config

    box = make_sim(Config(), clock=RealClock(), listeners=[])
    wakes = [0]
    box.loop.add_ticker(lambda now: None, lambda now: wakes.__setitem__(0, wakes[0] + 1))
    thread = threading.Thread(target=box.loop.run, name="loop", daemon=True)
    thread.start()
    time.sleep(settle_s)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    w0, c0, t0 = wakes[0], time.process_time(), time.monotonic()
    time.sleep(idle_s)
    w1, c1, t1 = wakes[0], time.process_time(), time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    box.loop.stop()
    thread.join(5)
    box.close()
    return {
        "wall_s": t1 - t0,
        "cpu_s": c1 - c0,
        "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
        "loop_wakes": w1 - w0,
        "process_wakeups_per_s": (ru1.ru_nvcsw - ru0.ru_nvcsw) / (t1 - t0),
        "context_switches": (ru1.ru_nvcsw + ru1.ru_nivcsw) - (ru0.ru_nvcsw + ru0.ru_nivcsw),
        "threads": threading.active_count(),
        "thread_names": sorted(t.name for t in threading.enumerate()),
    }


def sleep_idle(idle_s: float) -> dict[str, Any]:
    """The floor for an idle process: ``time.sleep(idle_s)`` in a fresh interpreter."""
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    c0, t0 = time.process_time(), time.monotonic()
    time.sleep(idle_s)
    c1, t1 = time.process_time(), time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0, "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
            "context_switches": (ru1.ru_nvcsw + ru1.ru_nivcsw) - (ru0.ru_nvcsw + ru0.ru_nivcsw)}


def box_close(runs: int) -> dict[str, Any]:
    """After a headless session ends: closing the box (add-ons, bus, pins), in process;
    beside it, closing a gpiozero ``Button`` (its hold thread is joined)."""
    from gpiozero import Button

    from device.apps.sim import make_sim
    from device.box.clock import VirtualClock
    from device.core.config import Config, with_overrides
    from device.core.script import Action

    config = with_overrides(Config(), session={"legs": ["right"], "switch": "auto"})
    closes, buttons = [], []
    for _ in range(runs):
        box = make_sim(config, clock=VirtualClock(), listeners=[])
        box.add_script([Action("press", 1.0)])
        box.loop.run(until=3600, stop_when_done=True)
        t0 = time.perf_counter()
        box.close()
        closes.append(time.perf_counter() - t0)
        factory = _mock_factory()
        button = Button(17, pull_up=True, pin_factory=factory)
        t0 = time.perf_counter()
        button.close()
        buttons.append(time.perf_counter() - t0)
    return {"close_ms": [c * 1000 for c in closes], "button_close_ms": [b * 1000 for b in buttons],
            "close_median_ms": statistics.median(closes) * 1000,
            "button_close_median_ms": statistics.median(buttons) * 1000}


def _fill_history(path: str, sessions: int, streak: int = 30) -> None:
    """A history of ``sessions`` complete two-leg sessions, three a day back from now, with
    a gap before the last ``streak`` days (one a day): written in one transaction."""
    from datetime import datetime, timedelta

    from device.core.records import instant_us
    from device.store.sqlite import History

    now = datetime.now().astimezone().replace(hour=7, minute=0, second=0, microsecond=0)
    rows, holds = [], []
    for k in range(sessions):
        if k < streak:
            start = now - timedelta(days=k)
        else:
            start = now - timedelta(days=streak + 1, hours=8 * (k - streak))
        end = start + timedelta(minutes=5)
        rows.append((k + 1, f"bench-{k + 1}", instant_us(start), start.isoformat(),
                     instant_us(end), end.isoformat(), "complete", "hamstring"))
        for seq, leg in enumerate(("right", "left")):
            holds.append((k + 1, seq, leg, 1, 60.0, 60.0 - (k % 7), "complete", None, None,
                          None))
    with History(path) as h:
        c = h._conn
        c.execute("BEGIN")
        c.executemany("INSERT INTO sessions (id, uid, started_us, started, ended_us, ended,"
                      " outcome, routine) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        c.executemany("INSERT INTO holds (session_id, seq, leg, round, planned_s, held_s, ended,"
                      " mean, peak, steadiness) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", holds)
        c.execute("COMMIT")


def history_fill(path: str, sessions: int) -> dict[str, Any]:
    """Write a history of ``sessions`` sessions to ``path`` (for the history benchmark)."""
    t0 = time.perf_counter()
    _fill_history(path, sessions)
    return {"sessions": sessions, "fill_s": time.perf_counter() - t0}


def session_end(path: str, runs: int) -> dict[str, Any]:
    """What the box does with its history when a session ends: store it (one transaction),
    then the summary's week count and streak, the done-today check and each leg's next hold
    (progression). Median over ``runs`` sessions; beside it, the streak as a scan of every
    complete start (how it was done before)."""
    from datetime import datetime, timedelta

    from device.core import streaks
    from device.core.records import HoldRecord, SessionRecord
    from device.store.safe import SafeHistory
    from device.store.sqlite import History

    tz = datetime.now().astimezone().tzinfo
    safe = SafeHistory(Path(path))
    took, scan = [], []
    base = datetime.now().astimezone().replace(microsecond=0)
    for k in range(runs):
        start = base + timedelta(minutes=10 * k)
        record = SessionRecord(start, start + timedelta(minutes=5), "complete", "hamstring",
                               (HoldRecord("right", 1, 60.0, 60.0, "complete"),
                                HoldRecord("left", 1, 60.0, 60.0, "complete")))
        now = record.ended
        t0 = time.perf_counter()
        safe.record(record)
        safe.sessions_this_week(now, tz)
        safe.streak_days(now, tz)
        safe.done_today(now, tz)
        for leg in ("right", "left"):
            safe.leg_progress(leg)
        took.append(time.perf_counter() - t0)
    safe.close()
    with History(path) as h:
        bounded = []
        for _ in range(min(runs, 5)):
            t0 = time.perf_counter()
            streaks.streak_days(h.complete_starts(), base, tz)
            scan.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            h.streak_days(base, tz)
            bounded.append(time.perf_counter() - t0)
        count = h.count()
    return {"sessions": count, "end_ms": [t * 1000 for t in took],
            "end_median_ms": statistics.median(took) * 1000,
            "full_scan_streak_ms": statistics.median(scan) * 1000,
            "bounded_streak_ms": statistics.median(bounded) * 1000}


# ---- a line that runs past its estimate ---------------------------------------------------


class _SlowPlayer:
    """A voice whose player runs ``overrun_s`` real seconds past each line's estimate (a
    slow card, a long WAV); with ``tells`` it says when it goes idle, as the real voice
    does, else the loop can only poll ``busy()``."""

    def __init__(self, rate: float, overrun_s: float, tells: bool) -> None:
        self.rate = rate
        self.overrun_s = overrun_s
        self.tells_idle = tells
        self.available: bool | None = True
        self.started: list[float] = []
        self.ended: list[float] = []
        self._busy = False
        self._hooks: list[Callable[[], None]] = []
        self.said = threading.Event()
        self.first_done = threading.Event()
        self.second = threading.Event()

    def on_idle(self, callback: Callable[[], None]) -> None:
        self._hooks.append(callback)

    def say(self, text: str) -> None:
        from device.core.cues import speech_seconds

        self._busy = True
        self.started.append(time.monotonic())
        (self.second if self.said.is_set() else self.said).set()
        timer = threading.Timer(speech_seconds(text, self.rate) + self.overrun_s, self._done)
        timer.daemon = True
        timer.start()

    def _done(self) -> None:
        self.ended.append(time.monotonic())
        self._busy = False
        self.first_done.set()
        if self.tells_idle:
            for hook in self._hooks:
                hook()

    def busy(self) -> bool:
        return self._busy

    def stop(self) -> None:
        """Nothing to cut in this benchmark."""

    def close(self) -> None:
        """Nothing to stop."""


def voice_overrun(speed: float, overrun_s: float, tells: bool = True,
                  first: str = "Welcome back. This first line is rather long, so the player "
                  "takes a while.") -> dict[str, Any]:
    """The real device loop (RealClock at ``speed``) while a line runs ``overrun_s`` real
    seconds past its estimate with a second line waiting: the process's CPU and the loop's
    wakes from the estimate's end to the line's real end."""
    from device.apps.sim import make_sim
    from device.box.clock import RealClock
    from device.core.config import Config
    from device.core.cues import speech_seconds

    config = Config()
    voice = _SlowPlayer(config.voice.rate, overrun_s, tells)
    clock = RealClock(speed)
    box = make_sim(config, clock=clock, speaker=voice, listeners=[])  # type: ignore[arg-type]
    wakes: list[float] = []
    box.loop.add_ticker(lambda now: None, lambda now: wakes.append(time.monotonic()))
    thread = threading.Thread(target=box.loop.run, name="loop", daemon=True)
    thread.start()
    time.sleep(0.3)
    box.loop.call_soon(lambda: (box.loop.say(first, "one"), box.loop.say("And then.", "two")))
    limit = overrun_s + 60
    if not voice.said.wait(limit):
        raise RuntimeError("the first line was never said")
    # the estimate runs on the box's clock: at ``speed`` it is over ``speed`` times sooner
    estimate_end = voice.started[0] + speech_seconds(first, config.voice.rate) / speed
    time.sleep(max(0.0, estimate_end - time.monotonic()) + 0.05)
    c0, t0, n0 = time.process_time(), time.monotonic(), len(wakes)
    voice.first_done.wait(limit)  # this thread sleeps on an Event: no wakes of its own
    c1, t1, n1 = time.process_time(), time.monotonic(), len(wakes)
    voice.second.wait(10)
    second_late = (voice.started[1] - voice.ended[0]) if len(voice.started) > 1 else None
    box.loop.stop()
    thread.join(5)
    box.close()
    return {"speed": speed, "overrun_s": overrun_s, "tells_idle": tells,
            "wall_s": t1 - t0, "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
            "loop_wakes_per_s": (n1 - n0) / (t1 - t0),
            "second_line_after_ms": None if second_late is None else second_late * 1000}


def _status_kb(field: str, pid: str = "self") -> int | None:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def habit_box(path: str, url: str | None, sessions: int, stats_runs: int) -> dict[str, Any]:
    """The box as ``run`` builds it (``build_box``: history with its tally, MQTT publisher
    with the outbox when ``url``), sessions on virtual time in this (the loop's) thread.

    Start-up: ``build_box`` wall time and RSS after it. Session end: the loop's own
    ``_on_session_end`` (the summary's week and streak, the tally, the bus), timed in the
    loop thread. Stats: the MQTT ``stats`` message as the publisher makes it, on its own
    connection to the file, timed ``stats_runs`` times (and every one MQTT's thread made)."""
    from device.apps.builder import build_box
    from device.box.clock import VirtualClock
    from device.core.config import Config, with_overrides
    from device.core.script import Action

    gc.collect()
    rss0 = _status_kb("VmRSS")
    mqtt: dict[str, Any] = {"url": url, "box_id": "bench"} if url else {}
    config = with_overrides(Config(), session={"switch": "auto"}, mqtt=mqtt)
    endpoint = None
    if url:
        from device.addons.mqtt import endpoint as make_endpoint

        endpoint = make_endpoint(config)
    t0 = time.perf_counter()
    box = build_box(config, mode="sim", clock=VirtualClock(), history=Path(path),
                    mqtt=endpoint)
    startup_s = time.perf_counter() - t0
    rss_built = _status_kb("VmRSS")
    loop = box.loop
    ends: list[float] = []
    real_end = loop._on_session_end

    def timed_end(ended: Any) -> None:
        t = time.perf_counter()
        real_end(ended)
        ends.append(time.perf_counter() - t)

    loop._on_session_end = timed_end  # type: ignore[method-assign]
    publisher = next((a.publisher for a in box.addons if hasattr(a, "publisher")), None)
    made: list[float] = []
    if publisher is not None:
        real_stats = publisher.publish_stats

        def timed_stats() -> None:
            t = time.perf_counter()
            real_stats()
            made.append(time.perf_counter() - t)

        publisher.publish_stats = timed_stats  # type: ignore[method-assign]
        deadline = time.monotonic() + 10
        while not publisher._ever_connected and time.monotonic() < deadline:
            time.sleep(0.02)
    box.add_script([Action("press", 1 + k * 600.0) for k in range(sessions)])
    loop.run(until=600.0 * sessions, stop_when_done=False)
    stats: list[float] = []
    if publisher is not None and publisher.store is not None:
        from device.addons.mqtt import stats_payload

        for _ in range(stats_runs):
            t = time.perf_counter()
            stats_payload(publisher.store, config, publisher.wall(), publisher.tz,
                          publisher.next_hold_of)
            stats.append(time.perf_counter() - t)
        publisher.wait_delivered(10)
    habit = next((a for a in box.addons if hasattr(a, "tally")), None)
    rows = habit.tally.rows_read if habit is not None else None
    connected = bool(publisher and publisher._ever_connected)
    box.close()
    return {
        "startup_s": startup_s, "rss_before_kb": rss0, "rss_built_kb": rss_built,
        "rss_peak_kb": _status_kb("VmHWM"), "sessions_ended": len(ends),
        "end_ms": [e * 1000 for e in ends],
        "end_median_ms": statistics.median(ends) * 1000 if ends else None,
        "stats_ms": [x * 1000 for x in stats],
        "stats_median_ms": statistics.median(stats) * 1000 if stats else None,
        "stats_by_mqtt_thread_ms": [x * 1000 for x in made],
        "tally_rows_read": rows, "mqtt_connected": connected,
    }


# ---- add-ons asleep -----------------------------------------------------------------------


def thread_switches() -> dict[str, int]:
    """Voluntary context switches (wake-ups) of each thread of this process, by
    ``name:tid``, from /proc/self/task/TID/status."""
    out: dict[str, int] = {}
    names = {t.native_id: t.name for t in threading.enumerate()}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = names.get(int(tid), "?")
            with open(f"/proc/self/task/{tid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        out[f"{name}:{tid}"] = int(line.split()[1])
        except OSError:
            continue
    return out


def addons_idle(idle_s: float, web: bool, mqtt_url: str | None,
                settle_s: float = 3.0) -> dict[str, Any]:
    """The box as ``run`` builds it (RealClock, mock pins, recording voice) with the page
    (no client) and/or MQTT (connected, no traffic) on, idle for ``idle_s``: wake-ups of
    every thread (voluntary context switches from /proc), the measuring thread's own
    single sleep left out, and the process's CPU."""
    from device.apps.builder import build_box
    from device.box.clock import RealClock
    from device.core.config import Config, with_overrides

    mqtt: dict[str, Any] = {"url": mqtt_url, "box_id": "idle"} if mqtt_url else {}
    config = with_overrides(Config(), mqtt=mqtt)
    endpoint = None
    if mqtt_url:
        from device.addons.mqtt import endpoint as make_endpoint

        endpoint = make_endpoint(config)
    state = Path(os.environ.get("XDG_STATE_HOME", "/tmp")) / f"idle-{os.getpid()}"
    box = build_box(config, mode="sim", clock=RealClock(),
                    web="127.0.0.1:0" if web else None,
                    config_path=state / "config.toml" if web else None,
                    history=state / "history.db", mqtt=endpoint)
    thread = threading.Thread(target=box.loop.run, name="loop", daemon=True)
    thread.start()
    publisher = next((a.publisher for a in box.addons if hasattr(a, "publisher")), None)
    time.sleep(settle_s)  # the page's server up, MQTT connected and its first messages out
    me = f"{threading.current_thread().name}:{threading.get_native_id()}"
    s0, c0, t0 = thread_switches(), time.process_time(), time.monotonic()
    time.sleep(idle_s)
    s1, c1, t1 = thread_switches(), time.process_time(), time.monotonic()
    connected = bool(publisher and publisher._connected)
    box.loop.stop()
    thread.join(5)
    box.close()
    per_thread = {k: s1[k] - s0.get(k, 0) for k in s1 if k != me}
    wakes = sum(per_thread.values())
    return {"idle_s": t1 - t0, "wakes": wakes, "wakes_per_s": wakes / (t1 - t0),
            "per_thread": {k: v for k, v in per_thread.items() if v},
            "threads": len(s1), "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
            "web": web, "mqtt": bool(mqtt_url), "mqtt_connected": connected}


def stock_idle(idle_s: float, mqtt_url: str | None, settle_s: float = 3.0) -> dict[str, Any]:
    """The libraries alone, as their docs run them: ``uvicorn.Server`` serving a bare ASGI
    app in a thread, and a paho client connected with ``loop_start()``; idle wake-ups."""
    import asyncio
    import socket

    import uvicorn

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                          http="h11", ws="none", loop="asyncio"))
    web = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                           name="uvicorn", daemon=True)
    web.start()
    client = None
    if mqtt_url:
        from urllib.parse import urlsplit

        import paho.mqtt.client as mqtt

        parts = urlsplit(mqtt_url)
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=30)
        client.loop_start()
    time.sleep(settle_s)
    me = f"{threading.current_thread().name}:{threading.get_native_id()}"
    s0, c0, t0 = thread_switches(), time.process_time(), time.monotonic()
    time.sleep(idle_s)
    s1, c1, t1 = thread_switches(), time.process_time(), time.monotonic()
    server.should_exit = True
    web.join(5)
    if client is not None:
        client.disconnect()
        client.loop_stop()
    per_thread = {k: s1[k] - s0.get(k, 0) for k in s1 if k != me}
    wakes = sum(per_thread.values())
    return {"idle_s": t1 - t0, "wakes": wakes, "wakes_per_s": wakes / (t1 - t0),
            "per_thread": {k: v for k, v in per_thread.items() if v},
            "cpu_pct": 100 * (c1 - c0) / (t1 - t0)}


# ---- the obvious alternatives -----------------------------------------------------------


def naive_countdown(seconds: int) -> dict[str, Any]:
    """``for i in range(N): update; sleep(1)``: a light update and a print each second."""
    from gpiozero import PWMLED

    factory = _mock_factory()
    led = PWMLED(18, pin_factory=factory)
    out = open(os.devnull, "w")  # noqa: SIM115
    c0, t0 = time.process_time(), time.monotonic()
    for i in range(seconds):
        led.value = (seconds - i) / seconds
        print(f"{seconds - i:3d} s to go", file=out, flush=True)
        time.sleep(1)
    t1, c1 = time.monotonic(), time.process_time()
    led.close()
    out.close()
    return {
        "planned_s": seconds,
        "held_wall_s": t1 - t0,
        "error_ms": (t1 - t0 - seconds) * 1000,
        "wall_s": t1 - t0,
        "cpu_s": c1 - c0,
        "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
    }


def stock_pulse(seconds: float, fade_in_s: float = 4.0, fade_out_s: float = 6.0) -> dict[str, Any]:
    """gpiozero's own ``PWMLED.pulse()`` (4 s in, 6 s out) on a mock PWM pin."""
    from gpiozero import PWMLED

    factory = _mock_factory()
    led = PWMLED(18, pin_factory=factory)
    pin = factory.pin(18)
    pin.clear_states()
    c0, t0 = time.process_time(), time.monotonic()
    led.pulse(fade_in_time=fade_in_s, fade_out_time=fade_out_s)
    time.sleep(seconds)
    c1, t1 = time.process_time(), time.monotonic()
    states = list(pin.states)
    led.close()
    # PinState.timestamp is the time since the previous change; rebuild absolute times.
    times, duties, at = [], [], 0.0
    for state in states[1:]:
        at += state.timestamp
        times.append(at)
        duties.append(float(state.state))
    stats = light_stats(times, duties, duration=t1 - t0)
    # the first change is a step too (from the pin's initial state)
    if duties:
        from device.core.breath import perceived

        first = abs(perceived(duties[0]) - perceived(float(states[0].state)))
        stats["max_step"] = max(stats["max_step"] or 0.0, first)
    return {
        "wall_s": t1 - t0,
        "cpu_s": c1 - c0,
        "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
        "light": stats,
    }


def wait_floor(seconds: float, hz: float = 50.0) -> dict[str, Any]:
    """The cost of waking alone: a thread doing nothing but ``Event.wait`` to the next
    1/hz tick (as the loop waits between light frames), no work at all."""
    wake = threading.Event()
    wakes = [0]
    stop = threading.Event()

    def run() -> None:
        nxt = time.monotonic()
        while not stop.is_set():
            nxt += 1 / hz
            if wake.is_set():
                wake.clear()
            wake.wait(max(0.0, nxt - time.monotonic()))
            wakes[0] += 1

    thread = threading.Thread(target=run, daemon=True)
    c0, t0 = time.process_time(), time.monotonic()
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(2)
    c1, t1 = time.process_time(), time.monotonic()
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0, "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
            "wakes_per_s": wakes[0] / (t1 - t0)}


def tick_idle(idle_s: float, hz: float = 50.0) -> dict[str, Any]:
    """A fixed-rate main loop (poll the button, sleep 1/hz) with nothing to do."""
    from gpiozero import Button

    factory = _mock_factory()
    button = Button(17, pull_up=True, pin_factory=factory)
    c0, t0 = time.process_time(), time.monotonic()
    end = t0 + idle_s
    presses = 0
    while time.monotonic() < end:
        if button.is_pressed:
            presses += 1
        time.sleep(1 / hz)
    c1, t1 = time.process_time(), time.monotonic()
    button.close()
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0, "cpu_pct": 100 * (c1 - c0) / (t1 - t0)}


# ---- button latency ---------------------------------------------------------------------


class _StateWatch:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.at = 0.0
        self.state = ""

    def __call__(self, event: dict[str, Any]) -> None:
        if event["kind"] == "state":
            self.at = time.monotonic()
            self.state = event["state"]
            self.event.set()
        elif event["kind"] == "speak" and event["key"].startswith("setup."):
            self.at = time.monotonic()  # a press in set-up moves on one step
            self.state = "setup"
            self.event.set()


def button(presses: int, alt_presses: int, seed: int = 7) -> dict[str, Any]:
    """Press (drive_low + drive_high on the mock pin) to the ``state`` event, real clock.

    The loop runs in its own thread, as on the box. Presses walk the session round:
    idle -> set-up -> hold -> switch -> set-up -> hold -> done -> idle, each a state
    change. Beside it: a 50 Hz polling loop noticing the same press.
    """
    from gpiozero import Button

    from device.apps.sim import make_sim
    from device.box.clock import RealClock
    from device.core.config import Config

    rng = random.Random(seed)
    watch = _StateWatch()
    from device.core.config import with_overrides

    config = with_overrides(Config(), session={"ask_tightness": False})
    box = make_sim(config, clock=RealClock(), listeners=[watch])
    thread = threading.Thread(target=box.loop.run, name="loop", daemon=True)
    thread.start()
    pin = box.button_pin
    time.sleep(0.3)
    lat: list[float] = []
    by_state: dict[str, list[float]] = {}
    missed = 0
    for _ in range(presses):
        time.sleep(rng.uniform(0.01, 0.04))  # the loop back asleep (or between frames)
        watch.event.clear()
        t0 = time.monotonic()
        pin.drive_low()
        pin.drive_high()
        if not watch.event.wait(2.0):
            missed += 1
            continue
        lat.append(watch.at - t0)
        by_state.setdefault(watch.state, []).append(watch.at - t0)
    box.loop.stop()
    thread.join(5)
    box.close()

    # The alternative: a 50 Hz loop polling button.is_pressed.
    factory = _mock_factory()
    alt_button = Button(17, pull_up=True, pin_factory=factory)
    alt_pin = factory.pin(17)
    seen = threading.Event()
    seen_at = [0.0]
    stop = threading.Event()

    def poll() -> None:
        was = False
        while not stop.is_set():
            now_pressed = alt_button.is_pressed
            if now_pressed and not was:
                seen_at[0] = time.monotonic()
                seen.set()
            was = now_pressed
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    alt: list[float] = []
    for _ in range(alt_presses):
        time.sleep(rng.uniform(0.01, 0.04))
        seen.clear()
        t0 = time.monotonic()
        alt_pin.drive_low()
        if seen.wait(1.0):
            alt.append(seen_at[0] - t0)
        alt_pin.drive_high()
        time.sleep(0.045)  # held long enough for the poller to see the release
    stop.set()
    poller.join(2)
    alt_button.close()
    return {
        "device": latency_stats(lat),
        "device_missed": missed,
        "device_by_state": {k: latency_stats(v) for k, v in by_state.items()},
        "poll_50hz": latency_stats(alt),
    }


# ---- voice ------------------------------------------------------------------------------


def _player_log() -> Path:
    return Path(os.environ["BENCH_APLAY_LOG"])


def _player_starts() -> list[float]:
    """Wall-clock stamps (time.time scale) of every aplay start, from the shim's log."""
    path = _player_log()
    if not path.exists():
        return []
    stamps = []
    for line in path.read_text().splitlines():
        line = line.strip().replace(",", ".")
        if line:
            stamps.append(float(line))
    return stamps


def _hold_lines() -> list[str]:
    """The lines a hold speaks (right leg), as the box would say them."""
    from device.core.routine import fill, load_routine

    routine = load_routine(None)
    lines = [fill(routine.hold_start, duration="one minute"), routine.ten_left, routine.ready,
             routine.finish]
    lines += [fill(r.text, leg="right", other="left") for r in routine.reminders]
    return lines


def _engine_available() -> str | None:
    """None if pyttsx3 can make an engine here, else why not."""
    try:
        import pyttsx3

        pyttsx3.init()
    except Exception as exc:  # no espeak library, no driver: no voice here
        return f"{type(exc).__name__}: {exc}"
    finally:
        gc.collect()  # drop the probe engine: init() hands back a live engine if one exists
    return None


def _speaker_kwargs(cls: Any, wanted: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``wanted`` that ``cls`` accepts (the driver evolves)."""
    import inspect

    accepted = inspect.signature(cls).parameters
    return {k: v for k, v in wanted.items() if k in accepted}


def voice_device(cues: int, mode: str, cache_dir: str) -> dict[str, Any]:
    """The box's own voice, ``drivers.speech.Pyttsx3Speaker``, already started (warm).

    ``mode``: ``cached`` (every fixed line of the routine pre-rendered to the WAV cache at
    start-up, as the driver is designed to), ``uncached`` (no fixed lines: each cue is
    rendered when said, then played) or ``live`` (``live_say``: the engine's own
    ``say`` + ``runAndWait``, no WAV cache). Latency: ``say`` -> the player (aplay)
    process starting, from the aplay shim's log.
    """
    from device.core.config import Config
    from device.core.routine import load_routine
    from drivers import speech

    why = _engine_available()
    if why:
        return {"skipped": why}
    started: list[float] = []
    make = getattr(speech, "_default_engine", None)

    def factory() -> Any:
        import pyttsx3

        engine = make(160, 0.9, "") if make is not None else pyttsx3.init()
        engine.connect("started-utterance", lambda name=None: started.append(time.time()))
        return engine

    config = Config()
    fixed = load_routine(None).fixed_lines(config.session.legs) if mode == "cached" else []
    wanted = {"engine_factory": factory, "fixed_lines": fixed, "cache_dir": cache_dir,
              "live_say": mode == "live"}
    kwargs = _speaker_kwargs(speech.Pyttsx3Speaker, wanted)
    if mode != "uncached" and set(wanted) - set(kwargs) - {"engine_factory"}:
        return {"skipped": f"this Pyttsx3Speaker has no {mode} mode"}
    t_start = time.monotonic()
    speaker = speech.Pyttsx3Speaker(160, 0.9, "", **kwargs)
    if not speaker.available:
        return {"skipped": f"Pyttsx3Speaker did not start ({getattr(speaker, 'last_error', '')})"}
    wait_idle = getattr(speaker, "wait_idle", None)
    if wait_idle is not None:
        wait_idle(120)
    ready_s = time.monotonic() - t_start
    lines = _hold_lines()
    texts = [lines[0]] + [lines[i % len(lines)] for i in range(cues)]  # first: warm-up
    play, callback, total, cpu = [], [], [], []
    for i, text in enumerate(texts):
        n_play, n_started = len(_player_starts()), len(started)
        c0 = time.process_time()
        ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        speaker.say(text)
        deadline = time.monotonic() + 30
        while speaker.busy() and time.monotonic() < deadline:
            time.sleep(0.002)
        t1 = time.time()
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c1 = time.process_time()
        if i == 0:
            continue
        starts = _player_starts()[n_play:]
        if starts:
            play.append(starts[0] - t0)
        if len(started) > n_started:
            callback.append(started[n_started] - t0)
        total.append(t1 - t0)
        children = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
        cpu.append((c1 - c0) + children)
    available = bool(speaker.available)
    speaker.close()
    return {
        "mode": mode,
        "cues": len(total),
        "available_after": available,
        "ready_s": ready_s,
        "fixed_lines": len(fixed),
        "player_start": latency_stats(play),
        "started_utterance": latency_stats(callback),
        "cue_done": latency_stats(total),
        "cpu_per_cue_ms": statistics.median(cpu) * 1000 if cpu else None,
    }


def voice_per_cue(cues: int) -> dict[str, Any]:
    """An engine made for each cue (``pyttsx3.init()`` each time), as most scripts do."""
    import pyttsx3

    why = _engine_available()
    if why:
        return {"skipped": why}
    gc.collect()  # drop the probe engine: init() hands back a live engine if one exists
    lines = _hold_lines()
    play, callback = [], []
    fresh = 0
    for i in range(cues):
        text = lines[i % len(lines)]
        n_play = len(_player_starts())
        started: list[float] = []
        t0 = time.time()
        engine = pyttsx3.init()
        engine.setProperty("rate", 160)
        engine.setProperty("volume", 0.9)
        engine.connect("started-utterance", lambda name=None, s=started: s.append(time.time()))
        engine.say(text)
        engine.runAndWait()
        starts = _player_starts()[n_play:]
        if starts:
            play.append(starts[0] - t0)
        if started:
            callback.append(started[0] - t0)
        del engine
        gc.collect()
        fresh += int(len(getattr(pyttsx3, "_activeEngines", {})) == 0)
    return {
        "cues": cues,
        "player_start": latency_stats(play),
        "started_utterance": latency_stats(callback),
        "engines_released": fresh,
    }


_COLD_SCRIPT = (
    "import sys, pyttsx3\n"
    "e = pyttsx3.init(); e.setProperty('rate', 160); e.setProperty('volume', 0.9)\n"
    "e.say(sys.argv[1]); e.runAndWait()\n"
)


def voice_cold(cues: int) -> dict[str, Any]:
    """A new Python process per cue (a shell script calling a speak script)."""
    why = _engine_available()
    if why:
        return {"skipped": why}
    lines = _hold_lines()
    play = []
    for i in range(cues):
        n_play = len(_player_starts())
        t0 = time.time()
        subprocess.run([sys.executable, "-c", _COLD_SCRIPT, lines[i % len(lines)]],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        starts = _player_starts()[n_play:]
        if starts:
            play.append(starts[0] - t0)
    return {"cues": cues, "player_start": latency_stats(play)}


def voice_wav(cues: int, cache_dir: str) -> dict[str, Any]:
    """Cues rendered once to WAV (pyttsx3 ``save_to_file``), each played with ``aplay``."""
    import pyttsx3

    why = _engine_available()
    if why:
        return {"skipped": why}
    lines = _hold_lines()
    wavs = []
    engine = pyttsx3.init()
    engine.setProperty("rate", 160)
    engine.setProperty("volume", 0.9)
    t_render = time.monotonic()
    for i, text in enumerate(lines):
        path = Path(cache_dir) / f"cue{i}.wav"
        with contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115
            engine.save_to_file(text, str(path))
            engine.runAndWait()
        wavs.append(path)
    render_s = time.monotonic() - t_render
    play, spawned, codes = [], [], []
    for i in range(cues):
        wav = wavs[i % len(wavs)]
        n_play = len(_player_starts())
        t0 = time.time()
        proc = subprocess.Popen(["aplay", "-q", str(wav)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        t1 = time.time()
        codes.append(proc.wait(timeout=60))
        starts = _player_starts()[n_play:]
        if starts:
            play.append(starts[0] - t0)
        spawned.append(t1 - t0)
    sizes = [p.stat().st_size for p in wavs if p.exists()]
    return {
        "cues": cues,
        "player_start": latency_stats(play),
        "popen_return": latency_stats(spawned),
        "aplay_exit_codes": sorted(set(codes)),
        "render_all_s": render_s,
        "lines": len(lines),
        "cache_bytes": sum(sizes),
    }


# ---- virtual time -----------------------------------------------------------------------


def virtual_session(runs: int) -> dict[str, Any]:
    """Two rounds of both legs (4 x 300 s holds, auto switch) on virtual time, transcript
    written as JSON lines to /dev/null. Timed: building the box and running the session
    (``make_sim`` + ``run``); closing the pins is timed apart."""
    from device.addons.transcript import JsonLines
    from device.apps.sim import make_sim
    from device.box.clock import VirtualClock
    from device.core.config import Config, with_overrides
    from device.core.script import Action

    config = with_overrides(Config(), session={"hold_seconds": 300, "rounds": 2,
                                               "switch": "auto"})

    def one(listeners: list[Callable[[dict[str, Any]], None]]) -> dict[str, Any]:
        t0 = time.perf_counter()
        box = make_sim(config, clock=VirtualClock(), listeners=listeners)
        box.add_script([Action("press", 1.0)])
        box.loop.run(until=6 * 3600, stop_when_done=True)
        t1 = time.perf_counter()
        box.close()
        t2 = time.perf_counter()
        return {
            "session_s": t1 - t0,
            "close_s": t2 - t1,
            "frames": box.loop.frames,
            "holds": [[h.leg, h.round, h.held_s, h.ended] for h in box.loop.holds],
        }

    import hashlib
    import io

    timed = []
    for _ in range(runs):
        with open(os.devnull, "w") as sink:
            timed.append(one([JsonLines(sink)]))
    # the same session into memory (untimed), through the writer and through json.dumps:
    # the cheaper writer's transcript is the encoder's, byte for byte
    text, plain = io.StringIO(), io.StringIO()
    one([JsonLines(text), lambda e: plain.write(json.dumps(e, separators=(",", ":")) + "\n")])
    for r in timed:
        r["transcript_sha256"] = hashlib.sha256(text.getvalue().encode()).hexdigest()
        r["transcript_lines"] = text.getvalue().count("\n")
    timed[0]["encoder_sha256"] = hashlib.sha256(plain.getvalue().encode()).hexdigest()
    bare = [one([]) for _ in range(max(1, runs // 2))]
    # one more, untimed, to count the events and see when the session really ended
    seen: dict[str, Any] = {"events": 0, "end_t": None, "kinds": {}}

    def count(event: dict[str, Any]) -> None:
        seen["events"] += 1
        seen["kinds"][event["kind"]] = seen["kinds"].get(event["kind"], 0) + 1
        if event["kind"] == "state" and event["state"] == "idle":
            seen["end_t"] = event["t"]

    one([count])
    return {
        "runs": timed,
        "session_s_median": statistics.median(r["session_s"] for r in timed),
        "close_s_median": statistics.median(r["close_s"] for r in timed),
        "no_listener_session_s_median": statistics.median(r["session_s"] for r in bare),
        "events": seen["events"],
        "event_kinds": seen["kinds"],
        "session_end_t": seen["end_t"],
    }


WORKERS: dict[str, Callable[..., dict[str, Any]]] = {
    "device_hold": device_hold,
    "device_idle": device_idle,
    "sleep_idle": sleep_idle,
    "box_close": box_close,
    "history_fill": history_fill,
    "session_end": session_end,
    "naive_countdown": naive_countdown,
    "stock_pulse": stock_pulse,
    "tick_idle": tick_idle,
    "wait_floor": wait_floor,
    "button": button,
    "voice_device": voice_device,
    "voice_per_cue": voice_per_cue,
    "voice_cold": voice_cold,
    "voice_wav": voice_wav,
    "virtual_session": virtual_session,
    "voice_overrun": voice_overrun,
    "habit_box": habit_box,
    "addons_idle": addons_idle,
    "stock_idle": stock_idle,
}


def main(argv: Sequence[str]) -> int:
    """Run worker ``argv[1]`` with JSON params ``argv[2]``; write its result to ``argv[3]``."""
    name, params, out = argv[1], json.loads(argv[2]), argv[3]
    result = WORKERS[name](**params)
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
