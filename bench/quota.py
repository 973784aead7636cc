"""The box at a twentieth of a core (issue 23): a whole real-time session under a CPU quota.

``python -m bench --only quota``, and in a short form ``tests/test_quota.py`` (CI).

The box runs in a worker process as ``run`` builds it, with everything on: the real voice
(pyttsx3 over espeak-ng, its fixed lines pre-rendered, each cue played by a real player,
``aplay -D null`` here: no sound card), the strap (the real NAU7802 driver over its
register-level fake, pulled to a steady level), MQTT (to a local Mosquitto), the phone
page with one live event stream open (read here, outside the quota, as a page would).
Once its start-up is done the worker puts itself into a control group limited to
``pct`` % of one core (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``), then runs a
whole session through the button pin: press, double press into each leg's hold,
``ask_tightness`` off, the switch automatic. The same session runs without the quota
for the light's reference spacing.

Figures: each hold's error (start beep -> end beep, wall, minus planned), the light's
longest gap between pin changes inside the holds, cue start latency (the loop starting a
cached line -> its player process started), press -> state event, and the throttling.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.report import REPO

PERIOD_US = 100_000  # the quota's period (the kernel's default)
V2_ROOT = Path("/sys/fs/cgroup")
V1_CPU = Path("/sys/fs/cgroup/cpu")


class CpuQuota:
    """A control group limited to ``pct`` % of one core; ``procs`` is the file a process
    writes its pid to (threads and children follow). ``close`` removes it."""

    def __init__(self, pct: float, name: str | None = None) -> None:
        name = name or f"stretch-quota-{os.getpid()}-{int(time.monotonic() * 1000)}"
        quota = max(1000, int(PERIOD_US * pct / 100))
        controllers = V2_ROOT / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            self.path = V2_ROOT / name
            self.path.mkdir()
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
            self.version = 2
        elif (V1_CPU / "cpu.cfs_quota_us").exists():
            self.path = V1_CPU / name
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (self.path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
            self.version = 1
        else:
            raise OSError("no cgroup cpu controller here (/sys/fs/cgroup)")
        self.pct = pct
        self.procs = self.path / "cgroup.procs"

    def stats(self) -> dict[str, int]:
        """cpu.stat: periods, throttled periods and time (us, v2; ns, v1 throttled_time)."""
        out: dict[str, int] = {}
        try:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                out[key] = int(value)
        except (OSError, ValueError):
            pass
        return out

    def close(self) -> None:
        """Remove the group (its processes have exited, or are moved out first)."""
        try:
            for pid in self.procs.read_text().split():
                try:
                    (self.path.parent / "cgroup.procs").write_text(pid)
                except OSError:
                    pass
            self.path.rmdir()
        except OSError:
            pass


def available() -> str | None:
    """None if a quota can be set here, else why not."""
    try:
        quota = CpuQuota(50.0)
    except OSError as exc:
        return f"cannot make a CPU-limited control group ({exc}); run as root on Linux"
    quota.close()
    return None


# ---- the worker (the box) ------------------------------------------------------------------


def _spy_pin(pin: Any) -> list[float]:
    times: list[float] = []
    change = pin._change_state

    def spy(value: Any) -> bool:
        changed = change(value)
        if changed:
            times.append(time.monotonic())
        return changed

    pin._change_state = spy
    return times


def quota_session(hold_s: float, legs: list[str], mqtt_url: str | None, state_dir: str,
                  procs: str | None) -> dict[str, Any]:
    """One whole session of the box with every add-on on (see the module's doc); moves
    itself into the control group ``procs`` (a path, or None: no quota) before it."""
    from device.addons.mqtt import endpoint
    from device.addons.web import WebHandle
    from device.apps.builder import build_box
    from device.box.clock import RealClock
    from device.core.config import Config, with_overrides
    from device.core.routine import load_routine
    from drivers.speech import Pyttsx3Speaker

    state = Path(state_dir)
    mqtt = {"url": mqtt_url, "box_id": "quota"} if mqtt_url else {}
    config = with_overrides(Config(), session={"legs": legs, "switch": "auto",
                                               "ask_tightness": False}, mqtt=mqtt)
    if hold_s < 60:  # the short form: a hold shorter than the config allows
        config = replace(config, session=replace(config.session, hold_seconds=float(hold_s)))
    else:
        config = with_overrides(config, session={"hold_seconds": hold_s})
    routine = load_routine(None)
    fixed = set(routine.fixed_lines(config.session.legs))
    players: list[tuple[float, str]] = []

    def popen(argv: list[str], **kw: Any) -> Any:
        players.append((time.monotonic(), argv[-1]))
        return subprocess.Popen(argv, **kw)

    player = "aplay -q -D null" if shutil.which("aplay") else "true"
    speaker = Pyttsx3Speaker(config.voice.rate, config.voice.volume, config.voice.voice,
                             fixed_lines=sorted(fixed), cache_dir=state / "voice",
                             player=player, process_factory=popen)
    if not speaker.available:
        raise RuntimeError(f"no voice here: {speaker.last_error}")
    speaker.wait_idle(300)  # every fixed line rendered before the quota
    box = build_box(config, mode="sim", clock=RealClock(), speaker=speaker, sensor=True,
                    history=state / "history.db", web="127.0.0.1:0",
                    config_path=state / "config.toml",
                    mqtt=endpoint(config) if mqtt_url else None)
    handle = next(a for a in box.addons if isinstance(a, WebHandle))
    token, _ = handle.server.web.store.pair(handle.code)
    marks: dict[str, list[tuple[float, Any]]] = {"state": [], "speak": [], "buzz": [],
                                                  "hold": []}
    state_seen = threading.Condition()

    def on_event(event: Any) -> None:
        now = time.monotonic()
        if event.kind == "state":
            marks["state"].append((now, event.state))
            with state_seen:
                state_seen.notify_all()
        elif event.kind == "speak":
            marks["speak"].append((now, event.text))
        elif event.kind == "buzz":
            marks["buzz"].append((now, event.name))
        elif event.kind == "hold":
            marks["hold"].append((now, event.to_json()))

    box.bus.subscribe(on_event, ["state", "speak", "buzz", "hold"], name="quota")
    led = _spy_pin(box.led_pin)
    print(json.dumps({"url": handle.url, "token": token}), flush=True)
    if sys.stdin.readline().strip() != "go":
        raise RuntimeError("the driver did not say go")
    publisher = next((a.publisher for a in box.addons if hasattr(a, "publisher")), None)
    deadline = time.monotonic() + 10
    while publisher is not None and not publisher._connected and time.monotonic() < deadline:
        time.sleep(0.05)
    if procs:
        Path(procs).write_text(str(os.getpid()))  # from here on: the quota
    c0, t0 = time.process_time(), time.monotonic()
    loop = threading.Thread(target=box.loop.run, name="loop", daemon=True)
    loop.start()
    pin = box.button_pin
    presses: list[tuple[str, float, float | None]] = []

    def wait_state(name: str, since: int, timeout: float) -> float | None:
        end = time.monotonic() + timeout
        with state_seen:
            while True:
                for at, st in marks["state"][since:]:
                    if st == name:
                        return at
                left = end - time.monotonic()
                if left <= 0:
                    return None
                state_seen.wait(left)

    def press() -> float:
        """A short press on the pin; returns when it was released (a short press is
        told apart on its release)."""
        pin.drive_low()
        time.sleep(0.05)
        at = time.monotonic()
        pin.drive_high()
        return at

    time.sleep(0.5)
    n = len(marks["state"])
    at = press()
    presses.append(("idle->setup", at, wait_state("setup", n, 10)))
    for leg in config.session.legs:
        if leg != config.session.legs[0]:
            n0 = len(marks["state"])
            if wait_state("setup", n0 - 1, hold_s + 60) is None:
                break
        box.strap.set_level(5.0)  # pulled to a steady level
        time.sleep(0.8)
        n = len(marks["state"])
        press()
        time.sleep(0.15)
        at = press()  # the second of a double press: straight to the hold
        presses.append(("setup->hold", at, wait_state("hold", n, 10)))
        n = len(marks["state"])
        wait_state("switch" if leg != config.session.legs[-1] else "done", n, hold_s + 60)
        box.strap.set_level(0.0)
    wait_state("idle", 0, 120)
    time.sleep(1.0)  # the summary line starts
    t1, c1 = time.monotonic(), time.process_time()
    box.loop.stop()
    loop.join(10)
    rss = 0
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1])
    box.close()
    # holds: start beep -> end beep (wall) minus planned; light gaps inside each hold
    holds = []
    beeps = [(at, name) for at, name in marks["buzz"] if name in ("start", "end")]
    starts = [at for at, name in beeps if name == "start"]
    ends = [at for at, name in beeps if name == "end"]
    for (_, ev), start, end in zip(marks["hold"], starts, ends, strict=False):
        inside = [t for t in led if start <= t <= end][1:]
        gaps = [b - a for a, b in zip(inside, inside[1:], strict=False)]
        holds.append({"planned_s": ev["planned_s"], "ended": ev["ended"],
                      "error_ms": (end - start - ev["planned_s"]) * 1000,
                      "frames": len(inside), "max_gap_ms": max(gaps) * 1000 if gaps else None})
    # cues: the loop starting a line -> its player started (cached lines, then the rest)
    cached, uncached = [], []
    left = list(players)
    for at, text in marks["speak"]:
        if not left:
            break
        started, _ = left.pop(0)
        (cached if text in fixed else uncached).append((started - at) * 1000)
    return {
        "hold_s": hold_s, "legs": legs, "quota": procs is not None,
        "wall_s": t1 - t0, "cpu_s": c1 - c0, "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
        "holds": holds, "cue_ms": cached, "uncached_cue_ms": uncached,
        "presses": [{"what": w, "ms": None if s is None else (s - a) * 1000}
                    for w, a, s in presses],
        "states": [st for _, st in marks["state"]], "peak_rss_kb": rss,
        "mqtt_connected": bool(publisher and publisher._ever_connected),
        "player": player,
    }


# ---- the driver --------------------------------------------------------------------------


def _stream(url: str, token: str, stop: threading.Event, seen: list[int]) -> None:
    """One open page: the live event stream, read as a browser would."""
    import http.client

    from device.addons.web.server import COOKIE

    host = url.split("//", 1)[1].split("/", 1)[0]
    conn = http.client.HTTPConnection(host, timeout=5)
    conn.request("GET", "/api/events", headers={"Cookie": f"{COOKIE}={token}",
                                                  "Accept": "text/event-stream"})
    resp = conn.getresponse()
    seen.append(resp.status)
    while not stop.is_set():
        try:
            line = resp.fp.readline()
        except OSError:
            break
        if not line:
            break
        if line.startswith(b"data:"):
            seen.append(1)
    conn.close()


def run(hold_s: float, legs: list[str], pct: float | None, mqtt_url: str | None,
        scratch: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """One session in a worker process, under a ``pct`` % quota (None: none)."""
    quota = CpuQuota(pct) if pct is not None else None
    fd, out = tempfile.mkstemp(prefix="quota-", suffix=".json", dir=scratch)
    os.close(fd)
    state = tempfile.mkdtemp(prefix="quota-state-", dir=scratch)
    params = json.dumps({"hold_s": hold_s, "legs": legs, "mqtt_url": mqtt_url,
                         "state_dir": state, "procs": str(quota.procs) if quota else None})
    proc = subprocess.Popen([sys.executable, "-m", "bench.quota", params, out], cwd=REPO,
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    seen: list[int] = []
    reader = None
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError("quota worker failed: " + (proc.stderr.read()[-3000:]
                                                          if proc.stderr else ""))
        info = json.loads(line)
        reader = threading.Thread(target=_stream, args=(info["url"], info["token"], stop,
                                                        seen), daemon=True)
        reader.start()
        time.sleep(0.5)
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"quota worker: no result within {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"quota worker exited {proc.returncode}: {err[-3000:]}")
        result = json.loads(Path(out).read_text())
        result["page_status"] = seen[0] if seen else None
        result["page_updates"] = len(seen) - 1 if seen else 0
        if quota is not None:
            result["cgroup"] = {"version": quota.version, "pct": pct, **quota.stats()}
        return result
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
        if quota is not None:
            quota.close()


def summary(quota: dict[str, Any], free: dict[str, Any]) -> dict[str, Any]:
    """The figures the targets read, from a run under the quota and one without."""
    def worst(run: dict[str, Any], key: str) -> float | None:
        values = [abs(h[key]) for h in run["holds"] if h.get(key) is not None]
        return max(values) if values else None

    presses = [p["ms"] for p in quota["presses"]]
    return {
        "hold_error_ms": worst(quota, "error_ms"),
        "free_hold_error_ms": worst(free, "error_ms"),
        "light_max_gap_ms": worst(quota, "max_gap_ms"),
        "free_light_max_gap_ms": worst(free, "max_gap_ms"),
        "cue_max_ms": max(quota["cue_ms"]) if quota["cue_ms"] else None,
        "cue_median_ms": statistics.median(quota["cue_ms"]) if quota["cue_ms"] else None,
        "free_cue_max_ms": max(free["cue_ms"]) if free["cue_ms"] else None,
        "press_max_ms": None if None in presses or not presses else max(presses),
        "free_press_max_ms": max((p["ms"] or 0) for p in free["presses"]),
        "cpu_pct": quota["cpu_pct"], "free_cpu_pct": free["cpu_pct"],
        "holds": len(quota["holds"]), "complete": all(h["ended"] == "complete"
                                                      for h in quota["holds"]),
    }


def main(argv: list[str]) -> int:
    """``python -m bench.quota PARAMS OUT``: the worker."""
    params, out = json.loads(argv[1]), argv[2]
    result = quota_session(**params)
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
