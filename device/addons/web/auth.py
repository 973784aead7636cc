"""Pairing, not passwords: a 6-digit code the box speaks, then a long-lived cookie.

Everything here is plain Python (no web library), so ``stretch-companion web-code`` and
``web-forget`` work on a box without the ``web`` extra. The store is one small JSON file in
the state directory (mode 0600): the current pairing code and the SHA-256 of every paired
phone's token (a stolen file pairs no phone). The running server re-reads it when it
changes on disk, so ``web-forget`` takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from device.store.files import write_atomic
from device.store.paths import default_history_path

log = logging.getLogger(__name__)

STORE_NAME = "web-pairing.json"
MAX_WRONG = 5  # wrong codes in a row from one address before it is locked out
LOCK_S = 60.0  # how long the first lockout lasts (s); each further one doubles it
MAX_LOCK_S = 3600.0  # the longest lockout (s)
MAX_ADDRESSES = 1000  # addresses remembered for their wrong codes; the oldest go first
MAX_TOKENS = 20  # paired phones kept; the oldest is dropped beyond this


def state_dir(service: bool, env: Mapping[str, str] | None = None) -> Path:
    """The state directory the history lives in (the pairing store sits beside it)."""
    return default_history_path(service, env).parent


def store_path(directory: Path | None = None, *, simulator: bool = False,
               env: Mapping[str, str] | None = None) -> Path:
    """Where the pairing store lives; the simulator keeps its own, like its history.

    Without ``directory``: the service's state directory when a store is already there
    (``$STATE_DIRECTORY`` or /var/lib/stretch-companion), else the user's state directory."""
    name = ("sim-" if simulator else "") + STORE_NAME
    if directory is not None:
        return Path(directory) / name
    service = state_dir(True, env) / name
    if not simulator and service.is_file():
        return service
    return state_dir(False, env) / name


def new_code() -> str:
    """Six random digits (leading zeros kept)."""
    return f"{secrets.randbelow(10**6):06d}"


def token_hash(token: str) -> str:
    """What the store keeps of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_for(token: str) -> str:
    """The CSRF token that goes with a session token (derived, so nothing more is stored)."""
    return hmac.new(token.encode("utf-8"), b"stretch-companion csrf", "sha256").hexdigest()


class PairingStore:
    """The code, the paired tokens and the wrong-code lock; thread-safe.

    ``clock`` (monotonic seconds) is injected so tests need not wait out the lock."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._code = ""
        self._tokens: list[str] = []
        self._wrong: dict[str, int] = {}  # address -> wrong codes in a row
        self._locks: dict[str, tuple[float, int]] = {}  # address -> (until, lockouts so far)
        self._load()
        if not self._code:
            self._code = new_code()
            self._save()

    # ---- the file ---------------------------------------------------------------------

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        stamp = self._file_stamp()
        if stamp is not None and stamp == self._stamp:
            return
        data: dict = {}
        if stamp is not None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("web pairing store %s unreadable (%s): starting afresh", self.path, exc)
                data = {}
        code = data.get("code")
        self._code = code if isinstance(code, str) and len(code) == 6 and code.isdigit() else ""
        tokens = data.get("tokens")
        self._tokens = [t for t in tokens if isinstance(t, str)] if isinstance(tokens, list) else []
        self._stamp = stamp

    def _save(self) -> None:
        data = {"code": self._code, "tokens": self._tokens}
        write_private(self.path, json.dumps(data, indent=1) + "\n")
        self._stamp = self._file_stamp()

    # ---- the API ----------------------------------------------------------------------

    @property
    def code(self) -> str:
        """The current pairing code."""
        with self._lock:
            self._load()
            if not self._code:
                self._code = new_code()
                self._save()
            return self._code

    def locked_for(self, address: str = "") -> float:
        """Seconds until ``address`` may try a code again (0 = open)."""
        with self._lock:
            return max(0.0, self._locks.get(address, (0.0, 0))[0] - self.clock())

    def pair(self, code: str, address: str = "") -> tuple[str | None, str]:
        """Try ``code`` from ``address``: (a new token, "") when right, else (None, why).

        Wrong codes lock out only the address they came from, for ``LOCK_S`` doubling at
        each further lockout (at most ``MAX_LOCK_S``); each lockout draws a new code, so
        guessing starts again from nothing. The owner, at the box, is never locked out:
        a press on the box says a fresh code and lifts every lock (``owner_present``)."""
        with self._lock:
            self._load()
            now = self.clock()
            until, times = self._locks.get(address, (0.0, 0))
            if now < until:
                return None, f"locked: too many wrong codes; try again in " \
                    f"{int(until - now + 0.999)} s"
            if not (self._code and hmac.compare_digest(code.encode(), self._code.encode())):
                wrong = self._wrong.pop(address, 0) + 1  # re-inserted: newest last
                if wrong >= MAX_WRONG:
                    lock = min(LOCK_S * 2 ** times, MAX_LOCK_S)
                    self._locks.pop(address, None)
                    self._locks[address] = (now + lock, times + 1)
                    self._trim()
                    self._code = new_code()  # whatever was learnt of the old one is void
                    self._save()
                    log.warning("web pairing: %d wrong codes from %s; locked out for %.0f s "
                                "and a new code drawn", MAX_WRONG, address or "?", lock)
                    return None, f"locked: too many wrong codes; try again in {lock:.0f} s"
                self._wrong[address] = wrong
                self._trim()
                return None, f"wrong code ({MAX_WRONG - wrong} tries left)"
            self._wrong.pop(address, None)
            token = secrets.token_urlsafe(32)
            self._tokens = (self._tokens + [token_hash(token)])[-MAX_TOKENS:]
            self._code = new_code()  # a code pairs one phone; the next one hears a new code
            self._save()
            return token, ""

    def owner_present(self) -> str:
        """A press on the box (or the control socket): every lockout lifted and a fresh
        code drawn; returns it (to be said aloud)."""
        with self._lock:
            self._load()
            self._wrong.clear()
            self._locks.clear()
            self._code = new_code()
            self._save()
            return self._code

    def _trim(self) -> None:
        for table in (self._wrong, self._locks):
            while len(table) > MAX_ADDRESSES:
                del table[next(iter(table))]

    def valid(self, token: str | None) -> bool:
        """Whether ``token`` belongs to a paired phone."""
        if not token:
            return False
        digest = token_hash(token)
        with self._lock:
            self._load()
            return any(hmac.compare_digest(digest, t) for t in self._tokens)

    def forget(self) -> int:
        """Revoke every paired phone and pick a new code; how many were paired."""
        with self._lock:
            self._load()
            n = len(self._tokens)
            self._tokens = []
            self._code = new_code()
            self._save()
            return n


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (root running
    web-forget leaves the file to the service's user)."""
    write_atomic(path, text, mode=0o600, keep_owner=True)
