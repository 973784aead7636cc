"""Keeping the heavy imports out of the processes that do not need them (measured).

Measured on a 2-core VM, Python 3.11, resident memory added by each import in a fresh
process (``python -m bench`` repeats it under ``startup``):

- ``importlib.metadata`` (email, zipfile, csv...): 4.7 MiB, imported by gpiozero only to
  look up pin factories by name, which a box given its factory never does;
- OpenSSL (``ssl`` pulled in by asyncio, ``_hashlib`` by hashlib): 4.3 MiB; the terminal
  simulator never talks TLS, and hashlib's built-in SHA-256 gives the same digests;
- Textual 10-11 MiB and the espeak engine about 6 MiB: needed on screen, loaded only there
  (the engine in a thread of its own, after the screen is up).

``lazy_metadata()`` stands a small module in for ``importlib_metadata`` (which gpiozero
tries first) that imports the real ``importlib.metadata`` on first use.
``without_tls()`` makes ``ssl`` and ``_hashlib`` unimportable for this process: for the
terminal simulator and ``run``, called before anything imports them.
For ``run`` (issue 23), with MQTT off or plain ``mqtt://``: ``without_tls()`` and then
``imports_without_tls()``, which lets uvicorn's config and paho's client import with a
stand-in ``ssl`` holding only the names they read without TLS (4 MB: libcrypto, its start,
``_ssl``). With ``mqtts://``, ``builtin_hashes()`` keeps only ``_hashlib`` out (0.5 MB).
``uvicorn_without_cli()`` (issue 23): ``import uvicorn`` runs ``uvicorn.main``, its command
line, which imports ``click`` (3.5 MiB) for a server the box starts from code; a stand-in
``uvicorn.main`` hands over ``Server`` and loads the real module only if its ``main`` or
``run`` is called.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any


def lazy_metadata() -> None:
    """gpiozero's ``from importlib_metadata import entry_points`` gets a stand-in that
    loads ``importlib.metadata`` only when a pin factory is looked up by name."""
    if "importlib_metadata" in sys.modules or "gpiozero" in sys.modules:
        return
    try:  # the real backport, when installed, is used as is
        import importlib.util

        if importlib.util.find_spec("importlib_metadata") is not None:
            return
    except (ImportError, ValueError):
        pass
    shim = types.ModuleType("importlib_metadata")
    shim.__doc__ = "device.apps.lean: importlib.metadata, imported on first use"

    def entry_points(*args: Any, **kwargs: Any) -> Any:
        from importlib.metadata import entry_points as real

        return real(*args, **kwargs)

    def version(name: str) -> str:
        from importlib.metadata import version as real

        return real(name)

    shim.entry_points = entry_points  # type: ignore[attr-defined]
    shim.version = version  # type: ignore[attr-defined]
    sys.modules["importlib_metadata"] = shim


def without_tls() -> bool:
    """No OpenSSL in this process (asyncio then runs without TLS support, hashlib on its
    built-in hashes); False when something already loaded it (``hashlib`` may be loaded
    already on built-in hashes: ``builtin_hashes()``)."""
    if any(name in sys.modules for name in ("ssl", "_ssl", "asyncio")):
        return False
    if sys.modules.get("_hashlib") is not None or (
            "hashlib" in sys.modules and "_hashlib" not in sys.modules):
        return False  # hashlib holds OpenSSL's digests
    for name in ("ssl", "_ssl", "_hashlib"):
        sys.modules[name] = None  # type: ignore[assignment]
    return True


def builtin_hashes() -> bool:
    """``hashlib`` on CPython's built-in hashes, without OpenSSL's ``_hashlib``: the same
    digests (the WAV cache's keys, the page's ETags and cookies, the MQTT machine id). For
    ``run``, whose page server (uvicorn) loads ``ssl`` anyway: OpenSSL's library is mapped
    all the same, but ``_hashlib``'s start (every digest fetched from OpenSSL's providers)
    is 0.5 MB of resident memory. False when ``hashlib`` or ``_hashlib`` is already loaded."""
    if any(name in sys.modules for name in ("hashlib", "_hashlib", "hmac")):
        return False
    sys.modules["_hashlib"] = None  # type: ignore[assignment]
    return True


class _NoTLS(types.ModuleType):
    """The ``ssl`` that uvicorn's config and paho's client see in a process without TLS:
    what they read of it at import (the defaults of uvicorn's ``Config``, in CPython's own
    numbering in ``_ssl``, not OpenSSL's) and the exceptions paho catches around every read
    and write, which only a TLS socket raises. Anything else (a TLS context: mqtts://, or a
    certificate for the page, neither of which such a process has) raises, loudly."""

    PROTOCOL_TLS_SERVER = 17  # ssl.PROTOCOL_TLS_SERVER
    CERT_NONE = 0  # ssl.CERT_NONE

    class SSLError(OSError):
        """Never raised: there is no TLS socket."""

    class SSLWantReadError(SSLError):
        """Never raised: there is no TLS socket."""

    class SSLWantWriteError(SSLError):
        """Never raised: there is no TLS socket."""

    class CertificateError(SSLError, ValueError):
        """Never raised: there is no TLS socket."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"ssl.{name}: TLS is off in this process (device.apps.lean)")


NO_TLS_IMPORTERS = ("uvicorn.config", "paho.mqtt.client")
"""The modules that need an ``ssl`` to import or to run without TLS (everything else in
``run``, asyncio, anyio, http.client, does without one)."""


class _ImportWithoutTLS(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds each of ``NO_TLS_IMPORTERS`` as usual and runs its code with ``_NoTLS`` as the
    ``ssl`` of its own ``import ssl`` only; the modules it imports see none."""

    def __init__(self) -> None:
        self.stand_in = _NoTLS("ssl")
        self.specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in NO_TLS_IMPORTERS or fullname in self.specs:
            return None
        self.specs[fullname] = real = _real_spec(self, fullname)
        if real is None or not hasattr(real.loader, "get_code"):
            return None
        spec = importlib.util.spec_from_loader(fullname, self, origin=real.origin)
        if spec is not None:
            spec.has_location = real.has_location
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        real = self.specs[module.__name__]
        assert real is not None  # find_spec answered for it
        code = real.loader.get_code(module.__name__)  # type: ignore[union-attr]
        module.__file__ = real.origin
        real_import = builtins.__import__
        stand_in = self.stand_in

        def import_(name: str, globals: Any = None, locals: Any = None,
                    fromlist: Any = (), level: int = 0) -> Any:
            if name == "ssl" and level == 0:
                return stand_in
            return real_import(name, globals, locals, fromlist, level)

        module.__dict__["__builtins__"] = dict(vars(builtins), __import__=import_)
        exec(code, module.__dict__)  # noqa: S102 (the module's own code, as its loader would)


def _real_spec(finder: Any, fullname: str) -> importlib.machinery.ModuleSpec | None:
    """The spec the other finders give ``fullname``."""
    package = fullname.rpartition(".")[0]
    path = getattr(sys.modules[package], "__path__", None) if package else None
    for other in sys.meta_path:
        if other is finder or not hasattr(other, "find_spec"):
            continue
        spec = other.find_spec(fullname, path)
        if spec is not None:
            return spec
    return None


def imports_without_tls() -> bool:
    """After ``without_tls()``: uvicorn (the page, plain HTTP) and paho (plain mqtt://)
    import and run all the same; each reads a few names of ``ssl`` (``NO_TLS_IMPORTERS``).
    False when ``ssl`` is not kept out or one of them is loaded already."""
    if sys.modules.get("ssl", True) is not None or any(
            name in sys.modules for name in NO_TLS_IMPORTERS):
        return False
    sys.meta_path.insert(0, _ImportWithoutTLS())
    return True


def uvicorn_without_cli() -> bool:
    """``import uvicorn`` without its command line (click); False when uvicorn is loaded
    already or is not installed."""
    if "uvicorn" in sys.modules or "uvicorn.main" in sys.modules:
        return False
    import importlib.util

    try:
        if importlib.util.find_spec("uvicorn") is None:
            return False
    except (ImportError, ValueError):
        return False
    stand_in = types.ModuleType("uvicorn.main")
    stand_in.__doc__ = "device.apps.lean: uvicorn's command line, imported on first use"

    def real() -> Any:
        import importlib

        if sys.modules.get("uvicorn.main") is stand_in:
            del sys.modules["uvicorn.main"]
        return importlib.import_module("uvicorn.main")

    def main(*args: Any, **kwargs: Any) -> Any:
        return real().main(*args, **kwargs)

    def run(*args: Any, **kwargs: Any) -> Any:
        return real().run(*args, **kwargs)

    def __getattr__(name: str) -> Any:  # Server (for uvicorn/__init__), anything else
        if name == "Server":
            from uvicorn.server import Server

            return Server
        if name.startswith("__"):  # the import system asking (__path__...): not a package
            raise AttributeError(name)
        return getattr(real(), name)

    stand_in.main = main  # type: ignore[attr-defined]
    stand_in.run = run  # type: ignore[attr-defined]
    setattr(stand_in, "__getattr__", __getattr__)  # noqa: B010 (a module-level __getattr__)
    sys.modules["uvicorn.main"] = stand_in
    return True
