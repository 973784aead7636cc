"""uvicorn without its 0.1 s tick: the page's server sleeps until there is work (issue 23).

``uvicorn.Server.main_loop`` wakes ten times a second to refresh the ``Date`` header and
to look at ``should_exit``. Here the header is made when a response asks for it (at most
once a second of wall time, as uvicorn does), and the main loop waits on an event that
``stop()`` sets from any thread: with no page open the server's thread does not wake.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Any


def quiet_server(config: Any) -> Any:
    """A ``uvicorn.Server`` for ``config`` that sleeps between requests; ``stop()`` ends it
    (safe from any thread)."""
    import uvicorn
    from uvicorn.server import ServerState

    class DatedState(ServerState):
        """Server state whose default headers (``Date``, the config's own) are made on
        demand, once per wall second, instead of by the tick."""

        def __init__(self) -> None:
            self._at: int | None = None
            self._headers: list[tuple[bytes, bytes]] = []
            super().__init__()

        @property
        def default_headers(self) -> list[tuple[bytes, bytes]]:
            now = int(time.time())
            if now != self._at:
                date = [(b"date", formatdate(now, usegmt=True).encode())] \
                    if config.date_header else []
                self._headers = date + list(getattr(config, "encoded_headers", []))
                self._at = now
            return self._headers

        @default_headers.setter
        def default_headers(self, value: list[tuple[bytes, bytes]]) -> None:
            """uvicorn's tick sets them; they are made on demand here."""

    class QuietServer(uvicorn.Server):
        def __init__(self, cfg: Any) -> None:
            super().__init__(cfg)
            self.server_state = DatedState()
            self._exit: asyncio.Event | None = None
            self._loop: asyncio.AbstractEventLoop | None = None

        async def main_loop(self) -> None:
            """Wait for ``stop()`` (uvicorn's own: a 0.1 s sleep in a loop)."""
            self._exit = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            if not self.should_exit:
                await self._exit.wait()

        def stop(self) -> None:
            """Shut down (from any thread)."""
            self.should_exit = True
            loop, event = self._loop, self._exit
            if loop is not None and event is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(event.set)
                except RuntimeError:  # the loop closed in between
                    pass

    return QuietServer(config)
