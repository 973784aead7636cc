"""The box on your phone: a local page to watch, press, look back and change settings.

Off by default (``[web] enabled = false``); needs the ``web`` extra (Starlette, uvicorn).
``attach(box, ...)`` starts it beside a built box and returns a handle with ``close()``.
The pairing store (``device.addons.web.auth``) and the settings editor
(``device.addons.web.settings``)
import no web library, so ``stretch-companion web-code`` / ``web-forget`` work without it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from device.addons.page import PageAddress, PairingVoice
from device.addons.web.auth import PairingStore, store_path
from device.addons.web.settings import settings_path, sim_config_source, sim_settings_path
from device.box.bus import Subscription
from device.box.port import BoxPort
from device.core.errors import ConfigError, UsageError

if TYPE_CHECKING:  # the server needs the web extra: imported in attach, when it is used
    from device.addons.web.auth import PairingStore
    from device.addons.web.server import WebServer

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'stretch-companion[web]'"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::]:8321``) -> (host, port); ``ConfigError`` otherwise."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"web.listen = {text!r}: must be HOST:PORT, e.g. \"0.0.0.0:8321\"")
    return host, int(port)


@dataclass
class WebHandle:
    """A running page: its address, its server and the bus subscription; ``close()``."""

    server: WebServer
    port: BoxPort
    subscription: Subscription
    url: str
    release_press: Callable[[], None] = lambda: None  # gives the idle press back

    @property
    def code(self) -> str:
        """The current pairing code."""
        return self.server.web.store.code

    def close(self) -> None:
        """Stop listening to the bus, then stop the server."""
        try:
            self.port.unsubscribe(self.subscription)
            self.release_press()
        finally:
            self.server.close()


def attach(
    box: BoxPort,
    listen: str = "0.0.0.0:8321",
    *,
    config_path: str | Path | None = None,
    history_path: str | Path | None = None,
    simulator: bool = False,
    state_dir: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
    announce: TextIO | None = None,
    say_code: bool = False,
) -> WebHandle:
    """Serve the page for ``box`` at ``listen``; the code goes to the log (and ``announce``).

    Saved settings reach the box through ``box.reload`` (between sessions). Raises
    ``ConfigError`` (exit 78) when the web extra is missing or the address cannot be
    listened on."""
    try:  # deferred on purpose: the server needs the web extra (Starlette, uvicorn)
        from device.addons.web.server import WebOptions, WebServer
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] in ("device", "drivers"):
            raise  # a broken module of ours is not a missing extra
        raise ConfigError(f"web.enabled = true needs the web extra ({exc.name} is missing): "
                          f"{INSTALL_HINT}") from None

    host, port = parse_listen(listen)
    store = PairingStore(store_path(state_dir, simulator=simulator), clock=clock)
    if simulator:  # the simulator's own settings file, first written from what it runs
        page_config = sim_settings_path(config_path)
        own = page_config == sim_settings_path(None)
        seed = sim_config_source(None if own else config_path)
    else:
        page_config, seed = settings_path(config_path, service=True), None
    options = WebOptions(
        host=host, port=port, config_path=page_config, settings_seed=seed,
        history_path=Path(history_path) if history_path else None, store=store, clock=clock,
        on_config_saved=box.reload, simulator=simulator,
    )
    try:
        server = WebServer(box, options)
    except OSError as exc:
        raise ConfigError(f"web.listen = {listen!r}: cannot listen there ({exc.strerror})"
                          ) from None
    server.start()
    subscription = box.subscribe(lambda event: server.web.hub.from_bus(box, event),
                                 None, queued=True, name="web")
    # the owner's idle press says the code a page asked for; the control socket's "pair" too
    release = box.take_idle_press(server.web.take_press)
    handle = WebHandle(server, box, subscription, server.url, release)
    box.provide(PageAddress(server.url))
    box.provide(PairingVoice(server.web.say_fresh_code))
    shown = server.url.replace("0.0.0.0", "BOX-ADDRESS").replace("[::]", "BOX-ADDRESS")
    # said once: on ``announce`` (the simulator's stderr) or else in the log
    log.log(logging.INFO if announce is not None else logging.WARNING,
            "web page at %s: pair a phone with code %s", shown, store.code)
    if announce is not None:
        print(f"pair with code {store.code} at {shown}", file=announce, flush=True)
    if say_code:
        server.web.say_code()
    return handle


def web_code_main(simulator: bool = False, state_dir: Path | None = None,
                  out: TextIO | None = None) -> int:
    """``stretch-companion web-code``: print the current pairing code."""
    store = _open_store(state_dir, simulator)
    print(store.code, file=out or sys.stdout)
    return 0


def _open_store(state_dir: Path | None, simulator: bool) -> PairingStore:
    """The pairing store, or ``UsageError`` in one line when ``state_dir`` is unusable
    (a file, /dev/null, no permission)."""

    try:
        return PairingStore(store_path(state_dir, simulator=simulator))
    except OSError as exc:
        where = f"--state-dir {state_dir}" if state_dir is not None else "the state folder"
        why = ("not a folder" if isinstance(exc, (FileExistsError, NotADirectoryError))
               else exc.strerror or str(exc))
        raise UsageError(f"{where}: cannot keep the pairing store there ({why})") from None


def web_forget_main(simulator: bool = False, state_dir: Path | None = None,
                    out: TextIO | None = None) -> int:
    """``stretch-companion web-forget``: revoke every paired phone (and pick a new code)."""
    store = _open_store(state_dir, simulator)
    try:
        n = store.forget()
    except OSError as exc:

        raise UsageError(f"cannot write the pairing store ({exc.strerror or exc})") from None
    print(f"forgot {n} paired phone{'s' if n != 1 else ''}; new code {store.code}",
          file=out or sys.stdout)
    return 0
