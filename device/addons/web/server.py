"""The phone page's server: Starlette on uvicorn, in its own thread and event loop.

The device loop is never waited on: the page reads ``box.view()`` (safe from any thread),
sends presses through ``box.commands`` (thread-safe), and hears the bus as a *queued*
subscriber (its own thread), whose handler only hands a ready JSON line to this server's
event loop with ``call_soon_threadsafe``. Live updates go out as Server-Sent Events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from importlib import resources
from io import StringIO
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from device.addons.web import settings as settings_mod
from device.addons.web import shell
from device.addons.web.auth import PairingStore, csrf_for
from device.addons.web.charts import calendar, hold_chart
from device.addons.web.guard import Guard, RateLimitedLog, guarded_protocol, quiet_accept_errors
from device.addons.web.quiet import quiet_server
from device.core.config import Config
from device.core.export import write_csv
from device.core.payload import BadPayload, parse_json
from device.core.streaks import local_zone
from device.core.tightness import session_tightness
from device.core.timetrust import TimeTrust
from device.store.sqlite import History, HistoryError

T = TypeVar("T")

log = logging.getLogger(__name__)
_failed = RateLimitedLog(log)  # a request that failed: one line a minute per route

COOKIE = "sc_pair"
COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest a browser keeps a cookie (400 days)
MAX_BODY = 4096  # bytes: the largest request body accepted
PRESS_WINDOW_S = 120.0  # after a page asks for the code, a press on the box says it
HEARTBEAT_S = 15.0  # an SSE comment (and a fresh view) this often, so dead links show
TENSION_GAP_S = 0.5  # at most two strap updates a second to the page
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "manifest-src 'self'; worker-src 'self'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
STATIC = {  # file -> content type; all of the page there is
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    **shell.FILES,  # the app's icons
}


def spoken_code(code: str) -> str:
    """The pairing line the box says (digits apart, so a voice reads them one by one)."""
    return f"To pair your phone, enter the code {' '.join(code[:3])}, {' '.join(code[3:])}."


@dataclass
class WebOptions:
    """What the server needs besides the box."""

    host: str = "127.0.0.1"
    port: int = 8321
    config_path: Path | None = None  # the file settings are read from and written to
    history_path: Path | None = None  # None: no history section
    store: PairingStore | None = None
    clock: Callable[[], float] = time.monotonic  # for the announce throttle
    on_config_saved: Callable[[Config], None] | None = None
    weeks: int = 12  # history shown
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    simulator: bool = False  # the page names the simulator's web-code command
    settings_seed: Path | None = None  # a settings file not there yet starts from this one


def _json_view(box: Any) -> dict[str, Any]:
    view = box.view()
    return view.to_json() if hasattr(view, "to_json") else dict(view)


def _zone(config: Config) -> tzinfo:

    name = config.history.timezone
    return ZoneInfo(name) if name else local_zone()


class SecurityMiddleware:
    """Every response gets the security headers; bodies over ``MAX_BODY`` are refused."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await JSONResponse({"error": f"request body over {MAX_BODY} bytes"},
                               status_code=413)(scope, receive, _with_headers(send))
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY:
                    raise _TooLarge
            return message

        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, _with_headers(sending))
        except _TooLarge:
            await JSONResponse({"error": f"request body over {MAX_BODY} bytes"},
                               status_code=413)(scope, receive, _with_headers(send))
        except ClientDisconnect:
            return  # the client left mid-request: nobody to answer
        except Exception as exc:  # noqa: BLE001 - one line (rate-limited), never a traceback
            _failed.warning(scope.get("path", "?"), f"web: {scope.get('method')} "
                            f"{scope.get('path')} failed: {type(exc).__name__}: {exc}")
            if not started:  # the 500 carries the page's security headers too
                await JSONResponse({"error": "internal error"}, status_code=500)(
                    scope, receive, _with_headers(send))


class _TooLarge(Exception):
    pass


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {k.lower() for k, _ in message.get("headers", [])}
            message.setdefault("headers", [])
            message["headers"] = list(message["headers"]) + [
                (k, v) for k, v in SECURITY_HEADERS if k not in names]
        await send(message)
    return wrapped


