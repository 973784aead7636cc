"""The real time source for ``device.core.timetrust``: is the system clock synchronized,
which boot is this, the monotonic clock."""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

SYNC_FILE = Path("/run/systemd/timesync/synchronized")
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
TIME_ERROR = 5  # adjtimex: the clock is not synchronized
STA_UNSYNC = 0x0040


class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h); only modes (in) and status (out) are read, the rest is
    # room for the kernel to write into (padded generously)
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("rest", ctypes.c_byte * 256)]


_libc: list[ctypes.CDLL] = []


def kernel_synchronized() -> bool | None:
    """The kernel's view (``adjtimex``, read only): None when it cannot be asked (a
    sandbox refusing the call, as the service's ProtectClock= does; no libc)."""
    try:
        if not _libc:
            _libc.append(ctypes.CDLL(None, use_errno=True))  # the process's own libc
        libc = _libc[0]
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR and not tx.status & STA_UNSYNC


def timedatectl_synchronized() -> bool | None:
    """``timedatectl show -p NTPSynchronized`` (None when it cannot answer)."""
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip()
    return {"yes": True, "no": False}.get(value) if out.returncode == 0 else None


class SystemTimeSource:
    """The real one: systemd-timesyncd's flag file, else the kernel's ``adjtimex`` status
    (``timedatectl`` when asked: it needs D-Bus, which the service's sandbox allows but
    a container may lack)."""

    def __init__(self, *, sync_file: Path = SYNC_FILE, boot_file: Path = BOOT_ID_FILE,
                 use_timedatectl: bool = False) -> None:
        self.sync_file = sync_file
        self.boot_file = boot_file
        self.use_timedatectl = use_timedatectl
        self._boot: str | None = None

    def wall(self) -> datetime:
        return datetime.now().astimezone()

    def monotonic(self) -> float:
        return time.monotonic()

    def boot_id(self) -> str:
        if self._boot is None:
            try:
                self._boot = self.boot_file.read_text().strip()
            except OSError:
                self._boot = f"pid-{os.getpid()}-{time.monotonic_ns()}"  # unknown: this run
        return self._boot

    def synchronized(self) -> bool | None:
        if self.sync_file.exists():
            return True
        kernel = kernel_synchronized()
        if kernel is not None:
            return kernel
        return timedatectl_synchronized() if self.use_timedatectl else None
