"""A Textual terminal driver whose input thread sleeps until a key comes (issue 23).

Textual's ``LinuxDriver`` reads the terminal in a thread that calls ``select`` with a
0.1 s timeout in a loop, so an idle screen wakes ten times a second. This driver's thread
waits on the terminal and on a wake pipe with no timeout; it sets one only while the key
parser waits to tell a lone Escape from the start of a sequence (its own short timeout).
Leaving input (``exit_event.set()``) writes to the pipe, so the thread ends at once.

Output: Textual hands every write to a writer thread (a queue), which wakes for each of the
two or three writes of a frame. The screen's frames are small (only the changed panels are
redrawn, at most 10 a second while the light moves), so they are written here directly,
in the event loop's thread: no thread to wake per frame.
"""

from __future__ import annotations

import os
import selectors
import threading
from codecs import getincrementaldecoder
from typing import Any

from textual.drivers.linux_driver import LinuxDriver


class _WakingEvent(threading.Event):
    """An Event whose ``set`` also writes a byte to a pipe (to end a blocking select)."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self._wake_fd = wake_fd

    def set(self) -> None:
        super().set()
        try:
            os.write(self._wake_fd, b"x")
        except OSError:  # the pipe is full (a byte is waiting anyway) or closed
            pass


class QuietLinuxDriver(LinuxDriver):
    """``LinuxDriver`` with an input thread that blocks until there is input."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.exit_event = _WakingEvent(self._wake_w)

    def run_input_thread(self) -> None:
        """Read keys until input is disabled; sleep in ``select`` while nothing comes."""
        from textual._xterm_parser import XTermParser

        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        selector = selectors.DefaultSelector()
        selector.register(self.fileno, selectors.EVENT_READ, "tty")
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self.exit_event.is_set():
                self._read(selector, parser, decode, self._timeout(parser))
            selector.unregister(self.fileno)
            selector.unregister(self._wake_r)
        finally:
            selector.close()
            self._drain_wake()

    @staticmethod
    def _timeout(parser: Any) -> float | None:
        """None (block) unless the parser waits for the rest of a sequence."""
        due = getattr(parser, "_timeout_time", 0.0)
        if due is None:
            return None
        if not isinstance(due, float):  # a parser that does not say: Textual's own poll
            return 0.1
        from textual._time import get_time

        return max(0.0, due - get_time())

    def _read(self, selector: selectors.BaseSelector, parser: Any, decode: Any,
              timeout: float | None) -> None:
        for key, _mask in selector.select(timeout):
            if key.data == "wake":
                self._drain_wake()
                continue
            data = decode(os.read(self.fileno, 4096))
            if data:
                for message in parser.feed(data):
                    self.process_message(message)
        for message in parser.tick():
            self.process_message(message)

    def write(self, data: str) -> None:
        """Write ``data`` to the terminal now (the screen's own thread)."""
        out = self._file
        if out is None:
            return
        try:
            out.write(data)
            out.flush()
        except OSError:  # the terminal went away: quitting
            pass

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except OSError:  # empty (non-blocking) or closed
            pass

    def close(self) -> None:
        """Close the wake pipe too."""
        super().close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
