"""The benchmarks: which workers each needs, and the figures made from their results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import REPO, Bench, Figure

NAMES = ("hold", "light", "cpu", "overrun", "addons", "quota", "exit", "button", "voice",
         "startup", "tui", "history", "virtual", "web", "fleet", "relaxation")
TITLES = {
    "hold": "hold timing, real-time device loop (mock pins, RealClock, recording voice)",
    "light": "breathing light during a hold vs gpiozero PWMLED.pulse(4, 6)",
    "cpu": "whole-device CPU (process CPU time / wall time) and wake-ups",
    "overrun": "a line that runs past its estimate (a slow player), a second line waiting: "
               "the loop's CPU at 1x and 10x",
    "addons": "add-ons asleep: the box idle with the page (no client) and MQTT (connected, "
              "no traffic) on: wake-ups of every thread",
    "quota": "a twentieth of a core: a whole real-time session (voice and player, strap, "
             "MQTT, page with one open stream) in a cgroup limited to 5 % of one core",
    "exit": "headless run: closing the box after the session ends",
    "tui": "terminal simulator (Textual, in a pty, voice on): CPU idle and in a hold",
    "history": "history at 100,000 sessions vs an empty one",
    "button": "button latency: drive_low()+drive_high() on the mock pin -> state event "
              "(in set-up: the next step starts)",
    "voice": "voice: cue queued -> player (aplay) process start",
    "startup": "start-up time and memory",
    "virtual": "virtual time: 2 rounds x 2 legs x 300 s holds, JSON lines to /dev/null",
    "web": "phone page: weight, first render, box CPU with 3 pages open, server memory",
    "relaxation": "strap relaxation fit (pure Python) on synthetic holds: recovery error "
                  "and cost per hold",
    "fleet": "MQTT fleet: boxes on virtual time -> Mosquitto (restarted once) -> one studio; "
             "box CPU in a real-time hold with MQTT on vs off",
}
# Real-time workers each benchmark needs (they run side by side: all mostly asleep).
NEEDS = {
    "hold": ("device_hold", "naive"),
    "light": ("device_hold", "pulse", "device_idle", "wait_floor", "wait_floor_box"),
    "cpu": ("device_hold", "device_idle", "sleep_idle", "tick_idle", "naive", "pulse"),
}
BOX_WAKES_PER_S = 12.8  # light frames a second in a default hold (10 s breath, step 0.015)


@dataclass
class Plan:
    """How long and how many, by mode."""

    quick: bool = False
    long: bool = False
    side_by_side: bool = False

    @property
    def hold_s(self) -> float:
        return 3.0 if self.quick else 60.0

    @property
    def pulse_s(self) -> float:
        return 3.0 if self.quick else 30.0

    @property
    def idle_s(self) -> float:
        return 2.0 if self.quick else 60.0

    @property
    def short_s(self) -> float:
        """The polling loop beside the idle box."""
        return 2.0 if self.quick else 20.0

    @property
    def floor_s(self) -> float:
        """Each empty wait loop (the cost of waking alone)."""
        return 2.0 if self.quick else 10.0

    @property
    def tui_s(self) -> float:
        """The terminal simulator: each of idle and hold."""
        return 1.0 if self.quick else 20.0

    @property
    def history_sessions(self) -> int:
        return 2_000 if self.quick else 100_000

    @property
    def presses(self) -> int:
        return 14 if self.quick else 200

    @property
    def alt_presses(self) -> int:
        return 7 if self.quick else 100

    @property
    def cues(self) -> int:
        return 1 if self.quick else 8

    @property
    def cold_cues(self) -> int:
        return 1 if self.quick else 3

    @property
    def runs(self) -> int:
        return 1 if self.quick else 10

    @property
    def sim_s(self) -> float:
        return 1.2 if self.quick else 5.0

    @property
    def virtual_runs(self) -> int:
        return 1 if self.quick else 5


class WorkerError(RuntimeError):
    """A worker process failed; the message ends with its stderr."""


def worker_env(scratch: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: this repo importable, and no user config, history
    or voice cache read or written (XDG folders point into ``scratch``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        folder = scratch / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        env[name] = str(folder)
    env.pop("GPIOZERO_PIN_FACTORY", None)
    env.update(extra or {})
    return env


class Job:
    """One worker process, started at once; ``result()`` waits for its JSON."""

    def __init__(self, worker: str, params: dict[str, Any], timeout: float, scratch: Path,
                 env: dict[str, str]) -> None:
        fd, out = tempfile.mkstemp(prefix=f"{worker}-", suffix=".json", dir=scratch)
        os.close(fd)
        self.worker = worker
        self.out = Path(out)
        self.timeout = timeout
        self.err = tempfile.TemporaryFile(dir=scratch)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.workers", worker, json.dumps(params), str(self.out)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.err,
        )

    def result(self) -> dict[str, Any]:
        left = max(1.0, self.timeout - (time.monotonic() - self.started))
        try:
            code = self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise WorkerError(f"{self.worker}: no result within {self.timeout:.0f} s") from None
        self.err.seek(0)
        stderr = self.err.read().decode("utf-8", "replace").strip()
        self.err.close()
        if code != 0 or not self.out.stat().st_size:
            tail = "\n".join(stderr.splitlines()[-6:])
            raise WorkerError(f"{self.worker} exited {code}: {tail}")
        return json.loads(self.out.read_text())


# ---- real time: hold, light, cpu --------------------------------------------------------


Spec = tuple[str, dict[str, Any], float]  # worker, params, timeout (s)


def realtime_waves(plan: Plan, names: list[str]) -> list[dict[str, Spec]]:
    """The real-time workers the chosen benchmarks need, in waves: the workers of a wave
    run side by side, the waves one after another.

    CPU figures need a process to itself: with other processes waking the cores, each
    wake-up costs less (measured here: 30-60 % less CPU per wake), so every CPU-measuring
    worker gets its own wave. Only the naive countdown (one wake a second, its error the
    figure) runs beside the device's hold. ``side_by_side`` (and ``--quick``, whose
    seconds-long figures are only a smoke test) puts everything in one wave: quicker, and
    its CPU figures read low."""
    wanted = {key for name in names for key in NEEDS.get(name, ())}
    hold, short = plan.hold_s, plan.short_s
    waves: list[dict[str, Spec]] = [
        {"device_hold": ("device_hold", {"hold_s": hold}, hold + 60),
         "naive": ("naive_countdown", {"seconds": int(hold)}, hold + 60)},
        {"pulse": ("stock_pulse", {"seconds": plan.pulse_s}, plan.pulse_s + 60)},
        # idle: nothing wakes in the box or in sleep(), so they may share a wave
        {"device_idle": ("device_idle", {"idle_s": plan.idle_s}, plan.idle_s + 60),
         "sleep_idle": ("sleep_idle", {"idle_s": plan.idle_s}, plan.idle_s + 60),
         "tick_idle": ("tick_idle", {"idle_s": short}, short + 60)},
        {"wait_floor": ("wait_floor", {"seconds": plan.floor_s}, plan.floor_s + 60)},
        {"wait_floor_box": ("wait_floor", {"seconds": plan.floor_s, "hz": BOX_WAKES_PER_S},
                            plan.floor_s + 60)},
    ]
    if plan.long and "hold" in names:
        wanted |= {"device_hold_long", "naive_long"}
        waves.append({"device_hold_long": ("device_hold", {"hold_s": 300.0}, 360),
                      "naive_long": ("naive_countdown", {"seconds": 300}, 360)})
    waves = [{k: v for k, v in wave.items() if k in wanted} for wave in waves]
    waves = [wave for wave in waves if wave]
    if plan.side_by_side or plan.quick:
        return [{k: v for wave in waves for k, v in wave.items()}]
    return waves


def run_waves(waves: list[dict[str, Spec]], scratch: Path, env: dict[str, str],
              progress: Callable[[str], None]) -> dict[str, dict[str, Any] | Exception]:
    """Run each wave's workers side by side, wave after wave; key -> result or error."""
    results: dict[str, dict[str, Any] | Exception] = {}
    for wave in waves:
        longest = max(spec[2] - 60 for spec in wave.values())
        progress(f"  {', '.join(wave)} (~{longest:.0f} s)")
        jobs: dict[str, Job] = {}
        for key, (worker, params, timeout) in wave.items():
            try:
                jobs[key] = Job(worker, params, timeout, scratch, env)
            except Exception as exc:
                results[key] = exc
        for key, job in jobs.items():
            try:
                results[key] = job.result()
            except Exception as exc:
                results[key] = exc
    return results


