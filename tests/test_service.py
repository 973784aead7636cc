"""The box as a service: SIGTERM mid-hold, sd_notify from a real child process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def wait_for(predicate, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def events_of(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_sigterm_mid_hold_turns_outputs_off_and_exits_0(tmp_path: Path, signum: int) -> None:
    """SIGHUP (the terminal running the simulator closed) is a stop like SIGTERM: light off,
    the session recorded as interrupted, no WAL files left, exit 0."""
    events = tmp_path / "events.jsonl"
    db = tmp_path / "history.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "device", "sim", "--headless", "--quiet", "--speed", "20",
         "--script", "press@0.5,press@1,press@1.3", "--events", str(events),
         "--history", str(db)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: any(e["kind"] == "state" and e["state"] == "hold"
                             for e in events_of(events)))
        time.sleep(0.3)  # a few seconds of simulated hold: the light is breathing
        sent = time.monotonic()
        child.send_signal(signum)
        code = child.wait(timeout=5)
        took = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
    assert code == 0, child.stderr.read() if child.stderr else ""
    assert took < 1.0
    got = events_of(events)
    assert [e["outcome"] for e in got if e["kind"] == "session"] == ["interrupted"]
    leds = [e for e in got if e["kind"] == "led"]
    assert leds[-1]["value"] == 0.0 and max(e["value"] for e in leds) > 0.1
    # the history event may come last: the session is written off the loop
    assert [e["kind"] for e in got if e["kind"] != "history"][-1] in ("led", "state", "session")
    assert [e["outcome"] for e in got if e["kind"] == "history"] == ["interrupted"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "history.db"]
    from device.store.sqlite import History

    with History(db, read_only=True) as h:
        assert [s.outcome for s in h.sessions()] == ["interrupted"]


def test_run_notifies_ready_watchdog_status_and_stopping(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(10)
    config = tmp_path / "config.toml"
    config.write_text('[pins]\nfactory = "mock"\n[voice]\nenabled = false\n')
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="200000")
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "device", "run", "--config", str(config)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    messages: list[str] = []
    try:
        while sum(m == "WATCHDOG=1" for m in messages) < 3:
            messages.append(server.recv(4096).decode())
        first_ready = next(i for i, m in enumerate(messages) if m.startswith("READY=1"))
        assert first_ready < messages.index("WATCHDOG=1") or "READY=1" in messages[0]
        child.send_signal(signal.SIGTERM)
        while not any(m.startswith("STOPPING=1") for m in messages):
            messages.append(server.recv(4096).decode())
        assert child.wait(timeout=5) == 0
    finally:
        if child.poll() is None:
            child.kill()
        server.close()
    assert any("STATUS=idle" in m for m in messages)
    said = child.stderr.read() if child.stderr else ""
    # on mock pins `run` says once what it is doing and how to stop it
    assert said.count("running the box on mock pins") == 1 and "Ctrl-C" in said


def test_bad_config_exits_78_before_ready(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[session]\nhold_seconds = 5\n")
    result = subprocess.run(
        [sys.executable, "-m", "device", "run", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 78
    assert "session.hold_seconds = 5" in result.stderr and "Traceback" not in result.stderr


def test_run_off_a_pi_says_what_to_do(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[voice]\nenabled = false\n")
    env = dict(os.environ)
    env.pop("GPIOZERO_PIN_FACTORY", None)
    result = subprocess.run(
        [sys.executable, "-m", "device", "run", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, env=env,
    )
    assert result.returncode == 1
    assert "sim" in result.stderr and "Traceback" not in result.stderr


def test_loop_crash_makes_outputs_safe_and_exits_nonzero(make_box, caplog) -> None:
    from device.addons.notify import Notifier
    from device.apps.runner import run_service

    box = make_box()
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(1.5, box.press_now)
    box.loop.schedule(1.8, box.press_now)  # a double press: straight to the hold

    def broken(now: float) -> None:
        if now > 5.0:
            raise RuntimeError("sensor maths exploded")

    box.loop.add_ticker(lambda now: None, broken)
    assert run_service(box.loop, Notifier(environ={})) == 1
    assert box.led_pin.state == 0.0 and box.buzzer_pin.state == 0
    assert "device loop failed in state hold" in caplog.text


def test_a_clean_stop_logs_the_outputs_read_back_from_the_pins(make_box, caplog) -> None:
    """The line the system test finds in the journal after ``systemctl stop`` mid-hold."""
    from device.addons.notify import Notifier
    from device.apps.runner import run_service

    box = make_box()
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(1.5, box.press_now)
    box.loop.schedule(1.8, box.press_now)  # a double press: straight to the hold
    seen: list[float] = []
    box.loop.schedule(20.0, lambda: seen.append(box.led_pin.state))
    box.loop.schedule(20.01, box.loop.stop)
    assert run_service(box.loop, Notifier(environ={})) == 0
    assert seen and seen[0] > 0  # the light was breathing when the stop came
    assert "stopped: light off, buzzer off" in caplog.text
    box.loop.parts.light.device.value = 0.5  # as if the light had been left on
    from device.apps.runner import outputs_line

    assert outputs_line(box.loop) == "light ON (duty 0.50), buzzer off"


def test_a_signal_landing_while_the_main_thread_holds_a_lock_still_stops(tmp_path: Path) -> None:
    """A signal handler runs on the main thread between any two bytecodes; if it set the
    loop's Event itself it would deadlock whenever the main thread was inside that Event
    (clear, wait) when the signal landed. The stop runs in a thread of its own."""
    script = tmp_path / "held.py"
    script.write_text(
        "import os, signal, threading, time\n"
        "from device.addons.service import stop_on_signals\n"
        "stopped = threading.Event()\n"
        "stop_on_signals(stopped.set)\n"
        "with stopped._cond:  # the main thread is inside the Event when the signal lands\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(0.3)  # Python runs the signal handler here, on this thread\n"
        "print('stopped' if stopped.wait(5) else 'lost')\n"
    )
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                            text=True, timeout=30)
    assert result.stdout.strip() == "stopped", result.stderr
