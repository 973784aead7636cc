"""The page's server on a real socket: connections are bounded, bad bodies get one clear
answer with the security headers, a flood costs a log line, never a traceback (issue 22)."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from pathlib import Path

import pytest

from device.addons.web.auth import PairingStore, csrf_for
from device.addons.web.guard import Guard, RateLimitedLog
from device.addons.web.server import COOKIE, WebOptions, WebServer
from tests.web_support import FakeBox

WAIT_S = 10.0


def closed_by_server(sock: socket.socket, timeout_s: float = WAIT_S) -> bool:
    """Whether the server closes ``sock`` within ``timeout_s`` (reads to EOF)."""
    sock.settimeout(timeout_s)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    box = FakeBox()
    store = PairingStore(tmp_path / "pairing.json")
    guard = Guard(max_connections=12, per_address=6, header_timeout_s=0.3)
    srv = WebServer(box, WebOptions(port=0, store=store, config_path=tmp_path / "c.toml"),
                    guard=guard).start()
    yield srv
    srv.close()


def get(port: int, path: str, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S,
                                   source_address=("127.0.0.3", 0))
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def test_silent_connections_are_capped_and_timed_out(server: WebServer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    port = server.port
    silent = [connect(port) for _ in range(6)]
    over = [connect(port) for _ in range(20)]  # the same address: over its cap
    assert all(closed_by_server(s, 2.0) for s in over)
    assert server.guard.refused["over 6 connections from one address"] == 20
    # another address is still served while the six are open
    status, headers, _ = get(port, "/")
    assert status == 200 and "content-security-policy" in headers
    assert all(closed_by_server(s) for s in silent)  # the header timeout
    assert server.guard.refused["no request headers within 0.3 s"] == 6
    # a slow client (a byte at a time) is closed too, headers never complete
    slow = connect(port)
    slow.sendall(b"GET / HT")
    assert closed_by_server(slow)
    for s in silent + over + [slow]:
        s.close()
    deadline = time.monotonic() + WAIT_S
    while server.guard.open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.guard.open == 0 and not server.guard.by_address
    lines = [r for r in caplog.records if r.name.startswith("device.addons.web")]
    assert len(lines) <= 3, [r.getMessage() for r in lines]  # rate-limited: one per kind
    assert not [r for r in caplog.records if r.exc_info]


def test_at_the_total_cap_the_oldest_silent_connection_makes_room(server: WebServer) -> None:
    """Silent connections from many addresses never lock a phone out (issue 22)."""
    socks = [connect(server.port, f"127.0.0.{10 + i // 5}") for i in range(12)]
    deadline = time.monotonic() + WAIT_S
    while server.guard.open < 12 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert server.guard.open == 12
    status, _, _ = get(server.port, "/")  # a phone, while the cap is reached
    assert status == 200
    assert closed_by_server(socks[0], 0.25)  # the oldest silent one made room
    assert server.guard.refused["12 connections open: the oldest silent one makes room"] >= 1
    assert server.guard.open <= 12
    for s in socks:
        s.close()


def paired(server: WebServer) -> dict[str, str]:
    store = server.web.store
    token, _ = store.pair(store.code)
    assert token
    return {"cookie": f"{COOKIE}={token}", "x-csrf-token": csrf_for(token),
            "content-type": "application/json", "origin": f"http://127.0.0.1:{server.port}",
            "host": f"127.0.0.1:{server.port}"}


def test_deep_json_and_failures_answer_with_the_security_headers(
        server: WebServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    deep = b"[" * 2000 + b"]" * 2000  # 4000 brackets
    status, headers, body = get(server.port, "/api/pair", "POST", deep,
                                {"content-type": "application/json"})
    assert status == 400 and "nested 2000 deep" in json.loads(body)["error"]
    assert "content-security-policy" in headers
    h = paired(server)
    status, headers, body = get(server.port, "/api/settings", "POST", deep, h)
    assert status == 400 and "content-security-policy" in headers

    def broken() -> None:
        raise RuntimeError("the read model is broken")

    server.web.box.view = broken  # type: ignore[method-assign]
    status, headers, body = get(server.port, "/api/state", "GET", None, h)
    assert status == 500 and "content-security-policy" in headers
    assert headers.get("x-frame-options") == "DENY"
    assert not [r for r in caplog.records if r.exc_info]
    assert any("failed: RuntimeError" in r.getMessage() for r in caplog.records)


def test_a_client_leaving_mid_body_leaves_no_traceback(
        server: WebServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    s = connect(server.port)
    s.sendall(b"POST /api/pair HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
              b"content-length: 100\r\n\r\n{\"code\":")
    time.sleep(0.05)
    s.close()
    time.sleep(0.1)
    status, _, _ = get(server.port, "/")
    assert status == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_rate_limited_log_counts_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    t = [0.0]
    said = RateLimitedLog(logging.getLogger("t"), every_s=60, clock=lambda: t[0])
    with caplog.at_level(logging.WARNING, "t"):
        assert said.warning("k", "flood")
        assert not any(said.warning("k", "flood") for _ in range(99))
        t[0] = 61
        assert said.warning("k", "flood")
    assert [r.getMessage() for r in caplog.records] == [
        "flood", "flood (99 more like it since the last line)"]


@pytest.mark.parametrize("kind", ["latin-1", "directory"])
def test_saving_settings_over_a_bad_config_file_is_one_clear_answer(
        server: WebServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    """Issue 22: a Latin-1 byte in the config, or a folder in its place, was a 500."""
    path = tmp_path / "c.toml"
    if kind == "latin-1":
        path.write_bytes(b"# caf\xe9\n[session]\nhold_seconds = 60\n")
    else:
        path.mkdir()
    h = paired(server)
    body = json.dumps({"changes": {"session.hold_seconds": 90}}).encode()
    status, headers, answer = get(server.port, "/api/settings", "POST", body, h)
    assert status == 422, answer
    message = json.loads(answer)["message"]
    assert ("not UTF-8" if kind == "latin-1" else "cannot read it") in message
    assert not [r for r in caplog.records if r.exc_info]