def _need(results: dict[str, Any], *keys: str) -> list[dict[str, Any]]:
    out = []
    for key in keys:
        value = results.get(key)
        if isinstance(value, Exception):
            raise value
        if value is None:
            raise WorkerError(f"{key}: not run")
        out.append(value)
    return out


def bench_hold(plan: Plan, results: dict[str, Any], bench: Bench) -> None:
    dev, naive = _need(results, "device_hold", "naive")
    bench.raw = {"device": dev, "naive": naive}
    holds = [(plan.hold_s, dev, naive)]
    if plan.long:
        dev_long, naive_long = _need(results, "device_hold_long", "naive_long")
        bench.raw.update({"device_300s": dev_long, "naive_300s": naive_long})
        holds.append((300.0, dev_long, naive_long))
    for seconds, d, n in holds:
        bench.figures.append(Figure(
            key=f"hold.error_{seconds:g}s",
            label=f"{seconds:g} s hold: |held - planned|",
            value=abs(d["error_ms"]), unit="ms",
            alt_label=f"for _ in range({seconds:g}): sleep(1)", alt_value=abs(n["error_ms"]),
            target_op="<=", target=2.0,
        ))
    bench.notes.append(
        f"held = start beep -> end beep, stamped on time.monotonic() as the loop sounds them "
        f"(device: {dev['held_wall_s']:.5f} s of {dev['planned_s']:g} s). The hold event's "
        f"own held_s ({dev['held_s_event']}) is exact by construction: the machine stamps "
        "timer times, not when the loop woke")
    if plan.quick:
        bench.notes.append("quick: a 3 s hold (config bypassed with dataclasses.replace)")


def bench_light(plan: Plan, results: dict[str, Any], bench: Bench) -> None:
    dev, pulse, idle, floor, floor_box = _need(results, "device_hold", "pulse", "device_idle",
                                               "wait_floor", "wait_floor_box")
    bench.raw = {"device_hold": dev, "stock_pulse": pulse, "device_idle": idle,
                 "wait_floor_50hz": floor, "wait_floor_box_rate": floor_box}
    dl, pl = dev["light"], pulse["light"]
    bench.figures.append(Figure(
        key="light.max_perceived_step", label="largest step in perceived brightness",
        value=dl["max_step"], unit="", alt_label="pulse()", alt_value=pl["max_step"],
        target_op="<=", target_alt=True, target_factor=0.2,
        note="device.core.breath.perceived (CIE L*, 0..1) of consecutive pin values",
    ))
    bench.figures.append(Figure(
        key="light.updates_per_s", label="pin changes per second in a hold (fewer: cheaper)",
        value=dl["per_s"], unit="/s", alt_label="pulse()", alt_value=pl["per_s"],
    ))
    bench.figures.append(Figure(
        key="light.max_gap_ms", label="longest gap between pin changes",
        value=dl["max_gap_ms"], unit="ms", alt_label="pulse()", alt_value=pl["max_gap_ms"],
    ))

    def per_min(r: dict[str, Any]) -> float:
        return r["cpu_s"] / r["wall_s"] * 60

    idle_min = per_min(idle)
    bench.figures.append(Figure(
        key="light.cpu_s_per_min", label="CPU s per minute of breathing (hold - idle)",
        value=per_min(dev) - idle_min, unit="s", alt_label="pulse()",
        alt_value=per_min(pulse), target_op="<=", target_alt=True,
    ))
    bench.figures.append(Figure(
        key="light.cpu_us_per_update", label="CPU per pin change",
        value=(per_min(dev) - idle_min) / 60 / dl["per_s"] * 1e6, unit="us",
        alt_label="pulse()", alt_value=per_min(pulse) / 60 / pl["per_s"] * 1e6,
    ))
    bench.figures.append(Figure(
        key="light.wait_floor_box_s_per_min",
        label=f"floor: empty Event.wait loop at the box's {BOX_WAKES_PER_S:g} wakes/s, CPU s/min",
        value=per_min(floor_box), unit="s", alt_label="the same at 50/s",
        alt_value=per_min(floor),
        note="no work at all: what waking alone costs on this machine",
    ))
    bench.notes.append(
        f"device: whole loop in a hold {per_min(dev):.3f} CPU s/min (idle {idle_min:.4f}), "
        f"{dev['loop_wakes_per_s']:.1f} loop wakes/s; an event listener is attached (as in "
        "the simulator; `run` on the Pi has none)")
    bench.notes.append(
        "pulse() steps duty linearly at 25 fps: near dark one 1% duty step is a 9% "
        "perceived jump; the box redraws when the eye would see a change of light.step "
        "(0.015 perceived, solved on the eased, gamma-corrected curve), at most light.hz")


def bench_cpu(plan: Plan, results: dict[str, Any], bench: Bench) -> None:
    dev, idle, sleep, tick, naive, pulse = _need(results, "device_hold", "device_idle",
                                                 "sleep_idle", "tick_idle", "naive", "pulse")
    bench.raw = {"device_idle": idle, "sleep_idle": sleep, "tick_idle": tick,
                 "device_hold": dev}
    bench.figures.append(Figure(
        key="cpu.idle_pct", label=f"idle {plan.idle_s:g} s, % of one core",
        value=idle["cpu_pct"], unit="%", alt_label=f"sleep({plan.idle_s:g})",
        alt_value=sleep["cpu_pct"], target_op="<=", target=0.01,
    ))
    bench.figures.append(Figure(
        key="cpu.idle_switches_per_min",
        label="idle: context switches of the whole process per minute",
        value=idle["context_switches"] / idle["wall_s"] * 60, unit="/min",
        alt_label=f"sleep({plan.idle_s:g})",
        alt_value=sleep["context_switches"] / sleep["wall_s"] * 60,
        note="getrusage(RUSAGE_SELF) voluntary + involuntary: a periodic wake-up shows here",
    ))
    bench.figures.append(Figure(
        key="cpu.idle_poll_pct", label="idle: 50 Hz polling loop, % of one core",
        value=tick["cpu_pct"], unit="%",
    ))
    naive_pct = naive["cpu_pct"] + pulse["cpu_pct"]
    bench.figures.append(Figure(
        key="cpu.hold_pct", label=f"in a {plan.hold_s:g} s hold, % of one core",
        value=dev["cpu_pct"], unit="%", alt_label="sleep(1) countdown + pulse()",
        alt_value=naive_pct, target_op="<=", target=1.0,
    ))
    bench.notes.append(
        f"idle: the loop woke {idle['loop_wakes']} times in {idle['wall_s']:.0f} s with "
        f"{idle['threads']} thread(s) ({', '.join(idle.get('thread_names', []))}): the button "
        "is a DigitalInputDevice read on edges, no hold thread")
    bench.notes.append("voice is the recording fake: a real cue's synthesis and player "
                       "are extra (see voice)")