class Hub:
    """Fans one JSON line out to every open event stream (in the server's event loop)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clients: set[asyncio.Queue[str | None]] = set()
        self._last_tension = 0.0

    def from_bus(self, box: Any, event: Any) -> None:
        """The bus subscriber (its own thread): build the line once, hand it over."""
        loop = self.loop
        if loop is None or not self.clients:
            return
        data = event.to_json() if hasattr(event, "to_json") else dict(event)
        if data.get("kind") == "tension":
            now = time.monotonic()
            if now - self._last_tension < TENSION_GAP_S:
                return
            self._last_tension = now
        try:
            line = json.dumps({"view": _json_view(box), "event": data}, separators=(",", ":"))
        except Exception:  # a view that cannot be read now: the next event carries it
            log.debug("web: view not readable", exc_info=True)
            return
        try:
            loop.call_soon_threadsafe(self._fan_out, line)
        except RuntimeError:  # the server's loop has closed
            pass

    def _fan_out(self, line: str | None) -> None:
        for queue in list(self.clients):
            if queue.full():  # a page that stopped reading loses its oldest update
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    pass
            queue.put_nowait(line)

    def close_all(self) -> None:
        """End every stream (from any thread)."""
        if self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self._fan_out, None)
            except RuntimeError:
                pass


class WebApp:
    """The routes, around a box (``view()``, ``commands``, ``loop.say``) and ``options``."""

    def __init__(self, box: Any, options: WebOptions) -> None:
        self.box = box
        self.options = options
        self.store = options.store or PairingStore(Path("web-pairing.json"))
        self.hub = Hub()
        self._wanted_until: float | None = None  # a page asked for the code until then
        static = resources.files("device.addons.web").joinpath("static")
        self._static = {name: static.joinpath(name).read_bytes() for name in STATIC}
        routes = [
            Route("/", self.index),
            Route("/static/{name}", self.static),
            Route("/api/pair", self.pair, methods=["POST"]),
            Route("/api/pair/announce", self.announce, methods=["POST"]),
            Route("/api/session", self.session),
            Route("/api/state", self.state),
            Route("/api/events", self.events),
            Route("/api/press", self.press, methods=["POST"]),
            Route("/api/clock", self.clock, methods=["POST"]),
            Route("/api/history", self.history),
            Route("/api/history/chart.svg", self.chart),
            Route("/api/history.csv", self.csv),
            Route("/api/settings", self.get_settings),
            Route("/api/settings", self.post_settings, methods=["POST"]),
            *shell.routes(),  # the manifest and the service worker
        ]
        self.app = Starlette(routes=routes, middleware=[
            Middleware(SecurityMiddleware), Middleware(GZipMiddleware, minimum_size=500)])

    # ---- guards -----------------------------------------------------------------------

    def _paired(self, request: Request) -> str | None:
        token = request.cookies.get(COOKIE)
        return token if self.store.valid(token) else None

    @staticmethod
    def _same_origin(request: Request) -> bool:
        """A browser's cross-site request names another origin or says cross-site."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        host = request.headers.get("host", "")
        return origin in (f"http://{host}", f"https://{host}")

    async def _json_body(self, request: Request) -> dict[str, Any] | Response:
        if not self._same_origin(request):
            return JSONResponse({"error": "cross-site request refused"}, status_code=403)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send application/json"}, status_code=415)
        try:
            body = parse_json(await request.body() or b"null", max_bytes=MAX_BODY)
        except BadPayload as exc:
            return JSONResponse({"error": f"body is not JSON we take: {exc}"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        return body

    async def _authorised_post(self, request: Request) -> dict[str, Any] | Response:
        """A state-changing request: same origin, paired cookie and its CSRF token."""
        if not self._same_origin(request):
            return JSONResponse({"error": "cross-site request refused"}, status_code=403)
        token = self._paired(request)
        if token is None:
            return _unpaired()
        if request.headers.get("x-csrf-token") != csrf_for(token):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        return await self._json_body(request)

    # ---- page -------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return Response(self._static["index.html"], media_type=STATIC["index.html"])

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC or name == "index.html":
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(self._static[name], media_type=STATIC[name],
                        headers={"cache-control": "no-cache"})

    # ---- pairing ----------------------------------------------------------------------

    async def pair(self, request: Request) -> Response:
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        code = body.get("code")
        if not isinstance(code, str) or not (len(code) == 6 and code.isdigit()):
            return JSONResponse({"error": "the code is 6 digits"}, status_code=400)
        token, why = self.store.pair(code, request.client.host if request.client else "")
        if token is None:
            status = 429 if why.startswith("locked") else 403
            return JSONResponse({"error": why}, status_code=status)
        log.info("web: a phone paired")
        self._wanted_until = None  # the code was heard: the next press starts a session
        response = JSONResponse({"paired": True, "csrf": csrf_for(token)})
        response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE, httponly=True,
                            samesite="strict", path="/")
        return response

    async def announce(self, request: Request) -> Response:
        """A page on the pairing screen asks to hear the code. Nothing is said: anyone on
        the network may ask. The box's next press, while it is idle and within
        ``PRESS_WINDOW_S``, says the code instead of starting a session (see
        ``take_press``); a session is never interrupted."""
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        if _json_view(self.box).get("state") not in ("idle", "done", "cancelled"):
            return JSONResponse({"said": False, "press": False, "busy": True})
        self._wanted_until = self.options.clock() + PRESS_WINDOW_S
        return JSONResponse({"said": False, "press": True})

    def take_press(self) -> bool:
        """The box's idle short press (the loop's thread): when a page asked for the code
        lately, the press says a fresh code (and lifts every lockout) and is taken;
        otherwise it is left to start a session."""
        if self._wanted_until is None or self.options.clock() > self._wanted_until:
            self._wanted_until = None
            return False
        self._wanted_until = None
        self.say_fresh_code()
        return True

    def say_fresh_code(self) -> None:
        """The owner is at the box: every lockout lifted, a new code drawn and said."""
        self.store.owner_present()
        self.say_code()

    def say_code(self) -> None:
        """The box says the pairing code aloud (from any thread) and logs it."""
        code = self.store.code
        log.warning("web page: pair a phone with code %s", code)
        port = self.box
        line = spoken_code(code)

        def speak() -> None:
            try:
                port.say(line, "web_code")
            except Exception:  # a failing voice never stops anything
                log.warning("web: could not say the pairing code", exc_info=True)

        try:
            port.call_soon(speak)
        except Exception:
            log.warning("web: could not ask the loop to say the code", exc_info=True)

    # ---- live -------------------------------------------------------------------------

    def _breath(self) -> dict[str, float]:
        """The breath pattern (s) and light range the page animates its shape from."""
        b, light = self.box.config.breath, self.box.config.light
        return {"inhale": b.inhale, "hold_in": b.hold_in, "exhale": b.exhale,
                "hold_out": b.hold_out, "low": light.low, "high": light.high}

    async def session(self, request: Request) -> Response:
        token = self._paired(request)
        if token is None:  # the pairing screen names the command that prints this code
            return JSONResponse({"error": "not paired", "paired": False,
                                 "code_command": shell.web_code_command(
                                     self.options.simulator)}, status_code=401)
        return JSONResponse({"paired": True, "csrf": csrf_for(token), "breath": self._breath(),
                             "long_press_s": self.box.config.session.long_press_seconds,
                             "history": self.options.history_path is not None,
                             "view": _json_view(self.box)})

    async def state(self, request: Request) -> Response:
        if self._paired(request) is None:
            return _unpaired()
        return JSONResponse(_json_view(self.box))

    async def events(self, request: Request) -> Response:
        if self._paired(request) is None:
            return _unpaired()
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=200)
        box = self.box

        async def stream() -> AsyncIterator[str]:
            self.hub.clients.add(queue)  # here, so the finally below always removes it
            try:
                first = json.dumps({"view": _json_view(box), "event": None,
                                    "breath": self._breath()}, separators=(",", ":"))
                yield f"retry: 1000\ndata: {first}\n\n"
                while True:
                    try:
                        line = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                    except TimeoutError:
                        line = json.dumps({"view": _json_view(box), "event": None},
                                          separators=(",", ":"))
                    if line is None:
                        return
                    yield f"data: {line}\n\n"
            finally:
                self.hub.clients.discard(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def press(self, request: Request) -> Response:
        body = await self._authorised_post(request)
        if isinstance(body, Response):
            return body
        kind = body.get("kind")
        commands = self.box.commands
        if kind == "short":
            await asyncio.to_thread(commands.press)
        elif kind == "long":
            await asyncio.to_thread(commands.long_press)
        else:
            return JSONResponse({"error": "kind must be 'short' or 'long'"}, status_code=400)
        return JSONResponse({"ok": True})

    async def clock(self, request: Request) -> Response:
        """The paired phone's time (``{"now_ms": Date.now()}``): lent to a box whose clock
        is not synchronized (device.core.timetrust). Answers how the box dates sessions now."""
        body = await self._authorised_post(request)
        if isinstance(body, Response):
            return body
        from datetime import UTC, datetime

        now_ms = body.get("now_ms")
        if isinstance(now_ms, bool) or not isinstance(now_ms, int | float) or not (
                0 < now_ms < 2**53):
            return JSONResponse({"error": "now_ms must be the phone's Date.now()"},
                                status_code=400)
        trust = self._find(TimeTrust)
        if trust is None:  # the simulator: its clock is the one it was given
            return JSONResponse({"clock": "synced", "used_phone": False})
        # (taking it also dates this boot's untrusted sessions: the history asked to be told)
        ref = await asyncio.to_thread(trust.phone_time,
                                      datetime.fromtimestamp(now_ms / 1000, UTC))
        kind = ref.kind if ref is not None else "untrusted"
        return JSONResponse({"clock": kind, "used_phone": kind == "phone"})

    def _find(self, kind: type[T]) -> T | None:
        """Another add-on's service, found through the port."""
        return self.box.find(kind)

    # ---- history ----------------------------------------------------------------------

    def _now(self) -> datetime:
        """Days and weeks are counted from a trusted date when the box has one."""
        trust = self._find(TimeTrust)
        trusted = trust.now() if trust is not None else None
        return trusted or self.options.now()

    def _sessions(self) -> list[Any]:
        from datetime import timedelta


        path = self.options.history_path
        if path is None or not Path(path).is_file():
            return []
        since = self._now() - timedelta(weeks=self.options.weeks, days=1)
        try:
            with History(path, read_only=True) as store:
                return store.sessions(since=since)
        except HistoryError as exc:
            log.warning("web: %s", exc)
            return []

    async def history(self, request: Request) -> Response:
        if self._paired(request) is None:
            return _unpaired()

        sessions = await asyncio.to_thread(self._sessions)
        tz = _zone(self.box.config)
        cal = calendar(sessions, self._now(), tz, self.options.weeks)
        recent = []
        for s in sessions[-10:][::-1]:
            legs = {}
            for leg in ("right", "left"):
                held = [h.held_s for h in s.holds if h.leg == leg]
                steady = [h.steadiness for h in s.holds
                          if h.leg == leg and h.steadiness is not None]
                answers = [h.tightness for h in s.holds
                           if h.leg == leg and h.tightness is not None]
                legs[leg] = {"held_s": round(sum(held) / len(held), 1) if held else None,
                             "steadiness": round(sum(steady) / len(steady)) if steady else None,
                             "tightness": answers[-1] if answers else None}
            figures = session_tightness(s.holds)  # the strap's measure, when it had a fit
            for leg in ("right", "left"):
                mine = figures[leg] if figures else {}
                legs[leg].update({k: mine.get(k) for k in ("index", "relax_30", "settled")})
            recent.append({"started": s.started.astimezone(tz).strftime("%a %d %b %H:%M"),
                           "outcome": s.outcome, "legs": legs,
                           "asymmetry": figures["asymmetry"]["index"] if figures else None})
        return JSONResponse({"calendar": cal, "sessions": len(sessions), "recent": recent})

    async def chart(self, request: Request) -> Response:
        if self._paired(request) is None:
            return _unpaired()

        sessions = await asyncio.to_thread(self._sessions)
        svg = hold_chart(sessions, self._now(), _zone(self.box.config), self.options.weeks)
        return Response(svg, media_type="image/svg+xml")

    async def csv(self, request: Request) -> Response:
        if self._paired(request) is None:
            return _unpaired()
        sessions = await asyncio.to_thread(self._sessions)
        out = StringIO()
        write_csv(sessions, out)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
            "content-disposition": 'attachment; filename="stretch-history.csv"'})

    # ---- settings ---------------------------------------------------------------------

    def _config_path(self) -> Path:
        return self.options.config_path or settings_mod.settings_path(None)

    async def get_settings(self, request: Request) -> Response:
        if self._paired(request) is None:
            return _unpaired()
        path = self._config_path()
        try:
            config = settings_mod.current(path, self.options.settings_seed)
            problem = ""
        except Exception as exc:  # an unreadable file: show what runs, say why
            config, problem = self.box.config, str(exc)
        return JSONResponse({"fields": settings_mod.describe(config), "file": str(path),
                             "problem": problem})

    async def post_settings(self, request: Request) -> Response:
        body = await self._authorised_post(request)
        if isinstance(body, Response):
            return body
        changes = body.get("changes")
        if not isinstance(changes, dict):
            return JSONResponse({"error": "changes must be an object"}, status_code=400)
        path = self._config_path()
        try:
            config = await asyncio.to_thread(settings_mod.save, path, changes,
                                             self.options.settings_seed)
        except settings_mod.SettingsError as exc:
            return JSONResponse({"key": exc.key, "message": exc.human, "detail": exc.message},
                                status_code=422)
        log.info("web: settings saved to %s: %s", path, ", ".join(changes))
        if self.options.on_config_saved is not None:
            try:
                self.options.on_config_saved(config)
            except Exception:
                log.warning("web: the new settings could not be handed to the box",
                            exc_info=True)
        return JSONResponse({"ok": True, "fields": settings_mod.describe(config),
                             "applies": "from the next session"})


