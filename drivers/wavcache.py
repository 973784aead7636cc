"""The spoken-cue cache: one WAV per fixed line, named by a hash of how it was spoken.

A cue is rendered once (by the speech worker) to a hidden temporary name beside its
final name and moved into place with ``os.replace`` only after its header checks out,
so a power cut or a hung engine never leaves a half-written file under a real name.
Before a cached file is played its header is checked again; a bad one is rendered anew.
Nothing here talks to an engine or a player.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
import wave
from collections.abc import Mapping
from pathlib import Path

FORMAT = 1
"""Bumped when the way cues are rendered changes: every old file is then a miss."""

APP_DIR = "stretch-companion"
TMP_SUFFIX = ".tmp.wav"
STALE_TMP_S = 3600.0
"""Temporary renders older than this (left by a hung engine or a crash) are deleted."""

_counter = itertools.count()


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where cues are kept: systemd's ``$CACHE_DIRECTORY`` (/var/cache/stretch-companion),
    else ``$XDG_CACHE_HOME/stretch-companion``, else ``~/.cache/stretch-companion``; in
    each, the ``voice`` folder."""
    env = os.environ if env is None else env
    systemd = env.get("CACHE_DIRECTORY", "")
    if systemd:
        return Path(systemd.split(":")[0]) / "voice"
    xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / APP_DIR / "voice"


def cue_key(text: str, rate: int, volume: float, voice_id: str, engine: str) -> str:
    """The file name stem for ``text`` spoken with these settings by this engine."""
    blob = json.dumps([FORMAT, text, int(rate), round(float(volume), 3), voice_id, engine],
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def wav_seconds(path: str | os.PathLike[str]) -> float | None:
    """Length (s) of the PCM WAV at ``path``, or None if it is missing, empty or not a
    whole RIFF/WAVE file."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        with wave.open(os.fspath(path), "rb") as w:
            frames, rate = w.getnframes(), w.getframerate()
            data_bytes = frames * w.getsampwidth() * w.getnchannels()
    except (OSError, EOFError, wave.Error):
        return None
    if frames <= 0 or rate <= 0 or size < data_bytes + 12:
        return None  # no sound, or the data is cut short
    return frames / rate


class WavCache:
    """Rendered cues in one folder (created when first needed)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._ready = False

    def ensure(self) -> None:
        """Create the folder (owner-only) and sweep stale temporary renders."""
        if self._ready:
            return
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._ready = True
        self.sweep()

    def path(self, key: str) -> Path:
        """Where the cue with ``key`` lives."""
        return self.folder / f"{key}.wav"

    def lookup(self, key: str) -> tuple[Path, float] | None:
        """The valid cached file for ``key`` and its length (s), or None."""
        path = self.path(key)
        seconds = wav_seconds(path)
        return None if seconds is None else (path, seconds)

    def temp_path(self, key: str) -> Path:
        """A fresh hidden name to render ``key`` into (unique per process and call)."""
        return self.folder / f".{key}.{os.getpid()}-{next(_counter)}{TMP_SUFFIX}"

    def commit(self, temp: Path, key: str) -> tuple[Path, float] | None:
        """Move a finished render into place if it is a valid WAV; else delete it."""
        seconds = wav_seconds(temp)
        if seconds is None:
            discard(temp)
            return None
        final = self.path(key)
        os.replace(temp, final)
        return final, seconds

    def sweep(self, now: float | None = None) -> int:
        """Delete temporary renders older than an hour; returns how many."""
        now = time.time() if now is None else now
        gone = 0
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return 0
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX):
                try:
                    if now - entry.stat().st_mtime > STALE_TMP_S:
                        os.unlink(entry.path)
                        gone += 1
                except OSError:
                    pass
        return gone


def scratch_cache() -> WavCache:
    """A cache in a new temporary folder (when the real one cannot be written), removed
    when the process exits."""
    folder = tempfile.mkdtemp(prefix="stretch-companion-voice-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return WavCache(folder)


def discard(path: str | os.PathLike[str]) -> None:
    """Delete ``path`` if it is there."""
    try:
        os.unlink(path)
    except OSError:
        pass
