"""A lifeline for child process groups: when this process dies, even by SIGKILL, the
groups it started die with it (issue 22: kill -9 outside systemd left the voice player
and its children playing).

One small ``sh`` per process watches a pipe whose only writer is this process; it is
told ``+PGID`` when a group starts and ``-PGID`` when it ends. The kernel closes the pipe
when this process dies, however it dies; the watcher reads EOF and kills every group it
still knows, children of a wrapper script included (``PR_SET_PDEATHSIG`` reaches only the
direct child). systemd's ``KillMode=mixed`` does the same for the service; this covers a
box run by hand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading

WATCHER = (
    'groups=""\n'
    'while read -r op pg; do\n'
    '  case "$op" in\n'
    '    +) groups="$groups $pg" ;;\n'
    '    -) new=""; for g in $groups; do [ "$g" = "$pg" ] || new="$new $g"; done;'
    ' groups="$new" ;;\n'
    '  esac\n'
    'done\n'
    'for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done\n'
)


class Lifeline:
    """Tie process groups to this process's life; ``hold``/``release`` a group leader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._failed = False

    def _watcher(self) -> subprocess.Popen[bytes] | None:
        if self._proc is None and not self._failed:
            sh = shutil.which("sh")
            try:
                if sh is None:
                    raise OSError("no sh")
                self._proc = subprocess.Popen(
                    [sh, "-c", WATCHER], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
            except OSError:
                self._failed = True  # no lifeline: systemd's KillMode still covers the unit
        return self._proc

    def _tell(self, line: str) -> None:
        with self._lock:
            proc = self._watcher()
            if proc is None or proc.stdin is None:
                return
            try:
                proc.stdin.write(line.encode("ascii"))
                proc.stdin.flush()
            except OSError:
                self._failed = True

    def start(self) -> None:
        """Start the watcher now (so ``hold`` is one write to a pipe, never a fork)."""
        with self._lock:
            self._watcher()

    def hold(self, pgid: int) -> None:
        """Kill group ``pgid`` if this process dies before ``release``."""
        self._tell(f"+ {pgid}\n")

    def release(self, pgid: int) -> None:
        """The group ended (or was ended): no longer watched."""
        self._tell(f"- {pgid}\n")

    @property
    def pid(self) -> int | None:
        """The watcher's pid (None before the first ``hold``)."""
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        """Stop watching (the watcher exits; nothing is held by then)."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)


_SHARED: Lifeline | None = None
_SHARED_PID = 0


def shared() -> Lifeline:
    """This process's lifeline (a fresh one after a fork)."""
    global _SHARED, _SHARED_PID
    if _SHARED is None or _SHARED_PID != os.getpid():
        _SHARED, _SHARED_PID = Lifeline(), os.getpid()
    return _SHARED
