"""device.addons.notify against real AF_UNIX datagram sockets (no systemd needed)."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.addons import notify as notify_mod
from device.addons.notify import Notifier, notify


def _listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2.0)  # a missing datagram fails the test instead of hanging it
    return sock


def _nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(2.0)
    return False


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def path_socket(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = _listener(str(path))
    clean_env.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


@pytest.fixture
def abstract_socket(clean_env: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    name = f"stretch-companion-test-{uuid.uuid4().hex}"
    sock = _listener("\0" + name)
    clean_env.setenv("NOTIFY_SOCKET", "@" + name)
    yield sock
    sock.close()


def test_messages_arrive_as_sent(path_socket: socket.socket, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WATCHDOG_USEC", "10000000")
    n = Notifier()
    assert n.enabled

    assert n.ready() is True
    assert path_socket.recv(4096) == b"READY=1"
    assert n.status("Hold, right leg: 42 s left") is True
    assert path_socket.recv(4096) == b"STATUS=Hold, right leg: 42 s left"
    assert n.watchdog() is True
    assert path_socket.recv(4096) == b"WATCHDOG=1"
    assert n.stopping() is True
    assert path_socket.recv(4096) == b"STOPPING=1"


def test_module_notify_to_path(path_socket: socket.socket) -> None:
    assert notify("READY=1\nSTATUS=idle") is True
    assert path_socket.recv(4096) == b"READY=1\nSTATUS=idle"


def test_abstract_address(abstract_socket: socket.socket, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WATCHDOG_USEC", "4000000")
    n = Notifier()
    assert notify("READY=1") is True
    assert abstract_socket.recv(4096) == b"READY=1"
    assert n.status("idle") is True
    assert abstract_socket.recv(4096) == b"STATUS=idle"
    assert n.watchdog() is True
    assert abstract_socket.recv(4096) == b"WATCHDOG=1"
    assert n.stopping() is True
    assert abstract_socket.recv(4096) == b"STOPPING=1"


def test_status_is_one_line_and_ready_can_carry_it(path_socket: socket.socket) -> None:
    n = Notifier()
    assert n.status("left leg\nREADY=1")
    assert path_socket.recv(4096) == b"STATUS=left leg READY=1"
    assert n.ready("idle: press to start")
    assert path_socket.recv(4096) == b"READY=1\nSTATUS=idle: press to start"
    assert n.stopping("interrupted")
    assert path_socket.recv(4096) == b"STOPPING=1\nSTATUS=interrupted"
    assert n.status("héllo")  # UTF-8 on the wire
    assert path_socket.recv(4096) == "STATUS=héllo".encode()


def test_noop_without_notify_socket(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WATCHDOG_USEC", "10000000")
    n = Notifier()
    assert not n.enabled
    assert notify("READY=1") is False
    assert n.ready() is False
    assert n.status("x") is False
    assert n.watchdog() is False
    assert n.stopping() is False


def test_empty_notify_socket_is_unset(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NOTIFY_SOCKET", "")
    assert notify("READY=1") is False
    assert not Notifier().enabled


@pytest.mark.parametrize(
    ("usec", "expected"),
    [
        ("10000000", 5.0),
        ("3000000", 1.5),
        ("1", 0.0000005),
        (None, None),
        ("0", None),
        ("-5", None),
        ("ten", None),
    ],
)
def test_watchdog_interval_from_watchdog_usec(
    clean_env: pytest.MonkeyPatch, usec: str | None, expected: float | None
) -> None:
    if usec is not None:
        clean_env.setenv("WATCHDOG_USEC", usec)
    assert Notifier().watchdog_interval_s == expected


def test_watchdog_off_without_watchdog_usec(path_socket: socket.socket) -> None:
    n = Notifier()
    assert n.watchdog_interval_s is None
    assert n.watchdog() is False
    assert _nothing_waiting(path_socket)


def test_watchdog_pid_mismatch_means_no_watchdog(
    path_socket: socket.socket, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHDOG_USEC", "10000000")
    clean_env.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    n = Notifier()
    assert n.watchdog_interval_s is None
    assert n.watchdog() is False
    assert _nothing_waiting(path_socket)
    # The other messages are not tied to WATCHDOG_PID.
    assert n.ready() is True
    assert path_socket.recv(4096) == b"READY=1"


def test_watchdog_pid_match_sends(
    path_socket: socket.socket, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHDOG_USEC", "10000000")
    clean_env.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier()
    assert n.watchdog_interval_s == 5.0
    assert n.watchdog() is True
    assert path_socket.recv(4096) == b"WATCHDOG=1"


def test_injected_environment_and_pid(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    sock = _listener(str(path))
    try:
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1234"}
        assert Notifier(env, getpid=lambda: 1234).watchdog() is True
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert Notifier(env, getpid=lambda: 99).watchdog() is False
        assert _nothing_waiting(sock)
    finally:
        sock.close()


def test_watchdog_if_due_paces_pings(
    path_socket: socket.socket, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHDOG_USEC", "10000000")  # ping every 5 s
    n = Notifier()
    assert n.watchdog_if_due(100.0) is True
    assert path_socket.recv(4096) == b"WATCHDOG=1"
    assert n.watchdog_if_due(101.0) is False
    assert n.watchdog_if_due(104.9) is False
    assert _nothing_waiting(path_socket)
    assert n.watchdog_if_due(105.0) is True
    assert path_socket.recv(4096) == b"WATCHDOG=1"


@pytest.mark.parametrize(
    "kind", ["missing-path", "dead-path", "abstract-unbound", "relative", "vsock"]
)
def test_unreachable_socket_does_not_raise(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    if kind == "missing-path":
        address = str(tmp_path / "does-not-exist" / "notify.sock")
    elif kind == "dead-path":  # a socket file nobody listens on any more
        address = str(tmp_path / "dead.sock")
        _listener(address).close()
    elif kind == "abstract-unbound":
        address = f"@stretch-companion-none-{uuid.uuid4().hex}"
    elif kind == "relative":
        address = f"notify-{uuid.uuid4().hex}.sock"
    else:
        address = f"vsock:2:{uuid.uuid4().int % 60000}"
    clean_env.setenv("NOTIFY_SOCKET", address)
    clean_env.setenv("WATCHDOG_USEC", "10000000")

    caplog.set_level(logging.DEBUG, logger=notify_mod.__name__)
    n = Notifier()
    assert notify("READY=1") is False
    assert n.ready() is False
    assert n.status("x") is False
    assert n.watchdog() is False
    assert n.stopping() is False
    failures = [r for r in caplog.records if r.name == notify_mod.__name__]
    assert len(failures) == 1  # logged once, not once per message
    assert failures[0].levelno == logging.DEBUG


def test_watchdog_due_at_follows_the_last_ping() -> None:
    notifier = Notifier(environ={"WATCHDOG_USEC": "4000000"})
    assert notifier.watchdog_due_at(10.0) == 10.0  # never pinged: due now
    notifier.watchdog_if_due(10.0)
    assert notifier.watchdog_due_at(11.0) == 12.0
    assert Notifier(environ={}).watchdog_due_at(5.0) is None
