"""Heavy imports kept out of the terminal simulator's process (device/apps/lean.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import sys
from device.apps import lean
lean.lazy_metadata()
assert lean.without_tls()
import asyncio, hashlib
import gpiozero
from gpiozero.pins.mock import MockFactory
import device.apps.tui
print(hashlib.sha256(b"cue").hexdigest())
print(sorted(m for m in ("ssl", "_ssl", "_hashlib", "importlib.metadata", "email")
             if sys.modules.get(m) is not None))
"""


def test_screen_process_loads_no_openssl_and_no_metadata_and_hashes_the_same() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    digest, loaded = done.stdout.splitlines()
    import hashlib

    assert digest == hashlib.sha256(b"cue").hexdigest()  # WAV cache keys unchanged
    assert loaded == "[]"


def test_metadata_stand_in_still_finds_entry_points() -> None:
    probe = ("from device.apps import lean\nlean.lazy_metadata()\n"
             "import importlib_metadata as m\n"
             "print(len(list(m.entry_points(group='gpiozero_pin_factories'))) > 0)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
