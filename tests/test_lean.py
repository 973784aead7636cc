"""Heavy imports kept out of the terminal simulator's process (device/apps/lean.py)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.tools import need

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import sys
from device.apps import lean
lean.lazy_metadata()
assert lean.without_tls()
import asyncio, hashlib
import gpiozero
from gpiozero.pins.mock import MockFactory
import device.apps.tui
print(hashlib.sha256(b"cue").hexdigest())
print(sorted(m for m in ("ssl", "_ssl", "_hashlib", "importlib.metadata", "email")
             if sys.modules.get(m) is not None))
"""


def test_screen_process_loads_no_openssl_and_no_metadata_and_hashes_the_same() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    digest, loaded = done.stdout.splitlines()
    import hashlib

    assert digest == hashlib.sha256(b"cue").hexdigest()  # WAV cache keys unchanged
    assert loaded == "[]"


def test_metadata_stand_in_still_finds_entry_points() -> None:
    probe = ("from device.apps import lean\nlean.lazy_metadata()\n"
             "import importlib_metadata as m\n"
             "print(len(list(m.entry_points(group='gpiozero_pin_factories'))) > 0)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


# ---- `run` (issue 23): OpenSSL only when mqtts:// asks for it ----------------------------


def _run_box(tmp_path: Path, mqtt_lines: list[str]) -> tuple[str, str]:
    """``run`` on mock pins with the page, the strap looked for, the control socket and
    ``mqtt_lines``, until READY=1 and the page answers: (its memory maps, the page)."""
    from tests.broker import free_port

    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text("\n".join([
        "[pins]", 'factory = "mock"', "[voice]", "enabled = false", "[sensor]",
        "enabled = true", "[web]", "enabled = true", f'listen = "127.0.0.1:{port}"',
        "[control]", "enabled = true", f'socket = "{tmp_path / "control.sock"}"',
        *mqtt_lines]) + "\n")
    notify = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(notify))
    server.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify), STATE_DIRECTORY=str(tmp_path),
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    child = subprocess.Popen(
        [sys.executable, "-m", "device", "run", "--config", str(config),
         "--history", str(tmp_path / "history.db")],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        while "READY=1" not in server.recv(4096).decode(errors="replace"):
            pass
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            page = answer.read().decode()
        maps = Path(f"/proc/{child.pid}/maps").read_text()
    finally:
        child.terminate()
        _, err = child.communicate(timeout=15)
        server.close()
    assert child.returncode == 0, err[-2000:]
    return maps, page


def _connected(broker: Any, client_id: str = "stretch_companion-run") -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if client_id in broker.log_text():
            return True
        time.sleep(0.05)
    return False


def test_run_over_plain_mqtt_maps_no_openssl_and_serves_the_page_and_publishes(
        tmp_path: Path) -> None:
    from tests.broker import MOSQUITTO, Mosquitto

    broker = Mosquitto(tmp_path / "broker", tls=False).start() if MOSQUITTO else None
    lines = ["[mqtt]", f'url = "{broker.url}"', 'box_id = "run"'] if broker else []
    try:
        maps, page = _run_box(tmp_path, lines)
        assert broker is None or _connected(broker)
    finally:
        if broker is not None:
            broker.stop()
    assert "<html" in page.lower()
    assert not re.findall(r"\S*(?:libssl|libcrypto|_ssl\.cpython|_hashlib\.cpython)\S*", maps)


def test_run_over_mqtts_still_talks_tls_with_sha256_built_in(tmp_path: Path) -> None:
    from tests.broker import MOSQUITTO, Mosquitto

    need(bool(MOSQUITTO), "mosquitto", "apt-get install mosquitto")
    broker = Mosquitto(tmp_path / "broker", tls=True).start()
    try:
        maps, _ = _run_box(tmp_path, [
            "[mqtt]", f'url = "mqtts://127.0.0.1:{broker.tls_port}"',
            f'ca_file = "{broker.certs["ca"]}"', 'box_id = "run"'])
        assert _connected(broker)
    finally:
        broker.stop()
    assert "_ssl.cpython" in maps and "_hashlib.cpython" not in maps


def test_the_stand_in_ssl_refuses_anything_but_what_plain_imports_read() -> None:
    probe = """
import sys
from device.apps import lean
assert lean.uvicorn_without_cli() and lean.without_tls() and lean.imports_without_tls()
import uvicorn.config, paho.mqtt.client as paho
import asyncio, http.client
assert sys.modules["ssl"] is None and paho.ssl is uvicorn.config.ssl
print(uvicorn.config.Config(app=None).ssl_cert_reqs, uvicorn.config.SSL_PROTOCOL_VERSION)
try:
    paho.Client(paho.CallbackAPIVersion.VERSION2).tls_set()
except RuntimeError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    import ssl

    defaults, refused = done.stdout.splitlines()
    assert defaults == f"{int(ssl.CERT_NONE)} {int(ssl.PROTOCOL_TLS_SERVER)}"
    assert "TLS is off in this process" in refused


def test_the_version_is_the_one_in_the_package_metadata() -> None:
    from importlib.metadata import version

    from device.core import VERSION

    assert VERSION == version("stretch-companion")


def test_the_terminal_simulator_as_started_maps_no_openssl(tmp_path: Path) -> None:
    """``sim`` on a terminal, started as a person starts it (the sim's own config read
    first, which loads hashlib): no OpenSSL in the process once the screen is drawn."""
    import pty
    import select

    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30",
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_CACHE_HOME=str(tmp_path / "c"),
               XDG_STATE_HOME=str(tmp_path / "state"), HOME=str(tmp_path))
    child = subprocess.Popen([sys.executable, "-m", "device", "sim", "--no-history", "--mute"],
                             cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=slave,
                             start_new_session=True)
    os.close(slave)
    screen = b""
    try:
        deadline = time.monotonic() + 60
        while b"IDLE" not in screen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                screen += os.read(master, 65536)
        maps = Path(f"/proc/{child.pid}/maps").read_text()
        os.write(master, b"q")
        while child.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
        child.wait(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
        os.close(master)
    assert b"IDLE" in screen, screen[-2000:]
    assert child.returncode == 0
    assert not re.findall(r"\S*(?:libssl|libcrypto|_ssl\.cpython|_hashlib\.cpython)\S*", maps)