def _unpaired() -> Response:
    return JSONResponse({"error": "not paired", "paired": False}, status_code=401)


class WebServer:
    """Runs a ``WebApp`` with uvicorn in a thread of its own; ``close()`` stops it."""

    def __init__(self, box: Any, options: WebOptions, guard: Guard | None = None) -> None:
        import uvicorn

        self.guard = guard or Guard()  # connection limits and the header timeout
        quiet_accept_errors()
        self.web = WebApp(box, options)
        self.options = options
        self.sock = socket.socket(socket.AF_INET6 if ":" in options.host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((options.host, options.port))
        except OSError:
            self.sock.close()
            raise
        self.sock.listen(64)
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(self.web.app, log_level="warning", access_log=False,
                                lifespan="off", ws="none", http=guarded_protocol(self.guard),
                                loop="asyncio", timeout_graceful_shutdown=1,
                                timeout_keep_alive=5, h11_max_incomplete_event_size=16384)
        self.server = quiet_server(config)  # no 0.1 s tick: asleep with no page open
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="web", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.web.hub.loop = loop
        try:
            loop.run_until_complete(self._serve())
        except Exception:
            log.exception("web server stopped")
        finally:
            self.web.hub.loop = None
            self._started.set()
            loop.close()

    async def _serve(self) -> None:
        task = asyncio.ensure_future(self.server.serve(sockets=[self.sock]))
        while not self.server.started and not task.done():
            await asyncio.sleep(0.005)
        self._started.set()
        await task

    def start(self) -> WebServer:
        """Start serving; returns once the socket answers."""
        self.thread.start()
        self._started.wait(10)
        return self

    def close(self) -> None:
        """Stop serving (open pages reconnect once a server is back)."""
        self.web.hub.close_all()
        self.server.stop()
        if self.thread.is_alive():
            self.thread.join(5)
        try:
            self.sock.close()
        except OSError:
            pass
