"""What add-ons know of the phone page: where it is, and how to have the box say a fresh
pairing code (both provided by the page add-on)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PageAddress:
    """The phone page's address (``http://HOST:PORT/``, HOST as the server listens)."""

    url: str


@dataclass(frozen=True)
class PairingVoice:
    """``say_fresh_code()``: the box says a new pairing code aloud and lifts every lockout
    (for whoever is at the box or may use its control socket: the owner)."""

    say_fresh_code: Callable[[], None]
