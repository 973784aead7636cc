"""The voice's one status, from what actually happened to the last line.

Every surface (the screen, the page, ``status``, MQTT) shows this, read from the box's
view: ``off`` (switched off in the config), ``failed`` (the voice cannot speak, or its last
line could not be heard, with the reason) or ``on`` (the last line was heard, or nothing
has been said yet by a voice that started). A later line that plays brings ``on`` back.
Pure: no I/O.
"""

from __future__ import annotations

STARTED_NOT_YET = "the speech engine did not start"


def voice_status(enabled: bool, available: bool | None, last_line_ok: bool | None,
                 error: str = "", said_error: str = "") -> tuple[str, str]:
    """(status, reason): ``available`` is the speaker's (False: it gave up), ``last_line_ok``
    what happened to its last line (None: none yet or not known), ``error`` its last error,
    ``said_error`` what ``say`` raised (the loop's own record)."""
    if not enabled:
        return "off", "voice.enabled = false"
    if said_error:
        return "failed", said_error
    if available is False:
        return "failed", error or STARTED_NOT_YET
    if last_line_ok is False:
        return "failed", error or "the last line could not be played"
    return "on", ""


def screen_words(status: str, reason: str) -> str:
    """The terminal screen's words for a status (the same truth, shorter)."""
    if status == "off":
        return "voice off (text only)"
    if status == "failed":
        return f"voice failed: {short(reason)} (text only)"
    return "voice on"


def short(reason: str, limit: int = 60) -> str:
    """A reason cut to ``limit`` characters for a title line (the log has it whole)."""
    reason = " ".join(reason.split())
    return reason if len(reason) <= limit else reason[:limit - 1].rstrip() + "…"
