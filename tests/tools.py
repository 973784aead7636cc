"""Tests that need a tool from outside Python: under CI=true a missing one fails the run
(`.ci/run` installs it), elsewhere the test skips and says how to install it."""

from __future__ import annotations

import os

import pytest

CI = os.environ.get("CI") == "true"


def need(ok: bool, what: str, install: str) -> None:
    """Go on if ``ok``; else fail under CI=true, skip elsewhere (``install`` says how).

    Callable in a test or at a test module's top (then the whole module skips or fails)."""
    if ok:
        return
    if CI:
        pytest.fail(f"{what} is missing under CI=true ({install})", pytrace=False)
    # justified: the one skip of the suite, outside CI only, naming what to install
    pytest.skip(f"{what} is missing: {install}", allow_module_level=True)
