"""What add-ons know of the phone page: where it is (provided by the page add-on)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageAddress:
    """The phone page's address (``http://HOST:PORT/``, HOST as the server listens)."""

    url: str
