"""A small client of systemd's sd_notify protocol (no libsystemd needed).

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``: an AF_UNIX datagram socket,
either a file system path (``/run/systemd/notify``) or, when it starts with ``@``, an
abstract address. Each message is one datagram of newline-separated ``KEY=value``
lines: ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``.

Outside systemd (a laptop, the simulator, the tests) ``$NOTIFY_SOCKET`` is unset and
every call is a no-op that returns False. Sending never raises: the box must keep
coaching whether or not anyone listens. A failure is logged once per address, at
debug level.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

# A send must never stall the loop for long (a datagram to a full queue blocks).
_SEND_TIMEOUT_S = 0.5
_failed_addresses: set[str] = set()


def _socket_address(raw: str) -> str | None:
    """The address to connect to, or None when ``raw`` is not one we can use."""
    if raw.startswith("@") and len(raw) > 1:
        return "\0" + raw[1:]  # abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # empty, relative, or a transport we do not speak (e.g. vsock:)


def _send(raw_address: str | None, message: str) -> bool:
    if not raw_address or not message:
        return False
    address = _socket_address(raw_address)
    if address is None:
        _log_failure_once(raw_address, "unsupported NOTIFY_SOCKET address")
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(_SEND_TIMEOUT_S)
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL in a path
        _log_failure_once(raw_address, exc)
        return False
    return True


def _log_failure_once(raw_address: str, reason: object) -> None:
    if raw_address in _failed_addresses:
        return
    _failed_addresses.add(raw_address)
    log.debug("sd_notify to %r failed (%s); further failures not logged", raw_address, reason)


def notify(message: str) -> bool:
    """Send one sd_notify datagram to ``$NOTIFY_SOCKET``.

    ``message`` is one or more ``KEY=value`` lines, e.g. ``"READY=1"``. Returns True
    when the datagram was sent; False when ``$NOTIFY_SOCKET`` is unset or sending
    failed. Never raises.
    """
    return _send(os.environ.get("NOTIFY_SOCKET"), message)


def _one_line(text: str) -> str:
    """STATUS= takes a single line: a newline would start a new assignment."""
    return " ".join(text.split())


class Notifier:
    """The service's side of the protocol: ready, status, watchdog, stopping.

    ``environ`` defaults to ``os.environ`` and is read at each call, so the
    notifier follows the process environment. The watchdog is enabled only when
    ``$WATCHDOG_USEC`` is a positive integer and ``$WATCHDOG_PID`` is unset or equals
    this process's PID (it names the process systemd expects pings from).
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        getpid: Callable[[], int] = os.getpid,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._getpid = getpid
        self._last_ping: float | None = None

    @property
    def enabled(self) -> bool:
        """True when a notification socket is configured."""
        return bool(self._environ.get("NOTIFY_SOCKET"))

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half of ``$WATCHDOG_USEC``, in seconds; None if off."""
        raw = self._environ.get("WATCHDOG_USEC", "")
        try:
            usec = int(raw)
        except ValueError:
            return None
        if usec <= 0:
            return None
        pid = self._environ.get("WATCHDOG_PID")
        if pid:
            try:
                if int(pid) != self._getpid():
                    return None
            except ValueError:
                return None
        return usec / 2_000_000

    def send(self, message: str) -> bool:
        """Send a raw message (``KEY=value`` lines); see :func:`notify`."""
        return _send(self._environ.get("NOTIFY_SOCKET"), message)

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (hardware set up): ``READY=1``."""
        message = "READY=1"
        if status:
            message += "\nSTATUS=" + _one_line(status)
        return self.send(message)

    def status(self, text: str) -> bool:
        """A one-line state shown by ``systemctl status``: ``STATUS=...``."""
        return self.send("STATUS=" + _one_line(text))

    def watchdog(self) -> bool:
        """Keep-alive ping ``WATCHDOG=1``; sent only when the watchdog is enabled."""
        if self.watchdog_interval_s is None:
            return False
        return self.send("WATCHDOG=1")

    def watchdog_if_due(self, now: float) -> bool:
        """Ping when ``watchdog_interval_s`` has passed since the last ping.

        ``now`` is any monotonic time in seconds (the loop's clock). Lets the loop
        call this on every iteration without flooding the socket.
        """
        interval = self.watchdog_interval_s
        if interval is None:
            return False
        if self._last_ping is not None and now - self._last_ping < interval:
            return False
        self._last_ping = now  # also after a failed send: retry next interval, not next tick
        return self.watchdog()

    def watchdog_due_at(self, now: float) -> float | None:
        """When ``watchdog_if_due`` will next ping (same time scale as ``now``); None if off."""
        interval = self.watchdog_interval_s
        if interval is None:
            return None
        return now if self._last_ping is None else self._last_ping + interval

    def stopping(self, status: str | None = None) -> bool:
        """Shutting down: ``STOPPING=1``."""
        message = "STOPPING=1"
        if status:
            message += "\nSTATUS=" + _one_line(status)
        return self.send(message)
