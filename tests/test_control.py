"""The control socket: a real Unix socket in tmp, the CLI client, and `run` serving it."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.addons.control import ControlError, ControlServer, default_socket_path, request
from device.apps.cli import main
from device.core.config import load_config
from device.core.errors import ConfigError

ROOT = Path(__file__).parent.parent


class Handles:
    def __init__(self) -> None:
        self.presses = 0
        self.longs = 0
        self.fail_press = False

    def press(self) -> None:
        if self.fail_press:
            raise RuntimeError("button jammed")
        self.presses += 1

    def long_press(self) -> None:
        self.longs += 1

    def status(self) -> dict:
        return {"state": "idle", "presses": self.presses}


@pytest.fixture
def served(tmp_path: Path):
    handles = Handles()
    server = ControlServer(tmp_path / "control.sock", handles.press, handles.long_press,
                           handles.status).start()
    yield server, handles
    server.close()


def raw_exchange(path: str, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(4096):
            out += chunk
    return out


def test_press_long_status_reach_the_handles(served) -> None:
    server, handles = served
    assert request(server.path, "press") == "ok"
    assert request(server.path, "long") == "ok"
    assert (handles.presses, handles.longs) == (1, 1)
    assert json.loads(request(server.path, "status")) == {"state": "idle", "presses": 1}


def test_several_requests_on_one_connection_get_one_line_each(served) -> None:
    server, handles = served
    out = raw_exchange(server.path, b"press\r\nstatus\n PRESS \n")
    lines = out.decode().splitlines()
    assert lines[0] == "ok" and json.loads(lines[1])["presses"] == 1 and lines[2] == "ok"
    assert handles.presses == 2


@pytest.mark.parametrize("payload", [
    b"jump\n", b"\n", b"press now\n", b"\xff\xfe\n", b"pr\x00ess\n", b"status;press\n",
    b"\xe2\x80\x8bpress\n",  # a zero-width space before the word
])
def test_bad_requests_get_an_error_line_and_change_nothing(served, payload: bytes) -> None:
    server, handles = served
    answer = raw_exchange(server.path, payload).decode()
    assert answer.startswith("error: ") and answer.endswith("\n") and answer.count("\n") == 1
    assert "press, long, status" in answer
    assert handles.presses == 0 and handles.longs == 0
    assert request(server.path, "press") == "ok"  # still serving


def test_an_endless_line_is_cut_off_with_an_error(served) -> None:
    server, handles = served
    answer = raw_exchange(server.path, b"p" * 100_000)
    assert answer.startswith(b"error: request too long") and answer.count(b"\n") == 1
    assert request(server.path, "status").startswith("{")
    # the connection stays usable: the next line is read as a request
    answer = raw_exchange(server.path, b"p" * 1000 + b"\nstatus\n").decode().splitlines()
    assert answer[0].startswith("error: request too long") and answer[1].startswith("{")


def test_a_failing_handle_is_an_error_for_that_request_only(served) -> None:
    server, handles = served
    handles.fail_press = True
    assert request(server.path, "press") == "error: press failed (RuntimeError: button jammed)"
    handles.fail_press = False
    assert request(server.path, "press") == "ok"


def test_a_status_that_is_not_json_is_an_error(tmp_path: Path) -> None:
    with ControlServer(tmp_path / "c.sock", lambda: None, lambda: None,
                       lambda: {"t": float("nan")}) as server:
        assert request(server.path, "status").startswith("error: status failed (ValueError")
        assert request(server.path, "press") == "ok"


def test_a_silent_client_does_not_block_the_others(served) -> None:
    server, handles = served
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(5)]
    try:
        for sock in idle:
            sock.connect(server.path)
        idle[0].sendall(b"pre")  # half a request, never finished
        assert request(server.path, "press", timeout=5) == "ok"
    finally:
        for sock in idle:
            sock.close()


def test_socket_mode_is_0660(served) -> None:
    server, _ = served
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o660


def test_close_is_prompt_and_removes_the_socket(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "c.sock", lambda: None, lambda: None, dict).start()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(server.path)  # an open connection must not hold the close up
    thread = server._thread
    assert thread is not None and thread.is_alive()
    began = time.monotonic()
    server.close()
    # a liveness bound, not a speed figure: a polling loop with a sleep would miss it
    assert time.monotonic() - began < 1.0
    assert not thread.is_alive()
    assert not os.path.exists(server.path)
    assert client.recv(10) == b""  # the server hung up
    client.close()
    server.close()  # twice is fine


def test_a_leftover_socket_is_replaced_but_a_live_box_is_not(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))  # bound, never listening: what a killed process leaves
    leftover.close()
    with ControlServer(path, lambda: None, lambda: None, dict) as first:
        with pytest.raises(ControlError, match="another box is already listening"):
            ControlServer(path, lambda: None, lambda: None, dict).start()
        assert request(first.path, "press") == "ok"


def test_something_else_in_the_way_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    path.write_text("my notes")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(path, lambda: None, lambda: None, dict).start()
    assert path.read_text() == "my notes"
    with pytest.raises(ControlError, match="path too long"):
        ControlServer("/tmp/" + "x" * 120, lambda: None, lambda: None, dict).start()


def test_default_path_follows_runtime_directory() -> None:
    assert default_socket_path({}) == "/run/stretch-companion/control.sock"
    assert default_socket_path({"RUNTIME_DIRECTORY": "/run/x:/run/y"}) == "/run/x/control.sock"


def test_cli_client(served, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    server, handles = served
    assert main(["press", "--socket", server.path]) == 0
    assert capsys.readouterr().out == "ok\n"
    assert main(["status", "--socket", server.path]) == 0
    assert json.loads(capsys.readouterr().out)["presses"] == 1
    handles.fail_press = True
    assert main(["press", "--socket", server.path]) == 1
    assert "error: press failed" in capsys.readouterr().err
    assert main(["long", "--socket", str(tmp_path / "nobody.sock")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the box" in err and "systemctl" in err


def test_control_config_is_validated(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[control]\nsocket = "control.sock"\n')
    with pytest.raises(ConfigError, match=r"control.socket = 'control.sock': must be empty"):
        load_config(config)
    config.write_text("[control]\nenabled = 1\n")
    with pytest.raises(ConfigError, match="control.enabled = 1: must be true or false"):
        load_config(config)
    config.write_text('[control]\nenabled = false\nsocket = "/run/x.sock"\n')
    loaded = load_config(config).control
    assert (loaded.enabled, loaded.socket) == (False, "/run/x.sock")


def test_run_serves_the_socket_and_drives_the_box(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    config = tmp_path / "config.toml"
    config.write_text(f'[pins]\nfactory = "mock"\n[voice]\nenabled = false\n'
                      f'[control]\nsocket = "{sock}"\n')
    child = subprocess.Popen(
        [sys.executable, "-m", "device", "run", "--config", str(config),
         "--history", str(tmp_path / "h.db")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def status() -> dict:
        return json.loads(request(sock, "status"))

    def wait_for(predicate) -> None:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                if predicate():
                    return
            except ControlError:
                pass
            time.sleep(0.05)
        raise AssertionError(child.stderr.read() if child.poll() is not None else "timeout")

    try:
        wait_for(lambda: status()["state"] == "idle")
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
        assert request(sock, "press") == "ok"
        wait_for(lambda: status()["state"] == "setup")
        assert status()["leg"] == "right"
        assert request(sock, "long") == "ok"
        wait_for(lambda: status()["state"] in ("cancelled", "idle"))
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert not sock.exists()
    assert "Traceback" not in (child.stderr.read() if child.stderr else "")


def _box_config(**control):
    from device.core.config import Config, with_overrides

    return with_overrides(Config(), control=control) if control else Config()


def test_attach_needs_a_runtime_directory_or_a_path(make_box, tmp_path: Path) -> None:
    from device.addons import control

    box = make_box(_box_config())
    assert control.attach(box.port, environ={}) is None  # not under systemd: no socket
    runtime = tmp_path / "rt"
    runtime.mkdir()
    server = control.attach(box.port, environ={"RUNTIME_DIRECTORY": str(runtime)})
    assert server is not None
    try:
        assert server.path == str(runtime / "control.sock")
    finally:
        server.close()
    off = make_box(_box_config(enabled=False))
    assert control.attach(off.port, environ={"RUNTIME_DIRECTORY": str(runtime)}) is None


def test_a_socket_that_cannot_be_made_leaves_the_box_running(make_box, tmp_path: Path,
                                                             caplog) -> None:
    from device.addons import control

    box = make_box(_box_config(socket=str(tmp_path / "no" / "dir.sock")))
    assert control.attach(box.port) is None
    assert "cannot create it" in caplog.text and "runs without it" in caplog.text


def test_attach_drives_the_command_port_and_reads_the_view(make_box, events,
                                                           tmp_path: Path) -> None:
    from device.addons import control

    sock = tmp_path / "c.sock"
    box = make_box(_box_config(socket=str(sock)))  # the builder attaches it (one line)
    server = next(a for a in box.addons if isinstance(a, control.ControlServer))
    try:
        assert json.loads(request(sock, "status"))["state"] == "idle"
        assert request(sock, "press") == "ok"
        box.loop.run(until=1.0)
        view = json.loads(request(sock, "status"))
        assert (view["state"], view["leg"]) == ("setup", "right")
        assert request(sock, "long") == "ok"
        box.loop.run(until=6.0)
    finally:
        server.close()
    assert [e["action"] for e in events.kind("button")] == ["press", "long"]
    assert "cancelled" in events.states()


def test_a_request_without_a_newline_is_answered_at_its_end(served) -> None:
    """Issue 22: "status" then EOF got no answer."""
    server, handles = served
    assert json.loads(raw_exchange(server.path, b"status"))["state"] == "idle"
    assert raw_exchange(server.path, b"press") == b"ok\n" and handles.presses == 1


def test_a_client_that_never_reads_is_dropped_and_memory_stays_bounded(served) -> None:
    """Issue 22: a client asking for status without reading grew the box's memory without
    bound; now its waiting answers are capped and it is dropped."""
    from device.addons.control import MAX_OUTBUF

    server, handles = served
    greedy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.connect(server.path)
    greedy.settimeout(5)
    sent = 0
    try:
        while sent < 64 * 1024 * 1024:  # asks for far more than it could ever hold
            greedy.sendall(b"status\n" * 1024)
            sent += 7 * 1024
            if server._dropped:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    deadline = time.monotonic() + 5
    while not server._dropped and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server._dropped == 1
    assert sent < 64 * 1024 * 1024
    assert all(len(c.outbuf) <= MAX_OUTBUF + 4096 for c in server._clients.values())
    assert request(server.path, "status").startswith("{")  # the others are served
    greedy.close()
