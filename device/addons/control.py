"""The control socket: press, long press and status of the running box over a Unix socket.

``stretch-companion run`` listens on ``$RUNTIME_DIRECTORY/control.sock``
(``/run/stretch-companion/control.sock`` under systemd), mode 0660, so root and members of
the service's group can drive the box over SSH, and the system test can drive sessions on
mock pins. The protocol is one request per line, one answer per line:

``press``   -> ``ok``  (a short press of the button)
``long``    -> ``ok``  (a long press: cancels a session)
``status``  -> one JSON object (the box's read model)
``pair``    -> ``ok``  (the box says a fresh pairing code for the phone page aloud and
               lifts every pairing lockout: whoever may use this socket owns the box)
anything else -> ``error: ...`` naming the request and the allowed ones.

The server runs in its own thread on a selector; it never blocks on a client, never
raises out of the thread, and ``close()`` wakes it at once through a pipe (no polling).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.addons.page import PairingVoice
from device.box.port import BoxPort

log = logging.getLogger(__name__)

REQUESTS = ("press", "long", "status", "pair")
DEFAULT_RUN_DIR = "/run/stretch-companion"
SOCKET_NAME = "control.sock"
MAX_LINE = 256  # bytes: the longest request is 6; a longer line is not ours
MAX_CLIENTS = 16
CLIENT_IDLE_S = 30.0  # a client that says nothing for this long is closed
MAX_OUTBUF = 64 * 1024  # bytes of answers waiting for a client; one that does not read is
# dropped beyond this (a status is about 1 KiB: 64 unread answers)
SOCKET_MODE = 0o660


class ControlError(Exception):
    """The control socket cannot be set up or reached (one clear line)."""


def default_socket_path(environ: dict[str, str] | None = None) -> str:
    """``$RUNTIME_DIRECTORY/control.sock``, else ``/run/stretch-companion/control.sock``."""
    env = os.environ if environ is None else environ
    runtime = (env.get("RUNTIME_DIRECTORY") or "").split(":")[0]
    return str(Path(runtime or DEFAULT_RUN_DIR) / SOCKET_NAME)


@dataclass
class _Client:
    sock: socket.socket
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    last_seen: float = 0.0
    closing: bool = False
    discarding: bool = False
    dropped: bool = False


class ControlServer:
    """Serves ``press``, ``long`` and ``status`` on the Unix socket at ``path``.

    ``press`` and ``long_press`` are called in the server thread and must be thread-safe
    and quick (the box's command port); ``status`` returns a JSON-able dict (the read
    model). An exception in any of them becomes an error line for that client only.
    """

    def __init__(
        self,
        path: str | Path,
        press: Callable[[], None],
        long_press: Callable[[], None],
        status: Callable[[], dict[str, Any]],
        *,
        mode: int = SOCKET_MODE,
        clock: Callable[[], float] = time.monotonic,
        pair: Callable[[], None] | None = None,
    ) -> None:
        self.path = str(path)
        self._handlers: dict[str, Callable[[], str]] = {
            "press": lambda: self._act(press),
            "long": lambda: self._act(long_press),
            "status": lambda: json.dumps(status(), separators=(",", ":"), allow_nan=False),
            "pair": lambda: self._act(pair) if pair is not None else
            "error: the phone page is off; nothing to pair",
        }
        self._mode = mode
        self._clock = clock
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._clients: dict[int, _Client] = {}
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._dropped = 0  # clients dropped for not reading their answers
        self._dropped_logged = False

    @staticmethod
    def _act(action: Callable[[], None]) -> str:
        action()
        return "ok"

    # ---- life cycle -------------------------------------------------------------------

    def start(self) -> ControlServer:
        """Bind the socket (mode ``mode``) and serve it in a daemon thread."""
        self._listener = self._bind()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._serve, name="control-socket", daemon=True)
        self._thread.start()
        log.info("control socket at %s (press, long, status)", self.path)
        return self

    def close(self) -> None:
        """Stop serving at once, close every client and remove the socket file."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._cleanup()

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _bind(self) -> socket.socket:
        path = self.path
        if len(os.fsencode(path)) >= 108:
            raise ControlError(f"control socket {path!r}: path too long (at most 107 bytes)")
        self._remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            old = os.umask(0o177)  # never more open than 0600 before the chmod below
            try:
                sock.bind(path)
            finally:
                os.umask(old)
            os.chmod(path, self._mode)
            sock.listen(MAX_CLIENTS)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ControlError(f"control socket {path!r}: cannot create it "
                               f"({exc.strerror or exc})") from None
        return sock

    @staticmethod
    def _remove_stale(path: str) -> None:
        """Remove a socket left by a killed process; refuse if a live box answers there."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlError(f"control socket {path!r}: {exc.strerror}") from None
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"control socket {path!r}: something that is not a socket "
                               "is in the way")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(0.5)
            probe.connect(path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # nobody listens: a leftover
            return
        finally:
            probe.close()
        raise ControlError(f"control socket {path!r}: another box is already listening there")

    def _cleanup(self) -> None:
        for client in list(self._clients.values()):
            self._drop(client)
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    # ---- serving ----------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._closed.is_set():
                selector = self._selector
                if selector is None:
                    return
                for key, events in selector.select(self._timeout()):
                    if key.data == "wake":
                        return
                    if key.data == "listen":
                        self._accept()
                    else:
                        self._on_client(key.data, events)
                self._expire()
        except Exception:  # never take the box down: log it, the box goes on without us
            log.exception("control socket stopped")

    def _timeout(self) -> float | None:
        if not self._clients:
            return None  # nothing to expire: sleep until a connection or close()
        oldest = min(c.last_seen for c in self._clients.values())
        return max(0.0, oldest + CLIENT_IDLE_S - self._clock())

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("control socket: accept failed (%s)", exc)
            return
        sock.setblocking(False)
        if len(self._clients) >= MAX_CLIENTS:
            with contextlib.suppress(OSError):
                sock.send(b"error: too many clients\n")
            sock.close()
            return
        client = _Client(sock, last_seen=self._clock())
        self._clients[sock.fileno()] = client
        self._selector.register(sock, selectors.EVENT_READ, client)

    def _on_client(self, client: _Client, events: int) -> None:
        if events & selectors.EVENT_READ:
            try:
                data = client.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._drop(client)
                return
            if data == b"":
                client.closing = True  # the client has sent everything
                if client.inbuf and not client.discarding:  # a last line without "\n"
                    client.inbuf += b"\n"
                    self._requests(client)
            elif data:
                client.last_seen = self._clock()
                client.inbuf += data
                self._requests(client)
        if events & selectors.EVENT_WRITE or client.outbuf:
            self._flush(client)
        if client.closing and not client.outbuf or client.dropped:
            self._drop(client)
        elif client.sock.fileno() >= 0 and self._selector is not None:
            wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbuf else 0)
            if client.closing:
                wanted = selectors.EVENT_WRITE
            self._selector.modify(client.sock, wanted, client)

    def _requests(self, client: _Client) -> None:
        while True:
            end = client.inbuf.find(b"\n")
            if client.discarding:  # the rest of a line already answered as too long
                if end < 0:
                    client.inbuf.clear()
                    return
                del client.inbuf[: end + 1]
                client.discarding = False
                continue
            if end < 0:
                if len(client.inbuf) > MAX_LINE:
                    client.outbuf += b"error: request too long (at most 256 bytes a line)\n"
                    client.inbuf.clear()
                    client.discarding = True
                return
            if len(client.outbuf) > MAX_OUTBUF:  # asks and never reads: let it go
                self._dropped += 1
                if not self._dropped_logged:
                    self._dropped_logged = True
                    log.warning("control socket: a client that does not read its answers "
                                "was dropped (over %d bytes waiting)", MAX_OUTBUF)
                client.inbuf.clear()
                client.outbuf.clear()
                client.closing = True
                client.dropped = True
                return
            raw = bytes(client.inbuf[:end])
            del client.inbuf[: end + 1]
            client.outbuf += (self.answer(raw) + "\n").encode("utf-8")

    def answer(self, raw: bytes) -> str:
        """The one-line answer to one request line (without its newline)."""
        if len(raw) > MAX_LINE:
            return "error: request too long (at most 256 bytes a line)"
        try:
            request = raw.decode("ascii").strip().lower()
        except UnicodeDecodeError:
            return "error: request is not ASCII text; allowed: " + ", ".join(REQUESTS)
        handler = self._handlers.get(request)
        if handler is None:
            shown = request if len(request) <= 40 else request[:40] + "..."
            return f"error: unknown request {shown!r}; allowed: " + ", ".join(REQUESTS)
        try:
            return handler()
        except Exception as exc:  # one client's failure, never the server's
            log.warning("control socket: %s failed: %s", request, exc)
            return f"error: {request} failed ({type(exc).__name__}: {exc})"

    def _flush(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            client.outbuf.clear()
            client.closing = True
            return
        del client.outbuf[:sent]

    def _expire(self) -> None:
        now = self._clock()
        for client in list(self._clients.values()):
            if now - client.last_seen >= CLIENT_IDLE_S:
                self._drop(client)

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if fd >= 0:
            if self._selector is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(client.sock)
            self._clients.pop(fd, None)
        client.sock.close()


# ---- the client side -------------------------------------------------------------------


def request(path: str | Path, line: str, timeout: float = 5.0) -> str:
    """Send one request line to the box at ``path``; its one-line answer."""
    path = str(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            hint = ""
            if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
                hint = "; is the box running ('systemctl status stretch-companion')?"
            elif isinstance(exc, PermissionError):
                hint = "; run it as root or as a member of the group 'stretch'"
            raise ControlError(f"cannot reach the box at {path} "
                               f"({exc.strerror or exc}){hint}") from None
        try:
            sock.sendall(line.encode("utf-8") + b"\n")
            sock.shutdown(socket.SHUT_WR)
            answer = bytearray()
            while b"\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except OSError as exc:  # includes a timeout
            raise ControlError(f"the box at {path} did not answer ({exc.strerror or exc})"
                               ) from None
    if not answer:
        raise ControlError(f"the box at {path} closed the connection without an answer")
    return answer.split(b"\n", 1)[0].decode("utf-8", "replace")


# ---- the box's add-on ------------------------------------------------------------------


def _say_pairing(box: BoxPort) -> None:
    """The page's pairing code, said aloud with every lockout lifted (``pair``)."""
    voice = box.find(PairingVoice)
    if voice is None:
        raise ControlError("the phone page is off; nothing to pair")
    voice.say_fresh_code()


def attach(box: BoxPort, environ: dict[str, str] | None = None) -> ControlServer | None:
    """The control socket of ``run`` per ``[control]``, on the box's command port
    (``box.commands``) and read model (``box.view()``). None when it is off or cannot be
    created (said once in the log: the box runs without it)."""
    settings = box.config.control
    if not settings.enabled:
        return None
    env = os.environ if environ is None else environ
    path = settings.socket
    if not path:
        if not env.get("RUNTIME_DIRECTORY"):
            log.info("no control socket: $RUNTIME_DIRECTORY is not set (not under systemd); "
                     "set control.socket to have one")
            return None
        path = default_socket_path(dict(env))
    commands = box.commands
    try:
        return ControlServer(path, commands.press, commands.long_press,
                             lambda: box.view().to_json(), pair=lambda: _say_pairing(box)
                             ).start()
    except ControlError as exc:
        log.warning("%s; the box runs without it", exc)
        return None
