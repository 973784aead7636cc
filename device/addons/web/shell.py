"""The page as an app: a web app manifest, icons, and a service worker that caches the
page's shell only (the HTML, script, style and icons; never an answer from ``/api/``,
never a ``data:`` URL, never the pairing).

Kept apart from ``server.py``: ``routes(web)`` gives the two extra routes, ``FILES`` the
extra static files. Plain bytes, made here; nothing from the network.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FILES = {  # extra static files: name -> content type
    "icon.svg": "image/svg+xml",
    "icon-192.png": "image/png",
    "icon-512.png": "image/png",
}
# What the service worker may cache: the page's shell, nothing else.
SHELL = ("/", "/static/app.js", "/static/app.css", "/static/icon.svg",
         "/static/icon-192.png", "/manifest.webmanifest")
THEME = "#1f6f8b"  # the icon's colour, the page's accent in the light theme
BACKGROUND = "#121417"  # the dark theme's page colour (the splash screen)


def web_code_command(simulator: bool) -> str:
    """The command that prints this box's pairing code (the simulator keeps its own)."""
    return "stretch-companion web-code --sim" if simulator else "stretch-companion web-code"


def manifest() -> bytes:
    """The web app manifest (JSON): a home-screen app that opens on Now, standalone."""
    data: dict[str, Any] = {
        "name": "Stretch Companion",
        "short_name": "Stretch",
        "description": "The stretch box's button, timer and breath, at the mat.",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "orientation": "any",
        "background_color": BACKGROUND,
        "theme_color": THEME,
        "icons": [
            {"src": "/static/icon.svg", "sizes": "any", "type": "image/svg+xml"},
            {"src": "/static/icon-192.png", "sizes": "192x192", "type": "image/png"},
            {"src": "/static/icon-512.png", "sizes": "512x512", "type": "image/png"},
        ],
    }
    return json.dumps(data, indent=1).encode()


def _static(name: str) -> bytes:
    return resources.files("device.addons.web").joinpath("static", name).read_bytes()


def service_worker() -> bytes:
    """``sw.js`` with the shell list and a cache name that changes with the page."""
    digest = hashlib.sha256()
    for name in ("index.html", "app.js", "app.css", *FILES):
        digest.update(_static(name))
    text = _static("sw.js").decode()
    return (text.replace("__SHELL__", json.dumps(list(SHELL)))
            .replace("__VERSION__", digest.hexdigest()[:12]).encode())


def routes() -> list[Route]:
    """``/manifest.webmanifest`` and ``/sw.js`` (at the root, so it may serve the page)."""
    body_manifest = manifest()
    body_sw = service_worker()

    async def get_manifest(request: Request) -> Response:
        return Response(body_manifest, media_type="application/manifest+json",
                        headers={"cache-control": "no-cache"})

    async def get_sw(request: Request) -> Response:
        return Response(body_sw, media_type="text/javascript; charset=utf-8",
                        headers={"cache-control": "no-cache"})

    return [Route("/manifest.webmanifest", get_manifest), Route("/sw.js", get_sw)]
