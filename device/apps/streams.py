"""Output streams that fail in one clear line: a full disk (/dev/full), a closed descriptor or
a reader that left must not raise in the middle of a session nor again on close."""

from __future__ import annotations

import contextlib
from typing import Any, TextIO

from device.core.errors import UsageError


class StreamUnwritable(SystemExit):
    """A stream that cannot be written at all, found at its first write (t = 0): it stops
    the run before anything happens. A ``SystemExit`` (exit 2), because the event bus
    lets exits through from a subscriber while it logs and swallows other errors; the
    command line prints ``message`` as its one line."""

    def __init__(self, message: str) -> None:
        super().__init__(UsageError.exit_code)
        self.message = message


class GuardedStream:
    """Wraps a text stream that events or the transcript are written to.

    The first write is flushed at once, so a stream that cannot be written at all is found
    when the run starts (the first event is at t = 0): that raises ``StreamUnwritable``
    naming ``what`` (exit 2). A later failure (the disk filled up mid-run) is kept in ``error``;
    from then on writes are dropped, so the session goes on, and the command says so in
    one line when the run ends. ``BrokenPipeError`` on standard output (``| head``: the
    reader left) is passed on when ``pass_broken_pipe``, for the quiet exit the command
    line gives it.
    """

    def __init__(self, stream: TextIO, what: str, *, pass_broken_pipe: bool = False) -> None:
        self.stream = stream
        self.what = what
        self.error: BaseException | None = None
        self.failed_at_start = False
        self._pass_broken_pipe = pass_broken_pipe
        self._started = False

    def write(self, text: str) -> int:
        """Write ``text`` (dropped once the stream has failed); its length."""
        if self.error is not None:
            return len(text)
        try:
            self.stream.write(text)
            if not self._started:
                self.stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the file was closed under us
            self._fail(exc)
        finally:
            self._started = True
        return len(text)

    def flush(self) -> None:
        """Flush (a failure is kept like a failed write)."""
        if self.error is not None:
            return
        try:
            self.stream.flush()
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def close(self) -> None:
        """Flush and close the underlying stream; a failure here is kept, never raised."""
        self.flush()
        with contextlib.suppress(OSError, ValueError):
            self.stream.close()

    def problem(self) -> str | None:
        """One line saying what went wrong, or None."""
        if self.error is None:
            return None
        return (f"{self.what}: could not write it ({_reason(self.error)}); nothing more was "
                "written to it after that")

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, BrokenPipeError) and self._pass_broken_pipe:
            raise exc
        self.error = exc
        if not self._started:
            self.failed_at_start = True
            raise StreamUnwritable(f"{self.what}: cannot write it ({_reason(exc)})") from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
