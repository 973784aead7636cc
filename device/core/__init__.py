"""core"""

VERSION = "0.1.0"
"""The package's version (pyproject.toml reads it from here: one source); MQTT discovery's
``sw_version``. A constant, so the box never imports ``importlib.metadata`` for it."""
