"""The MQTT fleet: many simulated boxes on virtual time, one Mosquitto, one studio.

``python -m bench --only fleet``. Box processes each run their share of the boxes (one
real box per box: mock pins, the bus, the history with its outbox, the MQTT add-on), each
box running ``sessions`` sessions on virtual time; one studio consumer (persistent
session) stores what arrives; the broker is restarted (gracefully) once half the sessions
are in. Figures: sessions delivered exactly once, sessions per second, p50/p99 from a
session's end (the box's history event) to the studio's store, and the box's CPU during a
real-time hold with MQTT on versus off (A B A B).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.report import REPO, Bench, Figure

SESSION_GAP_S = 600.0  # loop seconds between one session's press and the next


# ---- in a box process -------------------------------------------------------------------


def boxes(url: str, folder: str, first: int, count: int, sessions: int,
          hz: float, speed: float = 0.0) -> dict[str, Any]:
    """Boxes ``first`` .. ``first + count - 1``: all connected at once, each running its
    sessions on virtual time (or at ``speed`` x real time) in its own thread; then each
    waits for its acknowledgements. Returns each box's session-end wall times."""
    from device.addons.mqtt import endpoint
    from device.apps.builder import build_box
    from device.box.clock import RealClock, VirtualClock
    from device.core.config import Config, with_overrides
    from device.core.script import Action

    built = []
    ends: dict[str, list[float]] = {}
    for i in range(first, first + count):
        box_id = f"box{i:03d}"
        config = with_overrides(Config(), session={"switch": "auto"}, light={"hz": hz},
                                mqtt={"url": url, "box_id": box_id})
        box = build_box(config, mode="sim", clock=RealClock(speed) if speed else VirtualClock(),
                        history=Path(folder) / f"{box_id}.db", mqtt=endpoint(config))
        stamps = ends.setdefault(box_id, [])
        box.bus.subscribe(lambda e, s=stamps: s.append(time.time()), ["history"],
                          name="bench")
        box.add_script([Action("press", 1 + k * SESSION_GAP_S) for k in range(sessions)])
        built.append(box)
    mqtt = [next(a for a in box.addons if hasattr(a, "publisher")).publisher for box in built]
    deadline = time.monotonic() + 30
    while not all(p._ever_connected for p in mqtt) and time.monotonic() < deadline:
        time.sleep(0.05)
    cpu0, t0 = time.process_time(), time.monotonic()
    threads = [threading.Thread(target=b.loop.run, kwargs={"until": SESSION_GAP_S * sessions})
               for b in built]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run_s = time.monotonic() - t0
    acked = all(p.wait_delivered(120) for p in mqtt)
    cpu = time.process_time() - cpu0
    for box in built:
        box.close()
    return {"ends": ends, "acked": acked, "run_s": run_s, "cpu_s": cpu}


def hold(hold_s: float, url: str | None, folder: str) -> dict[str, Any]:
    """One real-time hold (RealClock, mock pins, recording voice, a history), with the
    MQTT add-on publishing to ``url`` or without it: the process's CPU (every thread)
    over the hold, per wall second."""
    from bench.workers import _config_one_hold, _HoldRecorder
    from device.addons.mqtt import endpoint
    from device.apps.builder import build_box
    from device.box.clock import RealClock
    from device.core.config import MqttSettings
    from device.core.script import Action

    config = _config_one_hold(hold_s)
    ep = None
    if url:
        config = replace(config, mqtt=MqttSettings(url=url, box_id="cpu"))
        ep = endpoint(config)
    rec = _HoldRecorder()
    db = Path(folder) / f"cpu-{'on' if url else 'off'}-{time.monotonic_ns()}.db"
    box = build_box(config, mode="sim", clock=RealClock(), listeners=[rec], history=db,
                    mqtt=ep)
    rec.loop = box.loop
    box.add_script([Action("press", 0.05), Action("press", 0.3),
                    Action("press", 0.5)])  # a double press: straight to the hold
    if ep is not None:  # the hold starts once the broker has the box's discovery
        pub = next(a for a in box.addons if hasattr(a, "publisher")).publisher
        deadline = time.monotonic() + 10
        while not pub._ever_connected and time.monotonic() < deadline:
            time.sleep(0.01)
    try:
        box.loop.run(until=hold_s + 30)
    finally:
        box.close()
    if rec.start is None or rec.end is None:
        raise RuntimeError("the hold did not start and end")
    wall = rec.end[0] - rec.start[0]
    return {"mqtt": bool(url), "wall_s": wall, "cpu_s": rec.end[1] - rec.start[1],
            "cpu_pct": 100 * (rec.end[1] - rec.start[1]) / wall}