# ---- a line past its estimate -------------------------------------------------------------


def bench_overrun(plan: Plan, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    """The loop while a line overruns its estimate: it sleeps until the voice says it is
    done. Beside it, a voice that cannot say so (the loop polls it every 50 ms)."""
    overrun = 1.0 if plan.quick else 10.0
    raw: dict[str, Any] = {}
    for speed in (1.0, 10.0):
        params: dict[str, Any] = {"speed": speed, "overrun_s": overrun}
        if plan.quick:
            params["first"] = "A short line."
        box = Job("voice_overrun", params, overrun + 90, scratch, env).result()
        poll = Job("voice_overrun", {**params, "tells": False}, overrun + 90, scratch,
                   env).result()
        raw[f"{speed:g}x"] = {"box": box, "polled": poll}
        bench.figures.append(Figure(
            key=f"overrun.cpu_{speed:g}x_pct",
            label=f"loop CPU while a line runs {overrun:g} s late, {speed:g}x, % of a core",
            value=box["cpu_pct"], unit="%", alt_label="a voice polled every 50 ms",
            alt_value=poll["cpu_pct"], target_op="<=", target=1.0,
            note=f"{box['loop_wakes_per_s']:.2f} loop wakes/s (polled: "
                 f"{poll['loop_wakes_per_s']:.1f}/s)"))
        bench.figures.append(Figure(
            key=f"overrun.next_line_{speed:g}x_ms",
            label=f"  the late line ends -> the waiting line starts, {speed:g}x",
            value=box["second_line_after_ms"], unit="ms", alt_label="polled",
            alt_value=poll["second_line_after_ms"]))
        if box["wall_s"] < overrun * 0.8:
            bench.notes.append(f"WARNING: {speed:g}x measured {box['wall_s']:.1f} s, "
                               f"not the {overrun:g} s overrun")
    bench.raw = raw
    bench.notes.append("measured from the line's estimated end to its real end (the "
                       "player runs on a timer); process CPU over that wall time; the loop "
                       "counts its wakes with a ticker")


# ---- add-ons asleep -----------------------------------------------------------------------


def bench_addons(plan: Plan, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    """Idle wake-ups with the page and MQTT on (a local Mosquitto), beside uvicorn and
    paho alone as their docs run them (their own floors), A B A B."""
    from tests.broker import MOSQUITTO, Mosquitto

    idle = 5.0 if plan.quick else 30.0
    broker = Mosquitto(scratch / "addons-broker", tls=False).start() if MOSQUITTO else None
    url = broker.url if broker is not None else None
    box: list[dict[str, Any]] = []
    stock: list[dict[str, Any]] = []
    try:
        for _ in range(1):  # one pair per run: the runs interleave (A B A B)
            box.append(Job("addons_idle", {"idle_s": idle, "web": True, "mqtt_url": url},
                           idle + 90, scratch, env).result())
            stock.append(Job("stock_idle", {"idle_s": idle, "mqtt_url": url}, idle + 90,
                             scratch, env).result())
    finally:
        if broker is not None:
            broker.stop()
    bench.raw = {"box": box, "stock": stock, "broker": url}
    wakes = statistics.median(r["wakes_per_s"] for r in box)
    bench.figures.append(Figure(
        key="addons.idle_wakes_per_10s", label=f"idle {idle:g} s, page + MQTT on, no client: "
        "wake-ups per 10 s", value=wakes * 10, unit="", alt_label="uvicorn.Server + paho "
        "loop_start() alone", alt_value=statistics.median(r["wakes_per_s"] for r in stock) * 10,
        target_op="<=", target=1.0,
        note="voluntary context switches of every thread (/proc/self/task), the measuring "
             "thread's one sleep left out"))
    bench.figures.append(Figure(
        key="addons.idle_cpu_pct", label="  the same, CPU % of a core",
        value=statistics.median(r["cpu_pct"] for r in box), unit="%",
        alt_label="uvicorn + paho alone",
        alt_value=statistics.median(r["cpu_pct"] for r in stock)))
    threads = box[0]["per_thread"]
    bench.notes.append(f"first run's wakes by thread: {threads or 'none'}; MQTT keep-alive "
                       "30 s: paho's select waits that long (its own: 1 s), uvicorn's main "
                       "loop waits on an event (its own: a 0.1 s tick)")
    if url is None:
        bench.notes.append("WARNING: no mosquitto here: MQTT was off")
    elif not all(r["mqtt_connected"] for r in box):
        bench.notes.append("WARNING: MQTT did not connect in a run")


# ---- a twentieth of a core ----------------------------------------------------------------


def bench_quota(plan: Plan, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    """See bench/quota.py: the session under a 5 % quota, and the same without (the light's
    reference spacing)."""
    from bench import quota
    from tests.broker import MOSQUITTO, Mosquitto

    why = quota.available()
    if why:
        bench.status, bench.error = "skipped", why
        return
    hold_s = 3.0 if plan.quick else 60.0
    broker = Mosquitto(scratch / "quota-broker", tls=False).start() if MOSQUITTO else None
    url = broker.url if broker is not None else None
    try:
        free = quota.run(hold_s, ["right"], None, url, scratch, env, hold_s + 240)
        limited = quota.run(hold_s, ["right"], QUOTA_PCT, url, scratch, env, hold_s + 240)
    finally:
        if broker is not None:
            broker.stop()
    s = quota.summary(limited, free)
    bench.raw = {"quota": limited, "free": free, "summary": s}
    bench.figures.append(Figure(
        key="quota.hold_error_ms", label=f"{hold_s:g} s hold at {QUOTA_PCT:g} % of a core: "
        "|held - planned|", value=s["hold_error_ms"], unit="ms", alt_label="no quota",
        alt_value=s["free_hold_error_ms"], target_op="<=", target=20.0))
    gap, free_gap = s["light_max_gap_ms"], s["free_light_max_gap_ms"]
    bench.figures.append(Figure(
        key="quota.light_gap_ms", label="  longest gap between light frames in the hold",
        value=gap, unit="ms", alt_label="no quota", alt_value=free_gap, target_op="<=",
        target=None if free_gap is None else free_gap + 100.0,
        note="target: the unlimited run's own + 100 ms"))
    bench.figures.append(Figure(
        key="quota.cue_ms", label="  cue start latency (loop -> player started), worst",
        value=s["cue_max_ms"], unit="ms", alt_label="no quota", alt_value=s["free_cue_max_ms"],
        target_op="<=", target=150.0, note="the routine's fixed lines, from the WAV cache"))
    bench.figures.append(Figure(
        key="quota.press_ms", label="  press (pin released) -> state event, worst",
        value=s["press_max_ms"], unit="ms", alt_label="no quota",
        alt_value=s["free_press_max_ms"], target_op="<=", target=100.0))
    bench.figures.append(Figure(
        key="quota.cpu_pct", label="  the box's CPU over the session, % of a core",
        value=s["cpu_pct"], unit="%", alt_label="no quota", alt_value=s["free_cpu_pct"]))
    cg = limited.get("cgroup", {})
    bench.notes.append(
        f"cgroup v{cg.get('version')} limited to {QUOTA_PCT:g} % (period 100 ms): "
        f"{cg.get('nr_throttled')} of {cg.get('nr_periods')} periods throttled; "
        f"states {' '.join(limited['states'])}; holds {s['holds']} "
        f"({'complete' if s['complete'] else 'NOT all complete'}); page stream "
        f"{limited.get('page_status')} with {limited.get('page_updates')} updates; MQTT "
        f"{'connected' if limited.get('mqtt_connected') else 'NOT connected'}; player "
        f"{limited.get('player')}; uncached lines (rendered when said): "
        f"{', '.join(f'{x:.0f}' for x in limited.get('uncached_cue_ms', []))} ms")
    if not s["complete"] or not s["holds"]:
        bench.notes.append("WARNING: the session under the quota did not run its holds")


QUOTA_PCT = 5.0


# ---- exit -------------------------------------------------------------------------------


def _exit_latency(env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """A whole headless run on virtual time: its last event line on stdout -> the process
    has exited (s); beside it, a bare interpreter's print -> exit."""
    box, bare = [], []
    # no script: the default one runs a whole session (both legs) and ends; "press@1" alone
    # now waits in the set-up until the 6 h cut-off (seconds of work, not an exit)
    argv = [sys.executable, "-m", "device", "sim", "--headless", "--no-history", "--events",
            "-"]
    for cmd, out in ((argv, box), ([sys.executable, "-c", "print('x')"], bare)):
        for _ in range(runs):
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            assert proc.stdout is not None
            last = None
            for _line in proc.stdout:
                last = time.perf_counter()
            proc.wait(timeout=60)
            if last is not None:
                out.append(time.perf_counter() - last)
    return box, bare


def bench_exit(plan: Plan, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    runs = 1 if plan.quick else 5
    res = Job("box_close", {"runs": runs}, 120, scratch, env).result()
    box, bare = _exit_latency(env, runs)
    bench.raw = {**res, "process_exit_ms": [b * 1000 for b in box],
                 "bare_exit_ms": [b * 1000 for b in bare]}
    bench.figures.append(Figure(
        key="exit.close_ms", label="box.close() after the session ends (in process)",
        value=res["close_median_ms"], unit="ms", alt_label="gpiozero Button.close()",
        alt_value=res["button_close_median_ms"], target_op="<=", target=5.0,
    ))
    bench.figures.append(Figure(
        key="exit.process_ms", label="headless sim: last event line -> process gone",
        value=statistics.median(box) * 1000 if box else None, unit="ms",
        alt_label="python -c print(): line -> gone",
        alt_value=statistics.median(bare) * 1000 if bare else None,
        note="includes the interpreter's own teardown (the alternative is that floor)",
    ))


# ---- the terminal simulator -------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float | None:
    """utime + stime + children's (s) of ``pid`` from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks


def _task_switches(pid: int) -> dict[str, int]:
    """Voluntary context switches (wake-ups) of each thread of ``pid``, by tid."""
    out: dict[str, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        out[tid] = int(line.split()[1])
        except OSError:
            continue
    return out


def _wakes(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(v - before.get(k, 0) for k, v in after.items())


def bench_tui(plan: Plan, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    """The terminal simulator in a pty (voice on): idle, then in a real hold (a press
    into the set-up, then ``h``, the double press that starts the hold), checked on the
    screen it draws: CPU and the wake-ups of every thread."""
    import pty
    import select

    master, slave = pty.openpty()
    try:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    except OSError:
        pass
    tui_env = dict(env, TERM="xterm-256color", COLUMNS="120", LINES="40")
    proc = subprocess.Popen([sys.executable, "-m", "device", "sim", "--no-history"],
                            cwd=REPO, env=tui_env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    stop = threading.Event()
    screen = bytearray()  # everything the simulator drew
    lock = threading.Lock()

    def drain() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                with lock:
                    screen.extend(data)

    def drawn_since(mark: int, text: bytes) -> bool:
        with lock:
            return text in bytes(screen[mark:])

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    figures: dict[str, Any] = {}
    try:
        peak = _watch_rss(proc, 3.0)  # imports, first draw, the voice starting
        # the voice renders its fixed lines at start-up (seconds on a loaded machine):
        # idle is measured once a whole second passes with no CPU tick (30 s at most)
        settle_end = time.monotonic() + 30
        while time.monotonic() < settle_end and proc.poll() is None:
            before = _proc_cpu_s(proc.pid)
            time.sleep(1.0)
            if _proc_cpu_s(proc.pid) == before:
                break
        w0, c0, t0 = _task_switches(proc.pid), _proc_cpu_s(proc.pid), time.monotonic()
        time.sleep(plan.tui_s)
        w1, c1, t1 = _task_switches(proc.pid), _proc_cpu_s(proc.pid), time.monotonic()
        peak = max(peak or 0, _hwm_kb(proc.pid) or 0)
        with lock:
            mark = len(screen)
        os.write(master, b" ")  # into the set-up
        time.sleep(0.5)
        os.write(master, b"h")  # a double press: the hold starts
        deadline = time.monotonic() + 10
        while not drawn_since(mark, b"HOLD") and time.monotonic() < deadline:
            time.sleep(0.05)
        in_hold = drawn_since(mark, b"HOLD")
        peak = max(peak, _watch_rss(proc, 1.0) or 0)
        with lock:
            mark = len(screen)
        w2, c2, t2 = _task_switches(proc.pid), _proc_cpu_s(proc.pid), time.monotonic()
        time.sleep(plan.tui_s)
        w3, c3, t3 = _task_switches(proc.pid), _proc_cpu_s(proc.pid), time.monotonic()
        peak = max(peak, _hwm_kb(proc.pid) or 0)
        # still in the hold at the end: the countdown (hold's own panel) kept being drawn
        still = not drawn_since(mark, b"HOW TIGHT") and not drawn_since(mark, b"SWITCH")
        alive = proc.poll() is None
        if None not in (c0, c1, c2, c3) and alive:
            figures = {"idle_pct": 100 * (c1 - c0) / (t1 - t0),  # type: ignore[operator]
                       "hold_pct": 100 * (c3 - c2) / (t3 - t2),  # type: ignore[operator]
                       "idle_wakes_per_s": _wakes(w0, w1) / (t1 - t0),
                       "hold_wakes_per_s": _wakes(w2, w3) / (t3 - t2),
                       "in_hold": in_hold, "still_in_hold": still, "peak_kb": peak}
    finally:
        if proc.poll() is None:
            os.write(master, b"q")
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        stop.set()
        reader.join(2)
        os.close(master)
    bench.raw = {**figures, "exit": proc.returncode}
    if not figures:
        bench.status = "skipped"
        bench.notes.append(f"the terminal simulator did not run (exit {proc.returncode}; "
                           "is textual installed? pip install 'stretch-companion[sim]')")
        return
    bench.figures.append(Figure(
        key="tui.idle_wakes_per_s", label=f"idle {plan.tui_s:g} s: wake-ups/s, every thread",
        value=figures["idle_wakes_per_s"], unit="/s", target_op="<=", target=1.0))
    bench.figures.append(Figure(
        key="tui.idle_pct", label=f"idle {plan.tui_s:g} s, % of one core",
        value=figures["idle_pct"], unit="%", target_op="<=", target=1.0,
    ))
    hold_ok = figures["in_hold"] and figures["still_in_hold"]
    bench.figures.append(Figure(
        key="tui.hold_pct", label=f"in a hold {plan.tui_s:g} s (screen says HOLD), % of one "
        "core", value=figures["hold_pct"] if hold_ok else None, unit="%", target_op="<=",
        target=3.0,
    ))
    bench.figures.append(Figure(
        key="tui.hold_wakes_per_s", label="  in the hold: wake-ups/s, every thread",
        value=figures["hold_wakes_per_s"], unit="/s"))
    bench.figures.append(Figure(
        key="tui.rss_mb", label="peak RSS (VmHWM) with the voice",
        value=figures["peak_kb"] / 1000, unit="MB", target_op="<=", target=50.0,
    ))
    if not hold_ok:
        bench.notes.append("WARNING: the screen did not show HOLD after the keys (or left "
                           "it): the hold figure is not given")
    bench.notes.append("CPU of the process and its reaped children (utime+stime+cutime+"
                       "cstime from /proc, 10 ms ticks); wake-ups: voluntary context "
                       "switches of every thread (/proc/PID/task); the voice speaks the "
                       "set-up's first line and the hold's reminders through espeak and "
                       "aplay if present")


# ---- history ----------------------------------------------------------------------------


def _rss_run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, int | None]:
    """Wall time (s) and peak RSS (KB) of a command, output discarded."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = _watch_rss(proc, timeout)
    proc.wait(timeout=timeout)
    return time.perf_counter() - t0, peak


OLD_JSON = ("import json, sys\n"
            "from device.core.records import session_to_dict\n"
            "from device.store.sqlite import History\n"
            "with History(sys.argv[1]) as h:\n"
            "    print(json.dumps([session_to_dict(s) for s in h.sessions()], indent=2))\n")


def bench_history(plan: Plan, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    n = plan.history_sessions
    big, empty = scratch / f"history-{n}.db", scratch / "history-empty.db"
    if not big.exists():
        Job("history_fill", {"path": str(big), "sessions": n}, 600, scratch, env).result()
    runs = 10 if plan.quick else 30
    full = Job("session_end", {"path": str(big), "runs": runs}, 300, scratch, env).result()
    none = Job("session_end", {"path": str(empty), "runs": runs}, 300, scratch, env).result()
    py = sys.executable
    json_s, json_kb = _rss_run([py, "-m", "device", "history", "--history", str(big),
                                "--json"], env, 300)
    old_s, old_kb = _rss_run([py, "-c", OLD_JSON, str(big)], env, 600)
    plot_s, plot_kb = _rss_run([py, "-m", "device", "history", "--history", str(big),
                                "--plot", str(scratch / "plot.png")], env, 300)
    boxes = _habit_boxes(plan, scratch, env, big)
    bench.raw = {"sessions": n, "end_full": full, "end_empty": none, "json_s": json_s,
                 "json_kb": json_kb, "old_json_s": old_s, "old_json_kb": old_kb,
                 "plot_s": plot_s, "plot_kb": plot_kb, "box": boxes}
    _habit_figures(bench, boxes, n)
    bench.figures.append(Figure(
        key="history.end_extra_ms",
        label=f"end of session: {n:,} sessions minus an empty history",
        value=full["end_median_ms"] - none["end_median_ms"], unit="ms",
        target_op="<=", target=5.0,
        note="store (one fsynced transaction), week count, streak, done today, both legs' "
             "progression, through SafeHistory as the box does it",
    ))
    bench.figures.append(Figure(
        key="history.end_ms", label=f"end of session at {n:,} sessions",
        value=full["end_median_ms"], unit="ms", alt_label="empty history",
        alt_value=none["end_median_ms"],
    ))
    bench.figures.append(Figure(
        key="history.streak_ms", label=f"the streak at {n:,} sessions (read back as far as "
        "it goes)", value=full["bounded_streak_ms"], unit="ms",
        alt_label="a scan of every complete start",
        alt_value=full["full_scan_streak_ms"],
    ))
    bench.figures.append(Figure(
        key="history.json_rss_mb", label=f"history --json at {n:,} sessions: peak RSS",
        value=(json_kb or 0) / 1000 or None, unit="MB",
        alt_label="json.dumps of every session", alt_value=(old_kb or 0) / 1000 or None,
        target_op="<=", target=60.0,
    ))
    bench.figures.append(Figure(
        key="history.json_s", label="history --json: wall time", value=json_s, unit="s",
        alt_label="json.dumps of every session", alt_value=old_s,
    ))
    bench.figures.append(Figure(
        key="history.plot_s", label=f"history --plot at {n:,} sessions", value=plot_s,
        unit="s", target_op="<=", target=3.0,
        note="points aggregated in SQL per leg and per day (wider buckets past 1000 days)",
    ))
    bench.notes.append(f"{n:,} complete sessions, three a day, a 30-day streak to today; "
                       "wall times include the interpreter start (~0.1 s)")


def _habit_boxes(plan: Plan, scratch: Path, env: dict[str, str], big: Path
                 ) -> dict[str, Any]:
    """The whole box as ``run`` builds it on the big and on an empty history, MQTT on
    (a Mosquitto here when installed), A B A B: start-up, RSS, the loop's session end,
    the stats message."""
    from tests.broker import MOSQUITTO, Mosquitto

    broker = None
    if MOSQUITTO is not None:
        try:
            broker = Mosquitto(scratch / "habit-broker", tls=False).start()
        except Exception:  # no broker: MQTT on, not connected (noted in the figures)
            broker = None
    url = broker.url if broker is not None else "mqtt://127.0.0.1:9"
    runs: dict[str, list[dict[str, Any]]] = {"big": [], "empty": []}
    sessions = 3 if plan.quick else 5
    try:
        for _ in range(1 if plan.quick else 3):
            for key, path in (("empty", scratch / "habit-empty.db"), ("big", big)):
                if key == "empty" and path.exists():
                    path.unlink()  # empty at every run
                runs[key].append(Job("habit_box", {"path": str(path), "url": url,
                                                   "sessions": sessions, "stats_runs": 20},
                                     300, scratch, env).result())
    finally:
        if broker is not None:
            broker.stop()
    return {"runs": runs, "broker": broker is not None}


def _habit_figures(bench: Bench, boxes: dict[str, Any], n: int) -> None:
    runs = boxes["runs"]

    def med(key: str, field: str) -> float | None:
        values = [r[field] for r in runs[key] if r.get(field) is not None]
        return statistics.median(values) if values else None

    end_big, end_empty = med("big", "end_median_ms"), med("empty", "end_median_ms")
    bench.figures.append(Figure(
        key="history.loop_end_extra_ms",
        label=f"session end in the loop thread, MQTT on: {n:,} sessions minus empty",
        value=None if end_big is None or end_empty is None else end_big - end_empty,
        unit="ms", target_op="<=", target=5.0,
        note=f"{end_big:.3f} vs {end_empty:.3f} ms: DeviceLoop._on_session_end (summary, "
             "tally, bus) timed where the box runs it" if end_big and end_empty else ""))
    bench.figures.append(Figure(
        key="history.startup_s", label=f"build the box (history, tally, MQTT) at {n:,}",
        value=med("big", "startup_s"), unit="s", alt_label="empty history",
        alt_value=med("empty", "startup_s"), target_op="<=", target_alt=True,
        target_factor=1.1))
    bench.figures.append(Figure(
        key="history.box_rss_mb", label=f"RSS after building the box at {n:,}",
        value=(med("big", "rss_built_kb") or 0) / 1024 or None, unit="MiB",
        alt_label="empty history", alt_value=(med("empty", "rss_built_kb") or 0) / 1024 or None,
        target_op="<=", target_alt=True, target_factor=1.1))
    bench.figures.append(Figure(
        key="history.stats_ms", label=f"MQTT stats message at {n:,} sessions",
        value=med("big", "stats_median_ms"), unit="ms", alt_label="empty history",
        alt_value=med("empty", "stats_median_ms"), target_op="<=", target=10.0,
        note="stats_payload on the publisher's own connection, as its thread makes it"))
    rows = [r.get("tally_rows_read") for r in runs["big"]]
    connected = all(r.get("mqtt_connected") for r in runs["big"] + runs["empty"])
    how = ("connected to a local Mosquitto" if connected else
           "on but NOT connected (no broker): stats are still made and timed")
    bench.notes.append(f"the tally read {rows[0]} complete starts at start-up of {n:,} "
                       f"sessions; MQTT {how}")
    if any(r["sessions_ended"] < 1 for r in runs["big"] + runs["empty"]):
        bench.notes.append("WARNING: a run ended no session")


# ---- button -----------------------------------------------------------------------------


def bench_button(plan: Plan, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    res = Job("button", {"presses": plan.presses, "alt_presses": plan.alt_presses},
              120 + plan.presses, scratch, env).result()
    bench.raw = res
    d, a = res["device"], res["poll_50hz"]
    bench.figures.append(Figure(
        key="button.median_ms", label=f"median of {d['n']} presses",
        value=d["median_ms"], unit="ms", alt_label="50 Hz polling loop",
        alt_value=a["median_ms"], target_op="<=", target=5.0,
    ))
    bench.figures.append(Figure(
        key="button.p99_ms", label="p99", value=d["p99_ms"], unit="ms",
        alt_label="50 Hz polling loop", alt_value=a["p99_ms"],
    ))
    bench.figures.append(Figure(
        key="button.max_ms", label="max", value=d["max_ms"], unit="ms",
        alt_label="50 Hz polling loop", alt_value=a["max_ms"],
    ))
    if res["device_missed"]:
        bench.notes.append(f"{res['device_missed']} presses gave no state change in 2 s")
    bench.notes.append("presses walk idle -> setup -> hold -> switch -> setup -> hold -> "
                       "done -> idle, 10-40 ms apart; the loop runs in its own thread")


# ---- voice ------------------------------------------------------------------------------

SHIM = """#!/bin/bash
# bench: stamp the player's start, then run the real aplay.
printf '%s\\n' "$EPOCHREALTIME" >> "$BENCH_APLAY_LOG"
[ -n "$BENCH_REAL_APLAY" ] || exit 0
if [ -n "$BENCH_APLAY_DEVICE" ]; then
  case " $* " in *" -D "*) ;; *) set -- -D "$BENCH_APLAY_DEVICE" "$@" ;; esac
fi
exec "$BENCH_REAL_APLAY" "$@" 2>>"$BENCH_APLAY_ERR"
"""


def _sound_card() -> tuple[str | None, bool]:
    """(path of the real aplay or None, whether ALSA lists a playback card)."""
    real = shutil.which("aplay")
    if real is None:
        return None, False
    try:
        done = subprocess.run([real, "-l"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return real, False
    return real, done.returncode == 0 and "card " in done.stdout


def _shim_overhead(shim_dir: Path, env: dict[str, str], runs: int = 5) -> float | None:
    """Median time from Popen to the shim's stamp with a do-nothing player (s)."""
    log = Path(env["BENCH_APLAY_LOG"])
    probe_env = dict(env, BENCH_REAL_APLAY="")
    out = []
    for _ in range(runs):
        n = len(log.read_text().splitlines()) if log.exists() else 0
        t0 = time.time()
        subprocess.run([str(shim_dir / "aplay")], env=probe_env, timeout=10)
        lines = log.read_text().splitlines()
        if len(lines) > n:
            out.append(float(lines[n].replace(",", ".")) - t0)
    return statistics.median(out) if out else None


def bench_voice(plan: Plan, scratch: Path, base_env: dict[str, str], bench: Bench) -> None:
    if shutil.which("bash") is None:
        bench.status = "skipped"
        bench.notes.append("no bash here for the aplay shim that stamps the player's start")
        return
    shim_dir = scratch / "shim"
    shim_dir.mkdir(exist_ok=True)
    shim = shim_dir / "aplay"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    real, card = _sound_card()
    env = dict(base_env)
    env.update({
        "PATH": f"{shim_dir}{os.pathsep}{base_env.get('PATH', '')}",
        "BENCH_APLAY_LOG": str(scratch / "aplay.log"),
        "BENCH_APLAY_ERR": str(scratch / "aplay.err"),
        "BENCH_REAL_APLAY": real or "",
        "BENCH_APLAY_DEVICE": "" if card else "null",
    })
    overhead = _shim_overhead(shim_dir, env)
    cache = scratch / "voice-cache"
    wav_dir = scratch / "wav"
    for folder in (cache, wav_dir):
        folder.mkdir(exist_ok=True)
    n, timeout = plan.cues, 120 + 20 * plan.cues
    runs = {
        "cached": ("voice_device", {"cues": n, "mode": "cached", "cache_dir": str(cache)}),
        "uncached": ("voice_device", {"cues": n, "mode": "uncached",
                                      "cache_dir": str(cache / "u")}),
        "live": ("voice_device", {"cues": n, "mode": "live", "cache_dir": str(cache / "l")}),
        "per_cue": ("voice_per_cue", {"cues": n}),
        "wav": ("voice_wav", {"cues": n, "cache_dir": str(wav_dir)}),
        "cold": ("voice_cold", {"cues": plan.cold_cues}),
    }
    res: dict[str, Any] = {}
    for key, (worker, params) in runs.items():
        try:
            res[key] = Job(worker, params, timeout, scratch, env).result()
        except WorkerError as exc:
            res[key] = {"error": str(exc)}
    bench.raw = {"runs": res, "shim_overhead_ms": None if overhead is None else overhead * 1e3,
                 "sound_card": card, "aplay": real}
    skipped = [r.get("skipped") for r in res.values() if r.get("skipped")]
    if len(skipped) == len(res):
        bench.status = "skipped"
        bench.notes.append(f"no voice here: {skipped[0]}")
        return

    def med(key: str, what: str = "player_start") -> float | None:
        r = res.get(key, {})
        return r.get(what, {}).get("median_ms") if isinstance(r.get(what), dict) else None

    def worst(key: str, what: str = "player_start") -> float | None:
        r = res.get(key, {})
        return r.get(what, {}).get("max_ms") if isinstance(r.get(what), dict) else None

    bench.figures.append(Figure(
        key="voice.warm_cue_ms", label="box voice, cue from WAV cache: median",
        value=med("cached"), unit="ms", alt_label="pyttsx3.init() per cue",
        alt_value=med("per_cue"), target_op="<=", target=100.0,
    ))
    bench.figures.append(Figure(
        key="voice.warm_cue_max_ms", label="box voice, cue from WAV cache: max",
        value=worst("cached"), unit="ms", alt_label="pyttsx3.init() per cue",
        alt_value=worst("per_cue"),
    ))
    bench.figures.append(Figure(
        key="voice.uncached_cue_ms", label="box voice, line not cached: median",
        value=med("uncached"), unit="ms", alt_label="pyttsx3.init() per cue",
        alt_value=med("per_cue"), target_op="<=", target=100.0,
    ))
    bench.figures.append(Figure(
        key="voice.live_say_ms", label="box voice, live_say (warm engine say): median",
        value=med("live"), unit="ms", alt_label="pyttsx3.init() per cue",
        alt_value=med("per_cue"), target_op="<=", target=100.0,
    ))
    bench.figures.append(Figure(
        key="voice.bare_aplay_ms", label="cached WAV, bare Popen(aplay): median",
        value=med("wav"), unit="ms", alt_label="new python process per cue",
        alt_value=med("cold"),
    ))
    bench.figures.append(Figure(
        key="voice.started_utterance_ms", label="pyttsx3 'started-utterance' callback: median",
        value=med("live", "started_utterance"), unit="ms",
        alt_label="same, engine per cue", alt_value=med("per_cue", "started_utterance"),
    ))
    for key, r in res.items():
        if r.get("skipped"):
            bench.notes.append(f"{key}: skipped: {r['skipped']}")
        if r.get("error"):
            bench.notes.append(f"{key}: error: {r['error']}")
    if not card:
        bench.notes.append(
            "no sound card here (aplay -l lists none): the shim gives aplay -D null, "
            "which discards samples at once; every figure is cue -> player process start"
            if real else "no aplay here: figures are to the (shim) player's start only")
    if overhead is not None:
        bench.notes.append(f"player start is stamped by a bash shim for aplay on PATH: "
                           f"~{overhead * 1e3:.1f} ms of bash start-up is in every figure")
    bench.notes.append(
        "pyttsx3 2.99 (espeak) fires 'started-utterance' before it synthesises; it then "
        "writes the whole line to a WAV and runs aplay: the callback is not playback start")
    cpu = res.get("cached", {}).get("cpu_per_cue_ms")
    if cpu is not None:
        bench.notes.append(f"CPU per cached cue (process + aplay): {cpu:.1f} ms; "
                           f"pre-rendering {res['cached'].get('fixed_lines')} fixed lines "
                           f"took {res['cached'].get('ready_s', 0):.2f} s at start-up")


# ---- start-up ---------------------------------------------------------------------------


def _wall(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        out.append(time.perf_counter() - t0)
    return out


def _hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _watch_rss(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    """Peak RSS (KB, VmHWM) of ``proc`` over ``seconds`` or until it exits."""
    peak = None
    end = time.monotonic() + seconds
    while time.monotonic() < end and proc.poll() is None:
        kb = _hwm_kb(proc.pid)
        if kb is not None:
            peak = kb if peak is None else max(peak, kb)
        time.sleep(0.05)
    return peak


def _sim_flags(env: dict[str, str]) -> list[str]:
    """The options of this ``sim`` that the benchmark can use."""
    done = subprocess.run([sys.executable, "-m", "device", "sim", "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    return [f for f in ("--no-history", "--mute") if f in done.stdout]


def _headless_sim(seconds: float, env: dict[str, str], flags: list[str]) -> dict[str, Any]:
    """Spawn the headless sim at --speed 1 (a press into set-up, a double press into the
    hold): time to its first event (ready), then peak RSS while the light breathes."""
    argv = [sys.executable, "-m", "device", "sim", "--headless", "--speed", "1",
            "--events", "-", "--script", "press@0.2,press@0.6,press@0.9", "--until",
            f"{seconds:g}",
            *flags]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    ready = time.perf_counter() - t0 if first else None
    lines = [1 if first else 0]

    def drain() -> None:
        assert proc.stdout is not None
        for _ in proc.stdout:
            lines[0] += 1

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    peak = _watch_rss(proc, seconds + 30)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(5)
    return {"ready_s": ready, "peak_kb": peak, "events": lines[0], "exit": proc.returncode}


def _tui_sim(seconds: float, env: dict[str, str], extra: list[str] | None = None
             ) -> dict[str, Any]:
    """The interactive simulator in a pseudo-terminal: press once, peak RSS, then q."""
    import pty
    import select

    if not (REPO / "device" / "apps" / "tui.py").exists():
        return {"skipped": "no device/apps/tui.py"}
    master, slave = pty.openpty()
    try:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    except OSError:
        pass
    tui_env = dict(env, TERM="xterm-256color", COLUMNS="120", LINES="40")
    proc = subprocess.Popen([sys.executable, "-m", "device", "sim", *(extra or [])],
                            cwd=REPO, env=tui_env,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    if not os.read(master, 65536):
                        return
                except OSError:
                    return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    peak = _watch_rss(proc, 1.5)
    with_press = None
    if proc.poll() is None:
        os.write(master, b" ")
        with_press = _watch_rss(proc, seconds)
    alive = proc.poll() is None
    if alive:
        os.write(master, b"q")
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    stop.set()
    reader.join(2)
    os.close(master)
    values = [v for v in (peak, with_press) if v is not None]
    if not alive:
        return {"skipped": f"the interactive sim exited by itself (exit {proc.returncode}; "
                "is textual installed?)", "peak_kb": None}
    return {"peak_kb": max(values) if values else None, "ran": alive, "exit": proc.returncode}


def _run_everything(scratch: Path, env: dict[str, str], importtime: bool = False
                    ) -> dict[str, Any]:
    """``stretch-companion run`` with every add-on on (mock pins, the real voice, the strap
    sensor looked for, the page, MQTT to a local Mosquitto, the control socket) under a
    stand-in systemd: seconds from the process start to ``READY=1``, then its peak RSS
    after 3 s; with ``importtime`` the ``-X importtime`` table of the run."""
    import socket as socket_mod

    from tests.broker import MOSQUITTO, Mosquitto, free_port

    folder = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
    broker = Mosquitto(folder / "broker", tls=False).start() if MOSQUITTO else None
    config = folder / "config.toml"
    lines = ['[pins]', 'factory = "mock"', '[sensor]', 'enabled = true', '[web]',
             'enabled = true', f'listen = "127.0.0.1:{free_port()}"']
    if broker is not None:
        lines += ['[mqtt]', f'url = "{broker.url}"', 'box_id = "run"']
    config.write_text("\n".join(lines) + "\n")
    sock = folder / "notify.sock"
    server = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_DGRAM)
    server.bind(str(sock))
    server.settimeout(30)
    # the service unit's own environment (systemd/stretch-companion.service)
    run_env = dict(env, NOTIFY_SOCKET=str(sock), STATE_DIRECTORY=str(folder),
                   MALLOC_ARENA_MAX="2", PYTHONUNBUFFERED="1")
    argv = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "device",
            "run", "--config", str(config), "--history", str(folder / "history.db")]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=run_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready = None
    try:
        while ready is None:
            if "READY=1" in server.recv(4096).decode(errors="replace"):
                ready = time.perf_counter() - t0
        time.sleep(3.0)
        peak = _hwm_kb(proc.pid)
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        server.close()
        if broker is not None:
            broker.stop()
    out: dict[str, Any] = {"ready_s": ready, "peak_kb": peak, "mqtt": broker is not None,
                           "exit": proc.returncode}
    if importtime:
        rows = []
        for line in err.splitlines():
            if line.startswith("import time:"):
                parts = line.split("|")
                try:
                    rows.append((int(parts[1]), parts[2].rstrip()))
                except (IndexError, ValueError):
                    continue
        top = [(us, name.strip()) for us, name in rows
               if len(name) - len(name.lstrip()) <= 2]  # top-level imports and theirs
        top.sort(reverse=True)
        out["imports_ms"] = [[name, us / 1000] for us, name in top[:25]]
        out["modules"] = len(rows)
        out["heavy_loaded"] = sorted({name.strip() for _, name in rows} & {
            "click", "textual", "matplotlib", "numpy", "httpx", "playwright",
            "cryptography", "importlib.metadata"})
    return out


def bench_startup(plan: Plan, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    py = sys.executable
    help_s = _wall([py, "-m", "device", "--help"], plan.runs, env)
    eager = ("import importlib, sys\n"
             "for m in ('device.apps.sim', 'device.apps.tui', 'drivers.speech',"
             " 'device.store.safe', 'device.core.config', 'pyttsx3', 'textual.app'):\n"
             "    try: importlib.import_module(m)\n"
             "    except Exception: pass\n"
             "from device.apps.cli import main\n"
             "sys.argv = ['stretch-companion', '--help']; main()\n")
    eager_s = _wall([py, "-c", eager], plan.runs, env)
    bare_s = _wall([py, "-c", "pass"], plan.runs, env)
    flags = _sim_flags(env)
    headless_flags = [f for f in flags if f == "--no-history"]
    sims = [_headless_sim(plan.sim_s, env, headless_flags) for _ in range(1 if plan.quick else 3)]
    bare_proc = subprocess.Popen([py, "-c", "import time; time.sleep(1)"], cwd=REPO, env=env)
    bare_kb = _watch_rss(bare_proc, 3)
    bare_proc.wait()
    tui = _tui_sim(plan.sim_s, env)
    if plan.quick:  # a smoke run: the screen is started once (above)
        muted: dict[str, Any] = {"skipped": "--quick"}
    elif "--mute" in flags:
        muted = _tui_sim(plan.sim_s, env, ["--mute"])
    else:
        muted = {"skipped": "no --mute"}
    runs = [_run_everything(scratch, env) for _ in range(1 if plan.quick else 3)]
    table = _run_everything(scratch, env, importtime=True)
    ready_run = [r["ready_s"] for r in runs if r["ready_s"] is not None]
    rss_run = [r["peak_kb"] for r in runs if r["peak_kb"]]
    bench.figures.append(Figure(
        key="startup.run_ready_s", label="run, every add-on on: start -> READY=1",
        value=statistics.median(ready_run) if ready_run else None, unit="s",
        alt_label="python -c pass", alt_value=statistics.median(bare_s), target_op="<=",
        target=0.6, note="mock pins, real voice, strap looked for, page, MQTT, control"))
    bench.figures.append(Figure(
        key="startup.run_rss_mb", label="run, every add-on on: peak RSS 3 s after ready",
        value=max(rss_run) / 1000 if rss_run else None, unit="MB",
        alt_label="python -c (bare)", alt_value=(bare_kb or 0) / 1000 or None,
        target_op="<=", target=45.0))
    bench.notes.append("run's import time, slowest top-level imports (ms, -X importtime, "
                       "cumulative): " + ", ".join(f"{n} {ms:.1f}" for n, ms in
                                                   table.get("imports_ms", [])[:15]))
    bench.notes.append(f"heavy extras loaded by run: {table.get('heavy_loaded') or 'none'} "
                       f"({table.get('modules')} modules)")
    bench.raw = {"help_s": help_s, "eager_help_s": eager_s, "bare_python_s": bare_s,
                 "headless": sims, "bare_python_kb": bare_kb, "tui": tui, "tui_mute": muted,
                 "sim_flags": flags, "run": {"runs": runs, "importtime": table}}
    ready = [s["ready_s"] for s in sims if s["ready_s"] is not None]
    bench.figures.append(Figure(
        key="startup.help_s", label=f"stretch-companion --help, median of {plan.runs}",
        value=statistics.median(help_s), unit="s", alt_label="importing everything first",
        alt_value=statistics.median(eager_s), target_op="<=", target=0.3,
    ))
    bench.figures.append(Figure(
        key="startup.sim_ready_s", label="sim --headless --speed 1: first event",
        value=statistics.median(ready) if ready else None, unit="s",
        alt_label="python -c pass", alt_value=statistics.median(bare_s),
    ))
    peaks = [s["peak_kb"] for s in sims if s["peak_kb"]]
    bench.figures.append(Figure(
        key="startup.headless_rss_mb", label="peak RSS, headless sim in a hold",
        value=max(peaks) / 1024 if peaks else None, unit="MiB",
        alt_label="python -c (bare)", alt_value=(bare_kb or 0) / 1024 or None,
        target_op="<=", target=50.0,
    ))
    if tui.get("peak_kb"):
        bench.figures.append(Figure(
            key="startup.tui_rss_mb", label="peak RSS, interactive sim (textual, in a pty)",
            value=tui["peak_kb"] / 1024, unit="MiB", alt_label="python -c (bare)",
            alt_value=(bare_kb or 0) / 1024 or None, target_op="<=", target=50.0,
        ))
    else:
        bench.notes.append(f"interactive sim not measured: {tui.get('skipped') or tui}")
    if muted.get("peak_kb"):
        bench.figures.append(Figure(
            key="startup.tui_mute_rss_mb", label="same with --mute (no speech engine)",
            value=muted["peak_kb"] / 1024, unit="MiB", alt_label="python -c (bare)",
            alt_value=(bare_kb or 0) / 1024 or None,
        ))
    bench.notes.append("RSS is VmHWM from /proc/PID/status, polled every 50 ms while it runs; "
                       "the interactive sim gets one press, so its light breathes")


# ---- virtual time -----------------------------------------------------------------------


def bench_virtual(plan: Plan, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    res = Job("virtual_session", {"runs": plan.virtual_runs}, 300, scratch, env).result()
    bench.raw = res
    runs = res["runs"]
    first = runs[0]
    real_s = res["session_end_t"]
    bench.figures.append(Figure(
        key="virtual.session_s", label=f"whole session, median of {len(runs)}",
        value=res["session_s_median"], unit="s", alt_label="the same on real time",
        alt_value=real_s, target_op="<=", target=0.15,
    ))
    bench.figures.append(Figure(
        key="virtual.no_transcript_s", label="same, no listener",
        value=res["no_listener_session_s_median"], unit="s",
    ))
    bench.figures.append(Figure(
        key="virtual.close_ms", label="closing the pins afterwards (not in the above)",
        value=res["close_s_median"] * 1000, unit="ms",
    ))
    holds = first["holds"]
    bench.notes.append(
        f"{len(holds)} holds ({', '.join(f'{h[0]} r{h[1]} {h[2]:g} s' for h in holds)}), "
        f"{res['events']} events ({res['event_kinds'].get('led', 0)} led), "
        f"{first['frames']} light frames, back to idle at {real_s} s")
    digest, encoder = first.get("transcript_sha256"), first.get("encoder_sha256")
    if digest is None or digest != encoder:
        bench.notes.append("WARNING: the writer's transcript differs from json.dumps'")
    else:
        bench.notes.append(f"the writer's transcript is json.dumps' byte for byte (sha256 "
                           f"{digest[:12]}, {first.get('transcript_lines')} lines); "
                           "tests/golden pins it")
    if len(holds) != 4 or any(h[3] != "complete" for h in holds):
        bench.notes.append("WARNING: the session did not run 4 complete holds")


def bench_fleet(plan: Plan, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    """MQTT: see bench/fleet.py."""
    from bench.fleet import bench_fleet as run

    run(plan, scratch, env, bench)
