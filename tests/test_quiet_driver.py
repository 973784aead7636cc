"""The terminal simulator's input thread sleeps until a key comes (issue 23): Textual's
``LinuxDriver`` polls ``select`` every 0.1 s; this driver blocks, with a timeout only while
the key parser waits to tell a lone Escape from a sequence, and leaves at once when input
is disabled (a byte on its wake pipe)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from textual._xterm_parser import XTermParser

from device.apps.quiet_driver import QuietLinuxDriver, _WakingEvent


def _driver(tty_fd: int) -> tuple[QuietLinuxDriver, list[Any], list[float | None]]:
    """A driver reading ``tty_fd``, without an app: messages and select timeouts kept."""
    driver = QuietLinuxDriver.__new__(QuietLinuxDriver)
    driver.fileno = tty_fd
    driver._debug = False
    driver._wake_r, driver._wake_w = os.pipe()
    os.set_blocking(driver._wake_r, False)
    driver.exit_event = _WakingEvent(driver._wake_w)
    messages: list[Any] = []
    timeouts: list[float | None] = []
    driver.process_message = messages.append  # type: ignore[method-assign]
    real = driver._read

    def read(selector: Any, parser: Any, decode: Any, timeout: float | None) -> None:
        timeouts.append(timeout)
        real(selector, parser, decode, timeout)

    driver._read = read  # type: ignore[method-assign]
    return driver, messages, timeouts


def test_the_input_thread_blocks_reads_keys_and_leaves_at_once() -> None:
    r, w = os.pipe()
    driver, messages, timeouts = _driver(r)
    thread = threading.Thread(target=driver.run_input_thread, daemon=True)
    thread.start()
    time.sleep(0.3)  # Textual's own thread would have woken three times by now
    assert timeouts == [None]  # one select, no timeout: asleep
    os.write(w, b"q")
    deadline = time.monotonic() + 5
    while not messages and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [getattr(m, "key", None) for m in messages] == ["q"]
    assert timeouts[-1] is None  # asleep again after the key
    os.write(w, b"\x1b")  # a lone Escape: the parser waits a moment for more
    deadline = time.monotonic() + 5
    while len(messages) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert getattr(messages[-1], "key", None) == "escape"
    assert any(t is not None and 0 <= t <= 0.2 for t in timeouts)  # only then a timeout
    t0 = time.monotonic()
    driver.exit_event.set()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - t0 < 2.0
    for fd in (r, w, driver._wake_r, driver._wake_w):
        os.close(fd)


def test_a_fresh_parser_asks_for_no_timeout() -> None:
    assert QuietLinuxDriver._timeout(XTermParser()) is None