WORKERS = {"boxes": boxes, "hold": hold}


def worker_main(argv: list[str]) -> int:
    """``python -m bench.fleet WORKER JSON OUT``."""
    logging_quiet()
    name, params, out = argv[1], json.loads(argv[2]), argv[3]
    Path(out).write_text(json.dumps(WORKERS[name](**params)))
    return 0


def logging_quiet() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)


# ---- the orchestra ------------------------------------------------------------------------


def _start(worker: str, params: dict[str, Any], scratch: Path,
           env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    fd, out = tempfile.mkstemp(prefix=f"fleet-{worker}-", suffix=".json", dir=scratch)
    os.close(fd)
    proc = subprocess.Popen([sys.executable, "-m", "bench.fleet", worker, json.dumps(params),
                             out], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, Path(out)


def _finish(proc: subprocess.Popen[bytes], out: Path, timeout: float) -> dict[str, Any]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"a fleet worker gave no result within {timeout:.0f} s") from None
    if proc.returncode != 0 or not out.stat().st_size:
        tail = "\n".join(err.decode(errors="replace").splitlines()[-6:])
        raise RuntimeError(f"a fleet worker exited {proc.returncode}: {tail}")
    return json.loads(out.read_text())


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def fleet(n_boxes: int, sessions: int, procs: int, scratch: Path, env: dict[str, str],
          hz: float = 20.0, restart: bool = True, speed: float = 0.0) -> dict[str, Any]:
    """The fleet run; every figure of it."""
    import logging

    from device.apps.studio import Studio, StudioStore
    from tests.broker import Mosquitto

    logging.getLogger("device.apps.studio").setLevel(logging.ERROR)  # the restart is on purpose
    folder = scratch / f"fleet-{time.monotonic_ns()}"
    broker = Mosquitto(folder / "broker", tls=False)
    broker.start()
    store = StudioStore(folder / "studio.db")
    studio = Studio(broker.url, store, client_id="bench-studio")
    studio.start()
    if not studio.subscribed.wait(10):
        raise RuntimeError("the studio did not subscribe")
    total = n_boxes * sessions
    restarted: dict[str, float] = {}

    def restarter() -> None:
        while store.count() < total // 2:
            if stop.wait(0.05):
                return
        t = time.monotonic()
        broker.restart()
        restarted["at_count"] = store.count()
        restarted["took_s"] = time.monotonic() - t

    stop = threading.Event()
    watcher = threading.Thread(target=restarter, daemon=True)
    if restart:
        watcher.start()
    t0 = time.time()
    share = [n_boxes // procs + (1 if k < n_boxes % procs else 0) for k in range(procs)]
    jobs, first = [], 0
    for count in share:
        if count:
            jobs.append(_start("boxes", {"url": broker.url, "folder": str(folder),
                                         "first": first, "count": count,
                                         "sessions": sessions, "hz": hz, "speed": speed},
                                scratch, env))
        first += count
    try:
        results = [_finish(p, out, 900) for p, out in jobs]
        deadline = time.monotonic() + 60
        while store.count() < total and time.monotonic() < deadline:
            time.sleep(0.05)
        studio.settle(0.5, 10)
    finally:
        stop.set()
        studio.stop()
        broker.stop()
    ends = {box: stamps for r in results for box, stamps in r["ends"].items()}
    rows = store.received()
    by_box: dict[str, list[tuple[str, int]]] = {}
    for box, _id, started, received_us in rows:
        by_box.setdefault(box, []).append((started, received_us))
    latencies = []
    for box, stored in by_box.items():
        stored.sort()
        for (_, received_us), end in zip(stored, ends.get(box, []), strict=False):
            latencies.append(received_us / 1e6 - end)
    unique = len({(box, started) for box, _, started, _ in rows})
    first_end = min(t for stamps in ends.values() for t in stamps)
    last_in = max(r[3] for r in rows) / 1e6 if rows else first_end
    store.close()
    return {
        "boxes": n_boxes, "sessions_each": sessions, "expected": total,
        "stored": len(rows), "unique": unique, "duplicates_dropped": studio.duplicates,
        "ended": sum(len(v) for v in ends.values()),
        "all_acked": all(r["acked"] for r in results),
        "sessions_per_s": len(rows) / max(last_in - first_end, 1e-9),
        "latency_p50_ms": _pct(latencies, 50) * 1000 if latencies else None,
        "latency_p99_ms": _pct(latencies, 99) * 1000 if latencies else None,
        "latency_max_ms": max(latencies) * 1000 if latencies else None,
        "restart": restarted, "box_cpu_s": sum(r["cpu_s"] for r in results),
        "wall_s": time.time() - t0, "light_hz": hz, "processes": len(jobs),
    }


def cpu_abab(hold_s: float, rounds: int, scratch: Path, env: dict[str, str]) -> dict[str, Any]:
    """The box's CPU during a real-time hold, MQTT off (A) and on (B), A B A B..."""
    from tests.broker import Mosquitto

    broker = Mosquitto(scratch / "cpu-broker", tls=False)
    broker.start()
    runs: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for _ in range(rounds):
            for mode in ("off", "on"):
                url = broker.url if mode == "on" else None
                proc, out = _start("hold", {"hold_s": hold_s, "url": url,
                                            "folder": str(scratch)}, scratch, env)
                runs[mode].append(_finish(proc, out, hold_s + 90)["cpu_pct"])
    finally:
        broker.stop()
    return runs


def bench_fleet(plan: Any, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    """The ``fleet`` benchmark (registered in bench/suite.py)."""
    from tests.broker import MOSQUITTO

    if MOSQUITTO is None:
        bench.status, bench.error = "skipped", "mosquitto is not installed " \
            "(sudo apt-get install mosquitto)"
        return
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        bench.status, bench.error = "skipped", "pip install 'stretch-companion[mqtt]'"
        return
    # --quick is a smoke run: a tiny fleet (still restarted once), one A B pair
    n_boxes, sessions = (4, 2) if plan.quick else (200, 5)
    hold_s, rounds = (1.0, 1) if plan.quick else (60.0, 3)
    res = fleet(n_boxes, sessions, 4 if not plan.quick else 1, scratch, env)
    # the same path with the CPU not saturated: one box, sessions at 500x real time
    quiet = fleet(1, 1 if plan.quick else 10, 1, scratch, env, restart=False, speed=500.0)
    cpu = cpu_abab(hold_s, rounds, scratch, env)
    bench.raw = {"fleet": res, "quiet": quiet, "cpu_pct": cpu}
    bench.figures.append(Figure(
        key="fleet.exactly_once", label=f"sessions stored once at the studio, of "
        f"{res['expected']} ({n_boxes} boxes x {sessions}, broker restarted once)",
        value=res["unique"], unit="", better="higher", target_op=">=",
        target=res["expected"]))
    bench.figures.append(Figure(
        key="fleet.sessions_per_s", label="sessions per second, first end to last stored",
        value=res["sessions_per_s"], unit="/s", better="higher"))
    bench.figures.append(Figure(
        key="fleet.latency_p50_ms", label="session end -> studio store, p50",
        value=res["latency_p50_ms"], unit="ms"))
    bench.figures.append(Figure(
        key="fleet.latency_p99_ms", label="session end -> studio store, p99 (with the restart)",
        value=res["latency_p99_ms"], unit="ms"))
    bench.figures.append(Figure(
        key="fleet.quiet_latency_p50_ms", label=f"same, one box alone ({quiet['expected']} "
        "sessions at 500x real time), p50", value=quiet["latency_p50_ms"], unit="ms"))
    bench.figures.append(Figure(
        key="fleet.quiet_latency_p99_ms", label="same, one box alone, p99",
        value=quiet["latency_p99_ms"], unit="ms"))
    off, on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    bench.figures.append(Figure(
        key="fleet.hold_cpu_mqtt_pct", label=f"box CPU in a {hold_s:g} s real-time hold, "
        f"MQTT on (median of {len(cpu['on'])}, A B A B)", value=on, unit="%",
        alt_label="MQTT off", alt_value=off))
    bench.figures.append(Figure(
        key="fleet.hold_cpu_delta_pct", label="MQTT's extra CPU (on - off, medians)",
        value=on - off, unit="%", target_op="<=", target=0.2))
    bench.notes.append(
        f"CPU % of a core, off: {', '.join(f'{v:.2f}' for v in cpu['off'])}; "
        f"on: {', '.join(f'{v:.2f}' for v in cpu['on'])}")
    bench.notes.append(
        f"{res['stored']} messages stored ({res['duplicates_dropped']} duplicates dropped by "
        f"id), {res['ended']} sessions ended, broker restarted at {res['restart']}; "
        f"{res['processes']} box processes, light at {res['light_hz']:g} Hz, "
        f"{res['box_cpu_s']:.1f} s box CPU, {res['wall_s']:.1f} s in all")


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv))
